"""The evaluation worker's arguments and entry point, light to import (no torch, no env)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluatorArgs", "evaluator_process"]


@dataclass(frozen=True)
class EvaluatorArgs:
    """Everything an evaluation worker needs; picklable so it can cross ``spawn``."""

    worker_id: int
    incarnation: int
    address: str
    env_id: str
    max_episode_steps: int
    hidden_sizes: tuple[int, ...]
    frame_size: int
    #: Send final frames (STAX).
    frames: bool
    stop_event: Any
    #: Shared array of ``time.monotonic()`` per worker id, read by the pool's watchdog.
    heartbeats: Any = None


def evaluator_process(args: EvaluatorArgs) -> None:
    """``multiprocessing`` target: imports the worker's code in the child, then runs it."""
    from actors.evaluator import evaluator_main

    evaluator_main(args)
