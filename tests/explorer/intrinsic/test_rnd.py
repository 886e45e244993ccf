"""Tests for explorer.intrinsic.rnd."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from explorer.intrinsic.base import IntrinsicReward
from explorer.intrinsic.rnd import RNDBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = {"hidden_size": 64, "embed_dim": 32, "lr": 1e-3}


def masked_mean(bonus: torch.Tensor, mask: torch.Tensor) -> float:
    return float((bonus * mask).sum() / mask.sum())


# ---------------------------------------------------------------------------- RND
def test_protocol_seeding_and_global_rng_untouched(minigrid_spec) -> None:
    before = torch.get_rng_state()
    a = RNDBonus(minigrid_spec, 7, seed=3, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    b = RNDBonus(minigrid_spec, 7, seed=3, **SMALL)
    c = RNDBonus(minigrid_spec, 7, seed=4, **SMALL)
    assert isinstance(a, IntrinsicReward)
    pa, pb, pc = (dict(x.predictor.named_parameters()) for x in (a, b, c))
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert not all(torch.equal(pa[n], pc[n]) for n in pa)


def test_warmup_fits_statistics_before_any_bonus(minigrid, minigrid_spec) -> None:
    batch = minigrid()
    rnd = RNDBonus(minigrid_spec, 7, **SMALL)
    assert torch.equal(rnd.compute(batch), torch.zeros(batch.mask.shape))
    params = [p.clone() for p in rnd.predictor.parameters()]
    assert rnd.update(batch) == {"loss": 0.0}
    assert all(torch.equal(p, q) for p, q in zip(params, rnd.predictor.parameters(),
                                                  strict=True))  # predictor not trained yet
    image = batch.obs["image"][1:].reshape(-1, 7, 7, 3).float()
    torch.testing.assert_close(rnd.obs_stats["image"].mean.float(), image.mean(0),
                               atol=1e-3, rtol=1e-3)
    assert set(rnd.obs_stats) == {"image"}  # integer scalar direction passes through raw
    bonus = rnd.compute(batch)
    assert bonus.shape == batch.mask.shape and bonus.dtype == torch.float32
    assert bool((bonus[batch.mask > 0] > 0).all())


def train(rnd: RNDBonus, batch, updates: int) -> None:
    for _ in range(updates):
        rnd.update(batch)


def test_novel_observations_get_larger_bonus_and_seen_bonus_drops(minigrid,
                                                                  minigrid_spec) -> None:
    seen = minigrid("MiniGrid-Empty-8x8-v0", seed=0)
    held_out = minigrid("MiniGrid-Empty-8x8-v0", seed=1)
    novel = minigrid("MiniGrid-LavaGapS7-v0", seed=0)
    rnd = RNDBonus(minigrid_spec, 7, update_proportion=0.5, **SMALL)
    rnd.update(seen)  # warm-up
    before = masked_mean(rnd.compute(seen), seen.mask)
    train(rnd, seen, 60)
    after = masked_mean(rnd.compute(seen), seen.mask)
    assert after < 0.25 * before
    held_out_bonus = masked_mean(rnd.compute(held_out), held_out.mask)
    novel_bonus = masked_mean(rnd.compute(novel), novel.mask)
    assert novel_bonus > 3 * held_out_bonus


def test_state_dict_round_trip_gives_identical_bonus_and_training(minigrid,
                                                                  minigrid_spec) -> None:
    batch = minigrid()
    rnd = RNDBonus(minigrid_spec, 7, seed=0, **SMALL)
    train(rnd, batch, 3)
    other = RNDBonus(minigrid_spec, 7, seed=1, **SMALL)
    assert not torch.equal(other.compute(batch), rnd.compute(batch))
    other.load_state_dict(rnd.state_dict())
    assert torch.equal(other.compute(batch), rnd.compute(batch))
    # optimiser, statistics and sampling generator came along: training stays in lockstep
    assert rnd.update(batch) == other.update(batch)
    assert torch.equal(other.compute(batch), rnd.compute(batch))


def test_masked_transitions_get_zero(minigrid, minigrid_spec) -> None:
    batch = minigrid()
    mask = batch.mask.clone()
    mask[::3, 1::2] = 0.0
    masked = dataclasses.replace(batch, mask=mask)
    rnd = RNDBonus(minigrid_spec, 7, **SMALL)
    rnd.update(masked)
    bonus = rnd.compute(masked)
    assert bool((bonus[mask == 0] == 0).all())
    assert bool((bonus[mask > 0] > 0).all())


@pytest.mark.parametrize("spec", [
    {"obs": ((4,), "float32")},
    {"obs": ((4, 84, 84), "uint8")},
])
def test_other_observation_specs(spec, batch_of) -> None:
    steps, envs = 3, 2
    shape, dtype = spec["obs"]
    generator = torch.Generator().manual_seed(0)
    if dtype == "uint8":
        obs = torch.randint(0, 256, (steps + 1, envs, *shape), generator=generator,
                            dtype=torch.uint8)
    else:
        obs = torch.randn(steps + 1, envs, *shape, generator=generator)
    batch = batch_of({"obs": obs})
    rnd = RNDBonus(spec, 2, warmup_updates=0, update_proportion=1.0, **SMALL)
    assert rnd.update(batch)["loss"] > 0
    bonus = rnd.compute(batch)
    assert bonus.shape == (steps, envs) and bool(torch.isfinite(bonus).all())
    assert bool((bonus > 0).all())
