"""Tests for explorer.intrinsic.counts."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.counts import CountBonus, hash_observations

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}


def states(*codes: int) -> torch.Tensor:
    """One env's observations ``(T+1, 1, 4)``; equal codes give byte-identical observations."""
    return torch.tensor([[[float(c), 0.5 * c, -float(c), 1.0]] for c in codes])


def batch(batch_of, *codes: int, starts: tuple[int, ...] = (0,), invalid: tuple[int, ...] = (),
          env_id: int = 0):
    """One-env batch over ``codes``; ``starts``: indices t with episode_start[t]; ``invalid``:
    masked steps."""
    steps = len(codes) - 1
    episode_start = torch.zeros(steps + 1, 1, dtype=torch.bool)
    mask = torch.ones(steps, 1)
    for t in starts:
        episode_start[t] = True
    for t in invalid:
        mask[t] = 0.0
    return batch_of({"obs": states(*codes)}, mask=mask, episode_start=episode_start,
                    env_ids=torch.tensor([env_id]))


def expected(beta: float, *counts: int) -> torch.Tensor:
    return (beta / torch.tensor(counts, dtype=torch.float64).sqrt()).float().view(-1, 1)


def test_hash_is_content_based_and_stable(minigrid) -> None:
    rollout = minigrid()
    keys = ("direction", "image", "mission")
    hashes = hash_observations(rollout.obs, keys)
    assert hashes.shape == (33, 8) and hashes.dtype == np.int64
    raw = b"".join(rollout.obs[k][5, 2].numpy().tobytes() for k in keys)
    digest = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little", signed=True)
    assert hashes[5, 2] == digest  # a plain digest of the bytes: stable across processes
    image, direction = rollout.obs["image"].reshape(-1, 147), rollout.obs["direction"].reshape(-1)
    flat = hashes.reshape(-1)
    for i, j in [(0, 1), (3, 40), (10, 200), (7, 7)]:
        same = bool((image[i] == image[j]).all()) and bool(direction[i] == direction[j])
        assert (flat[i] == flat[j]) == same
    turned = {k: v.clone() for k, v in rollout.obs.items()}
    turned["direction"][5, 2] = (turned["direction"][5, 2] + 1) % 4
    assert hash_observations(turned, keys)[5, 2] != hashes[5, 2]


def test_exact_counts_across_batches(batch_of) -> None:
    bonus = make_intrinsic("counts", obs_spec=SPEC, num_actions=2, beta=2.0)
    assert isinstance(bonus, CountBonus) and isinstance(bonus, IntrinsicReward)
    first = batch(batch_of, 1, 2, 1, 1, 2)  # obs[0] of a new env is counted too
    torch.testing.assert_close(bonus.compute(first), expected(2.0, 1, 2, 3, 2))
    torch.testing.assert_close(bonus.compute(first), expected(2.0, 1, 2, 3, 2))  # pure
    assert bonus.update(first) == {"states": 2.0}
    # obs[0] continues the stream (it is the previous obs[T]): not counted again, even at an
    # episode start; counts are global across episodes and envs
    second = batch(batch_of, 2, 1, 3, 2)
    torch.testing.assert_close(bonus.compute(second), expected(2.0, 4, 1, 3))
    bonus.update(second)
    other_env = batch(batch_of, 3, 3, 1, env_id=7)  # new env: its obs[0] is counted
    torch.testing.assert_close(bonus.compute(other_env), expected(2.0, 3, 5))


def test_episodic_counts_reset_at_episode_starts(batch_of) -> None:
    bonus = CountBonus(SPEC, 2, episodic=True)
    # step 2 is an auto-reset step: obs[3] starts a new episode
    first = batch(batch_of, 1, 2, 1, 1, 2, 1, starts=(0, 3), invalid=(2,))
    out = bonus.compute(first)
    torch.testing.assert_close(out, expected(1.0, 1, 2, 1, 1, 2) * first.mask.view(-1, 1))
    assert out[2, 0].item() == 0.0
    bonus.update(first)
    # continuing batch: the episode holds {1: 2, 2: 1}; obs[0] (= previous obs[T]) not recounted
    torch.testing.assert_close(bonus.compute(batch(batch_of, 1, 2, 1, starts=())),
                               expected(1.0, 2, 3))
    # the same batch starting an episode at obs[0]: counts start afresh
    torch.testing.assert_close(bonus.compute(batch(batch_of, 1, 2, 1)), expected(1.0, 1, 2))
    # another env has its own episode
    torch.testing.assert_close(bonus.compute(batch(batch_of, 1, 2, 1, starts=(), env_id=3)),
                               expected(1.0, 1, 2))


def test_masked_transitions_get_zero(minigrid, minigrid_spec) -> None:
    rollout = minigrid()
    mask = rollout.mask.clone()
    mask[1::2, ::3] = 0.0
    masked = dataclasses.replace(rollout, mask=mask)
    out = CountBonus(minigrid_spec, 7).compute(masked)
    assert bool((out[mask == 0] == 0).all()) and bool((out[mask > 0] > 0).all())


def test_novel_states_beat_seen_and_updates_lower_the_bonus(minigrid, minigrid_spec) -> None:
    seen = minigrid("MiniGrid-Empty-8x8-v0", seed=0)
    novel = minigrid("MiniGrid-LavaGapS7-v0", seed=0)
    bonus = CountBonus(minigrid_spec, 7, beta=1.0)
    before = bonus.compute(seen)
    for _ in range(4):
        bonus.update(seen)
    after = bonus.compute(seen)
    valid = seen.mask > 0
    assert bool((after[valid] < before[valid]).all())
    assert float(after[valid].max()) <= 1 / np.sqrt(5)  # every seen state counted 5+ times
    novel_out = bonus.compute(dataclasses.replace(novel, env_ids=novel.env_ids + 100))
    novel_valid = novel.mask > 0
    assert novel_out[novel_valid].mean() > 2 * after[valid].mean()


@pytest.mark.parametrize("episodic", [False, True])
def test_state_dict_round_trip(minigrid, minigrid_spec, episodic: bool) -> None:
    first, second = minigrid(seed=0), minigrid(seed=1)
    bonus = CountBonus(minigrid_spec, 7, episodic=episodic)
    bonus.update(first)
    copy = CountBonus(minigrid_spec, 7, episodic=episodic)
    state = bonus.state_dict()
    assert all(isinstance(codes, torch.Tensor)
               for codes, _ in state["counter"]["tables"].values())
    copy.load_state_dict(state)
    assert torch.equal(copy.compute(second), bonus.compute(second))
    continuing = dataclasses.replace(second, episode_start=torch.zeros_like(second.episode_start))
    assert torch.equal(copy.compute(continuing), bonus.compute(continuing))
    bonus.update(second)  # the copy's tables are its own
    assert not torch.equal(copy.compute(continuing), bonus.compute(continuing))
