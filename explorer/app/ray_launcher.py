"""The Ray launcher: learner, actors and labeler as Ray actors on a Ray cluster.

Ray only places, starts and kills processes here. Each process of the run is one Ray actor
(:class:`_Host`, ``max_restarts=0``: the supervisor restarts actors itself, with its back-off)
that runs the very entry function the local launcher runs (``learner_process``,
``actor_process``, ``labeler_process``) with the resources of ``launcher.resources``.
Rollouts, weights, texts and reward tables go over ZeroMQ ``tcp://`` between the processes,
never through Ray's object store.

The control channels (stop event, status and final queues, heartbeats, env spec; see
``explorer.app.launchers``) are backed by one small asyncio Ray actor (:class:`_Control`, no
CPU). Waits are long polls, not repeated asks: each process keeps one ``wait_stop`` call open,
answered when the run stops, and the supervisor one ``take_wait`` per queue, answered when
reports arrive; checking one is a local look at a pending reply. Only status reports and
heartbeats (a few a second) are messages: each Ray call costs CPU in the caller, the control
actor and Ray's daemons. Heartbeats are timed by the control actor's clock and read back as
ages, so machines need no common clock.

Priority: processes run at the niceness of ``explorer run`` (Ray's default for workers is 15,
which on a busy machine starves them next to other work); on a cluster started by hand, start
nodes with ``RAY_worker_niceness=0 ray start ...`` unless the workers may renice themselves.

Placement: the learner and the labeler run on the node of ``explorer run`` (the run directory,
checkpoints and label store are there) unless ``launcher.resources.learner_custom`` names
resources, which then place the learner (its run directory must then be on shared storage).
Actors go wherever their CPUs (and ``actor_custom`` resources) are free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import math
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from explorer.core.addresses import WILDCARD_HOSTS, address_host

__all__ = ["RayLauncher"]

#: Seconds a process takes at most to come up on its node (worker start, not imports).
_START_TIMEOUT_S = 120.0
#: Seconds an event line waits to name where a process runs.
_WHERE_TIMEOUT_S = 10.0
#: How often a process asks whether the run should stop.
_STOP_POLL_S = 0.2
#: Least seconds between two heartbeats an actor sends (its loop beats far more often); also
#: how long the supervisor reuses the beat times it fetched.
_BEAT_EVERY_S = 1.0
#: A private instance's Ray settings: the run's processes at the command's niceness, as child
#: processes are (Ray's default for workers is 15); no task events (per-call records for a
#: dashboard: there is none), no metrics (nothing scrapes them), no per-handler event stats.
#: Those cost CPU in Ray's daemons and workers beside the run's (GCS 0.09 -> 0.03 CPU-s per
#: 10 s of training on 2 cores; ``benchmarks/throughput.py --launcher ray`` prints them).
_PRIVATE_SYSTEM_CONFIG = {"worker_niceness": 0, "task_events_report_interval_ms": 0,
                          "enable_metrics_collection": False, "event_stats": False}


@ray.remote(num_cpus=0, max_restarts=0, enable_task_events=False)
class _Control:
    """The run's control state: stop flag, named queues, heartbeat times, env specs.

    An asyncio actor: ``wait_stop`` and ``take_wait`` are long polls that wait in its event
    loop without holding it (every method runs in that one loop, so none needs a lock). Ray
    does not promise an asyncio actor runs one caller's calls in order; a process's reports
    are a second apart.
    """

    def __init__(self) -> None:
        self.queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.arrived: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.stop = asyncio.Event()
        self.beats: dict[int, float] = {}
        self.specs: dict[int, Any] = {}
        self.closed: set[int] = set()

    async def set_stop(self) -> None:
        self.stop.set()

    async def wait_stop(self) -> bool:
        """Returns (True) once the run stops."""
        await self.stop.wait()
        return True

    async def put(self, name: str, item: Any, maxsize: int) -> bool:
        q = self.queues[name]
        if maxsize and len(q) >= maxsize:
            return False
        q.append(item)
        self.arrived[name].set()
        return True

    async def take_wait(self, name: str) -> list[Any]:
        """Everything queued under ``name``, once there is something."""
        q = self.queues[name]
        while not q:
            self.arrived[name].clear()
            await self.arrived[name].wait()
        items = list(q)
        q.clear()
        return items

    async def beat(self, actor_id: int) -> None:
        self.beats[actor_id] = time.monotonic()

    async def beat_ages(self) -> dict[int, float]:
        now = time.monotonic()
        return {actor_id: now - t for actor_id, t in self.beats.items()}

    async def send_spec(self, key: int, spec: Any) -> None:
        self.specs[key] = spec

    async def close_spec(self, key: int) -> None:
        self.closed.add(key)

    async def get_spec(self, key: int) -> tuple[str, Any]:
        if key in self.specs:
            return "spec", self.specs.pop(key)
        return ("closed", None) if key in self.closed else ("wait", None)


class RayEvent:
    """``multiprocessing.Event`` lookalike: ``set()`` reaches every process within
    ``_STOP_POLL_S``; ``is_set()`` is cheap enough for an actor's step loop (at most every
    ``_STOP_POLL_S`` it looks whether the control actor answered its open ``wait_stop`` call:
    no message). A control actor that is gone reads as set: the run is over."""

    def __init__(self, control: Any) -> None:
        self._control = control
        self._set = False
        self._pending: Any = None
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"control": self._control}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["control"])

    def set(self) -> None:
        self._set = True
        self._control.set_stop.remote()

    def is_set(self) -> bool:
        if self._set:
            return True
        now = time.monotonic()
        if now - self._last < _STOP_POLL_S:
            return False
        self._last = now
        if self._pending is None:
            self._pending = self._control.wait_stop.remote()
        ready, _ = ray.wait([self._pending], timeout=0)
        self._set = bool(ready)
        return self._set


class RayQueue:
    """``multiprocessing.Queue`` lookalike for the status and final reports.

    ``put_nowait`` does not wait for the control actor (a periodic report that finds the queue
    full is dropped there: the next one supersedes it); ``put`` waits and raises
    :class:`queue.Full` when the queue stayed full.
    """

    def __init__(self, control: Any, name: str, maxsize: int = 0) -> None:
        self._control, self._name, self._maxsize = control, name, maxsize
        self._buffer: collections.deque = collections.deque()
        self._pending: Any = None  # the open take_wait call of a reading process

    def __getstate__(self) -> dict[str, Any]:
        return {"control": self._control, "name": self._name, "maxsize": self._maxsize}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["control"], state["name"], state["maxsize"])

    def put_nowait(self, item: Any) -> None:
        self._control.put.remote(self._name, item, self._maxsize)

    def put(self, item: Any, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ray.get(self._control.put.remote(self._name, item, self._maxsize)):
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Full
            time.sleep(0.1)

    def get(self, timeout: float | None = None) -> Any:
        """The next item; waits on one open ``take_wait`` call (:class:`queue.Empty` after
        ``timeout``, or when the control actor is gone)."""
        if not self._buffer:
            if self._pending is None:
                self._pending = self._control.take_wait.remote(self._name)
            ready, _ = ray.wait([self._pending], timeout=timeout)
            if not ready:
                raise queue.Empty
            ref, self._pending = self._pending, None
            try:
                self._buffer.extend(ray.get(ref))
            except ray.exceptions.RayError:
                raise queue.Empty from None
        return self._buffer.popleft()

    def get_nowait(self) -> Any:
        return self.get(timeout=0)


class RayHeartbeats:
    """The heartbeat array: an actor writes ``beats[actor_id] = time.monotonic()`` (sent at
    most every ``_BEAT_EVERY_S``, timed by the control actor); the supervisor reads
    ``beats[actor_id]``: that beat's time on the supervisor's clock (0.0 before any)."""

    def __init__(self, control: Any) -> None:
        self._control = control
        self._last_sent = 0.0
        self._ages: dict[int, float] = {}
        self._fetched_at = -1.0

    def __getstate__(self) -> dict[str, Any]:
        return {"control": self._control}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["control"])

    def __setitem__(self, actor_id: int, when: float) -> None:
        if when - self._last_sent >= _BEAT_EVERY_S:
            self._last_sent = when
            self._control.beat.remote(actor_id)

    def __getitem__(self, actor_id: int) -> float:
        now = time.monotonic()
        if now - self._fetched_at > _BEAT_EVERY_S:  # beats come no faster; not per actor
            self._ages = ray.get(self._control.beat_ages.remote())
            self._fetched_at = now
        age = self._ages.get(actor_id)
        return 0.0 if age is None else self._fetched_at - age


class _SpecReceiver:
    """Receiving end of the env-spec pipe: ``recv()`` waits for the spec (``EOFError`` when
    the launcher closed the pipe without one: a bad env id)."""

    def __init__(self, control: Any, key: int) -> None:
        self._control, self._key = control, key

    def recv(self) -> Any:
        while True:
            state, spec = ray.get(self._control.get_spec.remote(self._key))
            if state == "spec":
                return spec
            if state == "closed":
                raise EOFError
            time.sleep(0.05)

    def close(self) -> None:
        pass


class _SpecSender:
    def __init__(self, control: Any, key: int) -> None:
        self._control, self._key = control, key

    def send(self, spec: Any) -> None:
        ray.get(self._control.send_spec.remote(self._key, spec))

    def close(self) -> None:
        self._control.close_spec.remote(self._key)


@ray.remote(max_restarts=0, enable_task_events=False)
class _Host:
    """One process of the run: reports where it runs, then runs an entry function."""

    def info(self) -> tuple[int, str]:
        return os.getpid(), ray.util.get_node_ip_address()

    def run(self, target: Callable[[Any], None], args: Any, env: dict[str, str | None],
            nice: int) -> int:
        """Run ``target(args)`` at niceness ``nice``; its exit status as a child process
        would have it."""
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's
        # Ray starts workers at niceness 15 (RAY_worker_niceness): on a busy machine they would
        # get a fraction of the CPU child processes get. The threads the entry starts inherit
        # this thread's niceness; lowering it needs CAP_SYS_NICE (else it stays).
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        for key, value in env.items():  # before the entry imports torch
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            target(args)
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        except Exception:  # noqa: BLE001 - reported as a child process reports it: exit code 1
            traceback.print_exc()
            return 1
        return 0


class RayProcess:
    """:class:`~explorer.app.launchers.ProcessHandle` of one :class:`_Host` Ray actor."""

    def __init__(self, name: str, target: Callable[[Any], None], args: Any,
                 options: dict[str, Any], env: dict[str, str | None], nice: int) -> None:
        self.name = name
        self._actor = _Host.options(**options).remote()
        self._info_ref = self._actor.info.remote()
        self._run_ref = self._actor.run.remote(target, args, env, nice)
        self._info: tuple[int, str] | None = None
        self._exitcode: int | None = None
        self._killed = False

    def info(self, timeout: float = _START_TIMEOUT_S) -> tuple[int, str] | None:
        """``(pid, node address)`` once the process is up (waits up to ``timeout``)."""
        if self._info is None:
            try:
                self._info = ray.get(self._info_ref, timeout=timeout)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError):
                return None
        return self._info

    @property
    def pid(self) -> int | None:
        info = self.info()
        return None if info is None else info[0]

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None:
            ready, _ = ray.wait([self._run_ref], timeout=0)
            if ready:
                self._finish()
        return self._exitcode

    def _finish(self) -> None:
        try:
            self._exitcode = int(ray.get(self._run_ref))
        except ray.exceptions.RayActorError:  # the process died: a signal, OOM, a lost node
            self._exitcode = -9 if self._killed else -1
        except ray.exceptions.RayError:
            self._exitcode = 1
        ray.kill(self._actor)  # an ended entry leaves an idle worker holding its resources

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        if self._exitcode is None:
            ready, _ = ray.wait([self._run_ref], timeout=timeout)
            if ready:
                self._finish()

    def terminate(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self._exitcode is None:
            self._killed = True
            ray.kill(self._actor, no_restart=True)


class RayLauncher:
    """Processes as Ray actors (see the module doc).

    Args:
        cfg: the ``launcher`` section (:class:`~explorer.core.config.LauncherConfig`).
        num_actors: actor processes of the run.

    Joins the Ray instance this process already has (tests, notebooks) and leaves it running;
    else connects to ``cfg.address``, or starts a private one-machine instance without a
    dashboard for the run when it is None (with as many logical CPUs as the run asks for,
    at least this machine's: a run that the local launcher can start fits it too), and
    disconnects or shuts it down in :meth:`close`.
    """

    kind = "ray"

    def __init__(self, cfg: Any, num_actors: int) -> None:
        self.cfg = cfg
        res = cfg.resources
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray and cfg.address is None:
            wanted = res.learner_cpus + res.labeler_cpus + num_actors * res.actor_cpus
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(wanted)),
                     include_dashboard=False, configure_logging=False, log_to_driver=True,
                     _system_config=_PRIVATE_SYSTEM_CONFIG)
        elif self._owns_ray:
            ray.init(address=cfg.address, configure_logging=False, log_to_driver=True)
        #: A private instance runs on this machine only: its processes then get this
        #: command's thread settings, as under the local launcher (Ray would set
        #: OMP_NUM_THREADS to each process's CPU count).
        self._env = ({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
                     if cfg.address is None else {})
        self._node_id = ray.get_runtime_context().get_node_id()
        self._control = _Control.remote()
        self.stop_event = RayEvent(self._control)
        self.status_queue = RayQueue(self._control, "status", maxsize=1000)
        self.final_queue = RayQueue(self._control, "final")
        self.heartbeats = RayHeartbeats(self._control)
        self._handles: list[RayProcess] = []
        self._keys = itertools.count()
        gpus = res.learner_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        #: Alive nodes of the cluster (a loopback ``wire.host`` serves only one of them).
        self.nodes = sum(1 for node in ray.nodes() if node["Alive"])
        wanted = res.learner_cpus + num_actors * res.actor_cpus
        have = ray.cluster_resources().get("CPU", 0.0)
        if wanted > have:
            print(f"launcher=ray: the learner and {num_actors} actors ask for {wanted:g} CPUs, "
                  f"the cluster has {have:g}: some will wait for resources (set "
                  "launcher.resources.actor_cpus lower, or add nodes)", file=sys.stderr)
        here = NodeAffinitySchedulingStrategy(self._node_id, soft=False)
        self._options = {
            "learner": {"num_cpus": res.learner_cpus, "num_gpus": gpus,
                        **({"resources": dict(res.learner_custom)} if res.learner_custom
                           else {"scheduling_strategy": here})},
            "actor": {"num_cpus": res.actor_cpus, "num_gpus": 0,
                      **({"resources": dict(res.actor_custom)} if res.actor_custom else {})},
            "labeler": {"num_cpus": res.labeler_cpus, "num_gpus": 0,
                        "scheduling_strategy": here},
        }

    def start(self, name: str, target: Callable[[Any], None], args: Any,
              role: str) -> RayProcess:
        handle = RayProcess(name, target, args, self._options[role], self._env, os.nice(0))
        self._handles.append(handle)
        self._handles = [h for h in self._handles if h._exitcode is None]
        return handle

    def spec_pipe(self) -> tuple[Any, Any]:
        key = next(self._keys)
        return _SpecReceiver(self._control, key), _SpecSender(self._control, key)

    def reachable(self, address: str, handle: Any) -> str:
        host = address_host(address)
        if host is None or host not in WILDCARD_HOSTS:
            return address
        info = handle.info()
        if info is None:
            return address
        port = address.rsplit(":", 1)[1]
        return f"tcp://{info[1]}:{port}"

    def where(self, handle: Any) -> str:
        info = handle.info(timeout=_WHERE_TIMEOUT_S)
        return "waiting for resources" if info is None else f"pid {info[0]} on {info[1]}"

    def close(self) -> None:
        for handle in self._handles:
            handle.kill()
        ray.kill(self._control)
        if self._owns_ray:
            ray.shutdown()
