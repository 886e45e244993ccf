"""What every labeler is: texts in, one :class:`Label` per text out.

A labeler decides whether a text the agent saw (a NetHack message, a BabyAI mission) reports
progress worth an intrinsic reward (ONI). Backends are synchronous (``label``) or asynchronous
(``alabel``, e.g. an HTTP client with requests in flight); :func:`as_sync` gives any of them the
synchronous interface, so callers such as ``evaluate`` need only one code path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["AsyncLabeler", "Label", "Labeler", "LabelerError", "as_sync"]


class LabelerError(Exception):
    """A labeler could not produce labels.

    Attributes:
        reason: short machine-readable cause, e.g. ``"timeout"``, ``"http"``, ``"parse"``,
            ``"bad_output"``, ``"config"``; used as a counter key (``labeler/errors/<reason>``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Label:
    """One labelled text.

    Attributes:
        text: the text that was labelled, unchanged.
        label: 1 if the text reports progress ("interesting"), else 0.
        score: confidence that the label is 1, in [0, 1]; used for AUC and ranking.
        rationale: optional short explanation (an LLM's reason, the rule that fired).
        backend: registered name of the backend that produced the label.
        model: model identifier when the backend has one (e.g. ``"all-MiniLM-L6-v2"``).
    """

    text: str
    label: int
    score: float
    rationale: str | None = None
    backend: str = ""
    model: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"Label.label must be 0 or 1, got {self.label!r}")
        if not (isinstance(self.score, (int, float)) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"Label.score must be a float in [0, 1], got {self.score!r}")


@runtime_checkable
class Labeler(Protocol):
    """A synchronous labeler.

    Call sequence: construct once (load models, open clients), then call :meth:`label` with
    batches of texts for as long as needed.
    """

    #: Registered backend name, copied into each :class:`Label`.
    name: str

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch of texts.

        Args:
            texts: (N,) texts; duplicates allowed.

        Returns:
            (N,) labels in the order of ``texts``.

        Raises:
            LabelerError: the backend failed for the whole batch.
        """
        ...


@runtime_checkable
class AsyncLabeler(Protocol):
    """An asynchronous labeler: same contract as :class:`Labeler`, awaited."""

    name: str

    async def alabel(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch of texts; see :meth:`Labeler.label`."""
        ...


class _SyncAdapter:
    """Runs an :class:`AsyncLabeler` to completion behind a synchronous ``label``."""

    def __init__(self, inner: AsyncLabeler) -> None:
        self.inner = inner
        self.name = inner.name

    def label(self, texts: Sequence[str]) -> list[Label]:
        coro_fn = self.inner.alabel
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_fn(texts))
        # Called from inside a running loop: block on a private loop in a worker thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro_fn(texts)).result()

    def __repr__(self) -> str:
        return f"as_sync({self.inner!r})"


def as_sync(labeler: Labeler | AsyncLabeler) -> Labeler:
    """Give any labeler the synchronous interface.

    Args:
        labeler: an object with a synchronous ``label`` (returned unchanged) or a coroutine
            method ``alabel`` (wrapped).

    Returns:
        A :class:`Labeler`.

    Raises:
        TypeError: the object has neither a ``label`` method nor an ``async def alabel``.
    """
    label_fn = getattr(labeler, "label", None)
    if callable(label_fn) and not inspect.iscoroutinefunction(label_fn):
        return labeler  # type: ignore[return-value]
    if inspect.iscoroutinefunction(getattr(labeler, "alabel", None)):
        return _SyncAdapter(labeler)  # type: ignore[arg-type]
    raise TypeError(f"{type(labeler).__name__} is not a labeler: it needs a `label(texts)` "
                    "method or an `async def alabel(texts)` method")
