"""SERENE (Paolo et al. 2021): novelty search explores, reward emitters exploit.

The budget runs in chunks of ``chunk_size`` evaluations that alternate:

* **exploration**: novelty search generations. Every rewarded individual (fitness above
  ``reward_threshold``) becomes a *candidate* emitter; the ``max_candidates`` most novel among
  the rewarded ones are kept.
* **exploitation** (only once candidates or emitters exist): candidates are *bootstrapped* one
  by one for ``bootstrap_evals`` evaluations; those that improved on their parent join the
  emitter pool, the others are discarded. Then, each step, the pool emitter of highest
  priority (``improvement`` or parent ``novelty``) runs one generation; stagnated emitters are
  terminated. Emitters persist across chunks until they stagnate.

Rewarded solutions from either phase go to ``reward_archive``. Same ask/tell contract and
state round trip as :class:`~explorer.novelty.scheduler.Scheduler`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.emitters import NoveltySearchEmitter
from explorer.novelty.reward_emitters import (
    RewardEmitter,
    default_stagnation_window,
    make_reward_emitter,
)
from explorer.novelty.scheduler import check_results
from explorer.novelty.state import rng_from_state, rng_state

__all__ = ["SereneScheduler"]

_EXPLORE, _EXPLOIT = "explore", "exploit"


class SereneScheduler:
    """Novelty search alternating with reward emitters, by budget chunks.

    Args:
        archive: The novelty archive of the exploration phase.
        ns_emitter: The novelty-search emitter (writes into ``archive``).
        emitter: Reward emitter kind: ``fit``, ``nov`` or ``cma``.
        chunk_size: Evaluations per phase.
        emitter_pop_size: Genomes per emitter generation.
        emitter_sigma: Initial step size of emitters.
        bootstrap_evals: Budget of a candidate emitter before it may join the pool.
        stagnation_window: Emitter stagnation window (None: SERENE's formula).
        reward_threshold: Fitness above which a solution is rewarded.
        selection: ``improvement`` or ``novelty`` priority of pool emitters.
        max_candidates: Candidates kept waiting at most.
        seed: Seed of the scheduler's generator (emitter seeds).
    """

    def __init__(self, archive: NoveltyArchive, ns_emitter: NoveltySearchEmitter, *,
                 emitter: str = "cma", chunk_size: int = 1000, emitter_pop_size: int = 11,
                 emitter_sigma: float = 0.5, bootstrap_evals: int = 66,
                 stagnation_window: int | None = None, reward_threshold: float = 0.0,
                 selection: str = "improvement", max_candidates: int = 10,
                 seed: int | None = None) -> None:
        if selection not in ("improvement", "novelty"):
            raise ValueError(f"unknown selection {selection!r}; valid: improvement, novelty")
        self.archive, self.ns = archive, ns_emitter
        self.emitter_kind, self.chunk_size = emitter, int(chunk_size)
        self.emitter_pop_size, self.emitter_sigma = int(emitter_pop_size), float(emitter_sigma)
        self.bootstrap_evals = int(bootstrap_evals)
        g = archive.solution_dim
        self.stagnation_window = (int(stagnation_window) if stagnation_window
                                  else default_stagnation_window(g))
        self.reward_threshold, self.selection = float(reward_threshold), selection
        self.max_candidates = int(max_candidates)
        self._rng = np.random.default_rng(seed)
        # the reward archive's own generator (unused by threshold insertion, but checkpointed):
        # derived from the seed, so equal seeds give equal states
        reward_seed = (None if seed is None else
                       int(np.random.SeedSequence(seed).spawn(1)[0].generate_state(1)[0]))
        self.reward_archive = NoveltyArchive(solution_dim=g,
                                             descriptor_dim=archive.descriptor_dim,
                                             k_neighbors=archive.k_neighbors,
                                             insertion="threshold", novelty_threshold=0.0,
                                             knn_backend=archive.knn_backend,
                                             seed=reward_seed)
        self.phase, self.chunk_used, self.evaluations = _EXPLORE, 0, 0
        self.candidates: list[dict[str, Any]] = []  # {x, fitness, descriptor, novelty}
        self.bootstrapping: list[RewardEmitter] = []
        self.pool: list[RewardEmitter] = []
        self.counts = {"created": 0, "discarded": 0, "terminated": 0}
        self._asked: tuple[Any, np.ndarray] | None = None
        self.last_novelty = np.zeros(0)

    # -- ask / tell ---------------------------------------------------------------------
    def _choose(self) -> Any:
        """Who asks next: the NS emitter, a bootstrapping candidate or a pool emitter."""
        if self.phase == _EXPLORE:
            return self.ns
        if self.bootstrapping:
            return self.bootstrapping[0]
        if self.pool:
            key = (lambda e: e.improvement) if self.selection == "improvement" else (
                lambda e: e.priority_novelty)
            return max(self.pool, key=key)  # first of equals: the oldest
        self._switch_phase()  # nothing to exploit: explore
        return self.ns

    def ask(self) -> np.ndarray:
        """``(B, G)`` genomes of the current phase.

        Raises:
            RuntimeError: ``ask`` twice without ``tell``.
        """
        if self._asked is not None:
            raise RuntimeError("ask() called twice: tell() the results of the last ask first")
        who = self._choose()
        solutions = np.asarray(who.ask(), np.float64)
        self._asked = (who, solutions)
        return solutions

    def tell(self, fitness: np.ndarray, descriptors: np.ndarray) -> None:
        """Results of the last ``ask``: ``(B,)`` fitness and ``(B, D)`` descriptors.

        Raises:
            RuntimeError: ``tell`` without ``ask``.
            ValueError: Lengths or widths that do not match what was asked.
        """
        if self._asked is None:
            raise RuntimeError("tell() called before ask()")
        who, solutions = self._asked
        n = len(solutions)
        fitness, descriptors = check_results(fitness, descriptors, n, self.archive.descriptor_dim)
        rewarded = fitness > self.reward_threshold
        if who is self.ns:
            self.last_novelty = self.ns.tell(solutions, fitness, descriptors)
            self._collect_candidates(solutions[rewarded], fitness[rewarded],
                                     descriptors[rewarded])
        else:
            who.tell(solutions, fitness, descriptors)
            self.last_novelty = np.zeros(n)
            self._retire(who)
        self.reward_archive.add_all(solutions[rewarded], descriptors[rewarded],
                                    fitness[rewarded])
        self._asked = None
        self.evaluations += n
        self.chunk_used += n
        if self.chunk_used >= self.chunk_size:
            self._switch_phase()

    # -- emitter life cycle -------------------------------------------------------------
    def _collect_candidates(self, x: np.ndarray, f: np.ndarray, d: np.ndarray) -> None:
        if not len(x):
            return
        novelty = self.reward_archive.novelty(d)
        self.candidates += [{"x": x[i], "fitness": float(f[i]), "descriptor": d[i],
                             "novelty": float(novelty[i])} for i in range(len(x))]
        self.candidates.sort(key=lambda c: -c["novelty"])
        del self.candidates[self.max_candidates:]

    def _new_emitter(self, candidate: dict[str, Any]) -> RewardEmitter:
        self.counts["created"] += 1
        return make_reward_emitter(
            self.emitter_kind, x0=candidate["x"], parent_fitness=candidate["fitness"],
            sigma=self.emitter_sigma, pop_size=self.emitter_pop_size,
            bounds=self.ns.bounds, stagnation_window=self.stagnation_window,
            seed=int(self._rng.integers(2 ** 31)), priority_novelty=candidate["novelty"])

    def _retire(self, emitter: RewardEmitter) -> None:
        """After a generation: bootstrap verdict, or termination on stagnation."""
        if emitter in self.bootstrapping:
            if emitter.evaluations >= self.bootstrap_evals:
                self.bootstrapping.remove(emitter)
                if emitter.improvement > 0:
                    self.pool.append(emitter)
                else:
                    self.counts["discarded"] += 1
        elif emitter.stagnated():
            self.pool.remove(emitter)
            self.counts["terminated"] += 1

    def _switch_phase(self) -> None:
        self.chunk_used = 0
        if self.phase == _EXPLORE and (self.candidates or self.pool or self.bootstrapping):
            self.phase = _EXPLOIT
            self.bootstrapping += [self._new_emitter(c) for c in self.candidates]
            self.candidates = []
        else:
            self.phase = _EXPLORE

    def emitter_stats(self) -> dict[str, float]:
        """Emitter counts and states for TensorBoard."""
        best = max((e.improvement for e in self.pool), default=0.0)
        return {"pool": len(self.pool), "bootstrapping": len(self.bootstrapping),
                "candidates": len(self.candidates), "exploiting": float(self.phase == _EXPLOIT),
                "reward_archive": len(self.reward_archive), "best_improvement": best,
                **{k: float(v) for k, v in self.counts.items()}}

    # -- checkpoint ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._asked is not None:
            raise RuntimeError("state_dict() between ask() and tell(): save after tell()")
        return {"archive": self.archive.state_dict(), "ns": self.ns.state_dict(),
                "reward_archive": self.reward_archive.state_dict(), "rng": rng_state(self._rng),
                "phase": self.phase, "chunk_used": self.chunk_used,
                "evaluations": self.evaluations, "counts": dict(self.counts),
                "candidates": [dict(c) for c in self.candidates],
                "bootstrapping": [e.state_dict() for e in self.bootstrapping],
                "pool": [e.state_dict() for e in self.pool]}

    def _emitter_from_state(self, state: dict[str, Any]) -> RewardEmitter:
        emitter = make_reward_emitter(
            str(state["kind"]), x0=np.asarray(state["x0"]),
            parent_fitness=float(state["parent_fitness"]), sigma=self.emitter_sigma,
            pop_size=self.emitter_pop_size, bounds=self.ns.bounds,
            stagnation_window=self.stagnation_window, seed=int(state["seed"]),
            priority_novelty=float(state["priority_novelty"]))
        emitter.load_state_dict(state)
        return emitter

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.archive.load_state_dict(state["archive"])
        self.ns.load_state_dict(state["ns"])
        self.reward_archive.load_state_dict(state["reward_archive"])
        self._rng = rng_from_state(state["rng"])
        self.phase, self.chunk_used = str(state["phase"]), int(state["chunk_used"])
        self.evaluations = int(state["evaluations"])
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.candidates = [{"x": np.asarray(c["x"]), "fitness": float(c["fitness"]),
                            "descriptor": np.asarray(c["descriptor"]),
                            "novelty": float(c["novelty"])} for c in state["candidates"]]
        self.bootstrapping = [self._emitter_from_state(s) for s in state["bootstrapping"]]
        self.pool = [self._emitter_from_state(s) for s in state["pool"]]
