"""The launcher/supervisor: wires every process of a run in one place and watches them.

Process names are fixed (``learner``, ``actor-{i}``). The learner binds the sockets and reports
their addresses; actors connect to them. A dead actor is restarted with exponential back-off;
a dead learner ends the run with its last checkpoint named. Ctrl-C sets a shared stop event:
every process finishes its current step, the learner writes a checkpoint, all exit.

Where and how a process runs is the launcher's (``explorer.app.launchers``: child processes, or
Ray actors on a cluster with ``launcher=ray``); this logic is the same for both.
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.entry import ActorArgs, actor_process
from explorer.app.launchers import Launcher, LocalLauncher, make_launcher
from explorer.app.progress import ProgressReporter
from explorer.core.addresses import is_loopback_host
from explorer.core.specs import EnvSpec
from learner.entry import LearnerArgs, learner_process
from llm_labeler.entry import ServiceArgs, labeler_process

__all__ = ["RunResult", "Supervisor"]

_TICK_S = 0.2
_READY_TIMEOUT_S = 120.0
_LEARNER_EXIT_TIMEOUT_S = 30.0
_ACTOR_EXIT_TIMEOUT_S = 5.0
_STARTUP_GRACE_S = 120.0


class _LabelerStartError(RuntimeError):
    """The labeler process did not come up (bad backend options, import error, ...)."""


@dataclass
class RunResult:
    """How a run ended: ``done``, ``stopped`` (Ctrl-C), ``learner_failed``,
    ``labeler_failed`` (the labeler could not start) or ``bad_checkpoint`` (the checkpoint to
    resume from was unreadable or refused; ``last_status["error"]`` says which and why)."""

    reason: str
    run_dir: Path
    checkpoint: Path | None
    env_steps: int = 0
    actor_restarts: int = 0
    last_status: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.reason == "bad_checkpoint":  # bad input, as the CLI's other usage errors
            return 2
        return 1 if self.reason in ("learner_failed", "labeler_failed") else 0


@dataclass
class _ActorSlot:
    actor_id: int
    process: Any = None
    incarnation: int = 0
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = 0.0


@dataclass
class _LabelerSlot:
    process: Any = None
    restarts: int = 0
    restart_at: float | None = None
    texts: str = ""
    updates: str = ""
    error: str = ""


class Supervisor:
    """Start, watch and stop the learner and actor processes of one run.

    Args:
        cfg: the resolved :class:`~explorer.core.config.Config`.
        env_spec: the env's spec, or a function that probes it: then the processes start
            first (their imports of torch and envpool overlap the probe) and receive the spec
            down a pipe; what the function raises, :meth:`run` raises after stopping them.
        run_dir: ``runs/<name>`` (logs, checkpoints, config.yaml).
        resume_path: checkpoint to resume from, or None.
        resume_generation: how many times this run was resumed (varies env seeds).
        launcher: starts the processes; default: the one ``cfg.launcher`` names.
    """

    def __init__(self, cfg: Any, env_spec: EnvSpec | Callable[[], EnvSpec], run_dir: Path,
                 resume_path: Path | None = None, resume_generation: int = 0,
                 reporter: ProgressReporter | None = None,
                 launcher: Launcher | None = None) -> None:
        self.events: list[str] = []
        self._held_events: list[str] = []
        self.env_spec: EnvSpec | None = None if callable(env_spec) else env_spec
        self.reporter = reporter or ProgressReporter(enabled=False)
        if cfg.launcher.kind == "ray" and cfg.wire.transport == "ipc":
            # ipc sockets are files on one machine; a Ray cluster may place processes on many
            cfg = dataclasses.replace(cfg, wire=dataclasses.replace(cfg.wire, transport="tcp"))
            self._event(f"launcher=ray: wire.transport ipc -> tcp (ipc cannot cross machines; "
                        f"learner binds {cfg.wire.host})")
        self.cfg = cfg
        self.launcher = launcher or make_launcher(cfg)
        if getattr(self.launcher, "nodes", 1) > 1 and is_loopback_host(cfg.wire.host):
            self._event(f"wire.host {cfg.wire.host} is loopback but the Ray cluster has "
                        f"{self.launcher.nodes} nodes: actors on other nodes cannot reach the "
                        "learner (set wire.host=0.0.0.0 and wire.curve_keys)")
        self._probe_env = env_spec if callable(env_spec) else None
        #: sending ends of the pipes of processes waiting for the env spec
        self._spec_waiters: list[Any] = []
        self.run_dir = run_dir
        self.resume_path = resume_path
        self.resume_generation = resume_generation
        #: the local launcher's ``multiprocessing`` context (None under other launchers)
        self.ctx = self.launcher.ctx if isinstance(self.launcher, LocalLauncher) else None
        self.stop_event = self.launcher.stop_event
        self.status_queue = self.launcher.status_queue
        #: The learner's one final report (done/stopped): unbounded and apart from the status
        #: reports, so a backlog of those can never crowd it out.
        self.final_queue = self.launcher.final_queue
        #: Each actor's last beat (``time.monotonic()`` of this process), by actor id.
        self.heartbeats = self.launcher.heartbeats
        self.learner: Any = None
        self.actors = [_ActorSlot(i) for i in range(cfg.actors.num_procs)]
        self.labeler = _LabelerSlot()
        self.actor_cfg = cfg
        #: The run's CURVE public keys, handed to every process (each reads its own secret
        #: key from ``wire.curve_keys`` on its machine); None without keys.
        self.curve = self._load_curve_keys(cfg)
        self.addresses: dict[str, str] = {}
        self.last_status: dict[str, Any] = {}
        self._ipc_dir: str | None = None
        self._interrupted = False
        self._writer: Any = None

    # -- wiring ----------------------------------------------------------------------------
    @staticmethod
    def _load_curve_keys(cfg: Any) -> Any:
        if cfg.wire.curve_keys is None:
            return None
        from explorer.core.curve import load_curve_keys  # pyzmq's auth: only when used

        return load_curve_keys(cfg.wire.curve_keys)

    def _bind_addresses(self) -> tuple[str, str]:
        wire = self.cfg.wire
        if wire.transport == "tcp":
            return (f"tcp://{wire.host}:{wire.rollout_port}",
                    f"tcp://{wire.host}:{wire.weights_port}")
        # ipc paths must stay short (~100 chars), so they live in a fresh temp dir
        self._ipc_dir = tempfile.mkdtemp(prefix="explorer-")
        return f"ipc://{self._ipc_dir}/rollouts", f"ipc://{self._ipc_dir}/weights"

    def _seeds(self, actor_id: int, incarnation: int) -> tuple[int, int]:
        """Env and torch seeds, distinct per actor, restart and resume, from the root seed."""
        seq = np.random.SeedSequence(self.cfg.seed,
                                     spawn_key=(actor_id, incarnation, self.resume_generation))
        env_seed, torch_seed = seq.generate_state(2)
        return int(env_seed % (1 << 31)), int(torch_seed)

    # -- labeler ---------------------------------------------------------------------------
    @property
    def _labeler_wanted(self) -> bool:
        lab = self.cfg.llm_labeler
        return bool(lab.labeler) and self.cfg.text.source is not None

    def _start_labeler(self) -> None:
        lab = self.cfg.llm_labeler
        slot = self.labeler
        store = lab.store_path or str(self.run_dir / "labels.sqlite")
        args = ServiceArgs(cfg=lab, store_path=store,
                           texts_address=slot.texts or lab.texts_address,
                           updates_address=slot.updates or lab.updates_address,
                           stop_event=self.stop_event, status_queue=self.status_queue,
                           seed=self.cfg.seed, curve=self.curve)
        slot.process = self.launcher.start("labeler", labeler_process, args, role="labeler")
        slot.restart_at = None

    def _await_report(self, process: Any, kinds: set[str]) -> tuple[str, dict] | None:
        """The first status report of one of ``kinds``; None if ``process`` died first, no
        report came in time, or Ctrl-C."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._interrupted:
            try:
                kind, payload = self.status_queue.get(timeout=_TICK_S)
            except queue.Empty:
                if not process.is_alive():
                    return None
                continue
            if kind in kinds:
                return kind, payload
        return None

    def _wait_labeler_ready(self) -> bool:
        """First start: wait for the labeler's addresses (it binds, actors connect)."""
        proc = self.labeler.process
        report = self._await_report(proc, {"labeler_ready", "labeler_failed"})
        if report is None:
            self.labeler.error = ("no ready report in time" if proc.is_alive()
                                  else f"exit code {proc.exitcode}")
            return False
        kind, payload = report
        if kind == "labeler_failed":
            self.labeler.error = payload["error"]
            return False
        self.labeler.texts = self.launcher.reachable(payload["texts"], proc)
        self.labeler.updates = self.launcher.reachable(payload["updates"], proc)
        self._event(f"started labeler ({self.launcher.where(proc)}; {payload['labels']} labels and "
                    f"{payload['seen']} texts in its store, {payload['queued']} queued)")
        return True

    def _connect_labeler(self) -> None:
        """Start (or find) the labeler and point actors at it."""
        lab = self.cfg.llm_labeler
        if lab.external:
            self.labeler.texts, self.labeler.updates = lab.texts_address, lab.updates_address
        else:
            self._start_labeler()
            if not self._wait_labeler_ready():
                raise _LabelerStartError(self.labeler.error)
        text = dataclasses.replace(self.cfg.text, labeler_address=self.labeler.texts,
                                   updates_address=self.labeler.updates)
        self.actor_cfg = dataclasses.replace(self.cfg, text=text)

    def _watch_labeler(self, now: float) -> None:
        """Restart a dead labeler with back-off; its store makes the restart lossless."""
        slot = self.labeler
        if slot.process is None:
            return
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                self._start_labeler()
                self._event(f"restarted labeler (restart {slot.restarts}, "
                            f"{self.launcher.where(slot.process)})")
            return
        if slot.process.exitcode is None or slot.restarts >= self.cfg.llm_labeler.max_restarts:
            return
        slot.restarts += 1
        delay = self.cfg.actors.restart_backoff_s * 2 ** min(slot.restarts - 1, 6)
        slot.restart_at = now + delay
        self._event(f"labeler ({self.launcher.where(slot.process)}) died with exit code "
                    f"{slot.process.exitcode}; restarting in {delay:.1f}s (actors and learner "
                    "keep running on the last reward table)")
        self._log_restarts()

    def _start_learner(self) -> None:
        rollout_addr, weights_addr = self._bind_addresses()
        # ipc paths and fixed tcp ports are known before the learner binds them: the actors
        # can then start (import torch, build envs) while the learner does the same, and
        # wait for its first weights; a free tcp port (0) is known only from its report.
        args = LearnerArgs(
            cfg=self.cfg, env_spec=self.env_spec, env_spec_pipe=self._spec_pipe(),
            run_dir=str(self.run_dir),
            rollout_address=rollout_addr, weights_address=weights_addr,
            stop_event=self.stop_event, status_queue=self.status_queue,
            final_queue=self.final_queue,
            resume_path=str(self.resume_path) if self.resume_path else None,
            labeler_address=self.labeler.updates or None, curve=self.curve,
        )
        self.learner = self.launcher.start("learner", learner_process, args, role="learner")
        if not (rollout_addr.endswith(":0") or weights_addr.endswith(":0")):
            self.addresses = {"rollout": self.launcher.reachable(rollout_addr, self.learner),
                              "weights": self.launcher.reachable(weights_addr, self.learner)}
        self._event(f"started learner ({self.launcher.where(self.learner)})")

    def _wait_ready(self) -> tuple[str, dict] | None:
        """The learner's ``ready`` (its addresses) or ``bad_checkpoint`` report; None if it
        died or hung before either."""
        report = self._await_report(self.learner, {"ready", "bad_checkpoint"})
        if report is not None and report[0] == "ready":
            self.addresses = {key: self.launcher.reachable(address, self.learner)
                              for key, address in report[1].items()}
        return report

    def _start_actors(self) -> None:
        for slot in self.actors:
            self._start_actor(slot)
        self._event(f"started {len(self.actors)} actors "
                    f"({', '.join(self.launcher.where(s.process) for s in self.actors)})")

    def _start_actor(self, slot: _ActorSlot) -> None:
        env_seed, torch_seed = self._seeds(slot.actor_id, slot.incarnation)
        args = ActorArgs(
            actor_id=slot.actor_id, cfg=self.actor_cfg, env_spec=self.env_spec,
            env_spec_pipe=self._spec_pipe(),
            rollout_address=self.addresses["rollout"],
            weights_address=self.addresses["weights"],
            env_seed=env_seed, torch_seed=torch_seed, stop_event=self.stop_event,
            heartbeats=self.heartbeats, curve=self.curve,
        )
        slot.process = self.launcher.start(f"actor-{slot.actor_id}", actor_process, args,
                                           role="actor")
        slot.incarnation += 1
        slot.restart_at = None
        slot.started_at = time.monotonic()

    # -- watching --------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        self.events.append(text)
        if self.env_spec is None:  # shown once the env probe says the run is valid
            self._held_events.append(text)
            return
        self.reporter.event(text)

    def _watch_actors(self, now: float) -> None:
        cfg = self.cfg.actors
        for slot in self.actors:
            proc = slot.process
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    self._start_actor(slot)
                    self._event(f"restarted actor-{slot.actor_id} (restart {slot.restarts}, "
                                f"{self.launcher.where(slot.process)})")
                continue
            if proc is None:
                continue
            if proc.exitcode is None:
                self._kill_if_hung(slot, now)
                continue
            if slot.restarts >= cfg.max_restarts:
                continue
            slot.restarts += 1
            delay = cfg.restart_backoff_s * 2 ** min(slot.restarts - 1, 6)
            slot.restart_at = now + delay
            self._event(f"actor-{slot.actor_id} ({self.launcher.where(proc)}) died with exit code "
                        f"{proc.exitcode}; restarting in {delay:.1f}s")
            self._log_restarts()

    def _kill_if_hung(self, slot: _ActorSlot, now: float) -> None:
        """SIGKILL an actor whose heartbeat stopped (it is restarted on the next tick).

        Actors beat in every loop that can wait (stepping, blocked on send, waiting for
        weights), so a slow learner never makes a healthy actor look hung.
        """
        timeout = self.cfg.actors.heartbeat_timeout_s
        beat = self.heartbeats[slot.actor_id]
        if beat < slot.started_at:  # still starting (imports, env creation): be patient
            timeout = max(timeout, _STARTUP_GRACE_S)
        silent = now - max(beat, slot.started_at)
        if silent > timeout:
            self._event(f"actor-{slot.actor_id} ({self.launcher.where(slot.process)}) gave no "
                        f"heartbeat "
                        f"for {silent:.0f}s; killing it")
            slot.process.kill()
            slot.process.join(5)

    def _log_restarts(self) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"), filename_suffix=".supervisor")
        total = sum(s.restarts for s in self.actors)
        step = int(self.last_status.get("env_steps", 0))
        self._writer.add_scalar("perf/actor_restarts", total, step)
        if self.labeler.process is not None:
            self._writer.add_scalar("perf/labeler_restarts", self.labeler.restarts, step)
        self._writer.flush()

    def _drain_status(self) -> None:
        """Consume the status reports of the learner and labeler."""
        while True:
            try:
                kind, payload = self.status_queue.get_nowait()
            except queue.Empty:
                return
            if kind == "status":
                self.last_status = payload
                self.reporter.update(payload)
            elif kind == "labeler_failed":
                self._event(f"labeler failed to start: {payload['error']}")

    def _final_report(self) -> tuple[str, dict] | None:
        """The learner's ``(done|stopped, payload)`` once it sent it, else None."""
        try:
            reason, payload = self.final_queue.get_nowait()
        except queue.Empty:
            return None
        if "status" in payload:  # newer than any status report (those may have been dropped)
            self.last_status = payload["status"]
            self.reporter.update(payload["status"])
        return reason, payload

    def _watch_until_final(self) -> tuple[str, dict] | None:
        """Tick until the learner's final report; None if it exited without one."""
        while True:
            # liveness first: a report sent just before the learner exited is then still read
            alive = self.learner.is_alive()
            self._drain_status()
            final = self._final_report()
            if final is not None or not alive:
                return final
            if not self.stop_event.is_set():
                self._watch_actors(time.monotonic())
                self._watch_labeler(time.monotonic())
            time.sleep(_TICK_S)

    # -- lifecycle -------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupted:
            self._event("second Ctrl-C: terminating processes now")
            self._terminate_all()
            return
        self._interrupted = True
        self._event("Ctrl-C: stopping all processes and writing a checkpoint")
        self.stop_event.set()

    def _terminate_all(self) -> None:
        for proc in self._started():
            if proc.is_alive():
                proc.terminate()

    def _started(self) -> list[Any]:
        return [p for p in [self.learner, self.labeler.process,
                            *(s.process for s in self.actors)]
                if p is not None]  # a launcher hands back started processes only

    def _shutdown(self, learner_timeout: float) -> None:
        self.stop_event.set()
        for proc in self._started():
            proc.join(learner_timeout if proc in (self.learner, self.labeler.process)
                      else _ACTOR_EXIT_TIMEOUT_S)
        self._terminate_all()
        for proc in self._started():
            proc.join(1.0)
        if self._writer is not None:
            self._writer.close()
        if self._ipc_dir:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
        self.launcher.close()

    def run(self) -> RunResult:
        """Run until the learner finishes, fails, or Ctrl-C; always leaves no process behind."""
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            if self._labeler_wanted:
                try:
                    self._connect_labeler()
                except _LabelerStartError as err:
                    self._event(f"labeler could not start: {err}")
                    return RunResult(reason="labeler_failed", run_dir=self.run_dir,
                                     checkpoint=None, last_status={"error": str(err)})
            self._start_learner()
            if self.addresses:  # known already: start-up of learner and actors overlaps
                self._start_actors()
            self._send_env_spec()
            ready = self._wait_ready()
            if ready is None:
                return self._learner_failed()
            if ready[0] == "bad_checkpoint":
                return RunResult(reason="bad_checkpoint", run_dir=self.run_dir,
                                 checkpoint=self.resume_path, last_status=ready[1])
            if self.actors[0].process is None:
                self._start_actors()
            self.reporter.start(self.cfg.total_env_steps)
            final = self._watch_until_final()
            if final is None:
                return self._learner_failed()
            reason, payload = final
            return RunResult(reason=reason, run_dir=self.run_dir,
                             checkpoint=Path(payload["checkpoint"]),
                             env_steps=int(payload["env_steps"]),
                             actor_restarts=sum(s.restarts for s in self.actors),
                             last_status=self.last_status)
        finally:
            self.reporter.stop()
            self._shutdown(_LEARNER_EXIT_TIMEOUT_S)
            signal.signal(signal.SIGINT, previous)

    def _spec_pipe(self) -> Any:
        """None when the env spec is known; else the receiving end of a new pipe, whose
        sending end :meth:`_send_env_spec` uses once the probe is done."""
        if self.env_spec is not None:
            return None
        receiver, sender = self.launcher.spec_pipe()
        self._spec_waiters.append(sender)
        return receiver

    def _send_env_spec(self) -> None:
        """Probe the env while the started processes import, then hand them the spec. A
        failed probe closes the pipes (the processes exit) and raises."""
        if self._probe_env is not None:
            probe, self._probe_env = self._probe_env, None
            try:
                self.env_spec = probe()
            except BaseException:
                for sender in self._spec_waiters:
                    sender.close()
                self._spec_waiters.clear()
                raise
        for sender in self._spec_waiters:
            sender.send(self.env_spec)
            sender.close()
        self._spec_waiters.clear()
        for text in self._held_events:
            self.reporter.event(text)
        self._held_events.clear()

    def _learner_failed(self) -> RunResult:
        code = self.learner.exitcode if self.learner is not None else None
        from explorer.core.checkpoint import latest_checkpoint  # imports torch: only here

        ckpt = latest_checkpoint(self.run_dir / "checkpoints")
        # exit code 0 without a final report cannot come from a finished run: say so apart
        what = "exited without its final report" if code == 0 else f"died (exit code {code})"
        self._event(f"learner {what}; stopping all actors")
        return RunResult(reason="learner_failed", run_dir=self.run_dir, checkpoint=ckpt,
                         env_steps=int(self.last_status.get("env_steps", 0)),
                         actor_restarts=sum(s.restarts for s in self.actors),
                         last_status=self.last_status)

