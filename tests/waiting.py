"""Helpers shared by the tests that watch real processes (``tests/`` is on ``pythonpath``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.1) -> None:
    """Return once ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def run_beside(sup: Any, chaos: Callable[[], None]) -> Any:
    """``sup.run()`` with ``chaos`` (faults, then usually a stop) running in a thread beside
    it; returns the run's result once both are done (the thread gets 10 s after the run)."""
    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    result = sup.run()
    thread.join(10)
    return result
