"""Many small per-env episodic memories in one tensor, searched in one batched op.

Episodic bonuses (NGU) keep one memory per env and query it once per env per step: B tiny
searches. One FAISS index per env means a Python loop of B searches per step; one shared index
cannot restrict a search to an env. A ``(B, S, E)`` tensor with a FIFO ring per row answers all
B queries with one batched matrix product and one top-k (``benchmarks/memory.py`` measures both:
RESULTS.md, "episodic memories"). Vectors are stored transposed, ``(B, E, S)``: the product
``(B, 1, E) @ (B, E, S)`` then streams each row's slots contiguously, 1.6x faster on one CPU
thread than the ``(B, S, E)`` layout, which in turn is slower than a loop of FAISS scans.

Shapes: B = rows (envs), S = allocated slots per row (grows by doubling up to ``capacity``),
E = ``dim``, k = neighbours.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EpisodicMemories"]


class EpisodicMemories:
    """B FIFO memories of E-vectors; each keeps its newest ``capacity`` vectors.

    Row ``b`` holds ``lens[b] = min(count[b], capacity)`` vectors in slots ``[0, lens[b])``;
    the next one goes to slot ``count[b] % capacity`` (over the oldest once full).
    """

    def __init__(self, rows: int, dim: int, capacity: int, device: str | torch.device = "cpu",
                 initial_slots: int = 256) -> None:
        """Empty memories.

        Args:
            rows: B.
            dim: E.
            capacity: Most vectors per row.
            device: Where the tensors live.
            initial_slots: Slots allocated before the first growth.
        """
        if rows < 0 or dim < 1 or capacity < 1:
            raise ValueError(f"need rows >= 0, dim >= 1, capacity >= 1; got {rows}, {dim}, "
                             f"{capacity}")
        self.dim, self.capacity = dim, capacity
        self.device = torch.device(device)
        slots = max(1, min(initial_slots, capacity))
        self.buf = torch.zeros(rows, dim, slots, device=self.device)  # (B, E, S)
        # (B, S) |v|^2 of stored slots, inf of empty ones: they then never come out of top-k
        self.sq_norms = torch.full((rows, slots), float("inf"), device=self.device)
        self.count = torch.zeros(rows, dtype=torch.long, device=self.device)  # (B,) ever added

    @property
    def lens(self) -> Tensor:
        """``(B,)`` vectors stored per row."""
        return self.count.clamp(max=self.capacity)

    def _grow(self, slots: int) -> None:
        """Reallocates to at least ``slots`` slots per row (doubling, capped at capacity)."""
        size = self.buf.shape[2]
        if slots <= size:
            return
        new = min(self.capacity, max(slots, 2 * size))
        rows = self.buf.shape[0]
        buf = torch.zeros(rows, self.dim, new, device=self.device)  # (B, E, S')
        buf[:, :, :size] = self.buf
        norms = torch.full((rows, new), float("inf"), device=self.device)
        norms[:, :size] = self.sq_norms
        self.buf, self.sq_norms = buf, norms

    def load(self, row: int, vectors: Tensor, count: int) -> None:
        """Puts a memory exported by ``export`` into ``row``.

        Args:
            row: b.
            vectors: ``(n, E)``, n = ``min(count, capacity)``.
            count: Vectors ever added to it (fixes the ring's next slot).
        """
        n = len(vectors)
        if n != min(count, self.capacity) or (n and vectors.shape[1] != self.dim):
            raise ValueError(f"memory of {count} additions must hold min(count, capacity="
                             f"{self.capacity}) vectors of width {self.dim}; got "
                             f"{tuple(vectors.shape)}")
        self._grow(n)
        vectors = vectors.to(self.device, torch.float32)
        self.buf[row, :, :n] = vectors.T
        self.sq_norms[row] = float("inf")
        self.sq_norms[row, :n] = vectors.square().sum(-1)
        self.count[row] = count

    def export(self, row: int) -> tuple[Tensor, int]:
        """Row ``b``'s vectors ``(n, E)`` (a copy, slot order) and its addition count."""
        n = int(self.lens[row])
        return self.buf[row, :, :n].T.clone(), int(self.count[row])

    def reset(self, rows: Tensor) -> None:
        """Empties the rows where ``rows`` ``(B,)`` is True."""
        rows = rows.to(self.device)
        self.count[rows] = 0
        self.sq_norms[rows] = float("inf")

    def add(self, x: Tensor, rows: Tensor) -> None:
        """Adds ``x[b]`` ``(B, E)`` to each row where ``rows`` ``(B,)`` is True (FIFO)."""
        rows = rows.to(self.device)
        index = rows.nonzero().flatten()  # (n,)
        if len(index) == 0:
            return
        self._grow(int(self.count[index].max()) + 1)
        slot = self.count[index] % self.capacity  # (n,)
        value = x[index].to(self.device, torch.float32)  # (n, E)
        self.buf[index, :, slot] = value
        self.sq_norms[index, slot] = value.square().sum(-1)
        self.count[index] += 1

    def knn(self, x: Tensor, rows: Tensor, k: int) -> Tensor:
        """Squared L2 distances from ``x[b]`` ``(B, E)`` to the k nearest vectors of row b.

        Returns:
            ``(B, k)`` ascending; ``inf`` where a row has fewer than k vectors or is not in
            ``rows``.
        """
        x = x.to(self.device, torch.float32)
        d2 = torch.full((len(x), k), float("inf"), device=self.device)
        size = self.buf.shape[2]
        # |v - x|^2 = (|v|^2 - 2 v.x) + |x|^2: one fused batched product, (B, 1, E) @ (B, E, S),
        # ranked before the per-query constant is added (empty slots hold inf)
        partial = torch.baddbmm(self.sq_norms.unsqueeze(1), x.unsqueeze(1), self.buf,
                                alpha=-2.0).squeeze(1)  # (B, S)
        near = partial.topk(min(k, size), largest=False).values  # (B, k')
        near = (near + x.square().sum(-1, keepdim=True)).clamp(min=0.0)
        d2[:, :near.shape[1]] = torch.where(torch.isfinite(near), near, d2[:, :near.shape[1]])
        return torch.where(rows.to(self.device).unsqueeze(1), d2, torch.full_like(d2,
                                                                                  float("inf")))
