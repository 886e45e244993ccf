"""Shared fixtures for the intrinsic-reward tests: transition batches from real MiniGrid rollouts
and hand-built ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import envpool
import numpy as np
import pytest
import torch
from torch import Tensor

MINIGRID_SPEC = {
    "image": ((7, 7, 3), "uint8"),
    "direction": ((), "int32"),
    "mission": ((96,), "uint8"),
}
VECTOR_SPEC = {"obs": ((4,), "float32")}


@dataclass
class FakeBatch:
    """Satisfies ``explorer.intrinsic.TransitionBatch`` (T steps, B envs)."""

    obs: dict[str, Tensor]  # (T+1, B, *shape)
    actions: Tensor  # (T, B) int64
    mask: Tensor  # (T, B) float32
    episode_start: Tensor  # (T+1, B) bool
    env_ids: Tensor  # (B,) int64


def make_batch(obs: dict[str, Tensor], actions: Tensor | None = None, mask: Tensor | None = None,
               episode_start: Tensor | None = None, env_ids: Tensor | None = None) -> FakeBatch:
    """A batch around ``obs`` (T+1, B, ...): defaults are action 0, all valid, one episode per
    env starting at ``obs[0]``, env ids 0..B-1."""
    steps_plus_one, num_envs = next(iter(obs.values())).shape[:2]
    steps = steps_plus_one - 1
    if episode_start is None:
        episode_start = torch.zeros(steps + 1, num_envs, dtype=torch.bool)
        episode_start[0] = True
    return FakeBatch(
        obs=obs,
        actions=torch.zeros(steps, num_envs, dtype=torch.int64) if actions is None else actions,
        mask=torch.ones(steps, num_envs) if mask is None else mask,
        episode_start=episode_start,
        env_ids=torch.arange(num_envs) if env_ids is None else env_ids,
    )


@lru_cache(maxsize=16)
def _minigrid_rollout(env_name: str, steps: int, num_envs: int, seed: int,
                      num_actions: int) -> FakeBatch:
    env = envpool.make(env_name, env_type="gymnasium", num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    frames = [obs]
    actions = rng.integers(0, num_actions, (steps, num_envs))
    done = np.zeros(num_envs, dtype=bool)  # the previous step ended an episode
    mask = []
    for t in range(steps):
        mask.append(~done)  # the step after an episode end is EnvPool's auto-reset
        obs, _, terminated, truncated, _ = env.step(actions[t])
        done = terminated | truncated
        frames.append(obs)
    env.close()
    # obs[t+1] starts an episode exactly when step t was an auto-reset step
    episode_start = np.concatenate([np.ones((1, num_envs), bool), ~np.stack(mask)], axis=0)
    return FakeBatch(
        obs={k: torch.from_numpy(np.stack([f[k] for f in frames]).astype(MINIGRID_SPEC[k][1]))
             for k in MINIGRID_SPEC},
        actions=torch.from_numpy(actions.astype(np.int64)),
        mask=torch.from_numpy(np.stack(mask).astype(np.float32)),
        episode_start=torch.from_numpy(episode_start),
        env_ids=torch.arange(num_envs),
    )


def minigrid_rollout(env_name: str = "MiniGrid-Empty-8x8-v0", steps: int = 32,
                     num_envs: int = 8, seed: int = 0, num_actions: int = 3) -> FakeBatch:
    """Random-action EnvPool MiniGrid rollout (actions < ``num_actions``), cached.

    Returns:
        A batch with EnvPool's auto-reset semantics: ``mask[t] == 0`` on the step after an
        episode end, whose ``obs[t+1]`` is the next episode's first observation.
    """
    return _minigrid_rollout(env_name, steps, num_envs, seed, num_actions)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread (small nets: far faster than contended thread pools)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def minigrid() -> Callable[..., FakeBatch]:
    """``minigrid(env_name, steps, num_envs, seed, num_actions)`` -> rollout batch."""
    return minigrid_rollout


@pytest.fixture
def batch_of() -> Callable[..., FakeBatch]:
    """``batch_of(obs, actions=None, mask=None, episode_start=None, env_ids=None)``."""
    return make_batch


@pytest.fixture
def minigrid_spec() -> dict:
    return dict(MINIGRID_SPEC)


@pytest.fixture
def vector_spec() -> dict:
    return dict(VECTOR_SPEC)
