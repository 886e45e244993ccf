"""Running statistics of streams of samples: every running mean / std of the project.

- :class:`RunningMeanStd`: exact mean and variance of all samples so far, per element. Batches
  are merged with the parallel-variance formula of Chan et al. (1979), so the statistics do not
  depend on how the samples were split into batches. Kept in float64; each batch is reduced in
  its own dtype first (cheap for large image batches). RND's observation whitening, the return
  normaliser of the bonuses.
- :class:`EmaMeanStd`: bias-corrected exponential moving mean and variance of a scalar stream,
  for scales that drift as the policy learns (value targets, BYOL-Explore's reward scale).
- :class:`HorizonMean`: plain mean until ``horizon`` values, then an exponential average
  (NGU's neighbour-distance scale).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["EmaMeanStd", "HorizonMean", "RunningMeanStd"]


class RunningMeanStd:
    """Per-element running mean / variance of samples of shape ``shape``.

    Attributes:
        mean: ``shape`` float64 running mean.
        var: ``shape`` float64 running (population) variance.
        count: Number of samples merged so far (starts at ``epsilon`` as in RND, so an
            untouched instance normalises with mean 0 and variance 1).
    """

    def __init__(self, shape: tuple[int, ...] = (), *, epsilon: float = 1e-4,
                 device: str | torch.device = "cpu") -> None:
        """Starts from mean 0, variance 1.

        Args:
            shape: Per-sample shape; statistics are kept per element.
            epsilon: Initial pseudo-count (weight of the mean-0, variance-1 prior).
            device: Where the statistics live.
        """
        self.shape = tuple(shape)
        self.mean = torch.zeros(self.shape, dtype=torch.float64, device=device)
        self.var = torch.ones(self.shape, dtype=torch.float64, device=device)
        self.count = float(epsilon)

    def update(self, x: Tensor) -> None:
        """Merges a batch of samples.

        Args:
            x: ``(N, *shape)`` samples, any real or integer dtype; ``N == 0`` is a no-op.
        """
        if x.shape[1:] != self.shape:
            raise ValueError(f"expected samples of shape (N, *{self.shape}); got {tuple(x.shape)}")
        n = x.shape[0]
        if n == 0:
            return
        x = x.to(self.mean.device)
        if not x.is_floating_point():
            x = x.float()
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        batch_mean, batch_var = batch_mean.double(), batch_var.double()
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta.square() * (self.count * n / total)
        self.var = m2 / total
        self.count = total

    def normalize(self, x: Tensor, clip: float | None = None, eps: float = 1e-8) -> Tensor:
        """``(x - mean) / sqrt(var + eps)``, optionally clipped to ``[-clip, clip]``.

        Args:
            x: ``(..., *shape)`` values on the statistics' device.
            clip: Clip bound, or ``None`` for no clipping.
            eps: Added to the variance.

        Returns:
            Float32 tensor of ``x``'s shape.
        """
        mean = self.mean.float()
        std = (self.var + eps).sqrt().float()
        out = (x.float() - mean) / std
        return out.clamp(-clip, clip) if clip is not None else out

    def to(self, device: str | torch.device) -> RunningMeanStd:
        """Moves the statistics to ``device`` (in place); returns ``self``."""
        self.mean, self.var = self.mean.to(device), self.var.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.cpu().clone(), "var": self.var.cpu().clone(),
                "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.mean.device
        self.mean = state["mean"].to(device, torch.float64).clone()
        self.var = state["var"].to(device, torch.float64).clone()
        self.count = float(state["count"])


class EmaMeanStd:
    """Bias-corrected exponential moving mean and variance of a scalar stream.

    An EMA follows a scale that drifts; dividing by ``weight = 1 - decay^n`` (as Adam does)
    removes its pull towards the zero start, so one update gives exactly that batch's statistics.

    Attributes:
        first: EMA of the batch means (biased towards 0).
        second: EMA of the batch mean squares (biased towards 0).
        weight: ``1 - decay^n`` after n updates, the debiasing divisor (0: no update yet).
    """

    def __init__(self, decay: float) -> None:
        """Starts empty: mean 0, variance 1 until the first update."""
        self.decay = decay
        self.first = self.second = self.weight = 0.0

    @torch.no_grad()
    def update(self, values: Tensor, weights: Tensor | None = None) -> None:
        """One EMA step with the batch's (weighted) mean and mean square.

        Args:
            values: Samples, any shape.
            weights: Same shape, >= 0 (e.g. a validity mask); ``None``: all 1. A batch of total
                weight 0 (or no samples) is ignored.
        """
        values = values.double()
        if weights is None:
            if values.numel() == 0:
                return
            mean, square = float(values.mean()), float(values.square().mean())
        else:
            weights = weights.to(values.device, torch.float64)
            total = float(weights.sum())
            if total == 0:
                return
            mean = float((values * weights).sum()) / total
            square = float((values.square() * weights).sum()) / total
        keep = self.decay
        self.first = keep * self.first + (1 - keep) * mean
        self.second = keep * self.second + (1 - keep) * square
        self.weight = keep * self.weight + (1 - keep)

    @property
    def mean(self) -> float:
        """Debiased mean; 0 before any update."""
        return self.first / self.weight if self.weight else 0.0

    @property
    def var(self) -> float:
        """Debiased variance (clipped at 0); 1 before any update."""
        if not self.weight:
            return 1.0
        mean = self.mean
        return max(self.second / self.weight - mean * mean, 0.0)

    @property
    def std(self) -> float:
        """``sqrt(var)``; 1 before any update."""
        return self.var ** 0.5

    def state_dict(self) -> dict[str, float]:
        return {"first": self.first, "second": self.second, "weight": self.weight}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.first, self.second = float(state["first"]), float(state["second"])
        self.weight = float(state["weight"])


class HorizonMean:
    """Mean of a scalar stream: of all values until ``horizon`` of them, then an exponential
    average with weight ``1 / horizon``, so it is exact early on and follows a drift later.

    Attributes:
        mean: Current mean (0 before any value).
        count: Values folded in, capped at ``horizon``.
    """

    def __init__(self, horizon: int) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1; got {horizon}")
        self.horizon = horizon
        self.mean = 0.0
        self.count = 0

    def update(self, value: float) -> None:
        """Folds in one value."""
        self.count = min(self.count + 1, self.horizon)
        self.mean += (value - self.mean) / self.count

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.count = float(state["mean"]), int(state["count"])
