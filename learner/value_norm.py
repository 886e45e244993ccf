"""Running normalisation of value targets, so value and policy gradients stay on one scale.

Returns in CartPole reach hundreds while advantages are normalised to unit scale; with a shared
trunk and gradient clipping the value error would drown the policy gradient. The model's value
head predicts normalised values; this keeps the statistics (bias-corrected exponential moving
averages) and writes them into the model's ``value_mean``/``value_std`` buffers.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ValueNormalizer"]


class ValueNormalizer:
    """Debiased EMA of the mean and second moment of masked value targets."""

    def __init__(self, model: nn.Module, beta: float = 0.99, eps: float = 1e-4) -> None:
        self.model = model
        self.beta = beta
        self.eps = eps
        self.first = 0.0
        self.second = 0.0
        self.weight = 0.0  # 1 - beta^n: the debiasing divisor

    @torch.no_grad()
    def update(self, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Fold a batch of targets ``(T, B)`` (weights ``mask``) into the statistics."""
        count = float(mask.sum())
        if count == 0:
            return
        mean = float((targets * mask).sum()) / count
        sq = float((targets.square() * mask).sum()) / count
        self.first = self.beta * self.first + (1 - self.beta) * mean
        self.second = self.beta * self.second + (1 - self.beta) * sq
        self.weight = self.beta * self.weight + (1 - self.beta)
        mu = self.first / self.weight
        var = max(self.second / self.weight - mu * mu, 0.0)
        self.model.value_mean.fill_(mu)
        self.model.value_std.fill_(max(var**0.5, self.eps))

    def state_dict(self) -> dict[str, float]:
        return {"first": self.first, "second": self.second, "weight": self.weight}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.first, self.second, self.weight = state["first"], state["second"], state["weight"]
