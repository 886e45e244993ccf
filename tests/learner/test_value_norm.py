"""Tests for learner.value_norm: per-head value-target statistics written into the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learner.value_norm import ValueNormalizer


class Heads(nn.Module):
    """Stand-in for ActorCritic's normaliser buffers, V heads."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.register_buffer("value_mean", torch.zeros(heads))
        self.register_buffer("value_std", torch.ones(heads))


def test_one_update_writes_the_masked_target_statistics_of_that_head() -> None:
    model = Heads(2)
    norm = ValueNormalizer(model)
    targets = torch.tensor([[100.0, 7.0], [300.0, -1.0]])  # (T, B)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    norm.update(1, targets, mask)
    assert model.value_mean.tolist() == pytest.approx([0.0, 200.0])
    assert model.value_std.tolist() == pytest.approx([1.0, 100.0])
    norm.update(0, targets, torch.zeros(2, 2))  # nothing valid: head 0 stays put
    assert model.value_mean[0] == 0.0 and model.value_std[0] == 1.0
    norm.update(0, torch.full((2, 2), 5.0), torch.ones(2, 2))  # constant: std floored at eps
    assert model.value_std[0] == pytest.approx(1e-4)


def test_state_round_trip_keeps_the_checkpoint_layout() -> None:
    model = Heads(2)
    norm = ValueNormalizer(model, beta=0.9)
    for i in range(3):
        norm.update(i % 2, torch.randn(4, 3) * (i + 1), torch.ones(4, 3))
    state = norm.state_dict()
    assert set(state) == {"first", "second", "weight"}
    assert all(len(v) == 2 and isinstance(v[0], float) for v in state.values())
    other = Heads(2)
    copy = ValueNormalizer(other, beta=0.9)
    copy.load_state_dict(state)
    assert copy.state_dict() == state
    targets, mask = torch.randn(4, 3), torch.ones(4, 3)
    norm.update(1, targets, mask)
    copy.update(1, targets, mask)
    assert torch.equal(model.value_mean[1], other.value_mean[1])
    assert torch.equal(model.value_std[1], other.value_std[1])
