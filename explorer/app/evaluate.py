"""Evaluate a policy on a run's env: a checkpoint's policy, or the uniform-random baseline.

Why: a training curve mixes many policies (the learner's episode window spans updates), so
claims such as "the trained policy scores more than a random one" are checked here on the
final weights alone, over as many episodes as the claim needs, with both arms stepping the same
env (same task kwargs, step limit, seeds). Used by ``explorer eval``, the exploration benchmark
and the learning tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actors.envs import make_vec_env
from actors.render import render_frame
from explorer.core.checkpoint import CheckpointError, load_checkpoint
from explorer.core.networks import make_actor_critic, obs_to_torch
from explorer.core.seeding import seeded_generator

__all__ = ["Evaluation", "evaluate_policy"]


@dataclass
class Evaluation:
    """Per-episode figures of one evaluation (episodes in the order they ended)."""

    returns: np.ndarray  # (episodes,) undiscounted env reward
    lengths: np.ndarray  # (episodes,) env steps
    action_counts: np.ndarray  # (num_actions,) actions taken on real (not auto-reset) steps
    #: The env's own per-episode extras where it keeps them (NetHack: score, depth, ...).
    episode_info: list[dict[str, Any]] = field(default_factory=list)

    def info_values(self, key: str) -> np.ndarray:
        """One numeric extra (e.g. NetHack's ``score``) of every episode that reports it."""
        return np.asarray([info[key] for info in self.episode_info if key in info], float)

    def summary(self) -> dict[str, float]:
        """Means a researcher reads: return (and its std), success rate, length, extras."""
        out = {"episodes": float(len(self.returns)),
               "return_mean": float(self.returns.mean()),
               "return_std": float(self.returns.std()),
               "success": float(np.mean(self.returns > 0)),
               "length_mean": float(self.lengths.mean())}
        numeric = sorted({k for info in self.episode_info for k, v in info.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for key in numeric:
            out[f"{key}_mean"] = float(self.info_values(key).mean())
        return out


@torch.inference_mode()
def evaluate_policy(cfg: Any, checkpoint: Path | None, episodes: int, seed: int, *,
                    num_envs: int = 16, greedy: bool = False,
                    on_frame: Callable[[np.ndarray], None] | None = None) -> Evaluation:
    """Run ``episodes`` episodes of ``cfg.env`` with a checkpoint's policy or at random.

    Args:
        cfg: The run's root config (env and model settings).
        checkpoint: A checkpoint file of this run's model; ``None`` takes uniform-random
            actions (the baseline of learning claims).
        episodes: Episodes to finish; the first ``episodes`` to end are kept.
        seed: Seeds the envs and the action sampling.
        num_envs: Envs stepped together (fewer when ``episodes`` is smaller).
        greedy: Take the most likely action instead of sampling (the actors sample).
        on_frame: Called with each (H, W, 3) uint8 frame, the first after reset, for a
            video; the envs then draw themselves and one env plays the episodes in turn.

    Returns:
        The :class:`Evaluation` of the first ``episodes`` episodes to end.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    num_envs = 1 if on_frame is not None else min(num_envs, episodes)
    env = make_vec_env(cfg.env, num_envs, seed, render=on_frame is not None)
    num_actions = env.spec.num_actions
    model = None
    if checkpoint is not None:
        model = make_actor_critic(cfg, env.spec)
        try:
            model.load_state_dict(load_checkpoint(checkpoint)["learner"]["model"])
        except CheckpointError:  # unreadable or refused: its message already says so
            env.close()
            raise
        except Exception as err:  # another model, no weights in it
            env.close()
            raise ValueError(f"checkpoint {checkpoint}: not a checkpoint of this run's model "
                             f"({type(err).__name__}: {str(err)[:200]})") from err
        model.eval()
    generator = seeded_generator(seed)
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    lengths: list[int] = []
    counts = np.zeros(num_actions, dtype=np.int64)
    ep_return = np.zeros(num_envs)
    ep_length = np.zeros(num_envs, dtype=np.int64)
    valid = np.ones(num_envs, dtype=bool)  # False on auto-reset steps (action ignored)
    start = np.ones(num_envs, dtype=bool)
    try:
        obs = env.reset()
        if on_frame is not None:
            on_frame(render_frame(env, obs))
        core = model.initial_state(num_envs) if model is not None else None
        while len(returns) < episodes:
            if model is None:
                actions = rng.integers(0, num_actions, num_envs)
            else:
                tobs = {k: v.unsqueeze(0) for k, v in obs_to_torch(obs, "cpu").items()}
                logits, _, core = model(tobs, core, torch.from_numpy(start).unsqueeze(0),
                                        in_place=True)  # the loop's own state, as actors
                if greedy:
                    actions = logits[0].argmax(-1).numpy()
                else:
                    probs = torch.softmax(logits[0], -1)
                    actions = torch.multinomial(probs, 1, generator=generator)[:, 0].numpy()
            result = env.step(actions)
            if on_frame is not None:
                on_frame(render_frame(env, result.obs))
            np.add.at(counts, actions[valid], 1)
            ep_return += result.rewards * valid
            ep_length += valid
            ended = (result.terminated | result.truncated) & valid
            returns.extend(ep_return[ended].tolist())
            lengths.extend(ep_length[ended].tolist())
            ep_return[ended] = 0.0
            ep_length[ended] = 0
            start, valid, obs = ~valid, ~ended, result.obs
        info = env.episode_info()[:episodes] if hasattr(env, "episode_info") else []
    finally:
        env.close()
    return Evaluation(np.asarray(returns[:episodes]), np.asarray(lengths[:episodes]), counts,
                      info)
