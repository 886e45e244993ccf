"""SERENE's reward emitters: local searches seeded at a rewarded solution (Paolo et al. 2021).

* ``fit``: elitist evolution strategy on fitness (parents + offspring, best survive).
* ``nov``: the same ES selecting by novelty among rewarded individuals, within the emitter's
  own archive: it spreads over the rewarded area instead of climbing it.
* ``cma``: CMA-ES (the ``cma`` package) maximising fitness.

Every emitter reports ``improvement`` (best fitness found - its parent's fitness) and stops on
stagnation: over the last ``W`` generations, the median best fitness of the newest fifth is
not above that of the oldest fifth (Hansen's CMA-ES stagnation rule; ``W`` defaults to
``int(20 * G / 6 + 120)`` for genome length G).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.state import rng_from_state, rng_state

__all__ = ["CMAEmitter", "FitnessEmitter", "NoveltyRewardEmitter", "RewardEmitter",
           "default_stagnation_window", "make_reward_emitter"]


def default_stagnation_window(genome_size: int) -> int:
    """SERENE's stagnation window for genome length G: ``int(20 * G / 6 + 120)``."""
    return int(20 * genome_size / 6 + 120)


class RewardEmitter:
    """Common state of reward emitters: parent, budget used, best, stagnation history.

    Args:
        x0: ``(G,)`` the rewarded parent genome.
        parent_fitness: Its fitness.
        sigma: Initial mutation / step size.
        pop_size: Genomes per ask.
        bounds: Genome range.
        stagnation_window: W (generations).
        seed: Seed of the emitter's generator.
        priority_novelty: Novelty of the parent among rewarded solutions (for selection).
    """

    kind = "base"

    def __init__(self, x0: np.ndarray, parent_fitness: float, *, sigma: float, pop_size: int,
                 bounds: tuple[float, float], stagnation_window: int, seed: int,
                 priority_novelty: float = 0.0) -> None:
        self.x0 = np.asarray(x0, np.float64).copy()
        self.parent_fitness = float(parent_fitness)
        self.sigma, self.pop_size = float(sigma), int(pop_size)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.stagnation_window = int(stagnation_window)
        self.seed = int(seed)
        self.priority_novelty = float(priority_novelty)
        self._rng = np.random.default_rng(self.seed)
        self.best_fitness = self.parent_fitness
        self.history: list[float] = []  # best fitness of each generation
        self.evaluations = 0

    @property
    def improvement(self) -> float:
        """Best fitness found minus the parent's."""
        return self.best_fitness - self.parent_fitness

    def stagnated(self) -> bool:
        w = self.stagnation_window
        if len(self.history) < w:
            return False
        window = np.asarray(self.history[-w:])
        fifth = max(1, w // 5)
        return bool(np.median(window[-fifth:]) <= np.median(window[:fifth]))

    def _record(self, fitness: np.ndarray) -> None:
        self.evaluations += len(fitness)
        self.history.append(float(fitness.max()))
        self.best_fitness = max(self.best_fitness, float(fitness.max()))

    def ask(self) -> np.ndarray:
        raise NotImplementedError

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x0": self.x0.copy(), "parent_fitness": self.parent_fitness,
                "seed": self.seed, "priority_novelty": self.priority_novelty,
                "rng": rng_state(self._rng), "best_fitness": self.best_fitness,
                "history": np.asarray(self.history, np.float64),
                "evaluations": self.evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = rng_from_state(state["rng"])
        self.best_fitness = float(state["best_fitness"])
        self.history = [float(v) for v in np.asarray(state["history"])]
        self.evaluations = int(state["evaluations"])


class FitnessEmitter(RewardEmitter):
    """Elitist ES: each parent has one Gaussian child; the best ``pop_size`` of parents and
    children survive."""

    kind = "fit"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population: np.ndarray | None = None  # (P, G)
        self.pop_fitness: np.ndarray | None = None  # (P,)
        self.pop_descriptors: np.ndarray | None = None  # (P, D)

    def ask(self) -> np.ndarray:
        parents = (np.repeat(self.x0[None], self.pop_size, axis=0) if self.population is None
                   else self.population)
        noise = self._rng.normal(0.0, self.sigma, size=parents.shape)
        return np.clip(parents + noise, *self.bounds)

    def _select(self, x: np.ndarray, f: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.argsort(-f, kind="stable")[: self.pop_size]

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray) -> None:
        self._record(fitness)
        if self.population is None:
            x, f, d = solutions, fitness, descriptors
        else:
            x = np.concatenate([self.population, solutions])
            f = np.concatenate([self.pop_fitness, fitness])
            d = np.concatenate([self.pop_descriptors, descriptors])
        keep = self._select(x, f, d)
        self.population, self.pop_fitness, self.pop_descriptors = x[keep], f[keep], d[keep]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.population is not None:
            state |= {"population": self.population.copy(),
                      "pop_fitness": self.pop_fitness.copy(),
                      "pop_descriptors": self.pop_descriptors.copy()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "population" in state:
            self.population = np.asarray(state["population"], np.float64)
            self.pop_fitness = np.asarray(state["pop_fitness"], np.float64)
            self.pop_descriptors = np.asarray(state["pop_descriptors"], np.float64)


class NoveltyRewardEmitter(FitnessEmitter):
    """The ES selecting rewarded individuals first, then by novelty within its own archive."""

    kind = "nov"

    def __init__(self, *args: Any, k_neighbors: int = 15, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.k_neighbors = int(k_neighbors)
        self._local: NoveltyArchive | None = None
        self._reward_threshold = 0.0  # rewarded: fitness > 0 (sparse rewards)

    def _archive(self, g: int, d: int) -> NoveltyArchive:
        if self._local is None:
            self._local = NoveltyArchive(solution_dim=g, descriptor_dim=d,
                                         k_neighbors=self.k_neighbors, insertion="random",
                                         add_per_generation=max(1, self.pop_size // 4),
                                         seed=self.seed + 1)
        return self._local

    def _select(self, x: np.ndarray, f: np.ndarray, d: np.ndarray) -> np.ndarray:
        archive = self._archive(x.shape[1], d.shape[1])
        novelty = archive.novelty(d)
        newest = slice(len(x) - min(len(x), self.pop_size), len(x))
        archive.add(x[newest], d[newest], f[newest], novelty[newest])
        rewarded = (f > self._reward_threshold).astype(np.float64)
        return np.lexsort((-novelty, -rewarded))[: self.pop_size]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._local is not None:
            state["local_archive"] = self._local.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "local_archive" in state:
            local = state["local_archive"]
            archive = self._archive(np.asarray(local["solutions"]).shape[1],
                                    np.asarray(local["descriptors"]).shape[1])
            archive.load_state_dict(local)


class CMAEmitter(RewardEmitter):
    """CMA-ES (``cma``) maximising fitness from the parent, with its own generator.

    ``cma`` draws its samples through the ``randn`` option, bound here to the emitter's
    generator. ``cma``'s state is not plain data, so a checkpoint stores the fitness told per
    generation; restoring replays ask/tell from the seed, which rebuilds the very same state.
    """

    kind = "cma"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._told: list[np.ndarray] = []
        self._es = self._new_es()

    def _new_es(self) -> Any:
        import cma

        self._rng = np.random.default_rng(self.seed)
        opts = {"popsize": self.pop_size, "bounds": [self.bounds[0], self.bounds[1]],
                "randn": lambda *shape: self._rng.standard_normal(shape), "seed": np.nan,
                "verbose": -9, "verb_log": 0, "verb_disp": 0, "tolx": 0, "tolfun": 0,
                "tolflatfitness": 10 ** 9, "tolstagnation": 10 ** 9}
        x0 = np.clip(self.x0, self.bounds[0] + 1e-9, self.bounds[1] - 1e-9)
        return cma.CMAEvolutionStrategy(x0, self.sigma, opts)

    def ask(self) -> np.ndarray:
        return np.asarray(self._es.ask(), np.float64)  # (lambda, G)

    def tell(self, solutions: np.ndarray, fitness: np.ndarray, descriptors: np.ndarray) -> None:
        self._record(fitness)
        self._es.tell(list(solutions), list(-np.asarray(fitness, np.float64)))  # cma minimises
        self._told.append(np.asarray(fitness, np.float64).copy())

    def stagnated(self) -> bool:
        return super().stagnated() or bool(self._es.stop())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["told"] = (np.stack(self._told) if self._told
                         else np.zeros((0, self.pop_size)))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._es = self._new_es()
        self._told = []
        for fitness in np.asarray(state["told"], np.float64):
            self._es.tell(self._es.ask(), list(-fitness))
            self._told.append(fitness.copy())
        super().load_state_dict(state)


_KINDS = {"fit": FitnessEmitter, "nov": NoveltyRewardEmitter, "cma": CMAEmitter}


def make_reward_emitter(kind: str, **kwargs: Any) -> RewardEmitter:
    """A reward emitter by short name (``fit``, ``nov``, ``cma``).

    Raises:
        ValueError: An unknown name.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown reward emitter {kind!r}; valid: {sorted(_KINDS)}")
    return _KINDS[kind](**kwargs)
