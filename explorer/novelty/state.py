"""State of novelty-search components as checkpoint-safe values.

Components return ``state_dict()`` of NumPy arrays and plain values; checkpoints
(``explorer.core.checkpoint``) hold tensors and plain values only, read with
``weights_only=True``. :func:`to_checkpoint` / :func:`from_checkpoint` convert between the two.
NumPy generator states hold 128-bit integers: they travel as decimal strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["from_checkpoint", "rng_from_state", "rng_state", "to_checkpoint"]


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A generator's exact state with big integers as strings."""
    return _ints_to_str(rng.bit_generator.state)


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A new generator continuing exactly where ``rng_state`` was taken."""
    state = _str_to_ints(state)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _ints_to_str(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ints_to_str(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return f"int:{value}"
    return value


def _str_to_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _str_to_ints(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("int:"):
        return int(value[4:])
    return value


def to_checkpoint(value: Any) -> Any:
    """NumPy arrays (anywhere in dicts / lists) -> tensors; NumPy scalars -> Python values."""
    if isinstance(value, dict):
        return {k: to_checkpoint(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_checkpoint(v) for v in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_checkpoint(value: Any) -> Any:
    """Inverse of :func:`to_checkpoint`: tensors -> NumPy arrays (lists stay lists)."""
    if isinstance(value, dict):
        return {k: from_checkpoint(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_checkpoint(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return value
