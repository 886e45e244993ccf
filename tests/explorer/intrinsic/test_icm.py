"""Tests for explorer.intrinsic.icm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.icm import ICMBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 64, "embed_dim": 32, "lr": 1e-3}
MOVES = 0.2 * torch.tensor([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])


def walk(batch_of, low: float, seed: int, steps: int = 16, envs: int = 16):
    """Deterministic toy dynamics: action a moves the state by ``MOVES[a]``; random walks
    from uniform starts in ``[low, low + 1)^4``."""
    generator = torch.Generator().manual_seed(seed)
    start = low + torch.rand(envs, 4, generator=generator)
    actions = torch.randint(0, len(MOVES), (steps, envs), generator=generator)
    obs = start + torch.cat([torch.zeros(1, envs, 4), MOVES[actions].cumsum(0)])
    return batch_of({"obs": obs}, actions=actions)


def masked_mean(bonus: torch.Tensor, mask: torch.Tensor) -> float:
    return float((bonus * mask).sum() / mask.sum())


def inverse_accuracy(icm: ICMBonus, batch) -> float:
    with torch.no_grad():
        phi = icm.features({"obs": batch.obs["obs"].reshape(-1, 4)}).view(
            *batch.obs["obs"].shape[:2], -1)
        logits = icm.inverse_model(torch.cat([phi[:-1], phi[1:]], dim=-1))
    return float((logits.argmax(-1) == batch.actions).float().mean())


def test_protocol_seeding_and_global_rng_untouched(batch_of) -> None:
    before = torch.get_rng_state()
    icm = make_intrinsic("icm", obs_spec=SPEC, num_actions=4, seed=5, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(icm, ICMBonus) and isinstance(icm, IntrinsicReward)
    batch = walk(batch_of, 0.0, seed=0)
    same = ICMBonus(SPEC, 4, seed=5, **SMALL)
    other = ICMBonus(SPEC, 4, seed=6, **SMALL)
    out = icm.compute(batch)
    assert out.shape == (16, 16) and out.dtype == torch.float32 and bool((out > 0).all())
    assert torch.equal(out, same.compute(batch))
    assert not torch.equal(out, other.compute(batch))


@pytest.mark.parametrize("feature_norm", [True, False])
def test_inverse_model_learns_deterministic_toy_dynamics(batch_of, feature_norm: bool) -> None:
    train, held_out = walk(batch_of, 0.0, seed=0), walk(batch_of, 0.0, seed=1)
    icm = ICMBonus(SPEC, 4, feature_norm=feature_norm, **SMALL)
    assert inverse_accuracy(icm, held_out) < 0.45  # chance: 0.25
    for _ in range(100):
        metrics = icm.update(train)
    assert set(metrics) == {"loss", "inverse_loss", "forward_loss", "inverse_accuracy"}
    assert metrics["inverse_accuracy"] > 0.9
    assert inverse_accuracy(icm, held_out) > 0.9


def test_forward_loss_does_not_train_the_features(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    icm = ICMBonus(SPEC, 4, beta=1.0, **SMALL)  # forward loss only
    features = [p.clone() for p in icm.features.parameters()]
    inverse = [p.clone() for p in icm.inverse_model.parameters()]
    forward = [p.clone() for p in icm.forward_model.parameters()]
    icm.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(features, icm.features.parameters(),
                                                  strict=True))
    assert all(torch.equal(a, b) for a, b in zip(inverse, icm.inverse_model.parameters(),
                                                  strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(forward, icm.forward_model.parameters(),
                                                      strict=True))


def test_bonus_is_scaled_forward_error(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0, steps=3, envs=2)
    icm = ICMBonus(SPEC, 4, eta=3.0, **SMALL)
    with torch.no_grad():
        phi = icm.features({"obs": batch.obs["obs"].reshape(-1, 4)}).view(4, 2, -1)
        onehot = torch.nn.functional.one_hot(batch.actions, 4).float()
        predicted = icm.forward_model(torch.cat([phi[:-1], onehot], dim=-1))
    expected = 3.0 / 2 * (predicted - phi[1:]).square().sum(-1)
    torch.testing.assert_close(icm.compute(batch), expected)


def test_novel_toy_states_get_larger_bonus_and_seen_bonus_drops(batch_of) -> None:
    seen, held_out = walk(batch_of, 0.0, seed=0), walk(batch_of, 0.0, seed=1)
    novel = walk(batch_of, 3.0, seed=2)
    icm = ICMBonus(SPEC, 4, **SMALL)
    before = masked_mean(icm.compute(seen), seen.mask)
    for _ in range(150):
        icm.update(seen)
    assert masked_mean(icm.compute(seen), seen.mask) < 0.2 * before
    novel_bonus = masked_mean(icm.compute(novel), novel.mask)
    assert novel_bonus > 4 * masked_mean(icm.compute(held_out), held_out.mask)


def test_novel_minigrid_observations_get_larger_bonus(minigrid, minigrid_spec) -> None:
    seen = minigrid("MiniGrid-Empty-8x8-v0", seed=0)
    held_out = minigrid("MiniGrid-Empty-8x8-v0", seed=1)
    novel = minigrid("MiniGrid-LavaGapS7-v0", seed=0)
    icm = ICMBonus(minigrid_spec, 7, **SMALL)
    before = masked_mean(icm.compute(seen), seen.mask)
    for _ in range(200):
        metrics = icm.update(seen)
    assert metrics["inverse_accuracy"] > 0.9  # left / right / forward from MiniGrid views
    assert masked_mean(icm.compute(seen), seen.mask) < 0.7 * before
    novel_bonus = masked_mean(icm.compute(novel), novel.mask)
    assert novel_bonus > 1.3 * masked_mean(icm.compute(held_out), held_out.mask)


def test_state_dict_round_trip(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    icm = ICMBonus(SPEC, 4, seed=0, **SMALL)
    for _ in range(3):
        icm.update(batch)
    other = ICMBonus(SPEC, 4, seed=1, **SMALL)
    assert not torch.equal(other.compute(batch), icm.compute(batch))
    other.load_state_dict(icm.state_dict())
    assert torch.equal(other.compute(batch), icm.compute(batch))
    assert icm.update(batch) == other.update(batch)  # optimiser state came along
    assert torch.equal(other.compute(batch), icm.compute(batch))


def test_masked_transitions_get_zero_and_are_not_trained_on(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    mask = batch.mask.clone()
    mask[::2, 1::3] = 0.0
    actions = batch.actions.clone()
    actions[mask == 0] = -1  # EnvPool ignores actions on auto-reset steps: any value may appear
    masked = dataclasses.replace(batch, mask=mask, actions=actions)
    icm = ICMBonus(SPEC, 4, **SMALL)
    out = icm.compute(masked)
    assert bool((out[mask == 0] == 0).all()) and bool((out[mask > 0] > 0).all())
    icm.update(masked)  # would fail on the -1 actions if masked steps were used
