"""Circuit breaker for HTTP labeler backends: stop calling a server that keeps failing.

A dead or overloaded LLM server must cost the labeler service nothing but waiting: once
``failure_threshold`` requests in a row failed, requests fail fast (no connection attempt) until
a cool-down has passed and a single probe request succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``cooldown_s`` (exactly one probe request allowed) → closed on the probe's success, open
    again on its failure. Thread-safe.

    Every :meth:`allow` that returns true must be followed by one :meth:`record_success` or
    :meth:`record_failure`.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Create a closed breaker.

        Args:
            failure_threshold: consecutive failures that open it (>= 1).
            cooldown_s: time open before a probe is allowed, seconds.
            clock: monotonic time source (tests pass a fake).
        """
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (a probe may be or is being sent)."""
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return self.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a request may be sent now (claims the probe slot when half-open)."""
        with self._lock:
            if self._state == self.CLOSED:
                return True
            if self._state == self.OPEN:
                if self._clock() - self._opened_at < self.cooldown_s:
                    return False
                self._state = self.HALF_OPEN
            if self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        """The server answered (any 2xx reply): close."""
        with self._lock:
            self._state, self._failures, self._probing = self.CLOSED, 0, False

    def record_failure(self) -> None:
        """The request failed at the transport or HTTP level."""
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or (self._state == self.CLOSED and
                                                 self._failures >= self.failure_threshold):
                self.opens += self._state == self.CLOSED
                self._state, self._opened_at, self._probing = self.OPEN, self._clock(), False

    def stats(self) -> dict[str, Any]:
        """``state``, ``opens`` (closed → open transitions) and ``consecutive_failures``."""
        state = self.state
        with self._lock:
            return {"state": state, "opens": self.opens, "consecutive_failures": self._failures}
