"""Fault handling of the real process tree: kill -9 of an actor, Ctrl-C, resume."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from waiting import run_beside, wait_for

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import latest_checkpoint, load_checkpoint
from explorer.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"


@pytest.mark.timeout(300)
def test_kill_9_actor_is_restarted_and_training_continues(tmp_path: Path) -> None:
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=10000000",
                                 "actors.restart_backoff_s=0.5", "target_return=null"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    observed: dict[str, object] = {}

    def chaos() -> None:
        try:
            wait_for(lambda: sup.last_status.get("env_steps", 0) > 5000, 120, "first steps")
            victim = sup.actors[0].process
            observed["victim_pid"] = victim.pid
            os.kill(victim.pid, signal.SIGKILL)
            wait_for(lambda: any("restarted actor-0" in e for e in sup.events), 60, "restart")
            observed["new_pid"] = sup.actors[0].process.pid
            updates_at_restart = sup.last_status["updates"]
            observed["steps_at_restart"] = sup.last_status["env_steps"]
            # the new actor connects and its rollouts are trained on
            wait_for(lambda: sup.last_status["updates"] > updates_at_restart + 20, 120,
                      "updates after the restart")
            observed["steps_after"] = sup.last_status["env_steps"]
        finally:
            sup.stop_event.set()

    result = run_beside(sup, chaos)
    assert observed.get("new_pid") not in (None, observed["victim_pid"]), observed
    assert result.actor_restarts == 1
    assert observed["steps_after"] > observed["steps_at_restart"]
    assert sup.actors[0].process.exitcode == 0  # the replacement stopped cleanly
    assert result.reason == "stopped"


def _start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "explorer.app.cli", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)


def _tb_steps(run_dir: Path, tag: str) -> list[int]:
    if not (run_dir / "tb").is_dir():
        return []
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def _adam_steps(ckpt: dict) -> int:
    states = ckpt["learner"]["optimizer"]["state"].values()
    return int(next(iter(states))["step"])


@pytest.mark.timeout(400)
def test_sigint_writes_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    proc = _start_run(str(CARTPOLE), f"runs_dir={tmp_path}", "total_env_steps=10000000",
                      "target_return=null", "log_interval_s=1", "--quiet")
    run_dir = tmp_path / "cartpole"
    wait_for(lambda: max(_tb_steps(run_dir, "perf/fps"), default=0) > 5000, 180,
              "a few thousand env steps")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 0, out
    assert took < 20, f"shutdown took {took:.1f}s"
    assert "Traceback" not in out, out
    assert f"run directory: {run_dir}" in out
    assert f"explorer run --resume {run_dir}" in out

    first_path = latest_checkpoint(run_dir / "checkpoints")
    first = load_checkpoint(first_path)
    steps1 = first["env_steps"]
    version1 = first["learner"]["policy_version"]
    adam1 = _adam_steps(first)
    assert steps1 > 0 and version1 > 0 and adam1 > 0
    assert first["learner"]["value_norm"]["weight"][0] > 0  # normaliser state is saved

    budget = steps1 + 30_000
    resume = _start_run("--resume", str(run_dir), f"total_env_steps={budget}", "--quiet")
    out2, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, out2
    assert f"resuming from {first_path.name}" in out2
    second = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    cfg = load_config(run_dir / "config.yaml")
    per_update = cfg.learner.epochs * cfg.learner.minibatches
    updates = second["learner"]["updates"] - first["learner"]["updates"]
    assert second["env_steps"] >= budget
    assert second["env_steps"] - steps1 < 60_000  # continued, not restarted from zero
    assert second["learner"]["policy_version"] == version1 + updates
    assert _adam_steps(second) == adam1 + updates * per_update  # optimiser state continued
    assert second["episodes"] > first["episodes"]
    # TensorBoard curves continue after the resume point instead of restarting at 0
    steps = _tb_steps(run_dir, "perf/fps")
    assert steps == sorted(steps), "TensorBoard steps go backwards after resume"
    assert max(steps) >= budget
    meta = (run_dir / "meta.json").read_text()
    assert '"resumes": 1' in meta


@pytest.mark.timeout(300)
def test_learner_death_stops_everything_and_names_checkpoint(tmp_path: Path) -> None:
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=10000000",
                                 "target_return=null", "checkpoint_interval_s=1"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))

    def kill_learner() -> None:
        wait_for(lambda: latest_checkpoint(sup.run_dir / "checkpoints") is not None, 120,
                  "a periodic checkpoint")
        os.kill(sup.learner.pid, signal.SIGKILL)

    result = run_beside(sup, kill_learner)
    assert result.reason == "learner_failed" and result.exit_code == 1
    assert result.checkpoint == latest_checkpoint(sup.run_dir / "checkpoints")
    assert any("learner died (exit code -9)" in e for e in sup.events), sup.events
    assert all(slot.process.exitcode is not None for slot in sup.actors), "actor left running"


@pytest.mark.timeout(300)
def test_hung_actor_is_killed_and_replaced(tmp_path: Path) -> None:
    """SIGSTOP freezes an actor without killing it: the heartbeat watchdog must notice."""
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=10000000",
                                 "target_return=null", "actors.heartbeat_timeout_s=4",
                                 "actors.restart_backoff_s=0.2"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    observed: dict[str, int] = {}

    def freeze() -> None:
        try:
            wait_for(lambda: sup.last_status.get("env_steps", 0) > 5000
                      and time.monotonic() - sup.actors[1].started_at > 5, 120, "steady state")
            observed["frozen_pid"] = sup.actors[1].process.pid
            os.kill(observed["frozen_pid"], signal.SIGSTOP)
            wait_for(lambda: any("restarted actor-1" in e for e in sup.events), 60,
                      "the frozen actor to be replaced")
            observed["new_pid"] = sup.actors[1].process.pid
            beat = sup.heartbeats[1]
            wait_for(lambda: sup.heartbeats[1] > beat, 60, "a heartbeat from the replacement")
        finally:
            sup.stop_event.set()

    result = run_beside(sup, freeze)
    assert any("actor-1" in e and "gave no heartbeat" in e for e in sup.events), sup.events
    assert observed["new_pid"] != observed["frozen_pid"]
    assert result.actor_restarts == 1


@pytest.mark.timeout(300)
def test_full_status_queue_at_the_end_still_ends_done(tmp_path: Path) -> None:
    """The supervisor falls behind just as the learner finishes (its status queue full of
    unread reports): the learner's final report must still arrive, and a learner that
    finished fine must not be reported as failed."""
    steps = 20_000
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", f"total_env_steps={steps}",
                                 "target_return=null", "checkpoint_interval_s=3600"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    sup.status_queue = sup.ctx.Queue(maxsize=4)  # replaced before any process gets it
    drain = sup._drain_status

    def falls_behind() -> None:
        """Stands in for ``_drain_status``: reads nothing while the learner lives, and keeps
        the queue full meanwhile."""
        if not sup.learner.is_alive():
            return drain()
        with contextlib.suppress(queue.Full):
            while True:
                sup.status_queue.put_nowait(("status", {"filler": True}))
        return None

    sup._drain_status = falls_behind
    result = sup.run()
    assert result.reason == "done", (result, sup.events)
    assert result.exit_code == 0
    assert result.env_steps >= steps
    assert result.checkpoint == latest_checkpoint(sup.run_dir / "checkpoints")
    assert result.last_status.get("env_steps", 0) >= steps  # the final status came too
    assert not any("learner" in e and ("died" in e or "without" in e) for e in sup.events)
