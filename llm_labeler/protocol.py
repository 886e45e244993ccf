"""What every labeler is: texts in, one :class:`Label` per text out.

A labeler decides whether a text the agent saw (a NetHack message, a BabyAI mission) reports
progress worth an intrinsic reward (ONI). Backends are synchronous (``label``) or asynchronous
(``alabel``, e.g. an HTTP client with requests in flight); :func:`as_sync` gives any of them the
synchronous interface, so callers such as ``evaluate`` need only one code path.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

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


T = TypeVar("T")


class _LoopThread:
    """One asyncio event loop, running in a daemon thread until :meth:`stop`.

    An async labeler keeps loop-bound state between batches (an ``httpx.AsyncClient``'s pooled
    connections, locks, queues), so all its batches must run on the same loop; running that
    loop in its own thread also serves callers that are inside a running loop themselves.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:  # what asyncio.run does at the end: cancel leftovers, close generators
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("as_sync: a labeler's label() called from its own alabel() "
                               "would wait for itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop and close the loop (waits for the thread unless called from it)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed meanwhile
            return
        if threading.current_thread() is not self._thread:
            self._thread.join()


#: The loop of each async labeler object, shared by every ``as_sync`` wrapper of it (an
#: ``evaluate`` call, the labeler service) and stopped when the labeler is closed or collected.
_LOOPS: weakref.WeakKeyDictionary[Any, _LoopThread] = weakref.WeakKeyDictionary()
_LOOPS_LOCK = threading.Lock()


class _SyncAdapter:
    """Runs an :class:`AsyncLabeler` to completion behind a synchronous ``label``.

    Every batch runs on one event loop per labeler, created on the first batch and closed by
    :meth:`close` (``asyncio.run`` per batch would close the loop that the labeler's clients
    are bound to, and the second batch would fail with "Event loop is closed").
    """

    def __init__(self, inner: AsyncLabeler) -> None:
        self.inner = inner
        self.name = inner.name
        self._own_loop: _LoopThread | None = None  # for labelers that cannot be weakly keyed
        self._closed = False

    def _loop(self) -> _LoopThread:
        with _LOOPS_LOCK:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            if self._own_loop is not None:
                return self._own_loop
            try:
                found = _LOOPS.get(self.inner)
            except TypeError:  # not weakly referenceable: this wrapper keeps the loop
                self._own_loop = _LoopThread(f"labeler-loop-{self.name}")
                return self._own_loop
            if found is None or found.loop.is_closed():
                found = _LoopThread(f"labeler-loop-{self.name}")
                _LOOPS[self.inner] = found
                weakref.finalize(self.inner, found.stop)
            return found

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch on the labeler's event loop; see :meth:`Labeler.label`."""
        return self._loop().run(self.inner.alabel(texts))

    def close(self) -> None:
        """Close the labeler (its ``aclose()``, or ``close()``, awaited if async) on its loop,
        then stop the loop. Idempotent."""
        if self._closed:
            return
        try:
            closer = getattr(self.inner, "aclose", None) or getattr(self.inner, "close", None)
            if callable(closer):
                if inspect.iscoroutinefunction(closer):
                    self._loop().run(closer())
                else:
                    closer()
        finally:
            with _LOOPS_LOCK:
                self._closed = True
                loop = self._own_loop
                if loop is None:
                    try:
                        loop = _LOOPS.pop(self.inner, None)
                    except TypeError:
                        loop = None
            if loop is not None:
                loop.stop()

    def __repr__(self) -> str:
        return f"as_sync({self.inner!r})"


def as_sync(labeler: Labeler | AsyncLabeler) -> Labeler:
    """Give any labeler the synchronous interface.

    Args:
        labeler: an object with a synchronous ``label`` (returned unchanged) or a coroutine
            method ``alabel`` (wrapped: every batch of that labeler runs on one event loop of
            its own, in a background thread, until the wrapper's ``close()``).

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
