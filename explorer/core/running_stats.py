"""Running mean and variance of tensors, merged batch by batch.

Batches are merged with the parallel-variance formula of Chan et al. (1979), so the statistics
equal those of all samples seen so far regardless of how they were split into batches. They are
kept in float64; each batch is reduced in its own dtype first (cheap for large image batches).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["RunningMeanStd"]


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
