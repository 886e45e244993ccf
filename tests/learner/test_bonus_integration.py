"""Bonuses reach the policy gradient: they are added to rewards *before* advantages.

Advantages (V-trace and GAE) are linear in the rewards for fixed values, so enabling a bonus
with coefficient c must shift the advantages by exactly c * A(r_int; values = 0). A learner
that added bonuses after computing advantages would show no shift at all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from minigrid_batches import minigrid_batch, minigrid_learner

from learner.algo import Learner
from learner.batch import Batch
from learner.bonuses import ReturnNormalizer
from learner.losses import gae, vtrace

T, B = 24, 4


def _vtrace_adv(learner: Learner, batch: Batch, rewards, values, discounts, cuts):
    with torch.no_grad():
        logits, _, _ = learner.model.forward_all(batch.obs, batch.core_state,
                                                 batch.episode_start)
    target = torch.log_softmax(logits[:-1], -1).gather(-1, batch.actions[..., None])[..., 0]
    return vtrace(batch.behaviour_logp, target, rewards, values, discounts, cuts).pg_advantages


@pytest.mark.parametrize("algo", ["appo", "ppo"])
def test_bonus_shifts_advantages_by_its_own_advantage(algo: str) -> None:
    batch = minigrid_batch()
    plain = minigrid_learner(f"learner.algo={algo}")
    bonus = minigrid_learner(f"learner.algo={algo}",
                     "intrinsic=[{name: counts, coef: 0.5, normalize: false}]")
    r_int = bonus.bonuses.bonuses[0].compute(batch) * batch.mask  # (T, B)
    assert r_int.abs().sum() > 0
    shift = bonus.advantages(batch) - plain.advantages(batch)
    zeros = torch.zeros(T + 1, B)
    discounts = 0.99 * (1 - batch.terminated)
    if algo == "appo":
        expected = _vtrace_adv(bonus, batch, r_int, zeros, discounts, batch.ended)
    else:
        expected = gae(r_int, zeros, discounts, batch.ended, 0.95).advantages
    assert shift.abs().max() > 1e-3, "the bonus did not change the advantages"
    torch.testing.assert_close(shift, 0.5 * expected, atol=1e-5, rtol=1e-5)


def test_separate_value_head_is_a_second_stream() -> None:
    batch = minigrid_batch()
    learner = minigrid_learner("intrinsic=[{name: counts, coef: 0.5, normalize: false, "
                       "separate_value_head: true, gamma: 0.9}]")
    assert learner.model.num_value_heads == 2
    with torch.no_grad():
        _, values, _ = learner.model.forward_all(batch.obs, batch.core_state,
                                                 batch.episode_start)  # (T+1, B, 2)
    r_int = learner.bonuses.bonuses[0].compute(batch) * batch.mask
    never = torch.zeros(T, B)
    a_ext = _vtrace_adv(learner, batch, batch.rewards, values[..., 0],
                        0.99 * (1 - batch.terminated), batch.ended)
    a_int = _vtrace_adv(learner, batch, r_int, values[..., 1], 0.9 * (1 - never), never)
    torch.testing.assert_close(learner.advantages(batch), a_ext + 0.5 * a_int,
                               atol=1e-5, rtol=1e-5)
    metrics = learner.train(batch)
    assert "intrinsic/0_counts/raw_mean" in metrics
    assert learner.model.value_std[1] != 1.0  # the intrinsic head's normaliser moved


def test_return_normalizer_hand_case() -> None:
    """gamma=0.5, rewards 1,1,1 on one env: filtered returns 1, 1.5, 1.75 (std 0.3118)."""
    norm = ReturnNormalizer(gamma=0.5)
    rewards = torch.ones(3, 1)
    out = norm(rewards, torch.ones(3, 1), torch.tensor([7]))
    std = float(np.std([1.0, 1.5, 1.75]))
    torch.testing.assert_close(out, rewards / std, atol=1e-6, rtol=0)
    # the filter continues across batches for the same env id: next return 0.5*1.75 + 1
    norm(torch.ones(1, 1), torch.ones(1, 1), torch.tensor([7]))
    assert norm.filters[7] == pytest.approx(1.875)
    assert norm.std == pytest.approx(float(np.std([1.0, 1.5, 1.75, 1.875])))



def test_return_normalizer_resumes_from_its_state() -> None:
    norm = ReturnNormalizer(gamma=0.9)
    generator = torch.Generator().manual_seed(0)
    ids = torch.tensor([3, 4])
    for _ in range(3):
        norm(torch.rand(5, 2, generator=generator), torch.ones(5, 2), ids)
    state = norm.state_dict()
    assert set(state) == {"filters", "count", "mean", "m2"}  # the checkpoint layout
    copy = ReturnNormalizer(gamma=0.9)
    copy.load_state_dict(state)
    assert copy.std == pytest.approx(norm.std, rel=1e-12)
    rewards, mask = torch.rand(5, 2, generator=generator), torch.ones(5, 2)
    torch.testing.assert_close(copy(rewards, mask, ids), norm(rewards, mask, ids))
    after, expected = copy.state_dict(), norm.state_dict()
    assert after.pop("filters") == expected.pop("filters")
    assert after == pytest.approx(expected)

def test_bonus_state_survives_a_checkpoint_round_trip() -> None:
    batch = minigrid_batch()
    spec = "intrinsic=[{name: rnd, coef: 0.1}, {name: counts, coef: 0.2}]"
    first = minigrid_learner(spec)
    for _ in range(3):
        first.train(batch)
    second = minigrid_learner(spec)
    second.load_state_dict(first.state_dict())
    torch.testing.assert_close(second.advantages(batch), first.advantages(batch))
    for a, b in zip(first.bonuses.bonuses, second.bonuses.bonuses, strict=True):
        torch.testing.assert_close(a.compute(batch), b.compute(batch))


@pytest.mark.parametrize("name", ["rnd", "icm", "noveld", "counts", "e3b", "ngu",
                                  "byol_explore", "byol_hindsight"])
def test_every_registered_bonus_trains_inside_the_learner(name: str) -> None:
    batch = minigrid_batch()
    learner = minigrid_learner(f"intrinsic=[{{name: {name}, coef: 0.1}}]")
    for _ in range(2):
        metrics = learner.train(batch)
    assert np.isfinite(metrics["losses/policy"]) and np.isfinite(metrics["losses/value"])
    assert np.isfinite(metrics[f"intrinsic/0_{name}/raw_mean"])
    assert learner.bonuses.state_dict()["bonuses"][0]  # saved with checkpoints


def test_inspecting_advantages_changes_no_state() -> None:
    batch = minigrid_batch()
    learner = minigrid_learner("intrinsic=[{name: counts, coef: 0.5}]")  # normalised by return std
    learner.train(batch)
    before = learner.bonuses.state_dict()["normalizers"][0]
    first = learner.advantages(batch)
    torch.testing.assert_close(learner.advantages(batch), first)
    assert learner.bonuses.state_dict()["normalizers"][0] == before
