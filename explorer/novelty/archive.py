"""The novelty archive: where novelty search remembers the behaviours it has already shown.

Novelty of a descriptor = mean Euclidean distance to its k nearest neighbours in
``population + offspring + archive`` (itself excluded once). The archive's part uses an
incremental k-NN index (:mod:`explorer.novelty.knn`), so a generation costs a query, not a
rebuild; the population and offspring (a few hundred) are compared by brute force.

Insertion policies: ``random`` adds ``add_per_generation`` uniformly drawn individuals of each
batch (SERENE / Paolo et al.), ``threshold`` adds every individual whose novelty reaches
``novelty_threshold`` (Lehman & Stanley; pyribs' ``ProximityArchive``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from explorer.novelty.knn import IncrementalKNN
from explorer.novelty.state import rng_from_state, rng_state

__all__ = ["INSERTION_POLICIES", "AddStatus", "ArchiveStats", "NoveltyArchive"]

INSERTION_POLICIES = ("random", "threshold")


class AddStatus(enum.IntEnum):
    """What ``NoveltyArchive.add`` did with one individual."""

    NOT_ADDED = 0
    NEW = 1


@dataclass(frozen=True)
class ArchiveStats:
    """Archive summary for logging."""

    size: int
    best_fitness: float
    mean_novelty_added: float


def _check_batch(name: str, array: np.ndarray, n: int, width: int | None) -> None:
    shape = (n,) if width is None else (n, width)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")


class NoveltyArchive:
    """Solutions kept for their behaviour, with their descriptors and fitness.

    Args:
        solution_dim: Genome length G.
        descriptor_dim: Behaviour descriptor width D.
        k_neighbors: k of the novelty k-NN mean.
        insertion: ``random`` or ``threshold``.
        add_per_generation: ``random`` policy: individuals added per ``add`` call.
        novelty_threshold: ``threshold`` policy: novelty needed to be added.
        knn_backend: ``auto``, ``kdtree`` or ``faiss`` (see :class:`IncrementalKNN`).
        seed: Seed of the archive's own generator (random insertion).

    Raises:
        ValueError: Unknown policy, or a threshold policy without a threshold.
    """

    def __init__(self, *, solution_dim: int, descriptor_dim: int, k_neighbors: int = 15,
                 insertion: str = "random", add_per_generation: int = 5,
                 novelty_threshold: float | None = None, knn_backend: str = "auto",
                 seed: int | None = None) -> None:
        if insertion not in INSERTION_POLICIES:
            raise ValueError(f"unknown insertion policy {insertion!r}; valid: "
                             f"{list(INSERTION_POLICIES)}")
        if insertion == "threshold" and novelty_threshold is None:
            raise ValueError("insertion='threshold' needs novelty_threshold")
        if k_neighbors < 1:
            raise ValueError(f"k_neighbors must be >= 1; got {k_neighbors}")
        self.solution_dim, self.descriptor_dim = int(solution_dim), int(descriptor_dim)
        self.k_neighbors, self.insertion = int(k_neighbors), insertion
        self.add_per_generation = int(add_per_generation)
        self.novelty_threshold = novelty_threshold
        self.knn_backend = knn_backend
        self._rng = np.random.default_rng(seed)
        self._clear()

    def _clear(self) -> None:
        self._index = IncrementalKNN(self.descriptor_dim, backend=self.knn_backend)
        self._solutions: list[np.ndarray] = []  # chunks of (M, G)
        self._fitness: list[np.ndarray] = []  # chunks of (M,)
        self._added_novelty_sum = 0.0

    # -- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    @property
    def descriptors(self) -> np.ndarray:
        """``(N, D)`` descriptors of the archived individuals, in insertion order."""
        return self._index.points

    @property
    def solutions(self) -> np.ndarray:
        """``(N, G)`` genomes of the archived individuals."""
        if len(self._solutions) > 1:
            self._solutions = [np.concatenate(self._solutions)]
        return self._solutions[0] if self._solutions else np.zeros((0, self.solution_dim))

    @property
    def fitness(self) -> np.ndarray:
        """``(N,)`` fitness of the archived individuals."""
        if len(self._fitness) > 1:
            self._fitness = [np.concatenate(self._fitness)]
        return self._fitness[0] if self._fitness else np.zeros(0)

    def stats(self) -> ArchiveStats:
        n = len(self)
        return ArchiveStats(size=n, best_fitness=float(self.fitness.max()) if n else float("nan"),
                            mean_novelty_added=self._added_novelty_sum / n if n else 0.0)

    # -- novelty ------------------------------------------------------------------------
    def novelty(self, descriptors: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
        """Novelty of each row of ``descriptors``.

        The reference set is ``descriptors + others + archive``; each row's own entry in
        ``descriptors`` is left out (once: an identical other individual still counts 0).

        Args:
            descriptors: ``(Q, D)``, e.g. population + offspring.
            others: ``(M, D)`` further reference points that are not queried, or None.

        Returns:
            ``(Q,)`` float64 mean distance to the k nearest; with fewer than k references, the
            mean over those there are; 0 when there are none.
        """
        queries = np.asarray(descriptors, np.float64).reshape(-1, self.descriptor_dim)
        others = (np.zeros((0, self.descriptor_dim)) if others is None else
                  np.asarray(others, np.float64).reshape(-1, self.descriptor_dim))
        nearest = self._index.novelty_distances(queries, others, self.k_neighbors)  # (Q, k)
        # nearest first in every row: the mean sums in one fixed order whatever the path
        if len(nearest) and np.isfinite(nearest[:, -1]).all():  # k references for every row
            return nearest.sum(axis=1) / self.k_neighbors
        finite = np.isfinite(nearest)
        count = finite.sum(axis=1)
        total = np.where(finite, nearest, 0.0).sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)

    # -- insertion ----------------------------------------------------------------------
    def add(self, solutions: np.ndarray, descriptors: np.ndarray, fitness: np.ndarray,
            novelty: np.ndarray) -> np.ndarray:
        """Offers one batch to the archive under its insertion policy.

        Args:
            solutions: ``(B, G)`` genomes.
            descriptors: ``(B, D)`` behaviour descriptors.
            fitness: ``(B,)`` fitness (kept for reporting and reward emitters).
            novelty: ``(B,)`` novelty from :meth:`novelty` (the threshold policy reads it).

        Returns:
            ``(B,)`` int array of :class:`AddStatus` values.

        Raises:
            ValueError: Shapes that do not match, or non-finite values.
        """
        solutions = np.asarray(solutions, np.float64)
        b = len(solutions)
        descriptors = np.asarray(descriptors, np.float64)
        fitness, novelty = np.asarray(fitness, np.float64), np.asarray(novelty, np.float64)
        _check_batch("solutions", solutions, b, self.solution_dim)
        _check_batch("descriptors", descriptors, b, self.descriptor_dim)
        _check_batch("fitness", fitness, b, None)
        _check_batch("novelty", novelty, b, None)
        status = np.zeros(b, np.int64)
        if self.insertion == "random":
            chosen = np.sort(self._rng.choice(b, size=min(self.add_per_generation, b),
                                              replace=False))
        else:
            chosen = np.flatnonzero(novelty >= self.novelty_threshold)  # sorted
        status[chosen] = AddStatus.NEW
        self.add_all(solutions[chosen], descriptors[chosen], fitness[chosen])
        self._added_novelty_sum += float(novelty[chosen].sum())
        return status

    def add_all(self, solutions: np.ndarray, descriptors: np.ndarray, fitness: np.ndarray
                ) -> None:
        """Archives every given individual (no policy): for restoring and re-describing."""
        if not len(solutions):
            return
        self._index.add(descriptors)
        self._solutions.append(np.array(solutions, np.float64).reshape(-1, self.solution_dim))
        self._fitness.append(np.array(fitness, np.float64).reshape(-1))

    def redescribe(self, descriptors: np.ndarray) -> None:
        """Replaces every archived descriptor (``(N, D)``, same order), e.g. after STAX
        retrains its encoder; the index is rebuilt."""
        solutions, fitness, total = self.solutions, self.fitness, self._added_novelty_sum
        self._clear()
        self.add_all(solutions, descriptors, fitness)
        self._added_novelty_sum = total

    # -- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Arrays and plain values (see :mod:`explorer.novelty.state` for checkpoints)."""
        return {"solutions": self.solutions.copy(), "descriptors": self.descriptors.copy(),
                "fitness": self.fitness.copy(), "rng": rng_state(self._rng),
                "added_novelty_sum": self._added_novelty_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._clear()
        self.add_all(np.asarray(state["solutions"]), np.asarray(state["descriptors"]),
                     np.asarray(state["fitness"]))
        self._rng = rng_from_state(state["rng"])
        self._added_novelty_sum = float(state["added_novelty_sum"])
