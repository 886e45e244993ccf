"""The ask/tell loop over emitters (pyribs' ``Scheduler``): order and length checks, results
sliced back to the emitter that asked for them."""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.emitters import EmitterBase

__all__ = ["Scheduler", "check_results"]


def check_results(fitness: np.ndarray, descriptors: np.ndarray, n: int, descriptor_dim: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(n,)`` fitness and ``(n, D)`` descriptors as float64, finite.

    Raises:
        ValueError: A shape or value that does not fit, naming expected vs actual.
    """
    fitness = np.asarray(fitness, np.float64)
    descriptors = np.asarray(descriptors, np.float64)
    if fitness.shape != (n,):
        raise ValueError(f"fitness must have shape ({n},) (one per asked solution); got "
                         f"{fitness.shape}")
    if descriptors.shape != (n, descriptor_dim):
        raise ValueError(f"descriptors must have shape ({n}, {descriptor_dim}); got "
                         f"{descriptors.shape}")
    if not (np.isfinite(fitness).all() and np.isfinite(descriptors).all()):
        raise ValueError("fitness and descriptors must be finite")
    return fitness, descriptors


class Scheduler:
    """Asks every emitter, concatenates, and tells each its own slice of the results.

    Args:
        archive: The shared novelty archive.
        emitters: One or more emitters writing into ``archive``.
    """

    def __init__(self, archive: NoveltyArchive, emitters: list[EmitterBase]) -> None:
        if not emitters:
            raise ValueError("a scheduler needs at least one emitter")
        self.archive, self.emitters = archive, list(emitters)
        self._asked: list[np.ndarray] | None = None
        self.evaluations = 0
        self.last_novelty = np.zeros(0)

    def ask(self) -> np.ndarray:
        """``(B, G)`` genomes from all emitters, in emitter order.

        Raises:
            RuntimeError: ``ask`` twice without ``tell``.
        """
        if self._asked is not None:
            raise RuntimeError("ask() called twice: tell() the results of the last ask first")
        self._asked = [np.asarray(e.ask(), np.float64) for e in self.emitters]
        return np.concatenate(self._asked)

    def tell(self, fitness: np.ndarray, descriptors: np.ndarray) -> None:
        """Results of the last ``ask``: ``(B,)`` fitness and ``(B, D)`` descriptors.

        Raises:
            RuntimeError: ``tell`` without ``ask``.
            ValueError: Lengths or widths that do not match what was asked.
        """
        if self._asked is None:
            raise RuntimeError("tell() called before ask()")
        n = sum(len(x) for x in self._asked)
        fitness, descriptors = check_results(fitness, descriptors, n, self.archive.descriptor_dim)
        start, novelty = 0, []
        for emitter, solutions in zip(self.emitters, self._asked, strict=True):
            end = start + len(solutions)
            novelty.append(emitter.tell(solutions, fitness[start:end], descriptors[start:end]))
            start = end
        self._asked = None
        self.evaluations += n
        self.last_novelty = np.concatenate(novelty)

    def state_dict(self) -> dict[str, Any]:
        if self._asked is not None:
            raise RuntimeError("state_dict() between ask() and tell(): save after tell()")
        return {"archive": self.archive.state_dict(), "evaluations": self.evaluations,
                "emitters": [e.state_dict() for e in self.emitters]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.archive.load_state_dict(state["archive"])
        self.evaluations = int(state["evaluations"])
        for emitter, emitter_state in zip(self.emitters, state["emitters"], strict=True):
            emitter.load_state_dict(emitter_state)
