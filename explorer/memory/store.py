"""A bounded retrieval memory: FAISS keys with payloads, evicted in blocks.

``RetrievalMemory`` is what an agent or a bonus talks to: it stores keys ``(N, D)`` together
with named payload arrays (trajectory chunks, episode ids, step indices, ...), searches many
queries at once and returns the payloads of the neighbours found. The FAISS index
(``EmbeddingMemory``) stores each key under its *slot*, the row of the payload arrays that holds
its payload, so a search result indexes the payloads directly.

Capacity. The memory never holds more than ``capacity`` entries. When an add finds too few free
slots, it frees a block of ``evict_block`` entries (at least as many as it needs) with one FAISS
``remove_ids`` call: the oldest entries (``fifo``) or a uniform random draw of the stored ones
(``reservoir``; a new entry is only kept with probability ``capacity / seen``, so the memory
stays a uniform sample of everything offered). A removal scans the index (O(n)), so paying it
once per block keeps inserts amortised O(n / evict_block), never O(n) each.

Shapes: N = entries added, Q = queries, k = neighbours, D = ``dim``; a payload named ``p`` with
per-entry shape ``S`` is stored as ``(capacity, *S)`` and returned as ``(Q, k, *S)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from explorer.memory.index import EmbeddingMemory

__all__ = ["EVICTIONS", "PayloadSpec", "RetrievalMemory", "Retrieved"]

EVICTIONS = ("fifo", "reservoir")

#: Payload name -> (per-entry shape, numpy dtype name), e.g. ``{"step": ((), "int64")}``.
PayloadSpec = Mapping[str, tuple[tuple[int, ...], str]]


@dataclass
class Retrieved:
    """One batched search: neighbours nearest first, missing ones marked invalid.

    Attributes:
        distances: ``(Q, k)`` float32; ``inf`` (l2) / ``-inf`` (ip) where missing.
        slots: ``(Q, k)`` int64 payload rows; -1 where missing.
        valid: ``(Q, k)`` bool, ``slots >= 0``.
        payloads: Name -> ``(Q, k, *shape)``; zeros where missing.
    """

    distances: np.ndarray
    slots: np.ndarray
    valid: np.ndarray
    payloads: dict[str, np.ndarray]


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class RetrievalMemory:
    """Keys in a FAISS index, payloads in arrays, at most ``capacity`` entries.

    Attributes:
        dim: D, the key width.
        capacity: Most entries held.
        eviction: ``fifo`` or ``reservoir``.
        evict_block: Entries freed per eviction.
        seen: Entries offered to ``add`` since creation (reservoir's denominator).
    """

    def __init__(self, dim: int, capacity: int, payloads: PayloadSpec | None = None, *,
                 eviction: str = "fifo", evict_block: int | None = None, seed: int = 0,
                 **index_options: Any) -> None:
        """Creates an empty memory.

        Args:
            dim: D, the key width.
            capacity: Most entries held (>= 1).
            payloads: Payload name -> (per-entry shape, dtype name); none: keys only.
            eviction: ``fifo`` (drop the oldest) or ``reservoir`` (uniform sample of all
                entries ever offered).
            evict_block: Entries freed per eviction (default ``max(1, capacity // 64)``).
            seed: Seeds reservoir's draws.
            **index_options: ``EmbeddingMemory`` options (``kind``, ``metric``, ``use_gpu``,
                ``nlist``, ``nprobe``, ``ivf_train_size``, ``hnsw_*``).

        Raises:
            ValueError: A bad size, eviction, payload spec or index option (named).
        """
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        if eviction not in EVICTIONS:
            raise ValueError(f"unknown eviction {eviction!r}; valid: {list(EVICTIONS)}")
        block = max(1, capacity // 64) if evict_block is None else int(evict_block)
        if not 1 <= block <= capacity:
            raise ValueError(f"evict_block must be in [1, capacity={capacity}]; got {block}")
        try:
            self.index = EmbeddingMemory(dim, **index_options)
        except TypeError as err:  # an unknown keyword
            raise ValueError(f"memory index options: {err}") from None
        self.dim, self.capacity = int(dim), int(capacity)
        self.eviction, self.evict_block = eviction, block
        self.payload_spec = {name: (tuple(int(s) for s in shape), np.dtype(dtype).name)
                             for name, (shape, dtype) in dict(payloads or {}).items()}
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        """Forgets every entry (and the reservoir's count and RNG state)."""
        self.index.reset()
        self.payloads = {name: np.zeros((self.capacity, *shape), dtype)  # (C, *shape)
                         for name, (shape, dtype) in self.payload_spec.items()}
        self.added_at = np.full(self.capacity, -1, np.int64)  # (C,) insertion number, -1 free
        self._free = np.arange(self.capacity - 1, -1, -1, dtype=np.int64)  # stack; pops slot 0
        self._next_age = 0
        self.seen = 0
        self._rng = np.random.default_rng(self._seed)

    def __len__(self) -> int:
        return len(self.index)

    # -- writing ---------------------------------------------------------------------------

    def _check_payloads(self, payloads: Mapping[str, Any], count: int) -> dict[str, np.ndarray]:
        names, want = set(payloads), set(self.payload_spec)
        if names != want:
            raise ValueError(f"payloads must be exactly {sorted(want)}; got {sorted(names)}")
        out = {}
        for name, (shape, dtype) in self.payload_spec.items():
            value = _as_array(payloads[name])
            if value.shape != (count, *shape):
                raise ValueError(f"payload {name!r} must have shape {(count, *shape)}; got "
                                 f"{value.shape}")
            out[name] = value.astype(dtype, copy=False)
        return out

    def _evict(self, needed: int) -> None:
        """Frees at least ``needed`` slots (a whole block) with one index removal."""
        live = np.flatnonzero(self.added_at >= 0)
        count = min(len(live), max(needed, self.evict_block))
        if self.eviction == "fifo":
            victims = live[np.argpartition(self.added_at[live], count - 1)[:count]]
        else:
            victims = self._rng.choice(live, size=count, replace=False)
        self.index.remove(victims)
        self.added_at[victims] = -1
        self._free = np.concatenate([self._free, np.sort(victims)[::-1]])

    def add(self, keys: Any, payloads: Mapping[str, Any] | None = None) -> np.ndarray:
        """Stores entries, evicting a block first when full.

        Args:
            keys: ``(N, D)`` float array or tensor, finite.
            payloads: Name -> ``(N, *shape)`` for every payload of the spec.

        Returns:
            ``(N,)`` int64 slots the entries went to; -1 for entries reservoir did not keep
            (and, if N > capacity, for all but the last ``capacity``).

        Raises:
            ValueError: Wrong key shape, NaN/inf keys, missing or misshapen payloads.
        """
        keys = _as_array(keys)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}); got {keys.shape}")
        count = len(keys)
        values = self._check_payloads(payloads or {}, count)
        if not np.isfinite(keys).all():
            raise ValueError("keys hold NaN or inf")
        keep = np.ones(count, bool)
        if self.eviction == "reservoir":
            seen = self.seen + np.arange(1, count + 1)  # (N,) each entry's stream position
            # the stream's first C entries are all kept; later ones with probability C / seen
            # (slots freed by a block eviction wait for those, they are no free pass)
            draws = self._rng.random(count)  # (N,)
            keep = (seen <= self.capacity) | (draws < self.capacity / seen)
        keep[:max(0, count - self.capacity)] = False  # more than fit: the last C win
        self.seen += count
        slots = np.full(count, -1, np.int64)
        take = np.flatnonzero(keep)
        if len(take) == 0:
            return slots
        free = self.capacity - len(self)
        if free < len(take):
            self._evict(len(take) - free)
        targets = self._free[::-1][:len(take)].copy()  # (n,) from the top of the stack
        self.index.add(keys[take], payload_ids=targets)
        self._free = self._free[:len(self._free) - len(take)]
        self.added_at[targets] = self._next_age + np.arange(len(take))
        self._next_age += len(take)
        for name, value in values.items():
            self.payloads[name][targets] = value[take]
        slots[take] = targets
        return slots

    def remove(self, slots: Any) -> int:
        """Deletes the entries in ``slots`` ``(M,)`` (free or unknown slots are ignored)."""
        slots = _as_array(slots).astype(np.int64).reshape(-1)
        slots = np.unique(slots[(slots >= 0) & (slots < self.capacity)])
        slots = slots[self.added_at[slots] >= 0]
        if len(slots) == 0:
            return 0
        removed = self.index.remove(slots)
        self.added_at[slots] = -1
        self._free = np.concatenate([self._free, slots[::-1]])
        return removed

    def replace_keys(self, slots: Any, keys: Any) -> None:
        """Re-keys stored entries (payloads and age kept): the refresh after an encoder change.

        Args:
            slots: ``(M,)`` stored slots.
            keys: ``(M, D)`` their new keys.
        """
        slots = _as_array(slots).astype(np.int64).reshape(-1)
        if (slots < 0).any() or (slots >= self.capacity).any() or \
                (self.added_at[slots] < 0).any() or len(np.unique(slots)) != len(slots):
            raise ValueError("replace_keys needs distinct stored slots")
        keys = _as_array(keys)
        if keys.shape != (len(slots), self.dim) or not np.isfinite(keys).all():
            raise ValueError(f"keys must be finite with shape {(len(slots), self.dim)}; got "
                             f"{keys.shape}")
        self.index.remove(slots)
        self.index.add(keys, payload_ids=slots)

    def stored_slots(self) -> np.ndarray:
        """``(N,)`` slots of the stored entries, oldest first."""
        live = np.flatnonzero(self.added_at >= 0)
        return live[np.argsort(self.added_at[live], kind="stable")]

    # -- reading ---------------------------------------------------------------------------

    def search(self, queries: Any, k: int) -> Retrieved:
        """The k nearest stored entries of each query, with their payloads.

        An empty memory, or one holding fewer than k entries, returns the missing neighbours
        as invalid (slot -1, payload zeros): a defined result, not an error.

        Args:
            queries: ``(Q, D)`` float array or tensor, finite.
            k: Neighbours per query (>= 1).

        Raises:
            ValueError: Wrong query shape, NaN/inf queries, k < 1.
        """
        distances, slots = self.index.search(queries, k)  # (Q, k) each
        valid = slots >= 0
        safe = np.where(valid, slots, 0)
        payloads = {}
        for name, store in self.payloads.items():
            picked = store[safe]  # (Q, k, *shape)
            mask = valid.reshape(valid.shape + (1,) * (picked.ndim - 2))
            payloads[name] = np.where(mask, picked, np.zeros((), store.dtype))
        return Retrieved(distances, slots, valid, payloads)

    # -- persistence -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Index, payloads, ages and RNG as tensors and plain values (``weights_only``-safe)."""
        return {
            "index": self.index.state_dict(),
            "payloads": {name: torch.from_numpy(value.copy())
                         for name, value in self.payloads.items()},
            "added_at": torch.from_numpy(self.added_at.copy()),
            "seen": self.seen,
            "config": self.state_dict_config(),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores ``state_dict`` output of a memory built with the same arguments.

        Raises:
            ValueError: The saved memory differs in dim, capacity, eviction or payloads.
            CorruptMemoryError: Its index is damaged (checksum or parse failure).
        """
        config = state["config"]
        mine = self.state_dict_config()
        diff = [key for key in mine if config.get(key) != mine[key]]
        if diff:
            raise ValueError(f"saved memory differs in {diff}: saved "
                             f"{ {k: config.get(k) for k in diff} }, this one "
                             f"{ {k: mine[k] for k in diff} }")
        added_at = state["added_at"].numpy().astype(np.int64)
        self.index.load_state_dict(state["index"])
        if int((added_at >= 0).sum()) != len(self.index):
            raise ValueError(f"saved memory holds {len(self.index)} keys but "
                             f"{int((added_at >= 0).sum())} payload rows")
        self.added_at = added_at.copy()
        free = np.flatnonzero(added_at < 0)
        self._free = free[::-1].copy()
        self._next_age = int(added_at.max()) + 1
        self.payloads = {name: state["payloads"][name].numpy().copy() for name in self.payloads}
        self.seen = int(state["seen"])
        self._rng.bit_generator.state = state["rng"]

    def state_dict_config(self) -> dict[str, Any]:
        """What must match between a saved memory and the one loading it."""
        return {"dim": self.dim, "capacity": self.capacity, "eviction": self.eviction,
                "evict_block": self.evict_block,
                "payloads": {n: [list(s), d] for n, (s, d) in self.payload_spec.items()}}
