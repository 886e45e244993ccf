"""Helpers shared by the benchmark scripts: timed loops and N-process runs."""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from typing import Any

__all__ = ["CTX", "RESULT_TIMEOUT_S", "ratio", "run_parallel", "timed_loop"]

CTX = mp.get_context("spawn")
RESULT_TIMEOUT_S = 300.0


def timed_loop(step, steps_per_call: int, warmup: float, seconds: float) -> tuple[int, float]:
    """Call ``step()`` for ``warmup`` s, then count its env steps for ``seconds`` s."""
    start = time.monotonic()
    while time.monotonic() - start < warmup:
        step()
    start = now = time.monotonic()
    steps = 0
    while now - start < seconds:
        step()
        steps += steps_per_call
        now = time.monotonic()
    return steps, now - start


def run_parallel(target, num_procs: int, *args: Any) -> float:
    """Run ``target(index, barrier, results, *args)`` in N processes; return the summed fps."""
    barrier, results = CTX.Barrier(num_procs), CTX.Queue()
    procs = [CTX.Process(target=target, args=(i, barrier, results, *args), daemon=True)
             for i in range(num_procs)]
    for proc in procs:
        proc.start()
    try:
        rates = [results.get(timeout=RESULT_TIMEOUT_S) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    return sum(steps / elapsed for steps, elapsed in rates)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b
