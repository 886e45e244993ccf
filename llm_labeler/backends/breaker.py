"""Circuit breaker for HTTP labeler backends: stop calling a server that keeps failing.

A dead or overloaded LLM server must cost the labeler service nothing but waiting: once
``failure_threshold`` requests in a row failed, requests fail fast (no connection attempt) until
a cool-down has passed and a single probe request succeeds. A server that answers but refuses
the request as misconfigured (:class:`ConfigErrorGate`) is not down and is held apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CircuitBreaker", "ConfigErrorGate"]


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


class ConfigErrorGate:
    """Holds requests back after a configuration error: the server answered, but refuses this
    client (HTTP 400/401/403/404/422...: a wrong model name, a bad key, an unsupported option).

    Unlike a dead server this will not pass by itself, and every request would be refused the
    same way; so after one such answer no request is sent for ``hold_s``, then exactly one
    probe goes out: a reply that is not a configuration error clears the gate (someone fixed
    the server or loaded the model), another configuration error holds again. Thread-safe.

    Every :meth:`allow` that returns true must be followed by one :meth:`record_config_error`,
    :meth:`record_success` or :meth:`record_other`.
    """

    def __init__(self, hold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an open (passing) gate.

        Args:
            hold_s: time requests are held after a configuration error, seconds.
            clock: monotonic time source (tests pass a fake).
        """
        self.hold_s = hold_s
        self._clock = clock
        self._lock = threading.Lock()
        self._error: tuple[int, str] | None = None
        self._since = 0.0
        self._probing = False
        self.count = 0

    @property
    def error(self) -> tuple[int, str] | None:
        """``(HTTP status, server's message)`` of the active configuration error, or None."""
        with self._lock:
            return self._error

    @property
    def held(self) -> bool:
        """Whether a request would be held now (does not claim the probe)."""
        with self._lock:
            return self._error is not None and (
                self._probing or self._clock() - self._since < self.hold_s)

    def allow(self) -> bool:
        """Whether a request may be sent now (claims the probe slot once the hold is over)."""
        with self._lock:
            if self._error is None:
                return True
            if self._probing or self._clock() - self._since < self.hold_s:
                return False
            self._probing = True
            return True

    def record_config_error(self, status: int, message: str) -> bool:
        """The server refused the request as misconfigured: hold.

        Returns:
            True when this error is new (none was active, or another status or message), so
            that the caller reports it once rather than on every batch.
        """
        with self._lock:
            new = self._error != (status, message)
            self._error, self._since, self._probing = (status, message), self._clock(), False
            self.count += 1
            return new

    def record_success(self) -> tuple[int, str] | None:
        """The server accepted a request: clear. Returns the error that was cleared, if any."""
        with self._lock:
            cleared, self._error, self._probing = self._error, None, False
            return cleared

    def record_other(self) -> None:
        """The request failed for another reason (timeout, 5xx): nothing learnt, free the
        probe slot."""
        with self._lock:
            self._probing = False

    def stats(self) -> dict[str, Any]:
        """``status`` and ``message`` of the active error (None when clear) and ``count``
        (configuration errors seen)."""
        with self._lock:
            status, message = self._error if self._error is not None else (None, None)
            return {"status": status, "message": message, "count": self.count}
