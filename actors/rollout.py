"""Preallocated rollout storage, one set per in-flight message.

Arrays are sent zero-copy, so a set must not be overwritten while ZeroMQ still reads it. The
ring hands out sets round-robin and waits on the previous send's tracker before reusing one.
"""

from __future__ import annotations

import numpy as np
import zmq

from explorer.core.specs import EnvSpec

__all__ = ["RolloutRing", "RolloutStorage"]


class RolloutStorage:
    """Arrays of one rollout, time-major: (T+1, B, ...) for obs/values, (T, B) for the rest."""

    def __init__(self, spec: EnvSpec, rollout_len: int, num_envs: int, core_size: int,
                 text_units: int = 0) -> None:
        t, b, u = rollout_len, num_envs, text_units
        self.obs = {k: np.zeros((t + 1, b, *shape), dtype=dtype)  # (T+1, B, *obs_shape)
                    for k, (shape, dtype) in spec.obs_spec.items()}
        self.actions = np.zeros((t, b), dtype=np.int64)
        self.logp = np.zeros((t, b), dtype=np.float32)
        self.values = np.zeros((t + 1, b), dtype=np.float32)
        self.rewards = np.zeros((t, b), dtype=np.float32)
        self.terminated = np.zeros((t, b), dtype=bool)
        self.truncated = np.zeros((t, b), dtype=bool)
        self.valid = np.zeros((t, b), dtype=bool)
        self.episode_start = np.zeros((t, b), dtype=bool)
        self.core_state = np.zeros((b, core_size), dtype=np.float32)
        self.text_hash = np.zeros((t, b, u), dtype=np.int64) if u else None
        self.text_count = np.zeros((t, b, u), dtype=np.int32) if u else None
        self.tracker: zmq.MessageTracker | None = None

    def arrays(self, ep_returns: np.ndarray, ep_lengths: np.ndarray) -> dict[str, np.ndarray]:
        """The named arrays of the wire schema (see ``explorer.core.specs.rollout_schema``)."""
        out = {f"obs/{k}": v for k, v in self.obs.items()}
        out.update(
            actions=self.actions, logp=self.logp, values=self.values, rewards=self.rewards,
            terminated=self.terminated, truncated=self.truncated, valid=self.valid,
            episode_start=self.episode_start, core_state=self.core_state,
            ep_returns=ep_returns, ep_lengths=ep_lengths,
        )
        if self.text_hash is not None:
            out.update(text_hash=self.text_hash, text_count=self.text_count)
        return out


class RolloutRing:
    """``num_sets`` storages used in turn; ``next()`` blocks until the oldest send is done."""

    def __init__(self, spec: EnvSpec, rollout_len: int, num_envs: int, core_size: int,
                 num_sets: int, text_units: int = 0) -> None:
        self._sets = [RolloutStorage(spec, rollout_len, num_envs, core_size, text_units)
                      for _ in range(num_sets)]
        self._index = -1

    def next(self) -> RolloutStorage:
        self._index = (self._index + 1) % len(self._sets)
        storage = self._sets[self._index]
        if storage.tracker is not None:
            storage.tracker.wait()
            storage.tracker = None
        return storage
