"""Between time-major batches ``(T, B, ...)`` and flat sample batches ``(N, ...)``, N = T * B.

Rollouts, batches and bonuses are time-major; encoders, heads and losses want one flat batch.
One pair of helpers does the round trip, so every module flattens the same way (row ``t * B + b``
is step ``t`` of env ``b``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["flatten_obs", "flatten_time_batch", "unflatten_time_batch"]


def flatten_time_batch(x: Tensor) -> Tensor:
    """``(T, B, *rest)`` -> ``(T * B, *rest)``."""
    return x.flatten(0, 1)


def unflatten_time_batch(x: Tensor, steps: int, envs: int) -> Tensor:
    """``(steps * envs, *rest)`` -> ``(steps, envs, *rest)``; inverts :func:`flatten_time_batch`."""
    return x.reshape(steps, envs, *x.shape[1:])


def flatten_obs(obs: Mapping[str, Tensor], keys: Iterable[str],
                device: str | torch.device | None = None) -> dict[str, Tensor]:
    """Key -> ``(T, B, *shape)`` observations -> key -> ``(T * B, *shape)``, ``keys`` only.

    Args:
        obs: Time-major observations.
        keys: The keys to keep (those an encoder reads).
        device: Where to put them (``None``: where they are).
    """
    return {k: flatten_time_batch(obs[k]).to(device) for k in keys}
