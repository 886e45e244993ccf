"""Bounded, deduplicated queue of texts waiting for a label.

ONI's backlog grows without bound and re-sends texts it has already asked about. This queue
holds at most ``maxlen`` distinct texts, skips a text that is already queued, in flight or
labelled (``known(text)``), drops the *oldest* text when full (counted), and hands out the
*newest* texts first (ONI sends the newest unlabelled messages, which the agent is seeing now).

Call sequence (one labelling round)::

    queue.extend(texts)                  # from actors; any thread
    batch = queue.pop_batch(64)          # newest first; now "in flight"
    result = backend.label_batch(batch)
    store.put_many(result.labels, ...)   # then:
    queue.done(batch)                    # forget them (known() now skips them)
    queue.requeue(result.failed)         # or retry the failed ones later
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["PendingQueue"]


class PendingQueue:
    """Bounded FIFO-in / LIFO-out set of texts with a counted drop-oldest policy.

    All methods are thread-safe. ``known`` is called with the queue's lock held, so it must
    not call back into the queue.
    """

    def __init__(self, maxlen: int, known: Callable[[str], bool] | None = None, *,
                 max_attempts: int = 3) -> None:
        """Create an empty queue.

        Args:
            maxlen: most texts held at once (>= 1); in-flight texts do not count.
            known: ``known(text) -> bool``, true when the text already has a label (e.g.
                ``LabelStore.__contains__``); such texts are not enqueued.
            max_attempts: :meth:`requeue` gives a text up (counted as ``abandoned``) once it
                has failed this many times (>= 1).

        Raises:
            ValueError: ``maxlen`` or ``max_attempts`` < 1.
        """
        if maxlen < 1:
            raise ValueError(f"pending queue: maxlen must be >= 1, got {maxlen}")
        if max_attempts < 1:
            raise ValueError(f"pending queue: max_attempts must be >= 1, got {max_attempts}")
        self.maxlen = maxlen
        self.max_attempts = max_attempts
        self._known = known
        self._lock = threading.Lock()
        self._items: OrderedDict[str, None] = OrderedDict()     # oldest first
        self._inflight: OrderedDict[str, None] = OrderedDict()  # popped, not yet done
        self._failures: OrderedDict[str, int] = OrderedDict()   # text -> failed attempts
        self._counts = {"enqueued": 0, "duplicates": 0, "known_skipped": 0, "dropped": 0,
                        "popped": 0, "requeued": 0, "released": 0, "bumped": 0,
                        "abandoned": 0}

    def _admit(self, text: str) -> bool:
        if text in self._items or text in self._inflight:
            self._counts["duplicates"] += 1
            return False
        if self._known is not None and self._known(text):
            self._counts["known_skipped"] += 1
            return False
        return True

    def _drop_if_full(self) -> None:
        while len(self._items) >= self.maxlen:
            dropped, _ = self._items.popitem(last=False)
            self._failures.pop(dropped, None)
            self._counts["dropped"] += 1

    def push(self, text: str) -> bool:
        """Enqueue one text as the newest.

        Returns:
            Whether it was enqueued (false: already queued, in flight or known).
        """
        with self._lock:
            if not self._admit(text):
                return False
            self._drop_if_full()
            self._items[text] = None
            self._counts["enqueued"] += 1
            return True

    def extend(self, texts: Iterable[str]) -> int:
        """Enqueue texts in order (the last one becomes the newest).

        Returns:
            How many were enqueued.
        """
        return sum(self.push(text) for text in texts)

    def pop_batch(self, n: int) -> list[str]:
        """Take up to ``n`` texts, newest first; they stay "in flight" until :meth:`done` or
        :meth:`requeue` (a text in flight is not enqueued again).

        Args:
            n: most texts to take (>= 0).

        Returns:
            (min(n, len),) texts, newest first.
        """
        with self._lock:
            out = [self._items.popitem(last=True)[0] for _ in range(min(n, len(self._items)))]
            for text in out:
                self._inflight[text] = None
            while len(self._inflight) > 4 * self.maxlen:  # a caller that never calls done()
                self._inflight.popitem(last=False)
            self._counts["popped"] += len(out)
            return out

    def done(self, texts: Iterable[str]) -> None:
        """Mark in-flight texts finished (labelled and stored); unknown texts are ignored."""
        with self._lock:
            for text in texts:
                self._inflight.pop(text, None)
                self._failures.pop(text, None)

    def requeue(self, texts: Iterable[str]) -> int:
        """Put failed in-flight texts back as the *oldest* (first to be dropped, last to be
        sent), unless one has now failed ``max_attempts`` times.

        Returns:
            How many were put back.
        """
        back = 0
        with self._lock:
            for text in texts:
                self._inflight.pop(text, None)
                failures = self._failures.pop(text, 0) + 1
                if failures >= self.max_attempts:
                    self._counts["abandoned"] += 1
                    continue
                if not self._admit(text):
                    continue
                if len(self._items) >= self.maxlen:  # full: a retry loses to fresh texts
                    self._counts["dropped"] += 1
                    continue
                self._items[text] = None
                self._items.move_to_end(text, last=False)
                self._failures[text] = failures
                while len(self._failures) > self.maxlen:
                    self._failures.popitem(last=False)
                self._counts["requeued"] += 1
                back += 1
        return back

    def bump(self, texts: Iterable[str]) -> int:
        """Move waiting texts to the newest end (popped next): actors re-announce texts that
        keep recurring, so under a backlog the frequent ones are labelled first.

        Returns:
            How many were waiting and moved (others are ignored).
        """
        moved = 0
        with self._lock:
            for text in texts:
                if text in self._items:
                    self._items.move_to_end(text, last=True)
                    moved += 1
            self._counts["bumped"] += moved
        return moved

    def release(self, texts: Iterable[str]) -> int:
        """Put in-flight texts back *without* counting a failure: nothing was wrong with them,
        the labeler was unavailable (server down, breaker open). They wait as the newest texts,
        so labelling resumes with them when the server returns.

        Returns:
            How many were put back (a full queue drops the rest, counted).
        """
        back = 0
        with self._lock:
            for text in texts:
                self._inflight.pop(text, None)
                if text in self._items:
                    continue
                if len(self._items) >= self.maxlen:
                    self._counts["dropped"] += 1
                    continue
                self._items[text] = None
                self._counts["released"] += 1
                back += 1
        return back

    @property
    def dropped(self) -> int:
        """Texts evicted so far because the queue was full."""
        with self._lock:
            return self._counts["dropped"]

    def __len__(self) -> int:
        """Texts waiting (not counting those in flight)."""
        with self._lock:
            return len(self._items)

    def __contains__(self, text: object) -> bool:
        """Whether ``text`` is waiting or in flight."""
        with self._lock:
            return text in self._items or text in self._inflight

    def stats(self) -> dict[str, Any]:
        """Counters for logging under ``labeler/queue/``.

        Returns:
            ``size``, ``maxlen``, ``inflight`` and the running counts ``enqueued``,
            ``duplicates`` (already queued or in flight), ``known_skipped``, ``dropped``
            (oldest evicted when full), ``popped``, ``requeued``, ``abandoned``.
        """
        with self._lock:
            return {"size": len(self._items), "maxlen": self.maxlen,
                    "inflight": len(self._inflight), **self._counts}

    def __repr__(self) -> str:
        return f"PendingQueue(size={len(self)}, maxlen={self.maxlen})"
