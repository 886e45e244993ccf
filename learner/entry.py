"""The learner process's arguments and entry point, light to import.

The supervisor builds the arguments and starts the process without importing torch or the
role's code: the child imports them itself, so the parent spawns every process sooner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explorer.core.specs import EnvSpec, with_env_spec

__all__ = ["LearnerArgs", "learner_process"]


@dataclass(frozen=True)
class LearnerArgs:
    """Everything the learner process needs; picklable so it can cross ``spawn``."""

    cfg: Any
    #: None while the launcher still probes the env: it then comes down ``env_spec_pipe``.
    env_spec: EnvSpec | None
    run_dir: str
    rollout_address: str
    weights_address: str
    stop_event: Any
    status_queue: Any
    resume_path: str | None = None
    #: Where the one final report (done/stopped) goes: an unbounded queue of its own, so a
    #: full status queue cannot drop it. None: the status queue (a blocking put).
    final_queue: Any = None
    #: Where the labeler publishes reward tables (None: no labeler).
    labeler_address: str | None = None
    #: The run's CURVE public keys (``explorer.core.curve.CurveKeys``); None: no CURVE.
    curve: Any = None
    #: Receiving end of a pipe the launcher sends the env spec down (``env_spec`` None).
    env_spec_pipe: Any = None


def learner_process(args: LearnerArgs) -> None:
    """``multiprocessing`` target: imports the role's code in the child, then runs it."""
    from learner.worker import learner_main

    learner_main(with_env_spec(args))  # the imports above overlap the launcher's env probe
