"""The intrinsic-reward protocol every exploration bonus implements, and its registry.

A bonus sees a time-major batch of transitions, returns one bonus per transition ``(T, B)`` and
trains its own networks with its own optimiser(s). The learner sums bonuses by coefficient and
never branches on their names. Episodic bonuses keep per-episode state keyed by ``env_ids`` (one
id per env column, stable across rollouts) and reset it where ``episode_start`` is set, so they
can run learner-side on batches.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from explorer.core.loading import import_object, import_path_problem, unknown_name_problem

__all__ = ["IntrinsicReward", "TransitionBatch", "intrinsic_problems", "make_intrinsic",
           "register_intrinsic", "registered_intrinsics"]


@runtime_checkable
class TransitionBatch(Protocol):
    """What a bonus may read (``learner.batch.Batch`` satisfies it).

    Attributes:
        obs: key -> (T+1, B, *obs_shape) observations; ``obs[t+1]`` follows action ``t``.
        actions: (T, B) int64 actions.
        mask: (T, B) float, 0 on auto-reset steps (no real transition: bonus is ignored there).
        episode_start: (T+1, B) bool, ``obs[t]`` is the first observation of an episode.
        env_ids: (B,) int64, a stable id of each env column across batches.
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    mask: torch.Tensor
    episode_start: torch.Tensor
    env_ids: torch.Tensor


@runtime_checkable
class IntrinsicReward(Protocol):
    """An exploration bonus. ``compute`` before ``update`` on each batch."""

    def compute(self, batch: TransitionBatch) -> torch.Tensor:
        """Bonus for each transition ``(obs[t], actions[t], obs[t+1])``: (T, B) float32."""
        ...

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Train on the batch; return metrics (keys without prefix, e.g. ``loss``)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


_REGISTRY: dict[str, Callable[..., IntrinsicReward]] = {}


def register_intrinsic(name: str) -> Callable[[type], type]:
    """Class decorator: make a bonus constructible by short name from configs."""

    def wrap(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return wrap


def registered_intrinsics() -> list[str]:
    """Short names usable in ``intrinsic[i].name``."""
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    importlib.import_module("explorer.intrinsic")


def make_intrinsic(name: str, **kwargs: Any) -> IntrinsicReward:
    """Build a bonus by registered name (``rnd``) or import path (``mypkg.mod:MyBonus``).

    Raises:
        ValueError: unknown name (listing the registered ones) or unimportable path.
    """
    if ":" in name:
        return import_object(name, "intrinsic reward")(**kwargs)
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown intrinsic reward {name!r}; registered: "
                         f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def intrinsic_problems(cfg: Any) -> list[str]:
    """A config check: every ``intrinsic[i].name`` is registered or an importable path."""
    problems = []
    for i, bonus in enumerate(cfg.intrinsic):
        key = f"intrinsic[{i}].name"
        if ":" in bonus.name:
            problems += import_path_problem(key, bonus.name, "intrinsic reward")
        else:
            problems += unknown_name_problem(key, bonus.name, registered_intrinsics(),
                                             "intrinsic reward")
    return problems
