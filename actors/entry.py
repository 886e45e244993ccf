"""The actor process's arguments and entry point, light to import.

The supervisor builds the arguments and starts the process without importing torch or the
role's code: the child imports them itself, so the parent spawns every process sooner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explorer.core.specs import EnvSpec, with_env_spec

__all__ = ["ActorArgs", "actor_process"]


@dataclass(frozen=True)
class ActorArgs:
    """Everything an actor process needs; picklable so it can cross ``spawn``."""

    actor_id: int
    cfg: Any
    #: None while the launcher still probes the env: it then comes down ``env_spec_pipe``.
    env_spec: EnvSpec | None
    rollout_address: str
    weights_address: str
    env_seed: int
    torch_seed: int
    stop_event: Any
    #: Shared array of ``time.monotonic()`` per actor id, read by the supervisor's watchdog.
    heartbeats: Any = None
    #: The run's CURVE public keys (``explorer.core.curve.CurveKeys``); None: no CURVE.
    curve: Any = None
    #: Receiving end of a pipe the launcher sends the env spec down (``env_spec`` None).
    env_spec_pipe: Any = None


def actor_process(args: ActorArgs) -> None:
    """``multiprocessing`` target: imports the role's code in the child, then runs it."""
    from actors.actor import actor_main

    actor_main(with_env_spec(args))  # the imports above overlap the launcher's env probe
