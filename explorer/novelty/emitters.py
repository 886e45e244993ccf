"""Emitters: where the genomes of each generation come from (pyribs' ask / tell contract).

``ask()`` returns ``(B, G)`` genomes to evaluate; ``tell(solutions, fitness, descriptors)``
feeds their results back, in the order asked. Each emitter owns
``np.random.default_rng(seed)``; its state (generator included) round-trips through
``state_dict`` / ``load_state_dict``, so a resumed search asks the very same genomes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.state import rng_from_state, rng_state

__all__ = ["EmitterBase", "NoveltySearchEmitter", "RandomEmitter", "check_bounds"]


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` with ``low < high``.

    Raises:
        ValueError: A malformed or empty range.
    """
    low, high = (float(b) for b in bounds)
    if not low < high:
        raise ValueError(f"bounds must be (low, high) with low < high; got {bounds}")
    return low, high


class EmitterBase:
    """Contract of an emitter; ``tell`` returns the novelty of the told individuals.

    Args:
        archive: The novelty archive the emitter measures against and feeds.
        solution_dim: Genome length G.
        bounds: Genome range; genomes are clipped into it.
        seed: Seed of the emitter's own generator.
    """

    def __init__(self, archive: NoveltyArchive, *, solution_dim: int,
                 bounds: tuple[float, float] = (-5.0, 5.0), seed: int | None = None) -> None:
        self.archive = archive
        self.solution_dim = int(solution_dim)
        self.bounds = check_bounds(bounds)
        self._rng = np.random.default_rng(seed)

    def ask(self) -> np.ndarray:
        """``(B, G)`` genomes to evaluate next."""
        raise NotImplementedError

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray
             ) -> np.ndarray:
        """Results of the last ``ask`` (``(B, G)``, ``(B,)``, ``(B, D)``); returns ``(B,)``
        novelty of the told individuals."""
        raise NotImplementedError

    def _uniform(self, n: int) -> np.ndarray:
        return self._rng.uniform(*self.bounds, size=(n, self.solution_dim))  # (n, G)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_state(state["rng"])


class RandomEmitter(EmitterBase):
    """Uniform random genomes every time (the random-search baseline); fills the archive
    with the same policy as novelty search so the two compare on equal terms.

    Args:
        batch_size: Genomes per ask.
    """

    def __init__(self, archive: NoveltyArchive, *, solution_dim: int, batch_size: int = 100,
                 bounds: tuple[float, float] = (-5.0, 5.0), seed: int | None = None) -> None:
        super().__init__(archive, solution_dim=solution_dim, bounds=bounds, seed=seed)
        self.batch_size = int(batch_size)

    def ask(self) -> np.ndarray:
        return self._uniform(self.batch_size)

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray
             ) -> np.ndarray:
        novelty = self.archive.novelty(descriptors)
        self.archive.add(solutions, descriptors, fitness, novelty)
        return novelty


class NoveltySearchEmitter(EmitterBase):
    """Novelty search (Lehman & Stanley; Paolo et al.'s parameters by default).

    Generation 0 asks ``pop_size`` uniform genomes. Afterwards each parent has
    ``offspring_per_parent`` children by Gaussian mutation (clipped to ``bounds``); novelty is
    measured in ``population + offspring + archive``, the offspring are offered to the
    archive, and the ``pop_size`` most novel of population + offspring survive.

    Args:
        pop_size: Survivors per generation.
        offspring_per_parent: Children per parent per generation.
        sigma: Standard deviation of the Gaussian mutation, in genome units.
    """

    def __init__(self, archive: NoveltyArchive, *, solution_dim: int, pop_size: int = 100,
                 offspring_per_parent: int = 2, sigma: float = 0.05,
                 bounds: tuple[float, float] = (-5.0, 5.0), seed: int | None = None) -> None:
        super().__init__(archive, solution_dim=solution_dim, bounds=bounds, seed=seed)
        if pop_size < 1 or offspring_per_parent < 1 or sigma <= 0:
            raise ValueError("pop_size and offspring_per_parent must be >= 1, sigma > 0")
        self.pop_size, self.offspring_per_parent = int(pop_size), int(offspring_per_parent)
        self.sigma = float(sigma)
        self.population: np.ndarray | None = None  # (P, G)
        self.pop_descriptors: np.ndarray | None = None  # (P, D)
        self.pop_fitness: np.ndarray | None = None  # (P,)
        self.generation = 0

    def ask(self) -> np.ndarray:
        if self.population is None:
            return self._uniform(self.pop_size)
        parents = np.repeat(self.population, self.offspring_per_parent, axis=0)  # (P * o, G)
        noise = self._rng.normal(0.0, self.sigma, size=parents.shape)
        return np.clip(parents + noise, *self.bounds)

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray
             ) -> np.ndarray:
        solutions = np.asarray(solutions, np.float64)
        descriptors = np.asarray(descriptors, np.float64)
        fitness = np.asarray(fitness, np.float64)
        if self.population is None:
            pool_x, pool_d, pool_f = solutions, descriptors, fitness
        else:
            pool_x = np.concatenate([self.population, solutions])
            pool_d = np.concatenate([self.pop_descriptors, descriptors])
            pool_f = np.concatenate([self.pop_fitness, fitness])
        novelty = self.archive.novelty(pool_d)  # (P + B,)
        told_novelty = novelty[len(pool_x) - len(solutions):]
        self.archive.add(solutions, descriptors, fitness, told_novelty)
        keep = np.argsort(-novelty, kind="stable")[: self.pop_size]
        self.population, self.pop_descriptors, self.pop_fitness = (
            pool_x[keep], pool_d[keep], pool_f[keep])
        self.generation += 1
        return told_novelty

    def redescribe(self, descriptors: np.ndarray) -> None:
        """New ``(P, D)`` descriptors of the population (STAX retrained its encoder)."""
        self.pop_descriptors = np.asarray(descriptors, np.float64)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict() | {"generation": self.generation}
        if self.population is not None:
            state |= {"population": self.population.copy(),
                      "pop_descriptors": self.pop_descriptors.copy(),
                      "pop_fitness": self.pop_fitness.copy()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        if "population" in state:
            self.population = np.asarray(state["population"], np.float64)
            self.pop_descriptors = np.asarray(state["pop_descriptors"], np.float64)
            self.pop_fitness = np.asarray(state["pop_fitness"], np.float64)
