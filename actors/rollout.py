"""Preallocated rollout storage, one set per in-flight message.

Arrays are sent zero-copy, so a set must not be overwritten while ZeroMQ still reads it. The
ring hands out sets round-robin and waits on the previous send's tracker before reusing one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import zmq

from explorer.core.specs import EnvSpec

__all__ = ["RolloutRing", "RolloutStorage", "ring_sets"]

#: Longest single wait on a send tracker; ``on_wait`` runs between waits (heartbeat, stop).
WAIT_SLICE_S = 0.1


def ring_sets(send_hwm: int) -> int:
    """Sets an actor's ring needs so that ZeroMQ's queue, not the ring, makes it wait.

    Up to ``send_hwm`` sent messages wait in the socket's queue, one more is held by ZeroMQ's
    I/O thread while it writes it out, and one set is being filled: ``send_hwm + 2``. With
    fewer sets the actor would wait on a tracker before the queue is even full; more would
    only cost memory (a set is a whole rollout). Waits remain possible (the I/O thread may
    release a message a little after the queue frees its slot), so ``next`` waits in slices.
    """
    return send_hwm + 2


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
    """``num_sets`` storages used in turn; ``next()`` waits until the oldest send is done."""

    def __init__(self, spec: EnvSpec, rollout_len: int, num_envs: int, core_size: int,
                 num_sets: int, text_units: int = 0) -> None:
        self._sets = [RolloutStorage(spec, rollout_len, num_envs, core_size, text_units)
                      for _ in range(num_sets)]
        self._index = -1

    def next(self, on_wait: Callable[[], None]) -> RolloutStorage:
        """The next set, once ZeroMQ no longer reads it.

        A stalled learner can hold a send forever, so the wait goes in slices of
        ``WAIT_SLICE_S`` with ``on_wait()`` called after each: the actor heartbeats there and
        raises to give up when told to stop.
        """
        self._index = (self._index + 1) % len(self._sets)
        storage = self._sets[self._index]
        if storage.tracker is not None:
            _wait_in_slices(storage.tracker, on_wait)
            storage.tracker = None
        return storage


def _wait_in_slices(tracker: zmq.MessageTracker, on_wait: Callable[[], None]) -> None:
    while True:
        try:
            tracker.wait(WAIT_SLICE_S)
            return
        except zmq.NotDone:
            on_wait()
