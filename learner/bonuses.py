"""The configured exploration bonuses of a run, with RND-style reward normalisation.

The learner asks this set for one normalised bonus per configured entry and folds them into
the reward *before* any advantage is computed (``learner.algo``), so a bonus really changes
what the policy gradient sees.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.core.running_stats import RunningMeanStd
from explorer.core.specs import EnvSpec
from explorer.intrinsic import IntrinsicReward, TransitionBatch, make_intrinsic

__all__ = ["BonusSet", "ReturnNormalizer"]


class ReturnNormalizer:
    """Divide rewards by the running std of their discounted return (Burda et al. 2018).

    The discounted return is filtered per env id across batches (``ret = gamma * ret + r``),
    never reset, exactly as RND's non-episodic ``RewardForwardFilter``; its statistics are a
    :class:`~explorer.core.running_stats.RunningMeanStd` over all returns so far.
    """

    def __init__(self, gamma: float, eps: float = 1e-8) -> None:
        self.gamma = gamma
        self.eps = eps
        self.filters: dict[int, float] = {}
        self.returns = RunningMeanStd((), epsilon=0.0)

    @property
    def std(self) -> float:
        """Std of the returns seen so far; 1 until there are two."""
        return float(self.returns.var.sqrt()) if self.returns.count > 1 else 1.0

    def __call__(self, rewards: torch.Tensor, mask: torch.Tensor,
                 env_ids: torch.Tensor, observe: bool = True) -> torch.Tensor:
        """Normalise ``rewards`` (T, B); ``mask`` marks real transitions.

        With ``observe=False`` the current statistics are used and nothing is updated.
        """
        if not observe:
            return rewards / (self.std + self.eps)
        ids = env_ids.tolist()
        ret = torch.tensor([self.filters.get(i, 0.0) for i in ids], dtype=torch.float64)  # (B,)
        cpu_rewards = rewards.detach().cpu().double()
        returns = torch.empty_like(cpu_rewards)  # (T, B)
        for t in range(cpu_rewards.shape[0]):
            ret = self.gamma * ret + cpu_rewards[t]
            returns[t] = ret
        self.filters.update(zip(ids, ret.tolist(), strict=True))
        self.returns.update(returns[mask.cpu().bool()])  # (N,)
        return rewards / (self.std + self.eps)

    def state_dict(self) -> dict[str, Any]:
        """Filters and the return statistics as ``count``, ``mean``, ``m2`` (sum of squared
        deviations): the checkpoint layout."""
        count = self.returns.count
        return {"filters": dict(self.filters), "count": count,
                "mean": float(self.returns.mean), "m2": float(self.returns.var) * count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.filters = dict(state["filters"])
        count = float(state["count"])
        mean, var = float(state["mean"]), float(state["m2"]) / count if count else 1.0
        self.returns.load_state_dict({"mean": torch.tensor(mean, dtype=torch.float64),
                                      "var": torch.tensor(var, dtype=torch.float64),
                                      "count": count})


class BonusSet:
    """Builds each configured bonus and hands back their (normalised) rewards per batch."""

    def __init__(self, configs: Any, env_spec: EnvSpec, seed: int,
                 device: torch.device) -> None:
        self.configs = tuple(configs)
        self.bonuses: list[IntrinsicReward] = [
            make_intrinsic(c.name, obs_spec=env_spec.obs_spec, num_actions=env_spec.num_actions,
                           seed=seed + i, device=device, **c.kwargs)
            for i, c in enumerate(self.configs)
        ]
        self.normalizers = [ReturnNormalizer(c.gamma) if c.normalize else None
                            for c in self.configs]
        self.labels = [f"{i}_{c.name.rsplit(':', 1)[-1]}" for i, c in enumerate(self.configs)]

    def __len__(self) -> int:
        return len(self.bonuses)

    def rewards(self, batch: TransitionBatch, observe: bool = True
                ) -> tuple[list[torch.Tensor], dict[str, float]]:
        """One (T, B) reward per bonus, 0 on masked steps, normalised where configured.

        ``observe=False`` leaves the normalisers' statistics untouched (for inspection).
        """
        out, metrics = [], {}
        for label, bonus, norm in zip(self.labels, self.bonuses, self.normalizers, strict=True):
            raw = bonus.compute(batch).to(batch.mask.device) * batch.mask  # (T, B)
            reward = norm(raw, batch.mask, batch.env_ids, observe) if norm is not None else raw
            denom = float(batch.mask.sum().clamp(min=1))
            metrics[f"intrinsic/{label}/raw_mean"] = float(raw.sum()) / denom
            metrics[f"intrinsic/{label}/raw_max"] = float(raw.max())
            metrics[f"intrinsic/{label}/reward_mean"] = float(reward.sum()) / denom
            out.append(reward)
        return out, metrics

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        metrics = {}
        for label, bonus in zip(self.labels, self.bonuses, strict=True):
            for key, value in bonus.update(batch).items():
                metrics[f"intrinsic/{label}/{key}"] = float(value)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "bonuses": [b.state_dict() for b in self.bonuses],
            "normalizers": [n.state_dict() if n else None for n in self.normalizers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for bonus, saved in zip(self.bonuses, state["bonuses"], strict=True):
            bonus.load_state_dict(saved)
        for norm, saved in zip(self.normalizers, state["normalizers"], strict=True):
            if norm is not None:
                norm.load_state_dict(saved)
