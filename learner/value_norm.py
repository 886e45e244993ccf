"""Running normalisation of value targets, so value and policy gradients stay on one scale.

Returns in CartPole reach hundreds while advantages are normalised to unit scale; with a shared
trunk and gradient clipping the value error would drown the policy gradient. Each value head
predicts normalised values; this keeps per-head statistics (bias-corrected exponential moving
averages, ``explorer.core.running_stats.EmaMeanStd``) and writes them into the model's
``value_mean``/``value_std`` buffers (shape (V,)).
"""

from __future__ import annotations

import torch
from torch import nn

from explorer.core.running_stats import EmaMeanStd

__all__ = ["ValueNormalizer"]


class ValueNormalizer:
    """Debiased EMA of the mean and second moment of masked value targets, per value head."""

    def __init__(self, model: nn.Module, beta: float = 0.99, eps: float = 1e-4) -> None:
        self.model = model
        self.eps = eps
        self.heads = [EmaMeanStd(beta) for _ in range(int(model.value_mean.numel()))]

    @torch.no_grad()
    def update(self, head: int, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Fold a batch of targets ``(T, B)`` of ``head`` (weights ``mask``) into the stats."""
        stats = self.heads[head]
        stats.update(targets, mask)
        if stats.weight:
            self.model.value_mean[head] = stats.mean
            self.model.value_std[head] = max(stats.std, self.eps)

    def state_dict(self) -> dict[str, list[float]]:
        """Per-head lists ``first``, ``second``, ``weight`` (the checkpoint layout)."""
        states = [stats.state_dict() for stats in self.heads]
        return {key: [s[key] for s in states] for key in ("first", "second", "weight")}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        for i, stats in enumerate(self.heads):
            stats.load_state_dict({key: state[key][i] for key in ("first", "second", "weight")})
