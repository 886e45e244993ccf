"""ONI's learner-side reward: table lookup, episodic count normalisation, and that it reaches
the advantages (it is added to the rewards before any advantage is computed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from minigrid_batches import B, T, minigrid_batch, minigrid_learner

from explorer.core.texts import text_id
from learner.text_rewards import OniTextReward, RewardTable

KILL, WALL, NEW = text_id("You kill the newt!"), text_id("It's a wall."), text_id("unseen")


def test_lookup_finds_known_ids_and_zero_for_unknown() -> None:
    table = RewardTable()
    table.replace(np.array([WALL, KILL], np.int64), np.array([0.0, 1.0], np.float32), version=3)
    rewards, found = table.lookup(np.array([[KILL, NEW], [WALL, 0]], np.int64))
    assert rewards.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert found.tolist() == [[True, False], [True, False]]
    with pytest.raises(ValueError, match="one length"):
        table.replace(np.array([1, 2]), np.array([1.0], np.float32), 4)
    with pytest.raises(ValueError, match="finite"):
        table.replace(np.array([1]), np.array([np.nan], np.float32), 4)


def test_count_normalisation_against_hand_computed_values() -> None:
    oni = OniTextReward(coef=0.5, beta=3.0)
    oni.table.replace(np.array([KILL, WALL], np.int64), np.array([1.0, 0.0], np.float32), 1)
    hashes = torch.tensor([[KILL, WALL], [KILL, KILL], [NEW, 0], [KILL, KILL]])[..., None]
    counts = torch.tensor([[1, 1], [2, 1], [1, 0], [3, 2]], dtype=torch.int32)[..., None]
    mask = torch.tensor([[1, 1], [1, 1], [1, 1], [0, 1]], dtype=torch.float32)
    ended = torch.tensor([[0, 0], [0, 0], [1, 0], [0, 0]], dtype=torch.float32)
    reward, metrics = oni.rewards(hashes, counts, mask, ended, torch.tensor([7, 8]))
    expected = [[0.5, 0.0], [0.5 / 8, 0.5], [0.0, 0.0], [0.0, 0.5 / 8]]  # row 3 col 0 masked
    assert reward.numpy() == pytest.approx(np.array(expected, np.float32))
    # 6 valid steps with text (the id-0 and the masked one do not count), 5 of them known
    assert metrics["labeler/cache_hit_rate"] == pytest.approx(5 / 6)
    # env 7's episode ended at t=2 with 0.5 + 0.5/8 intrinsic reward
    assert metrics["labeler/episode_intrinsic_return"] == pytest.approx(0.5 + 0.5 / 8)
    assert oni.episode_sums == {7: 0.0, 8: pytest.approx(0.5 + 0.5 / 8)}


def test_sentence_units_are_summed_and_hit_only_when_all_are_labelled() -> None:
    """A step showing several sentences earns the sum of their count-normalised rewards; it
    is a cache hit only when every sentence has a label."""
    oni = OniTextReward(coef=0.5, beta=2.0)
    oni.table.replace(np.array([KILL, WALL], np.int64), np.array([1.0, 0.25], np.float32), 1)
    hashes = torch.tensor([[[KILL, WALL, 0]], [[KILL, NEW, 0]], [[0, 0, 0]]])  # (T=3, B=1, U=3)
    counts = torch.tensor([[[1, 1, 0]], [[2, 1, 0]], [[0, 0, 0]]], dtype=torch.int32)
    ones = torch.ones(3, 1)
    reward, metrics = oni.rewards(hashes, counts, ones, torch.zeros(3, 1), torch.tensor([0]))
    expected = [[0.5 * (1.0 + 0.25)], [0.5 * (1.0 / 4)], [0.0]]
    assert reward.numpy() == pytest.approx(np.array(expected, np.float32))
    assert metrics["labeler/cache_hit_rate"] == pytest.approx(1 / 2)  # step 1 misses NEW
    assert metrics["labeler/steps_with_text_frac"] == pytest.approx(2 / 3)
    assert metrics["labeler/steps_rewarded_frac"] == pytest.approx(2 / 3)  # KILL in both
    oni.table.replace(np.array([KILL, WALL], np.int64), np.array([0.0, 0.25], np.float32), 2)
    _, metrics = oni.rewards(hashes, counts, ones, torch.zeros(3, 1), torch.tensor([0]))
    assert metrics["labeler/steps_rewarded_frac"] == pytest.approx(1 / 3)  # WALL, step 0 only


def test_text_reward_changes_the_advantages_and_checkpoints() -> None:
    batch = minigrid_batch()
    hashes = torch.where(torch.arange(T)[:, None] % 3 == 0, KILL, WALL).repeat(1, B)
    batch = dataclasses.replace(batch, text_hash=hashes[..., None],
                                text_count=torch.ones(T, B, 1, dtype=torch.int32))
    plain = minigrid_learner("learner.algo=ppo")
    oni = minigrid_learner("learner.algo=ppo", "text.source=babyai_mission",
                   "llm_labeler.labeler=rules", "llm_labeler.coef=0.5")
    assert plain.text_reward is None and oni.text_reward is not None
    unlabelled = oni.advantages(batch)
    assert torch.allclose(unlabelled, plain.advantages(batch))  # no labels yet: no reward
    oni.text_reward.table.replace(np.array([KILL], np.int64), np.array([1.0], np.float32), 1)
    shift = oni.advantages(batch) - unlabelled
    assert shift.abs().max() > 0.1
    state = oni.state_dict()
    fresh = minigrid_learner("learner.algo=ppo", "text.source=babyai_mission",
                     "llm_labeler.labeler=rules", "llm_labeler.coef=0.5")
    fresh.load_state_dict(state)
    assert torch.allclose(fresh.advantages(batch), oni.advantages(batch))
