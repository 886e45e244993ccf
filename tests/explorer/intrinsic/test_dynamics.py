"""Tests for explorer.intrinsic.dynamics: the inverse-dynamics model ICM, E3B and NGU share."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from explorer.intrinsic.dynamics import (
    InverseDynamics,
    InverseDynamicsEmbedding,
    train_inverse_dynamics,
)
from explorer.intrinsic.e3b import E3BBonus
from explorer.intrinsic.icm import ICMBonus
from explorer.intrinsic.ngu import NGUBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 32, "embed_dim": 8}


def test_icm_e3b_and_ngu_share_one_inverse_model() -> None:
    icm = ICMBonus(SPEC, 4, **SMALL)
    e3b, ngu = E3BBonus(SPEC, 4, **SMALL), NGUBonus(SPEC, 4, **SMALL)
    assert isinstance(icm.model, InverseDynamicsEmbedding)
    assert icm.features is icm.model.embed and icm.inverse_model is icm.model.inverse
    for inverse in (icm.inverse_model, e3b.model.inverse, ngu.model.inverse):
        assert isinstance(inverse, InverseDynamics)
    # the parameter names checkpoints hold
    assert sorted(icm.networks.state_dict()) == sorted(
        [f"features.{n}" for n in icm.features.state_dict()]
        + ["inverse_model.0.weight", "inverse_model.0.bias", "inverse_model.2.weight",
           "inverse_model.2.bias", "forward_model.0.weight", "forward_model.0.bias",
           "forward_model.2.weight", "forward_model.2.bias"])


def test_loss_is_the_cross_entropy_of_the_taken_actions() -> None:
    torch.manual_seed(0)
    inverse = InverseDynamics(embed_dim=3, hidden_size=16, num_actions=5)
    phi, phi_next = torch.randn(7, 3), torch.randn(7, 3)
    actions = torch.randint(0, 5, (7,))
    loss, accuracy = inverse.loss(phi, phi_next, actions)
    logits = inverse(torch.cat([phi, phi_next], dim=-1))
    torch.testing.assert_close(loss, F.cross_entropy(logits, actions))
    assert accuracy == float((logits.argmax(-1) == actions).float().mean())


def test_masked_transitions_are_left_out_and_an_empty_batch_costs_nothing(batch_of) -> None:
    model = InverseDynamicsEmbedding(SPEC, 4, 8, "mlp", 32)
    obs = {"obs": torch.randn(4, 2, 4)}
    actions = torch.randint(0, 4, (3, 2))
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    loss, _ = model.loss(batch_of(obs, actions=actions, mask=mask))
    phi = model.embed_steps(obs)  # (T+1, B, E)
    valid = mask > 0
    expected, _ = model.inverse.loss(phi[:-1][valid], phi[1:][valid], actions[valid])
    torch.testing.assert_close(loss, expected)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = [p.clone() for p in model.parameters()]
    metrics = train_inverse_dynamics(model, optimizer, batch_of(obs, mask=torch.zeros(3, 2)), 1)
    assert metrics == {"loss": 0.0, "inverse_accuracy": 0.0}
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
