"""A real MiniGrid training batch and a learner for it, shared by the learner tests."""

from __future__ import annotations

import numpy as np
import torch

from actors.envs import make_vec_env
from actors.rollout import RolloutStorage
from explorer.core.config import load_config
from explorer.core.wire import KIND_ROLLOUT, Message
from learner.algo import Learner
from learner.batch import Batch, stack_rollouts

T, B = 24, 4


def minigrid_batch() -> Batch:
    """A real random-policy rollout of MiniGrid-Empty-5x5 (episodes end within T steps)."""
    cfg = load_config(None, ["env.id=MiniGrid-Empty-5x5-v0", "env.max_episode_steps=10"])
    env = make_vec_env(cfg.env, B, seed=3)
    storage = RolloutStorage(env.spec, T, B, core_size=0)
    rng = np.random.default_rng(0)
    obs, prev_done = env.reset(), np.zeros(B, bool)
    for t in range(T):
        for k, v in obs.items():
            storage.obs[k][t] = v
        storage.actions[t] = rng.integers(0, env.spec.num_actions, B)
        result = env.step(storage.actions[t])
        storage.valid[t] = ~prev_done
        storage.rewards[t] = result.rewards
        storage.terminated[t], storage.truncated[t] = result.terminated, result.truncated
        prev_done = (result.terminated | result.truncated) & storage.valid[t]
        storage.episode_start[t] = t == 0
        obs = result.obs
    for k, v in obs.items():
        storage.obs[k][T] = v
    storage.logp[:] = -np.log(env.spec.num_actions)
    assert (storage.terminated | storage.truncated).any()
    msg = Message(kind=KIND_ROLLOUT, arrays=storage.arrays(np.zeros(0, np.float32),
                                                           np.zeros(0, np.int32)))
    return stack_rollouts([msg], reward_clip=None)


def minigrid_learner(*overrides: str) -> Learner:
    cfg = load_config(None, ["env.id=MiniGrid-Empty-5x5-v0", "seed=4", *overrides])
    env = make_vec_env(cfg.env, 1, 0)
    torch.manual_seed(0)  # identical model init for learners with and without a bonus
    return Learner(cfg, env.spec, torch.device("cpu"))
