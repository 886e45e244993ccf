"""Shapes shared by actors and learner: the env's observation spec and the rollout schema.

Both sides build the same :class:`~explorer.wire.WireSchema` from these, so a rollout that does
not match the running env and model is rejected at the learner's socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from explorer.wire import KIND_ROLLOUT, KIND_WEIGHTS, ArraySpec, WireSchema

__all__ = ["EnvSpec", "ObsSpec", "rollout_schema", "weights_schema"]

#: key -> (per-env shape, numpy dtype name)
ObsSpec = dict[str, tuple[tuple[int, ...], str]]


@dataclass(frozen=True)
class EnvSpec:
    """What the model needs to know about an env: named observation arrays and action count."""

    obs_spec: ObsSpec
    num_actions: int


def rollout_schema(
    spec: EnvSpec, rollout_len: int, num_envs: int, core_size: int, max_bytes: int,
    texts: bool = False,
) -> WireSchema:
    """Schema of one actor rollout of ``rollout_len`` steps from ``num_envs`` envs.

    Arrays (T = rollout_len, B = num_envs):
        obs/<key>: (T+1, B, *shape): observations, the last row is the bootstrap observation.
        actions (T, B) int64; logp (T, B) float32: behaviour log-probabilities.
        values (T+1, B) float32: behaviour values incl. the bootstrap value.
        rewards (T, B) float32; terminated, truncated (T, B) bool.
        valid (T, B) bool: False on auto-reset steps (the action was ignored by the env).
        episode_start (T, B) bool: obs[t] is the first observation of an episode.
        core_state (B, H) float32: recurrent state before step 0.
        ep_returns, ep_lengths (K,): episodes completed during this rollout.
        text_hash (T, B) int64, text_count (T, B) int32 (with ``texts``): id of the text shown
            after step t (0: none) and how often it was shown so far in the episode.
    """
    t, b = rollout_len, num_envs
    arrays = {f"obs/{key}": ArraySpec(dtype, (t + 1, b, *shape))
              for key, (shape, dtype) in spec.obs_spec.items()}
    arrays.update(
        actions=ArraySpec("int64", (t, b)),
        logp=ArraySpec("float32", (t, b)),
        values=ArraySpec("float32", (t + 1, b)),
        rewards=ArraySpec("float32", (t, b)),
        terminated=ArraySpec("bool", (t, b)),
        truncated=ArraySpec("bool", (t, b)),
        valid=ArraySpec("bool", (t, b)),
        episode_start=ArraySpec("bool", (t, b)),
        core_state=ArraySpec("float32", (b, core_size)),
        ep_returns=ArraySpec("float32", (None,)),
        ep_lengths=ArraySpec("int32", (None,)),
    )
    if texts:
        arrays.update(text_hash=ArraySpec("int64", (t, b)), text_count=ArraySpec("int32", (t, b)))
    return WireSchema(kind=KIND_ROLLOUT, arrays=arrays, max_bytes=max_bytes)


def weights_schema(named_params: Mapping[str, np.ndarray], max_bytes: int) -> WireSchema:
    """Schema of a weights broadcast for a model with these named float32 tensors."""
    arrays = {name: ArraySpec(str(p.dtype), tuple(p.shape)) for name, p in named_params.items()}
    return WireSchema(kind=KIND_WEIGHTS, arrays=arrays, max_bytes=max_bytes)
