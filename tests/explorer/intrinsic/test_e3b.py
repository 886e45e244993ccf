"""Tests for explorer.intrinsic.e3b."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import explorer.intrinsic.e3b  # noqa: F401  (registers "e3b")
from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.e3b import E3BBonus

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 32, "embed_dim": 8, "lr": 1e-3}
MOVES = 0.2 * torch.tensor([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])


def walk(batch_of, seed: int, steps: int = 16, envs: int = 8):
    """Action a moves the state by ``MOVES[a]``, from uniform starts in ``[0, 1)^4``."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(envs, 4, generator=generator)
    actions = torch.randint(0, len(MOVES), (steps, envs), generator=generator)
    obs = start + torch.cat([torch.zeros(1, envs, 4), MOVES[actions].cumsum(0)])
    return batch_of({"obs": obs}, actions=actions)


def states(*codes: int) -> torch.Tensor:
    """One env's observations ``(T+1, 1, 4)``: equal codes, equal observations."""
    table = torch.randn(10, 4, generator=torch.Generator().manual_seed(7))
    return table[list(codes)].unsqueeze(1)


def one_env(batch_of, *codes: int, start: bool = True, env_id: int = 0):
    batch = batch_of({"obs": states(*codes)}, env_ids=torch.tensor([env_id]))
    batch.episode_start[0] = start
    return batch


def direct_bonus(phi: torch.Tensor, ridge: float) -> torch.Tensor:
    """``phi`` ``(T+1, E)`` of one episode -> ``(T,)`` ``x^T (ridge I + sum phi phi^T)^-1 x``."""
    phi = phi.double()
    out = []
    for t in range(len(phi) - 1):
        cov = ridge * torch.eye(phi.shape[1], dtype=torch.float64) + phi[:t + 1].T @ phi[:t + 1]
        x = phi[t + 1]
        out.append(x @ torch.linalg.solve(cov, x))
    return torch.stack(out).float()


def test_protocol_and_seeding(batch_of) -> None:
    before = torch.get_rng_state()
    bonus = make_intrinsic("e3b", obs_spec=SPEC, num_actions=4, seed=3, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(bonus, E3BBonus) and isinstance(bonus, IntrinsicReward)
    batch = walk(batch_of, seed=0)
    out = bonus.compute(batch)
    assert out.shape == (16, 8) and out.dtype == torch.float32 and bool((out > 0).all())
    assert torch.equal(out, E3BBonus(SPEC, 4, seed=3, **SMALL).compute(batch))
    assert not torch.equal(out, E3BBonus(SPEC, 4, seed=4, **SMALL).compute(batch))


def test_matches_direct_elliptical_bonus(batch_of) -> None:
    batch = walk(batch_of, seed=1, steps=12, envs=3)
    bonus = E3BBonus(SPEC, 4, ridge=0.1, **SMALL)
    out = bonus.compute(batch)
    phi = bonus.embed(batch.obs)  # (T+1, B, E)
    for b in range(3):
        torch.testing.assert_close(out[:, b], direct_bonus(phi[:, b], 0.1), rtol=1e-4,
                                   atol=1e-5)


def test_revisits_lower_the_bonus_and_episode_start_restores_it(batch_of) -> None:
    bonus = E3BBonus(SPEC, 4, **SMALL)
    out = bonus.compute(one_env(batch_of, 1, 2, 1, 2, 1, 3))[:, 0]  # states A B A B A C
    assert out[2] < 0.25 * out[0] and out[3] < 0.25 * out[0]  # revisits of A, B
    assert out[4] > 4 * out[2]  # C is new
    # the next batch continues the episode: its obs[0] (C) is already known
    continued = bonus.compute(one_env(batch_of, 3, 2, 3, start=False))[:, 0]
    assert continued.max() < 0.25 * out[0]
    # a new episode forgets the old one
    fresh = bonus.compute(one_env(batch_of, 3, 2, 3, start=True))[:, 0]
    assert fresh[0] > 4 * continued[0]
    torch.testing.assert_close(fresh, E3BBonus(SPEC, 4, **SMALL).compute(
        one_env(batch_of, 3, 2, 3))[:, 0])


def test_batches_continue_per_env_id(batch_of) -> None:
    whole = walk(batch_of, seed=2, steps=20, envs=4)
    whole.mask[7, 1] = 0.0  # auto-reset step: obs[8] of env 1 starts an episode
    whole.episode_start[8, 1] = True
    expected = E3BBonus(SPEC, 4, **SMALL).compute(whole)
    assert expected[7, 1] == 0.0

    bonus = E3BBonus(SPEC, 4, **SMALL)
    first = dataclasses.replace(whole, obs={"obs": whole.obs["obs"][:11]},
                                actions=whole.actions[:10], mask=whole.mask[:10],
                                episode_start=whole.episode_start[:11])
    order = torch.tensor([2, 0, 3, 1])  # the second batch lists the envs in another order
    second = dataclasses.replace(whole, obs={"obs": whole.obs["obs"][10:, order]},
                                 actions=whole.actions[10:, order], mask=whole.mask[10:, order],
                                 episode_start=whole.episode_start[10:, order].clone(),
                                 env_ids=whole.env_ids[order])
    second.episode_start[0] = False
    torch.testing.assert_close(bonus.compute(first), expected[:10])
    torch.testing.assert_close(bonus.compute(second), expected[10:, order])


def test_masked_steps_get_zero(batch_of) -> None:
    batch = walk(batch_of, seed=3)
    batch.mask[::3, 1::2] = 0.0
    batch.actions[batch.mask == 0] = -1  # EnvPool ignores actions on auto-reset steps
    bonus = E3BBonus(SPEC, 4, **SMALL)
    out = bonus.compute(batch)
    assert bool((out[batch.mask == 0] == 0).all()) and bool((out[batch.mask > 0] > 0).all())
    assert bonus.update(batch)["loss"] > 0  # masked steps are not trained on


def test_update_trains_the_inverse_model(batch_of) -> None:
    train = walk(batch_of, seed=0)
    bonus = E3BBonus(SPEC, 4, **SMALL)
    first = bonus.update(train)
    for _ in range(150):
        metrics = bonus.update(train)
    assert set(metrics) == {"loss", "inverse_accuracy"}
    assert metrics["loss"] < 0.3 * first["loss"] and metrics["inverse_accuracy"] > 0.9


def test_minigrid_observations(minigrid, minigrid_spec) -> None:
    rollout = minigrid(steps=16, num_envs=4)
    bonus = E3BBonus(minigrid_spec, 7, **SMALL)
    out = bonus.compute(rollout)
    assert out.shape == (16, 4) and bool((out[rollout.mask == 0] == 0).all())
    assert bool((out[rollout.mask > 0] >= 0).all())
    assert bonus.update(rollout)["loss"] > 0


def test_state_dict_round_trip(batch_of) -> None:
    first, second = walk(batch_of, seed=0), walk(batch_of, seed=1)
    second.episode_start[0] = False
    bonus = E3BBonus(SPEC, 4, seed=0, **SMALL)
    bonus.compute(first)
    bonus.update(first)
    other = E3BBonus(SPEC, 4, seed=1, **SMALL)
    other.load_state_dict(bonus.state_dict())
    assert torch.equal(other.compute(second), bonus.compute(second))
    assert other.update(second) == bonus.update(second)
    assert torch.equal(other.compute(second), bonus.compute(second))
