"""Evaluation workers of ``explorer search``: started, fed and watched from one place.

The driver binds a ROUTER; each worker (``evaluator-{i}``, an actor process) connects a DEALER
and is sent one task (a slice of the batch) at a time. A worker that dies (kill -9, crash) or
stops beating is restarted with back-off, as the run supervisor restarts actors, and the task it
held goes back to the queue: every genome of a batch is evaluated exactly once in the result,
nothing is lost. Messages are validated wire frames; a malformed one is dropped and counted.

Workers are started, watched and killed through the run's launcher
(``explorer.app.launchers``, picked by the config's ``launcher`` section): child processes, or
Ray actors with ``launcher=ray``. Its stop event and heartbeats are the workers' control
channel; genomes and results always go over ZeroMQ. The driver binds ``workers.host``: on
loopback the Ray cluster must be a single node (this machine); with an address other machines
reach (``0.0.0.0``), workers may run on any node, and the socket is a CURVE server
(``workers.curve_keys``) that hands genomes to authorised workers only.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from actors.evaluator_entry import EvaluatorArgs, evaluator_process
from explorer.app.launchers import Launcher, LocalLauncher
from explorer.core.addresses import WILDCARD_HOSTS, is_loopback_host
from explorer.core.config import ConfigError
from explorer.core.curve import CurveKeys, SocketSecurity, load_curve_keys
from explorer.core.sockets import bind
from explorer.core.wire import DropCounter, Message, WireError, decode, encode
from explorer.novelty.config import SearchConfig
from explorer.novelty.protocol import KIND_EVAL_TASK, result_schema

__all__ = ["EvalBatch", "EvaluationPool", "WorkersFailed", "make_search_launcher"]

_POLL_MS = 50
_STARTUP_GRACE_S = 120.0


def make_search_launcher(cfg: SearchConfig) -> Launcher:
    """The launcher ``cfg.launcher.kind`` names, with one heartbeat slot per worker (Ray is
    imported only when chosen)."""
    if cfg.launcher.kind == "ray":
        from explorer.app.ray_launcher import RayLauncher

        return RayLauncher(cfg.launcher, cfg.workers.num_procs)
    return LocalLauncher(cfg.workers.num_procs)


def _node_address(launcher: Launcher) -> str:
    """This machine's address as the other nodes of the launcher's cluster see it."""
    if launcher.kind == "ray":
        import ray

        return ray.util.get_node_ip_address()
    return "127.0.0.1"  # one machine: the wildcard bind listens on loopback too


class WorkersFailed(RuntimeError):
    """Every worker used up its restarts: the search cannot go on."""


@dataclass
class EvalBatch:
    """Results of one batch, in the order of the genomes."""

    fitness: np.ndarray  # (B,)
    positions: np.ndarray  # (B, 2) maze units
    reached: np.ndarray  # (B,) bool
    frames: np.ndarray | None  # (B, H, H) uint8
    env_steps: int


@dataclass
class _Slot:
    worker_id: int
    process: Any = None
    incarnation: int = 0
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = 0.0
    identity: bytes | None = None
    task: np.ndarray | None = field(default=None, repr=False)  # ids in flight


class EvaluationPool:
    """N evaluation worker processes behind ``evaluate(genomes)``.

    Args:
        cfg: The search config (workers, env, controller).
        genome_size: G.
        frames: Whether workers send final frames (STAX).
        on_event: Called with one line per start / crash / restart.
        launcher: Starts the workers (its heartbeats need ``workers.num_procs`` slots);
            default: the one ``cfg.launcher`` names, closed by :meth:`close`.

    Raises:
        ConfigError: ``launcher=ray`` on a cluster of more than one node while the driver
            binds loopback.
    """

    def __init__(self, cfg: SearchConfig, genome_size: int, frames: bool,
                 on_event: Callable[[str], None] = print,
                 launcher: Launcher | None = None) -> None:
        if cfg.launcher.kind == "ray" and cfg.workers.transport == "ipc":
            cfg = dataclasses.replace(cfg, workers=dataclasses.replace(cfg.workers,
                                                                       transport="tcp"))
            on_event("launcher=ray: workers.transport ipc -> tcp (on 127.0.0.1)")
        self.cfg, self.genome_size, self.frames = cfg, int(genome_size), bool(frames)
        self.on_event = on_event
        self._owns_launcher = launcher is None
        self.launcher = launcher or make_search_launcher(cfg)
        nodes = getattr(self.launcher, "nodes", 1)
        if nodes > 1 and is_loopback_host(cfg.workers.host):
            if self._owns_launcher:
                self.launcher.close()
            raise ConfigError(f"workers.host: {cfg.workers.host} is loopback but the Ray "
                              f"cluster has {nodes} nodes: workers on other nodes cannot reach "
                              "the driver (set workers.host=0.0.0.0 and workers.curve_keys)")
        self.stop_event = self.launcher.stop_event
        self.heartbeats = self.launcher.heartbeats
        n = cfg.workers.num_procs
        self.slots = [_Slot(i) for i in range(n)]
        self._closed = False
        self.dropped = DropCounter()
        self.restarts = 0
        self._schema = result_schema(cfg.env.frame_size)
        self._zmq = zmq.Context()
        keys_dir = cfg.workers.curve_keys
        self.curve: CurveKeys | None = None if keys_dir is None else load_curve_keys(keys_dir)
        self.security = SocketSecurity(self._zmq, self.curve)
        self._sock = self._zmq.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.security.serve(self._sock)
        self._ipc_dir: str | None = None
        if cfg.workers.transport == "ipc":
            self._ipc_dir = tempfile.mkdtemp(prefix="explorer-search-")
            self.address = bind(self._sock, f"ipc://{self._ipc_dir}/eval")
        else:
            bound = bind(self._sock, f"tcp://{cfg.workers.host}:0")
            #: what workers connect to: a wildcard bind names this (the driver's) node
            self.address = (f"tcp://{_node_address(self.launcher)}:{bound.rsplit(':', 1)[1]}"
                            if cfg.workers.host in WILDCARD_HOSTS else bound)

    # -- processes ----------------------------------------------------------------------
    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)
        self.on_event(f"started {len(self.slots)} evaluation workers "
                      f"({', '.join(self.launcher.where(s.process) for s in self.slots)})")

    def _start(self, slot: _Slot) -> None:
        c = self.cfg
        args = EvaluatorArgs(
            worker_id=slot.worker_id, incarnation=slot.incarnation, address=self.address,
            env_id=c.env.id, max_episode_steps=c.env.max_episode_steps,
            hidden_sizes=(c.controller.hidden_size,) * c.controller.hidden_layers,
            frame_size=c.env.frame_size, frames=self.frames, stop_event=self.stop_event,
            heartbeats=self.heartbeats, curve=self.curve)
        slot.process = self.launcher.start(f"evaluator-{slot.worker_id}", evaluator_process,
                                           args, role="actor")
        slot.incarnation += 1
        slot.identity, slot.restart_at, slot.started_at = None, None, time.monotonic()

    def _watch(self, queue: deque) -> None:
        """Restart dead or silent workers; their tasks go back to the front of ``queue``."""
        now, w = time.monotonic(), self.cfg.workers
        for slot in self.slots:
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    self._start(slot)
                    self.on_event(f"restarted evaluator-{slot.worker_id} (restart "
                                  f"{slot.restarts}, {self.launcher.where(slot.process)})")
                continue
            proc = slot.process
            if proc.exitcode is None:
                beat = self.heartbeats[slot.worker_id]
                timeout = w.heartbeat_timeout_s if beat >= slot.started_at else max(
                    w.heartbeat_timeout_s, _STARTUP_GRACE_S)
                if now - max(beat, slot.started_at) > timeout:
                    self.on_event(f"evaluator-{slot.worker_id} ({self.launcher.where(proc)}) "
                                  f"gave no heartbeat for {timeout:.0f}s; killing it")
                    proc.kill()
                    proc.join(5)
                continue
            if slot.task is not None:
                queue.appendleft(slot.task)
                self.on_event(f"evaluator-{slot.worker_id} died with {len(slot.task)} genomes "
                              "in flight: they are evaluated again")
                slot.task = None
            if slot.restarts >= w.max_restarts:
                continue
            slot.restarts += 1
            self.restarts += 1
            delay = w.restart_backoff_s * 2 ** min(slot.restarts - 1, 6)
            slot.restart_at = now + delay
            self.on_event(f"evaluator-{slot.worker_id} ({self.launcher.where(proc)}) died with "
                          f"exit code {proc.exitcode}; restarting in {delay:.1f}s")
        if all(s.restart_at is None and s.process.exitcode is not None for s in self.slots):
            raise WorkersFailed(f"all {len(self.slots)} evaluation workers died and used up "
                                f"workers.max_restarts={w.max_restarts}")

    # -- evaluation ---------------------------------------------------------------------
    def _task_size(self, batch: int) -> int:
        size = self.cfg.workers.task_size
        return size or max(1, -(-batch // (2 * len(self.slots))))

    def evaluate(self, genomes: np.ndarray) -> EvalBatch:
        """Evaluates ``(B, G)`` genomes on the workers; blocks until all are done.

        Raises:
            WorkersFailed: No worker is left to evaluate them.
        """
        genomes = np.ascontiguousarray(genomes, np.float64)
        b, size = len(genomes), self._task_size(len(genomes))
        queue = deque(np.array_split(np.arange(b), range(size, b, size)))
        fitness, positions = np.zeros(b), np.zeros((b, 2))
        reached = np.zeros(b, bool)
        frames = np.zeros((b, self.cfg.env.frame_size, self.cfg.env.frame_size), np.uint8) \
            if self.frames else None
        done = np.zeros(b, bool)
        env_steps = 0
        while not done.all():
            for slot in self.slots:
                if queue and slot.identity is not None and slot.task is None \
                        and slot.process.exitcode is None:
                    ids = queue.popleft()
                    slot.task = ids
                    task = Message(kind=KIND_EVAL_TASK, arrays={"ids": ids.astype(np.int64),
                                                                "genomes": genomes[ids]})
                    self._sock.send_multipart([slot.identity, *encode(task)])
            if self._sock.poll(_POLL_MS):
                identity, *frames_in = self._sock.recv_multipart(copy=False)
                result = self._receive(identity.bytes, frames_in)
                if result is not None:
                    ids = result.arrays["ids"]
                    fitness[ids] = result.arrays["fitness"]
                    positions[ids] = result.arrays["positions"]
                    reached[ids] = result.arrays["reached"]
                    if frames is not None:
                        frames[ids] = result.arrays["frames"]
                    done[ids] = True
                    env_steps += result.env_steps
            self._watch(queue)
        return EvalBatch(fitness, positions, reached, frames, env_steps)

    def _receive(self, identity: bytes, frames: list) -> Message | None:
        """The result a worker sent for its task, or None (hello, stale, malformed: dropped)."""
        try:
            msg = decode(frames, self._schema)
        except WireError as err:
            self.dropped.record(err)
            return None
        slot = next((s for s in self.slots if s.worker_id == msg.actor_id), None)
        if slot is None or msg.meta.get("incarnation") != slot.incarnation - 1:
            self.dropped.record(WireError("stale", f"result from {identity!r}"))
            return None
        if slot.identity is None:  # its hello: ready for a task
            slot.identity = identity
            return None
        ids = msg.arrays["ids"]
        if slot.task is None or not np.array_equal(ids, slot.task):
            self.dropped.record(WireError("unexpected_ids", f"ids from worker {msg.actor_id}"))
            return None
        if self.frames and "frames" not in msg.arrays:
            self.dropped.record(WireError("missing_array", "frames"))
            return None
        slot.task = None
        return msg

    def close(self) -> None:
        """Stops every worker and releases the socket (and the launcher it made); safe to
        call twice."""
        if self._closed:
            return
        self._closed = True
        self.stop_event.set()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join(5)
                if slot.process.is_alive():
                    slot.process.terminate()
                    slot.process.join(1)
        if self._owns_launcher:
            self.launcher.close()
        self._sock.close(0)
        self.security.close()
        self._zmq.term()
        if self._ipc_dir:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
