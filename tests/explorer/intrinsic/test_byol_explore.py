"""Tests for explorer.intrinsic.byol_explore."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import explorer.intrinsic.byol_explore  # noqa: F401  (registers "byol_explore")
from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.byol_explore import BYOLExploreBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 64, "embed_dim": 32, "core_size": 64, "lr": 1e-3}
MOVES = 0.2 * torch.tensor([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])


def walk(batch_of, low: float, seed: int, steps: int = 16, envs: int = 16):
    """Action a moves the state by ``MOVES[a]``, from uniform starts in ``[low, low + 1)^4``."""
    generator = torch.Generator().manual_seed(seed)
    start = low + torch.rand(envs, 4, generator=generator)
    actions = torch.randint(0, len(MOVES), (steps, envs), generator=generator)
    obs = start + torch.cat([torch.zeros(1, envs, 4), MOVES[actions].cumsum(0)])
    return batch_of({"obs": obs}, actions=actions)


def masked_mean(bonus: torch.Tensor, mask: torch.Tensor) -> float:
    return float((bonus * mask).sum() / mask.sum())


def test_protocol_and_seeding(batch_of) -> None:
    before = torch.get_rng_state()
    bonus = make_intrinsic("byol_explore", obs_spec=SPEC, num_actions=4, seed=3, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(bonus, BYOLExploreBonus) and isinstance(bonus, IntrinsicReward)
    batch = walk(batch_of, 0.0, seed=0)
    out = bonus.compute(batch)
    assert out.shape == (16, 16) and out.dtype == torch.float32 and bool((out > 0).all())
    assert torch.equal(out, BYOLExploreBonus(SPEC, 4, seed=3, **SMALL).compute(batch))
    assert not torch.equal(out, BYOLExploreBonus(SPEC, 4, seed=4, **SMALL).compute(batch))


def test_training_lowers_seen_bonus_and_novel_states_get_more(batch_of) -> None:
    seen, held_out = walk(batch_of, 0.0, seed=0), walk(batch_of, 0.0, seed=1)
    novel = walk(batch_of, 3.0, seed=2)
    bonus = BYOLExploreBonus(SPEC, 4, **SMALL)
    before = masked_mean(bonus.raw_bonus(seen), seen.mask)
    for _ in range(200):
        metrics = bonus.update(seen)
    assert set(metrics) == {"loss", "reward_std"}
    seen_after = masked_mean(bonus.raw_bonus(seen), seen.mask)
    assert seen_after < 0.05 * before
    novel_bonus = masked_mean(bonus.raw_bonus(novel), novel.mask)
    assert novel_bonus > 3 * masked_mean(bonus.raw_bonus(held_out), held_out.mask)
    assert novel_bonus > 3 * seen_after


def test_predictions_stop_at_episode_starts_and_never_look_ahead(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=3, steps=12, envs=2)
    batch.mask[5, 0] = 0.0  # auto-reset step: obs[6] of env 0 opens an episode
    batch.episode_start[6, 0] = True
    bonus = BYOLExploreBonus(SPEC, 4, **SMALL)
    raw = bonus.raw_bonus(batch)
    assert raw[5, 0] == 0.0 and bool((raw[batch.mask > 0] > 0).all())
    past = batch.obs["obs"].clone()
    past[:6, 0] += 5.0  # rewrite env 0's previous episode
    actions = batch.actions.clone()
    actions[:5, 0] = (actions[:5, 0] + 1) % 4
    rewritten = bonus.raw_bonus(dataclasses.replace(batch, obs={"obs": past}, actions=actions))
    torch.testing.assert_close(rewritten[6:, 0], raw[6:, 0])
    assert not torch.allclose(rewritten[:5, 0], raw[:5, 0])
    future = batch.obs["obs"].clone()
    future[8:] += 5.0  # transition t sees obs up to t+1 and actions up to t only
    actions = batch.actions.clone()
    actions[7:] = (actions[7:] + 1) % 4
    changed = bonus.raw_bonus(dataclasses.replace(batch, obs={"obs": future}, actions=actions))
    torch.testing.assert_close(changed[:7], raw[:7])
    assert not torch.allclose(changed[7:], raw[7:])


def test_horizon_sums_the_predictions_of_each_target(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=4, steps=8, envs=3)
    bonus = BYOLExploreBonus(SPEC, 4, horizon=3, **SMALL)
    with torch.no_grad():
        losses, valid = bonus._losses(batch)  # (K, T, B)
    assert losses.shape == valid.shape == (3, 8, 3)
    assert valid[:, :6].all() and not valid[2, 6:].any() and not valid[1, 7].any()
    raw = bonus.raw_bonus(batch)
    torch.testing.assert_close(raw[0], losses[0, 0])  # o_1: only the 1-step prediction
    torch.testing.assert_close(raw[4], losses[0, 4] + losses[1, 3] + losses[2, 2])


def test_reward_is_divided_by_an_ema_std(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=5)
    bonus = BYOLExploreBonus(SPEC, 4, **SMALL)
    raw = bonus.raw_bonus(batch)
    assert bonus.reward_std.std == 1.0 and torch.equal(bonus.compute(batch), raw)
    bonus.update(batch)  # one bias-corrected EMA step: exactly this batch's std
    expected = raw[batch.mask > 0].double().std(correction=0).item()
    assert bonus.reward_std.std == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(bonus.compute(batch),
                               bonus.raw_bonus(batch) / bonus.reward_std.std)


def test_target_encoder_is_an_ema_of_the_online_one(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=6)
    bonus = BYOLExploreBonus(SPEC, 4, target_decay=0.9, **SMALL)
    old = [p.clone() for p in bonus.target.parameters()]
    bonus.update(batch)
    for before, target, online in zip(old, bonus.target.parameters(),
                                      bonus.online.parameters(), strict=True):
        assert not target.requires_grad
        torch.testing.assert_close(target, 0.9 * before + 0.1 * online)


def test_masked_steps_get_zero(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=7)
    batch.mask[::3, 1::2] = 0.0
    actions = batch.actions.clone()
    actions[batch.mask == 0] = -1  # EnvPool ignores actions on auto-reset steps: any value
    bonus = BYOLExploreBonus(SPEC, 4, **SMALL)
    out = bonus.compute(dataclasses.replace(batch, actions=actions))
    assert bool((out[batch.mask == 0] == 0).all()) and bool((out[batch.mask > 0] > 0).all())
    bonus.update(dataclasses.replace(batch, actions=actions))


def test_minigrid_observations(minigrid, minigrid_spec) -> None:
    rollout = minigrid(steps=16, num_envs=4)
    bonus = BYOLExploreBonus(minigrid_spec, 7, **SMALL)
    out = bonus.compute(rollout)
    assert out.shape == (16, 4) and bool((out[rollout.mask == 0] == 0).all())
    assert bool((out[rollout.mask > 0] > 0).all())
    assert bonus.update(rollout)["loss"] > 0


def test_state_dict_round_trip(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    bonus = BYOLExploreBonus(SPEC, 4, seed=0, **SMALL)
    for _ in range(3):
        bonus.update(batch)
    other = BYOLExploreBonus(SPEC, 4, seed=1, **SMALL)
    assert not torch.equal(other.compute(batch), bonus.compute(batch))
    other.load_state_dict(bonus.state_dict())
    assert torch.equal(other.compute(batch), bonus.compute(batch))
    assert other.update(batch) == bonus.update(batch)
    assert torch.equal(other.compute(batch), bonus.compute(batch))


def test_loads_the_reward_std_of_older_checkpoints(batch_of) -> None:
    """Checkpoints before ``EmaMeanStd`` held ``mean``, ``square`` (biased EMAs) and ``steps``."""
    batch = walk(batch_of, 0.0, seed=0)
    bonus = BYOLExploreBonus(SPEC, 4, **SMALL)
    for _ in range(3):
        bonus.update(batch)
    state = bonus.state_dict()
    ema = state["reward_std"]
    state["reward_std"] = {"mean": ema["first"], "square": ema["second"], "steps": 3}
    other = BYOLExploreBonus(SPEC, 4, **SMALL)
    other.load_state_dict(state)
    assert other.reward_std.std == pytest.approx(bonus.reward_std.std, rel=1e-12)
