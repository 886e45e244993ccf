"""Tests for explorer.intrinsic.noveld."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.counts import VisitCounter, hash_observations
from explorer.intrinsic.noveld import NovelDBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 64, "embed_dim": 32, "lr": 1e-3}


def states(*codes: int) -> torch.Tensor:
    """One env's observations ``(T+1, 1, 4)``; equal codes give byte-identical observations."""
    return torch.tensor([[[float(c), 0.5 * c, -float(c), 1.0]] for c in codes])


def batch(batch_of, *codes: int, starts: tuple[int, ...] = (0,), invalid: tuple[int, ...] = (),
          env_id: int = 0):
    """One-env batch over ``codes``; ``starts``: indices t with episode_start[t]; ``invalid``:
    masked (auto-reset) steps."""
    steps = len(codes) - 1
    episode_start = torch.zeros(steps + 1, 1, dtype=torch.bool)
    mask = torch.ones(steps, 1)
    for t in starts:
        episode_start[t] = True
    for t in invalid:
        mask[t] = 0.0
    return batch_of({"obs": states(*codes)}, mask=mask, episode_start=episode_start,
                    env_ids=torch.tensor([env_id]))


def rewarded(bonus: torch.Tensor) -> list[bool]:
    return (bonus.view(-1) > 0).tolist()


def gate_only() -> NovelDBonus:
    """alpha = 0 and no warm-up: the bonus is N(s') > 0 exactly on first visits."""
    return NovelDBonus(SPEC, 2, alpha=0.0, warmup_updates=0, **SMALL)


def test_first_visit_gate_within_and_across_episodes(batch_of) -> None:
    noveld = make_intrinsic("noveld", obs_spec=SPEC, num_actions=2, alpha=0.0,
                            warmup_updates=0, **SMALL)
    assert isinstance(noveld, NovelDBonus) and isinstance(noveld, IntrinsicReward)
    # obs[0] (state 1) is visited at the episode start: returning to it is not rewarded
    assert rewarded(noveld.compute(batch(batch_of, 1, 2, 1, 3, 2))) == [True, False, True, False]
    # step 1 is an auto-reset step, obs[2] starts a new episode: state 2 is new again there
    out = noveld.compute(batch(batch_of, 1, 2, 4, 2, 1, 4, starts=(0, 2), invalid=(1,)))
    assert rewarded(out) == [True, False, True, True, False]
    assert out[1, 0].item() == 0.0


def test_next_batch_continues_the_episode_per_env(batch_of) -> None:
    noveld = gate_only()
    noveld.update(batch(batch_of, 1, 2, 3))
    assert rewarded(noveld.compute(batch(batch_of, 3, 2, 4, 1, starts=()))) == [False, True,
                                                                               False]
    # the same observations after an episode start at obs[0], or from another env: new episode
    assert rewarded(noveld.compute(batch(batch_of, 3, 2, 4, 1))) == [True, True, True]
    assert rewarded(noveld.compute(batch(batch_of, 3, 2, 4, 1, starts=(), env_id=9))) == [
        True, True, True]
    # compute did not change the visit tables; update does
    assert rewarded(noveld.compute(batch(batch_of, 3, 2, 4, 1, starts=()))) == [False, True,
                                                                               False]
    noveld.update(batch(batch_of, 3, 2, 4, 1, starts=()))
    assert rewarded(noveld.compute(batch(batch_of, 1, 4, 5, starts=()))) == [False, True]


def test_bonus_is_clipped_novelty_difference_on_first_visits(minigrid, minigrid_spec) -> None:
    rollout = minigrid()
    noveld = NovelDBonus(minigrid_spec, 7, alpha=0.5, **SMALL)
    assert torch.equal(noveld.compute(rollout), torch.zeros(rollout.mask.shape))  # warm-up
    noveld.update(rollout)
    out = noveld.compute(rollout)
    novelty = noveld.rnd.novelty(rollout.obs)  # (T+1, B)
    counts = VisitCounter(episodic=True).scan(
        hash_observations(rollout.obs, sorted(minigrid_spec)), rollout.episode_start.numpy(),
        rollout.env_ids.tolist(), commit=False)
    first = torch.from_numpy(counts == 1) & (rollout.mask > 0)
    expected = (novelty[1:] - 0.5 * novelty[:-1]).clamp(min=0) * first
    torch.testing.assert_close(out, expected)
    assert 0 < int(first.sum()) < first.numel()  # random walks revisit states
    assert int((out > 0).sum()) > first.sum() // 4


def test_novel_observations_get_larger_bonus_and_seen_bonus_drops(minigrid,
                                                                  minigrid_spec) -> None:
    seen = minigrid("MiniGrid-Empty-8x8-v0", seed=0)
    held_out = minigrid("MiniGrid-Empty-8x8-v0", seed=1)
    novel = minigrid("MiniGrid-LavaGapS7-v0", seed=0)
    noveld = NovelDBonus(minigrid_spec, 7, update_proportion=0.5, **SMALL)
    noveld.update(seen)  # warm-up
    before = noveld.compute(seen).sum()
    for _ in range(60):
        noveld.update(seen)
    # every env starts an episode at obs[0], so the gate is the same as before training
    assert noveld.compute(seen).sum() < 0.25 * before
    held_out_bonus = noveld.compute(dataclasses.replace(held_out, env_ids=held_out.env_ids + 50))
    novel_bonus = noveld.compute(dataclasses.replace(novel, env_ids=novel.env_ids + 100))
    assert novel_bonus.sum() > 3 * held_out_bonus.sum()


def test_state_dict_round_trip(minigrid, minigrid_spec) -> None:
    first, second = minigrid(seed=0), minigrid(seed=1)
    continuing = dataclasses.replace(second, episode_start=torch.zeros_like(second.episode_start))
    noveld = NovelDBonus(minigrid_spec, 7, seed=0, **SMALL)
    for _ in range(3):
        noveld.update(first)
    other = NovelDBonus(minigrid_spec, 7, seed=1, **SMALL)
    other.update(first)
    assert not torch.equal(other.compute(continuing), noveld.compute(continuing))
    other.load_state_dict(noveld.state_dict())
    assert torch.equal(other.compute(continuing), noveld.compute(continuing))
    fresh_visits = NovelDBonus(minigrid_spec, 7, seed=0, **SMALL)
    fresh_visits.load_state_dict({"rnd": noveld.state_dict()["rnd"],
                                  "visits": VisitCounter(episodic=True).state_dict()})
    assert not torch.equal(fresh_visits.compute(continuing), noveld.compute(continuing))


def test_masked_transitions_get_zero(minigrid, minigrid_spec) -> None:
    rollout = minigrid()
    mask = rollout.mask.clone()
    mask[::2, 1::3] = 0.0
    masked = dataclasses.replace(rollout, mask=mask)
    noveld = NovelDBonus(minigrid_spec, 7, alpha=0.0, **SMALL)
    noveld.update(masked)
    out = noveld.compute(masked)
    assert bool((out[mask == 0] == 0).all())
    assert bool((out[mask > 0] > 0).any())
