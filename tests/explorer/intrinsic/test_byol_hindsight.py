"""Tests for explorer.intrinsic.byol_hindsight."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

import explorer.intrinsic.byol_hindsight  # noqa: F401  (registers "byol_hindsight")
from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.byol_hindsight import BYOLHindsightBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 64, "embed_dim": 32, "lr": 1e-3, "critic_lr": 1e-3}
MOVES = 0.2 * torch.tensor([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])

# noisy TV: a ring of POSITIONS cells (one-hot) plus a SCREEN of noise dims
POSITIONS, SCREEN = 8, 4
TV_SPEC = {"obs": ((POSITIONS + SCREEN,), "float32")}
LEFT, RIGHT, WATCH = 0, 1, 2


def walk(batch_of, low: float, seed: int, steps: int = 16, envs: int = 16):
    """Action a moves the state by ``MOVES[a]``, from uniform starts in ``[low, low + 1)^4``."""
    generator = torch.Generator().manual_seed(seed)
    start = low + torch.rand(envs, 4, generator=generator)
    actions = torch.randint(0, len(MOVES), (steps, envs), generator=generator)
    obs = start + torch.cat([torch.zeros(1, envs, 4), MOVES[actions].cumsum(0)])
    return batch_of({"obs": obs}, actions=actions)


def noisy_tv(batch_of, generator: torch.Generator, steps: int = 16, envs: int = 32):
    """LEFT / RIGHT move on the ring and switch the screen off (zeros); WATCH stays and shows
    fresh Gaussian noise. Positions are deterministic, the screen after WATCH is pure noise."""
    position = torch.randint(0, POSITIONS, (envs,), generator=generator)
    actions = torch.randint(0, 3, (steps, envs), generator=generator)
    screen = torch.zeros(envs, SCREEN)
    frames = []
    for t in range(steps + 1):
        frames.append(torch.cat([F.one_hot(position, POSITIONS).float(), screen], dim=-1))
        if t < steps:
            step = torch.where(actions[t] == LEFT, -1, torch.where(actions[t] == RIGHT, 1, 0))
            position = (position + step) % POSITIONS
            noise = torch.randn(envs, SCREEN, generator=generator)
            screen = torch.where((actions[t] == WATCH).unsqueeze(-1), noise, 0.0)
    return batch_of({"obs": torch.stack(frames)}, actions=actions)


def masked_mean(bonus: torch.Tensor, mask: torch.Tensor) -> float:
    return float((bonus * mask).sum() / mask.sum())


def test_protocol_and_seeding(batch_of) -> None:
    before = torch.get_rng_state()
    bonus = make_intrinsic("byol_hindsight", obs_spec=SPEC, num_actions=4, seed=3, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(bonus, BYOLHindsightBonus) and isinstance(bonus, IntrinsicReward)
    batch = walk(batch_of, 0.0, seed=0)
    out = bonus.compute(batch)
    assert out.shape == (16, 16) and out.dtype == torch.float32 and bool((out > 0).all())
    assert torch.equal(out, BYOLHindsightBonus(SPEC, 4, seed=3, **SMALL).compute(batch))
    assert not torch.equal(out, BYOLHindsightBonus(SPEC, 4, seed=4, **SMALL).compute(batch))


def test_two_optimisers_both_train_their_own_parameters(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    bonus = BYOLHindsightBonus(SPEC, 4, **SMALL)
    critic = {id(p) for p in bonus.critic.parameters()}
    model = {id(p) for group in bonus.optimizer.param_groups for p in group["params"]}
    assert {id(p) for g in bonus.critic_optimizer.param_groups for p in g["params"]} == critic
    assert not critic & model
    assert model == {id(p) for net in (bonus.online, bonus.generator, bonus.world_model)
                     for p in net.parameters()}
    nets = (bonus.critic, bonus.online, bonus.generator, bonus.world_model)
    before = [[p.clone() for p in net.parameters()] for net in nets]
    metrics = bonus.update(batch)
    assert set(metrics) == {"loss", "prediction_loss", "critic_loss", "mutual_information"}
    for net, old in zip(nets, before, strict=True):
        assert all(not torch.equal(a, b) for a, b in zip(old, net.parameters(), strict=True))


def test_ablation_without_hindsight_leaves_the_critic_alone(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    bonus = BYOLHindsightBonus(SPEC, 4, use_hindsight=False, **SMALL)
    critic = [p.clone() for p in bonus.critic.parameters()]
    generator = [p.clone() for p in bonus.generator.parameters()]
    bonus.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(critic, bonus.critic.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(generator, bonus.generator.parameters(),
                                                  strict=True))


def test_training_lowers_seen_bonus_and_novel_states_get_more(batch_of) -> None:
    seen, held_out = walk(batch_of, 0.0, seed=0), walk(batch_of, 0.0, seed=1)
    novel = walk(batch_of, 3.0, seed=2)
    bonus = BYOLHindsightBonus(SPEC, 4, **SMALL)
    before = masked_mean(bonus.compute(seen), seen.mask)
    for _ in range(150):
        bonus.update(seen)
    seen_after = masked_mean(bonus.compute(seen), seen.mask)
    assert seen_after < 0.2 * before
    novel_bonus = masked_mean(bonus.compute(novel), novel.mask)
    assert novel_bonus > 2 * masked_mean(bonus.compute(held_out), held_out.mask)
    assert novel_bonus > 2 * seen_after


def test_noisy_tv_stops_paying_with_hindsight(batch_of) -> None:
    """Same data, same nets: only the hindsight latent differs. The targets are frozen random
    embeddings (target_decay=1), so the noise cannot be learned away by the representation:
    only z can explain it."""
    ratios, noisy = {}, {}
    for use_hindsight in (False, True):
        generator = torch.Generator().manual_seed(0)
        bonus = BYOLHindsightBonus(TV_SPEC, 3, use_hindsight=use_hindsight, target_decay=1.0,
                                   **SMALL)
        for _ in range(150):
            bonus.update(noisy_tv(batch_of, generator))
        test = noisy_tv(batch_of, torch.Generator().manual_seed(99))
        out = bonus.compute(test)
        watch = test.actions == WATCH
        noisy[use_hindsight] = float(out[watch].mean())
        ratios[use_hindsight] = noisy[use_hindsight] / float(out[~watch].mean())
    assert ratios[False] > 20  # plain prediction error: the TV is the most rewarding thing
    assert ratios[True] < 0.25 * ratios[False]
    assert noisy[True] < 0.5 * noisy[False]


def test_masked_steps_get_zero(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=7)
    batch.mask[::3, 1::2] = 0.0
    actions = batch.actions.clone()
    actions[batch.mask == 0] = -1  # EnvPool ignores actions on auto-reset steps: any value
    masked = dataclasses.replace(batch, actions=actions)
    bonus = BYOLHindsightBonus(SPEC, 4, **SMALL)
    out = bonus.compute(masked)
    assert bool((out[batch.mask == 0] == 0).all()) and bool((out[batch.mask > 0] > 0).all())
    assert bonus.update(masked)["prediction_loss"] > 0


def test_minigrid_observations(minigrid, minigrid_spec) -> None:
    rollout = minigrid(steps=16, num_envs=4)
    bonus = BYOLHindsightBonus(minigrid_spec, 7, **SMALL)
    out = bonus.compute(rollout)
    assert out.shape == (16, 4) and bool((out[rollout.mask == 0] == 0).all())
    assert bool((out[rollout.mask > 0] > 0).all())
    assert bonus.update(rollout)["loss"] > 0


def test_state_dict_round_trip(batch_of) -> None:
    batch = walk(batch_of, 0.0, seed=0)
    bonus = BYOLHindsightBonus(SPEC, 4, seed=0, nce_batch=64, **SMALL)
    for _ in range(3):
        bonus.update(batch)
    other = BYOLHindsightBonus(SPEC, 4, seed=1, nce_batch=64, **SMALL)
    assert not torch.equal(other.compute(batch), bonus.compute(batch))
    other.load_state_dict(bonus.state_dict())
    assert torch.equal(other.compute(batch), bonus.compute(batch))
    assert other.update(batch) == bonus.update(batch)  # optimisers and sampling RNG came along
    assert torch.equal(other.compute(batch), bonus.compute(batch))
