"""Count-based exploration: ``beta / sqrt(N(s'))`` over exact (hashed) observations.

Observations are identified by a 64-bit BLAKE2b digest of the raw bytes of their arrays, so
counts are stable across processes and checkpoints (unlike Python's salted ``hash``).

Every env's stream of observations is counted once: ``obs[t+1]`` of each transition (masked
auto-reset steps included: their ``obs[t+1]`` is a real first observation of an episode), plus
``obs[0]`` where it is not the previous batch's ``obs[T]`` (an env id seen for the first time,
or, per episode, an ``episode_start[0]``). ``N(s')`` includes the visit being rewarded, so the
first visit earns ``beta``. ``compute`` only reads the table (this batch's own visits are
counted on the side); ``update`` commits the batch.

Shapes: T = time steps, B = envs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from explorer.core.networks import ObsSpec
from explorer.intrinsic.base import TransitionBatch, register_intrinsic

__all__ = ["CountBonus", "VisitCounter", "env_ids_list", "hash_observations"]

#: Table key of the non-episodic counter (env ids are >= 0).
_GLOBAL = -1


def hash_observations(obs: Mapping[str, Tensor], keys: Sequence[str]) -> np.ndarray:
    """64-bit digest of each observation's raw bytes (all ``keys`` together).

    Args:
        obs: Key -> ``(T', B, *shape)`` observations.
        keys: Keys to hash, in a fixed order.

    Returns:
        ``(T', B)`` int64 digests.
    """
    lead = tuple(obs[keys[0]].shape[:2])
    n = lead[0] * lead[1]
    parts = [np.ascontiguousarray(obs[k].detach().cpu().numpy()).reshape(n, -1).view(np.uint8)
             for k in keys]
    rows = np.ascontiguousarray(np.concatenate(parts, axis=1))  # (n, bytes per observation)
    digests = (int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "little",
                              signed=True) for row in rows)
    return np.fromiter(digests, dtype=np.int64, count=n).reshape(lead)


class VisitCounter:
    """Visit counts of hashed observations: over all time, or per env within its episode.

    Attributes:
        episodic: Per-env tables reset at episode starts (else one global table).
        tables: Table key (env id, or -1 for the global table) -> digest -> count.
        known_envs: Env ids whose observation stream has been counted before.
    """

    def __init__(self, episodic: bool) -> None:
        self.episodic = episodic
        self.tables: dict[int, dict[int, int]] = {}
        self.known_envs: set[int] = set()

    def scan(self, hashes: np.ndarray, episode_start: np.ndarray, env_ids: Sequence[int],
             commit: bool) -> np.ndarray:
        """Counts the batch's observations in time-major order.

        Args:
            hashes: ``(T+1, B)`` observation digests.
            episode_start: ``(T+1, B)`` bool, ``obs[t]`` starts an episode.
            env_ids: ``B`` stable env ids.
            commit: Store the new counts (else the tables are left unchanged).

        Returns:
            ``(T, B)`` int64 count of ``obs[t+1]`` (in its episode, if episodic) including
            this visit.
        """
        steps, num_envs = hashes.shape[0] - 1, hashes.shape[1]
        codes, starts = hashes.tolist(), np.asarray(episode_start, dtype=bool).tolist()
        keys = list(env_ids) if self.episodic else [_GLOBAL] * num_envs
        pending: dict[int, dict[int, int]] = {}  # table key -> this batch's counts
        fresh: set[int] = set()  # tables reset in this batch: stored counts are stale

        def visit(key: int, code: int) -> int:
            local = pending.setdefault(key, {})
            local[code] = local.get(code, 0) + 1
            stored = 0 if key in fresh else self.tables.get(key, {}).get(code, 0)
            return stored + local[code]

        def maybe_reset(key: int, start: bool) -> None:
            if self.episodic and start:
                pending[key] = {}
                fresh.add(key)

        for b, env in enumerate(env_ids):
            new_env = env not in self.known_envs
            if new_env or (self.episodic and starts[0][b]):
                maybe_reset(keys[b], True)
                visit(keys[b], codes[0][b])
        counts = np.zeros((steps, num_envs), dtype=np.int64)
        for t in range(steps):
            for b in range(num_envs):
                maybe_reset(keys[b], starts[t + 1][b])
                counts[t, b] = visit(keys[b], codes[t + 1][b])
        if commit:
            self._commit(pending, fresh)
            self.known_envs.update(int(e) for e in env_ids)
        return counts

    def _commit(self, pending: dict[int, dict[int, int]], fresh: set[int]) -> None:
        for key, local in pending.items():
            if key in fresh:
                self.tables[key] = local
                continue
            table = self.tables.setdefault(key, {})
            for code, count in local.items():
                table[code] = table.get(code, 0) + count

    def state_dict(self) -> dict[str, Any]:
        return {
            "tables": {key: (torch.tensor(list(t.keys()), dtype=torch.int64),
                             torch.tensor(list(t.values()), dtype=torch.int64))
                       for key, t in self.tables.items()},
            "known_envs": sorted(self.known_envs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tables = {int(key): dict(zip(codes.tolist(), counts.tolist(), strict=True))
                       for key, (codes, counts) in state["tables"].items()}
        self.known_envs = {int(e) for e in state["known_envs"]}


def env_ids_list(env_ids: Tensor) -> list[int]:
    """``(B,)`` env id tensor -> list of ints."""
    return [int(e) for e in env_ids.reshape(-1).tolist()]


@register_intrinsic("counts")
class CountBonus:
    """``beta / sqrt(N(obs[t+1]))`` with exact counts of hashed observations."""

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        beta: float = 1.0,
        episodic: bool = False,
        hash_keys: Sequence[str] | None = None,
    ) -> None:
        """Starts with empty counts.

        Args:
            obs_spec: Observation spec.
            num_actions: Unused.
            seed: Unused (counting is deterministic).
            device: Unused (bonuses are returned on the batch's device).
            beta: Bonus scale.
            episodic: Count per env within the current episode instead of over all time.
            hash_keys: Observation keys identifying a state (default: every key of the spec).
        """
        del num_actions, seed, device
        self.beta = beta
        self.hash_keys = tuple(sorted(obs_spec) if hash_keys is None else hash_keys)
        self.counter = VisitCounter(episodic)

    def _counts(self, batch: TransitionBatch, commit: bool) -> np.ndarray:
        hashes = hash_observations(batch.obs, self.hash_keys)  # (T+1, B)
        return self.counter.scan(hashes, batch.episode_start.cpu().numpy(),
                                 env_ids_list(batch.env_ids), commit)

    def compute(self, batch: TransitionBatch) -> Tensor:
        """``beta / sqrt(N(obs[t+1]))``, this visit included; tables unchanged.

        Args:
            batch: Transitions.

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device, 0 where ``mask == 0``.
        """
        counts = torch.from_numpy(self._counts(batch, commit=False)).to(batch.mask.device)
        bonus = (self.beta / counts.double().sqrt()).float()
        return torch.where(batch.mask > 0, bonus, torch.zeros_like(bonus))

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Adds the batch's visits to the counts.

        Returns:
            ``{"states": number of distinct observations in the table(s)}``.
        """
        self._counts(batch, commit=True)
        return {"states": float(sum(len(t) for t in self.counter.tables.values()))}

    def state_dict(self) -> dict[str, Any]:
        return {"counter": self.counter.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counter.load_state_dict(state["counter"])
