"""How the supervisor starts, watches and stops processes: one small interface, two launchers.

The :class:`~explorer.app.supervisor.Supervisor` holds the run's logic (start order, restarts with
back-off, heartbeat watchdog, stop on a dead learner, Ctrl-C checkpoint); a launcher only puts a
process somewhere and hands back a :class:`ProcessHandle`. Besides processes, a launcher makes
the run's control channels, each shaped like its ``multiprocessing`` counterpart:

* ``stop_event``: ``set()`` / ``is_set()``;
* ``status_queue`` and ``final_queue``: ``put`` / ``put_nowait`` (processes), ``get`` /
  ``get_nowait`` (supervisor), raising :class:`queue.Full` / :class:`queue.Empty`;
* ``heartbeats``: ``heartbeats[actor_id] = time.monotonic()`` in an actor, read as the time of
  its last beat on the supervisor's clock;
* :meth:`Launcher.spec_pipe`: a ``(receiver, sender)`` pair carrying the env spec once.

:class:`LocalLauncher` gives the ``multiprocessing`` objects themselves (child processes of the
command); ``explorer.app.ray_launcher.RayLauncher`` gives Ray actors and channels backed by one
small Ray actor. Control goes through the launcher; rollouts, weights, texts and reward tables
always go over ZeroMQ between the processes.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Launcher", "LocalLauncher", "ProcessHandle", "make_launcher"]


class ProcessHandle(Protocol):
    """One started process, as the supervisor sees it (``multiprocessing.Process`` is one)."""

    name: str

    @property
    def pid(self) -> int | None:
        """OS process id (on the machine that runs it); None if it never started."""

    @property
    def exitcode(self) -> int | None:
        """None while it runs; its exit status once it ended (negative: killed by a signal,
        ``-1`` under Ray: died without an exit status, e.g. killed or lost with its node)."""

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    """Starts the processes of one run and makes its control channels (see module doc)."""

    kind: str
    stop_event: Any
    status_queue: Any
    final_queue: Any
    heartbeats: Any

    def start(self, name: str, target: Callable[[Any], None], args: Any,
              role: str) -> ProcessHandle:
        """Start ``target(args)`` as process ``name``; ``role`` (``learner``, ``actor``,
        ``labeler``) picks the resources it asks for."""

    def spec_pipe(self) -> tuple[Any, Any]:
        """A ``(receiver, sender)`` pair: the sender sends the env spec once, then closes."""

    def reachable(self, address: str, handle: ProcessHandle) -> str:
        """``address`` as bound by ``handle``'s process, made connectable from other
        processes of the run (a wildcard host becomes the process's node address)."""

    def where(self, handle: ProcessHandle) -> str:
        """Where a process runs, for events: ``pid 123`` or ``pid 123 on 10.0.0.2``."""

    def close(self) -> None:
        """Free what the launcher holds (processes still running are killed)."""


def _start_ignoring_sigint(process: Any) -> None:
    """Start ``process`` with SIGINT ignored from its first instruction.

    A terminal's Ctrl-C reaches the whole process group; a child still importing torch would die
    with a traceback. An ignored disposition survives exec, so the child never sees it; the
    supervisor alone handles Ctrl-C and tells children to stop through the stop event.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalLauncher:
    """Child processes of this command (``spawn``), shared-memory control channels.

    Args:
        num_actors: size of the heartbeat array (one slot per actor id).
    """

    kind = "local"

    def __init__(self, num_actors: int) -> None:
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.status_queue = self.ctx.Queue(maxsize=1000)
        #: The learner's one final report (done/stopped): unbounded and apart from the status
        #: reports, so a backlog of those can never crowd it out.
        self.final_queue = self.ctx.Queue()
        #: ``time.monotonic()`` of each actor's last beat: one clock for the whole machine.
        self.heartbeats = self.ctx.Array("d", num_actors, lock=False)

    def start(self, name: str, target: Callable[[Any], None], args: Any,
              role: str) -> ProcessHandle:
        process = self.ctx.Process(target=target, args=(args,), name=name)
        _start_ignoring_sigint(process)
        return process

    def spec_pipe(self) -> tuple[Any, Any]:
        return self.ctx.Pipe(duplex=False)

    def reachable(self, address: str, handle: ProcessHandle) -> str:
        return address  # one machine: every bound address connects as it is

    def where(self, handle: ProcessHandle) -> str:
        return f"pid {handle.pid}"

    def close(self) -> None:
        pass  # the supervisor joins and terminates its children itself


def make_launcher(cfg: Any) -> Launcher:
    """The launcher ``cfg.launcher.kind`` names (Ray is imported only when chosen)."""
    if cfg.launcher.kind == "ray":
        from explorer.app.ray_launcher import RayLauncher

        return RayLauncher(cfg.launcher, cfg.actors.num_procs)
    return LocalLauncher(cfg.actors.num_procs)
