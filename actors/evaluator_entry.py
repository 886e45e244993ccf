"""The evaluation worker's arguments and entry point, light to import (no torch, no env)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluatorArgs", "evaluator_process"]


@dataclass(frozen=True)
class EvaluatorArgs:
    """Everything an evaluation worker needs; picklable so it can cross ``spawn`` or reach a
    Ray actor."""

    worker_id: int
    incarnation: int
    address: str
    env_id: str
    max_episode_steps: int
    hidden_sizes: tuple[int, ...]
    frame_size: int
    #: Send final frames (STAX).
    frames: bool
    #: The launcher's stop event (``is_set()``): the driver sets it to stop every worker.
    stop_event: Any
    #: The launcher's heartbeats: ``heartbeats[worker_id] = time.monotonic()``, read by the
    #: pool's watchdog.
    heartbeats: Any = None
    #: The search's CURVE public keys (``explorer.core.curve.CurveKeys``): the worker reads
    #: its client secret from their directory and pins the driver's key; None on loopback.
    curve: Any = None


def evaluator_process(args: EvaluatorArgs) -> None:
    """Launcher target: imports the worker's code in the new process, then runs it."""
    from actors.evaluator import evaluator_main

    evaluator_main(args)
