"""Running normalisation of value targets, so value and policy gradients stay on one scale.

Returns in CartPole reach hundreds while advantages are normalised to unit scale; with a shared
trunk and gradient clipping the value error would drown the policy gradient. Each value head
predicts normalised values; this keeps per-head statistics (bias-corrected exponential moving
averages) and writes them into the model's ``value_mean``/``value_std`` buffers (shape (V,)).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ValueNormalizer"]


class ValueNormalizer:
    """Debiased EMA of the mean and second moment of masked value targets, per value head."""

    def __init__(self, model: nn.Module, beta: float = 0.99, eps: float = 1e-4) -> None:
        self.model = model
        self.beta = beta
        self.eps = eps
        heads = int(model.value_mean.numel())
        self.first = [0.0] * heads
        self.second = [0.0] * heads
        self.weight = [0.0] * heads  # 1 - beta^n: the debiasing divisor

    @torch.no_grad()
    def update(self, head: int, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Fold a batch of targets ``(T, B)`` of ``head`` (weights ``mask``) into the stats."""
        count = float(mask.sum())
        if count == 0:
            return
        mean = float((targets * mask).sum()) / count
        sq = float((targets.square() * mask).sum()) / count
        b = self.beta
        self.first[head] = b * self.first[head] + (1 - b) * mean
        self.second[head] = b * self.second[head] + (1 - b) * sq
        self.weight[head] = b * self.weight[head] + (1 - b)
        mu = self.first[head] / self.weight[head]
        var = max(self.second[head] / self.weight[head] - mu * mu, 0.0)
        self.model.value_mean[head] = mu
        self.model.value_std[head] = max(var**0.5, self.eps)

    def state_dict(self) -> dict[str, list[float]]:
        return {"first": list(self.first), "second": list(self.second),
                "weight": list(self.weight)}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.first, self.second = list(state["first"]), list(state["second"])
        self.weight = list(state["weight"])
