"""Incremental exact k-nearest-neighbour search over a growing set of descriptors.

Novelty search queries a few hundred descriptors per generation against an archive that only
grows. pyribs' ``ProximityArchive`` rebuilds a KD-tree over the whole archive on every add,
O(N log N) per generation. Here additions are O(1) amortised:

* ``kdtree`` (low dimension): a SciPy ``cKDTree`` over the bulk of the points plus a small
  tree over the tail of recent points (cheap to rebuild); the big tree is rebuilt only when
  the tail grows past ``rebuild_fraction`` of it, so its cost is amortised over many adds.
  Trees are built unbalanced and uncompacted (sliding-midpoint splits): 2x faster to build
  at 20k points, and as fast to query on descriptor data. Tails of at most 64 points are
  searched by one ``cdist``. Novelty (:meth:`IncrementalKNN.novelty_distances`) searches the
  batch and the tail with a grid of cells as wide as the largest k-th distance the big tree
  found (3 x 3 cells a query, vectorised), or where that finds too many candidates with one
  small tree bounded by that distance: no dense batch distance matrix.
* ``faiss``: ``explorer.memory.EmbeddingMemory`` (an exact flat FAISS index), for wider
  descriptors (e.g. STAX latents) where trees lose to brute force.

Shapes: N = stored points, Q = queries, D = ``dim``, k = neighbours. Distances are Euclidean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

__all__ = ["KNN_BACKENDS", "IncrementalKNN", "brute_force_knn"]

KNN_BACKENDS = ("auto", "kdtree", "faiss")
_AUTO_KDTREE_MAX_DIM = 8
_MIN_TAIL = 256
_BRUTE_TAIL = 64  # tails up to this size are searched by cdist, not a tree
_GRID_MARGIN = 1e-6  # novelty's grid cells are this fraction wider than the largest r
_GRID_MAX_CELLS = 200  # per axis: cell numbers stay below 2**16
_GRID_MAX_CANDIDATES = 32  # per query, on average; beyond, a small tree is cheaper


def _tree(points: np.ndarray) -> cKDTree:
    return cKDTree(points, balanced_tree=False, compact_nodes=False)


def brute_force_knn(queries: np.ndarray, points: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Reference k-NN by full distance matrix: ``(Q, k)`` float64 distances and int64 ids,
    nearest first; missing neighbours are ``inf`` / ``-1``."""
    queries = np.asarray(queries, np.float64)
    points = np.asarray(points, np.float64)
    q = len(queries)
    dist = np.full((q, k), np.inf)
    ids = np.full((q, k), -1, np.int64)
    if len(points) == 0 or q == 0:
        return dist, ids
    full = np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(-1))  # (Q, N)
    m = min(k, len(points))
    if m < len(points):  # k smallest unordered, then order only those
        part = np.argpartition(full, m - 1, axis=1)[:, :m]
        pd = np.take_along_axis(full, part, axis=1)
        order = np.take_along_axis(part, np.argsort(pd, axis=1, kind="stable"), axis=1)
    else:
        order = np.argsort(full, axis=1, kind="stable")
    dist[:, :m] = np.take_along_axis(full, order, axis=1)
    ids[:, :m] = order
    return dist, ids


def _cdist_knn(queries: np.ndarray, points: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``brute_force_knn`` for small point sets: one ``cdist`` (same formula, in C), the k
    smallest by ``argpartition``, only those sorted. ``(Q, k)`` distances and ids."""
    q, n = len(queries), len(points)
    if n <= k:
        dist = np.full((q, k), np.inf)
        ids = np.full((q, k), -1, np.int64)
        if n:
            full = cdist(queries, points)  # (Q, N)
            order = np.argsort(full, axis=1, kind="stable")
            dist[:, :n] = np.take_along_axis(full, order, axis=1)
            ids[:, :n] = order
        return dist, ids
    full = cdist(queries, points)  # (Q, N)
    part = np.argpartition(full, k - 1, axis=1)[:, :k]
    pd = np.take_along_axis(full, part, axis=1)
    order = np.argsort(pd, axis=1, kind="stable")
    return np.take_along_axis(pd, order, axis=1), np.take_along_axis(part, order, axis=1)


def _merge(d1: np.ndarray, i1: np.ndarray, d2: np.ndarray, i2: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """k smallest of two neighbour lists per row (``(Q, k1)`` + ``(Q, k2)`` -> ``(Q, k)``)."""
    d = np.concatenate([d1, d2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def _sqnorms(diff: np.ndarray) -> np.ndarray:
    """``(D, M)`` coordinate differences -> ``(M,)`` squared norms, summed in cKDTree's order
    (four running sums over blocks of four coordinates, added in turn, then the rest one by
    one): their square roots equal the tree's distances bit for bit."""
    sq = diff * diff  # (D, M)
    dim = len(sq)
    if dim >= 4:
        acc = sq[0:4]
        for b in range(4, dim - dim % 4, 4):
            acc = acc + sq[b: b + 4]
        total, rest = ((acc[0] + acc[1]) + acc[2]) + acc[3], dim - dim % 4
    else:
        total, rest = sq[0], 1
    for c in range(rest, dim):
        total = total + sq[c]
    return total


def _grid_near(coords: np.ndarray, dist: np.ndarray) -> np.ndarray | None:
    """Adds to each query's k nearest ``dist`` (``(Q, k)``, sorted, finite) the points of
    ``coords`` (``(D, N)``, one column a point, the first Q the queries) nearer than its k-th,
    itself left out: the lists a small tree over those points would give, without one.

    A point can only enter a query's list if it lies within r (the k-th distance) of it on
    every axis. The points are binned on their first two axes (one if D = 1) into square cells at
    least max r wide, a hair more so that rounding can only add candidates; a query's
    candidates are then the 3 x 3 cells around its own: three runs of the points ordered by
    cell (a radix sort of 16-bit cell numbers, runs by a cumulative count). Their exact
    distances, computed as the tree computes them, decide. Returns None when the candidates
    are too many (clustered points): the caller builds the tree instead.
    """
    q, k = dist.shape
    r = dist[:, -1]  # (Q,) each query's k-th distance
    bound = float(r.max())
    if bound == 0.0:  # k exact twins everywhere: nothing is nearer
        return dist
    binned = coords[:2]  # (B, N): the first B <= 2 axes are binned
    low, high = binned.min(axis=1), binned.max(axis=1)  # (B,)
    extent = float((high - low).max())
    if not math.isfinite(extent):
        return None
    side = max(bound * (1 + _GRID_MARGIN), extent / _GRID_MAX_CELLS)  # > every r
    cells = ((binned - low[:, None]) / side).astype(np.int64)  # (B, N); truncation = floor
    # with an empty cell before and after on each axis, every neighbour cell exists; the
    # largest cell number per axis, int((high - low) / side), is the same float arithmetic
    size = [int((float(h) - float(lo)) / side) + 3 for h, lo in zip(high, low, strict=True)]
    n_cells = size[0] * size[-1] ** (len(size) - 1)
    if n_cells > 2**16:  # only with subnormal distances: 16-bit cell numbers would wrap
        return None
    cell = (cells[0] * size[1] + cells[1] + (size[1] + 1) if len(size) == 2  # (N,) row-major
            else cells[0] + 1)  # numbered from 1 on each axis
    order = np.argsort(cell.astype(np.uint16), kind="stable")  # radix sort
    first = np.zeros(n_cells + 1, np.int64)  # (cells + 1,)
    np.cumsum(np.bincount(cell, minlength=n_cells), out=first[1:])  # run starts
    if len(size) == 2:  # three runs a query: rows x - 1, x, x + 1 of cells y - 1 .. y + 1
        low_cell = (cell[:q, None] + np.array([-size[1] - 1, -1, size[1] - 1])).ravel()
        who_run = np.arange(q).repeat(3)  # (3Q,)
    else:
        low_cell, who_run = cell[:q] - 1, np.arange(q)
    start = first[low_cell]
    counts = first[low_cell + 3] - start  # three cells a run
    total = int(counts.sum())
    if total > _GRID_MAX_CANDIDATES * q:
        return None
    who = np.repeat(who_run, counts)  # (C,) query of each candidate
    idx = order[np.arange(total) + np.repeat(start - (np.cumsum(counts) - counts), counts)]
    d = np.sqrt(_sqnorms(coords.take(idx, axis=1) - coords.take(who, axis=1)))  # (C,)
    enters = (d < r[who]) & (idx != who)  # nearer than the k-th, and not itself
    if not enters.any():
        return dist
    who, d = who[enters], d[enters]  # sorted: runs are in query order
    col = np.arange(len(who)) - np.searchsorted(who, who)  # rank within its query's entries
    new = np.full((q, int(col.max()) + 1), np.inf)  # (Q, most entering one row)
    new[who, col] = d
    hit = who[col == 0]  # rows that change
    dist[hit] = np.sort(np.concatenate([dist[hit], new[hit]], axis=1), axis=1)[:, :k]
    return dist


class IncrementalKNN:
    """Exact k-NN over points that are only ever appended (ids are insertion order).

    Args:
        dim: D, the descriptor width.
        backend: ``kdtree``, ``faiss`` or ``auto`` (``kdtree`` up to D = 8).
        rebuild_fraction: ``kdtree`` only: rebuild the big tree once the tail of points added
            since holds this fraction of its points (at least 256 points).
    """

    def __init__(self, dim: int, *, backend: str = "auto", rebuild_fraction: float = 0.08
                 ) -> None:
        if backend not in KNN_BACKENDS:
            raise ValueError(f"unknown kNN backend {backend!r}; valid: {list(KNN_BACKENDS)}")
        if dim <= 0:
            raise ValueError(f"dim must be positive; got {dim}")
        if backend == "auto":
            backend = "kdtree" if dim <= _AUTO_KDTREE_MAX_DIM else "faiss"
        self.dim, self.backend = int(dim), backend
        self.rebuild_fraction = float(rebuild_fraction)
        self._points = np.zeros((256, self.dim), np.float64)  # (capacity, D), grows x2
        self._n = 0
        self._tree: cKDTree | None = None
        self._tail_tree: cKDTree | None = None
        self._n_tree = 0
        self._memory: Any = None
        if backend == "faiss":
            from explorer.memory.index import EmbeddingMemory

            self._memory = EmbeddingMemory(self.dim, kind="flat", metric="l2", use_gpu=False)

    def __len__(self) -> int:
        return self._n

    @property
    def points(self) -> np.ndarray:
        """``(N, D)`` float64 view of the stored points (do not modify)."""
        return self._points[: self._n]

    def add(self, points: np.ndarray) -> None:
        """Appends ``(M, D)`` points; they get ids ``N .. N + M - 1``."""
        points = np.asarray(points, np.float64).reshape(-1, self.dim)
        if not len(points):
            return
        need = self._n + len(points)
        if need > len(self._points):
            grown = np.zeros((max(need, 2 * len(self._points)), self.dim), np.float64)
            grown[: self._n] = self._points[: self._n]
            self._points = grown
        self._points[self._n: need] = points
        self._n = need
        self._tail_tree = None
        if self._memory is not None:
            self._memory.add(points.astype(np.float32))
        elif need - self._n_tree > max(_MIN_TAIL, self.rebuild_fraction * self._n_tree):
            self._rebuild()

    def _rebuild(self) -> None:
        self._tree = _tree(self._points[: self._n].copy())
        self._n_tree = self._n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest stored points of each query, nearest first.

        Args:
            queries: ``(Q, D)`` floats.
            k: Neighbours per query (>= 1).

        Returns:
            distances ``(Q, k)`` float64 (Euclidean) and ids ``(Q, k)`` int64; missing
            neighbours (fewer than k stored) are ``inf`` and ``-1``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        queries = np.asarray(queries, np.float64).reshape(-1, self.dim)
        if self._memory is not None:
            if self._n == 0:
                return brute_force_knn(queries, self.points, k)
            d2, ids = self._memory.search(queries.astype(np.float32), k)
            dist = np.sqrt(np.maximum(d2.astype(np.float64), 0.0))
            return np.where(ids < 0, np.inf, dist), ids
        dist, ids, td, ti, rows = self._parts(queries, k)
        if len(rows):
            ti = np.where(np.isinf(td), -1, ti + self._n_tree).astype(np.int64)
            dist[rows], ids[rows] = _merge(dist[rows], ids[rows], td, ti, k)
        return dist, ids

    def novelty_distances(self, queries: np.ndarray, others: np.ndarray, k: int) -> np.ndarray:
        """The k nearest distances of each query in ``stored + queries + others``, its own entry
        among the queries left out once (an identical twin still counts 0).

        ``kdtree``: the big tree's k nearest give each query a radius r (its k-th distance);
        only points nearer than r can change its list. The batch itself, ``others`` and the
        tail are few: a grid over them with cells as wide as the largest r gives each query
        the candidates of its 3 x 3 cells (:func:`_grid_near`); where that finds too many,
        one small tree over them, queried once with the largest r as bound (k + 1
        neighbours: each query finds itself first). Both give the same floats: distances
        are computed as cKDTree computes them. ``faiss``: a dense (Q, Q + M) distance matrix
        and the index's k nearest.

        Args:
            queries: ``(Q, D)`` float64.
            others: ``(M, D)`` float64 reference points that are not queried.
            k: Neighbours (>= 1).

        Returns:
            ``(Q, k)`` float64 distances, nearest first; ``inf`` where there are fewer than k.
        """
        q = len(queries)
        if q == 0:
            return np.zeros((0, k))
        if self._memory is not None:
            local = cdist(queries, np.concatenate([queries, others]))  # (Q, Q + M)
            local[np.arange(q), np.arange(q)] = np.inf  # not your own neighbour
            both = np.concatenate([local, self.search(queries, k)[0]], axis=1)
            if both.shape[1] > k:
                both = np.partition(both, k - 1, axis=1)[:, :k]
            return np.sort(both, axis=1)
        tail = self._points[self._n_tree: self._n]
        if self._tree is not None and self._n_tree:
            dist = self._tree.query(queries, k=k)[0].reshape(q, k)  # (Q, k), sorted
            if np.isfinite(dist[:, -1]).all():  # every query has a radius: a grid, no tree
                coords = np.concatenate([queries.T, others.T, tail.T], axis=1)  # (D, N)
                gridded = _grid_near(coords, dist)
                if gridded is not None:
                    return gridded
        else:
            dist = np.full((q, k), np.inf)
        near = np.concatenate([queries, others, tail])
        bound = np.nextafter(dist[:, -1].max(), np.inf)  # every query's r, a hair above
        nd = _tree(near).query(queries, k=k + 1, distance_upper_bound=bound)[0]
        # Each query's own entry is at distance 0, the least, so dropping the first column
        # drops it (or, with more than k + 1 exact twins, one of k + 1 equal zeros).
        nd = nd.reshape(q, k + 1)[:, 1:]  # (Q, k), sorted
        rows = np.flatnonzero(nd[:, 0] < dist[:, -1])  # a near point enters these lists
        if len(rows):
            dist[rows] = np.sort(np.concatenate([dist[rows], nd[rows]], axis=1), axis=1)[:, :k]
        return dist

    def _parts(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """The tree's k nearest (distances, ids), and for the ``rows`` whose tail has nearer
        candidates the tail's (distances, tail-local ids): what ``search`` merges."""
        q = len(queries)
        dist = np.full((q, k), np.inf)
        ids = np.full((q, k), -1, np.int64)
        if self._tree is not None and self._n_tree:
            dist, ids = self._tree.query(queries, k=k)
            dist, ids = dist.reshape(q, k), ids.reshape(q, k)
            ids = np.where(np.isinf(dist), -1, ids).astype(np.int64)
        tail = self._points[self._n_tree: self._n]
        if not len(tail):
            return dist, ids, dist[:0], ids[:0], np.zeros(0, np.int64)
        if len(tail) > _BRUTE_TAIL:  # a small tree over the tail, rebuilt only after adds
            if self._tail_tree is None:
                self._tail_tree = _tree(tail.copy())
            # Only tail points nearer than a query's k-th tree neighbour can enter its list;
            # the bound (the largest k-th distance, a hair above) prunes the rest. A point at
            # exactly the k-th distance would only swap in an equal distance.
            bound = np.nextafter(dist[:, -1].max(), np.inf)
            td, ti = self._tail_tree.query(queries, k=k, distance_upper_bound=bound)
            td, ti = td.reshape(q, k), ti.reshape(q, k)
        else:
            td, ti = _cdist_knn(queries, tail, k)
        rows = np.flatnonzero(td[:, 0] < dist[:, -1])  # a tail point enters these lists
        return dist, ids, td[rows], ti[rows], rows
