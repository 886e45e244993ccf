"""The labeler process's arguments and entry point, light to import.

The supervisor builds the arguments and starts the process without importing torch or the
role's code: the child imports them itself, so the parent spawns every process sooner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ServiceArgs", "labeler_process"]


@dataclass(frozen=True)
class ServiceArgs:
    """Everything the labeler process needs; picklable so it can cross ``spawn``."""

    cfg: Any  # LabelerConfig (the ``llm_labeler`` section)
    store_path: str
    texts_address: str
    updates_address: str
    stop_event: Any
    status_queue: Any = None
    seed: int = 0
    #: The run's CURVE public keys (``explorer.core.curve.CurveKeys``); None: no CURVE.
    curve: Any = None


def labeler_process(args: ServiceArgs) -> None:
    """``multiprocessing`` target: imports the role's code in the child, then runs it."""
    from llm_labeler.service import labeler_main

    labeler_main(args)
