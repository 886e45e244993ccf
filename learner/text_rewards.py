"""ONI's reward on the learner side: ``coef * reward(text) / N_episode(text) ** beta``.

Actors ship, per step, the ids of the text units the agent saw (the message, or each of its
sentences) and how often each was seen so far in the episode; the labeler publishes a
text-id -> reward table. Looking a batch up is one ``searchsorted`` over the sorted table, so
the learner never handles strings and an unlabelled text simply earns 0 until its label
arrives.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import torch

__all__ = ["OniTextReward", "RewardTable"]

_EPISODE_WINDOW = 100


class RewardTable:
    """Sorted text-id -> reward table, replaced whole by each labeler publication."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.rewards = np.zeros(0, dtype=np.float32)
        self.version = -1

    def __len__(self) -> int:
        return len(self.ids)

    def replace(self, ids: np.ndarray, rewards: np.ndarray, version: int) -> None:
        """Install a publication; raises ValueError when the arrays do not pair up."""
        if ids.shape != rewards.shape or ids.ndim != 1:
            raise ValueError(f"reward table: ids {ids.shape} and rewards {rewards.shape} must "
                             "be two 1-d arrays of one length")
        if not np.isfinite(rewards).all():
            raise ValueError("reward table: rewards must be finite")
        order = np.argsort(ids, kind="stable")
        self.ids = np.ascontiguousarray(ids[order], dtype=np.int64)
        self.rewards = np.ascontiguousarray(rewards[order], dtype=np.float32)
        self.version = int(version)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rewards (same shape as ``ids``, float32) and a mask of ids found in the table."""
        if len(self.ids) == 0:
            return np.zeros(ids.shape, np.float32), np.zeros(ids.shape, bool)
        pos = np.searchsorted(self.ids, ids).clip(max=len(self.ids) - 1)
        found = self.ids[pos] == ids
        return np.where(found, self.rewards[pos], 0.0).astype(np.float32), found

    def state_dict(self) -> dict[str, Any]:
        """Tensors, not arrays: checkpoints are loaded with ``weights_only``."""
        return {"ids": torch.from_numpy(self.ids.copy()),
                "rewards": torch.from_numpy(self.rewards.copy()), "version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replace(state["ids"].numpy(), state["rewards"].numpy(), state["version"])


class OniTextReward:
    """Per-step text rewards with ONI's episodic count normalisation.

    Args:
        coef: ``c_llm``.
        beta: exponent of the within-episode count (ONI: 3).
    """

    def __init__(self, coef: float, beta: float) -> None:
        self.coef, self.beta = coef, beta
        self.table = RewardTable()
        self.episode_sums: dict[int, float] = {}
        self.episode_returns: collections.deque[float] = collections.deque(maxlen=_EPISODE_WINDOW)

    def rewards(self, text_hash: torch.Tensor, text_count: torch.Tensor, mask: torch.Tensor,
                ended: torch.Tensor, env_ids: torch.Tensor, observe: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """The (T, B) reward: ``coef * r(unit) / count(unit) ** beta`` summed over the U text
        units of a step (``text_hash``/``text_count`` are (T, B, U); 0 without text or label).

        ``observe`` also folds the rewards into per-episode sums for logging. A step counts as
        a cache hit when every one of its units has a label.
        """
        ids = text_hash.cpu().numpy()
        counts = text_count.cpu().numpy().astype(np.float64)
        valid = mask.cpu().numpy() > 0
        base, found = self.table.lookup(ids)
        scale = np.power(np.maximum(counts, 1.0), -self.beta)
        present = ids != 0
        reward = (self.coef * (base * scale * present).sum(-1) * valid).astype(np.float32)
        with_text = valid & present.any(-1)
        n_text = int(with_text.sum())
        rewarded = valid & (present & (base > 0)).any(-1)  # a unit labelled positive
        metrics = {
            "labeler/intrinsic_reward_mean": float(reward.sum() / max(valid.sum(), 1)),
            "labeler/steps_with_text_frac": n_text / max(int(valid.sum()), 1),
            "labeler/steps_rewarded_frac": int(rewarded.sum()) / max(int(valid.sum()), 1),
            "labeler/table_size": float(len(self.table)),
            "labeler/table_version": float(self.table.version),
        }
        if n_text:
            all_found = (found | ~present).all(-1)
            metrics["labeler/cache_hit_rate"] = float((all_found & with_text).sum() / n_text)
        if observe:
            self._track_episodes(reward, ended.cpu().numpy() > 0, env_ids.tolist())
            if self.episode_returns:
                metrics["labeler/episode_intrinsic_return"] = float(
                    np.mean(self.episode_returns))
        return torch.from_numpy(reward).to(mask.device), metrics

    def _track_episodes(self, reward: np.ndarray, ended: np.ndarray, env_ids: list[int]) -> None:
        for col, env in enumerate(env_ids):
            total, start = self.episode_sums.get(env, 0.0), 0
            for t in np.flatnonzero(ended[:, col]):
                self.episode_returns.append(total + float(reward[start:t + 1, col].sum()))
                total, start = 0.0, t + 1
            self.episode_sums[env] = total + float(reward[start:, col].sum())

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table.state_dict(), "episode_sums": dict(self.episode_sums)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table.load_state_dict(state["table"])
        self.episode_sums = dict(state["episode_sums"])
