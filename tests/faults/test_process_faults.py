"""Processes frozen, throttled or killed under a real run (learner, actors, sockets, files).

Covered elsewhere, not repeated here: kill -9 of an actor (restarted, training goes on), a
frozen actor (heartbeat watchdog), kill -9 of the learner (run ends naming its checkpoint) and
Ctrl-C + ``--resume``: tests/test_supervision.py; kill -9 of the labeler and a dead LLM server:
tests/llm_labeler/test_labeler_runs.py; malformed frames: tests/learner/
test_learner_socket_faults.py (rollout socket) and tests/llm_labeler/test_service.py (texts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import run_beside, wait_for

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint, load_checkpoint
from explorer.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"
_TICKS = os.sysconf("SC_CLK_TCK")

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def _supervisor(tmp_path: Path, *overrides: str) -> Supervisor:
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=100000000",
                                 "target_return=null", *overrides])
    return Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))


def _run_with(sup: Supervisor, chaos) -> tuple[object, dict]:
    """Run ``sup`` while ``chaos(observed)`` runs in a thread; the run stops after it."""
    observed: dict = {}

    def body() -> None:
        try:
            chaos(observed)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            observed["chaos_error"] = repr(exc)
        finally:
            sup.stop_event.set()

    result = run_beside(sup, body)
    assert "chaos_error" not in observed, (observed["chaos_error"], sup.events)
    return result, observed


@pytest.mark.timeout(300)
def test_learner_frozen_then_continued_actors_wait_without_spinning(tmp_path: Path) -> None:
    """SIGSTOP the learner: the actors block on their full send queues, keep beating (not
    killed as hung), burn little CPU; after SIGCONT training goes on with the same actors."""
    stop_s = 4.0
    sup = _supervisor(tmp_path, "actors.heartbeat_timeout_s=4")

    def chaos(observed: dict) -> None:
        wait_for(lambda: sup.last_status.get("updates", 0) > 10, 180, "steady training")
        actors = [slot.process.pid for slot in sup.actors]
        observed["actors"] = actors
        learner = sup.learner.pid
        os.kill(learner, signal.SIGSTOP)
        try:
            time.sleep(1.0)  # the actors fill their queues and block
            cpu0 = [cpu_seconds(pid) for pid in actors]
            wall0 = time.monotonic()
            time.sleep(stop_s)
            observed["cpu_frac"] = [(cpu_seconds(pid) - c) / (time.monotonic() - wall0)
                                    for pid, c in zip(actors, cpu0, strict=True)]
        finally:
            os.kill(learner, signal.SIGCONT)
        updates = sup.last_status.get("updates", 0)
        wait_for(lambda: sup.last_status.get("updates", 0) > updates + 10, 120,
                  "training after SIGCONT")
        observed["actors_after"] = [slot.process.pid for slot in sup.actors]

    result, observed = _run_with(sup, chaos)
    assert result.reason == "stopped", (result, sup.events)
    assert result.actor_restarts == 0, sup.events  # none was taken for hung, none crashed
    assert observed["actors_after"] == observed["actors"]
    # blocked, not spinning: a busy-waiting actor would use ~100% of a core
    assert all(frac < 0.25 for frac in observed["cpu_frac"]), observed["cpu_frac"]
    assert all(slot.process.exitcode == 0 for slot in sup.actors)


@pytest.mark.timeout(300)
def test_throttled_actor_is_slow_not_dead(tmp_path: Path) -> None:
    """An actor frozen half the time (SIGSTOP/SIGCONT duty cycle, as a CPU-starved host):
    the watchdog does not take it for hung and its rollouts still arrive."""
    sup = _supervisor(tmp_path, "actors.heartbeat_timeout_s=5")

    def chaos(observed: dict) -> None:
        wait_for(lambda: sup.last_status.get("updates", 0) > 10, 180, "steady training")
        victim = sup.actors[0].process.pid
        observed["victim"] = victim
        received = sup.last_status.get("received", 0)
        end = time.monotonic() + 6
        while time.monotonic() < end:
            os.kill(victim, signal.SIGSTOP)
            time.sleep(0.5)
            os.kill(victim, signal.SIGCONT)
            time.sleep(0.5)
        observed["received"] = sup.last_status.get("received", 0) - received
        observed["seen"] = sup.last_status.get("actors_seen", [])
        observed["after"] = sup.actors[0].process.pid

    result, observed = _run_with(sup, chaos)
    assert result.reason == "stopped", (result, sup.events)
    assert result.actor_restarts == 0 and observed["after"] == observed["victim"], sup.events
    assert observed["received"] > 0 and 0 in observed["seen"], observed


@pytest.mark.timeout(400)
def test_learner_killed_9_resumes_from_its_last_periodic_checkpoint(tmp_path: Path) -> None:
    """kill -9 of the learner, then ``explorer run --resume``: the run continues from the
    newest periodic checkpoint (the steps after it are lost, and only those), a temp file a
    kill mid-write would leave is ignored, and the resumed run reaches done."""
    sup = _supervisor(tmp_path, "checkpoint_interval_s=1", "actors.num_procs=1")
    checkpoints = sup.run_dir / "checkpoints"

    def chaos(observed: dict) -> None:
        wait_for(lambda: latest_checkpoint(checkpoints) is not None
                  and sup.last_status.get("updates", 0) > 10, 180, "a periodic checkpoint")
        os.kill(sup.learner.pid, signal.SIGKILL)
        wait_for(lambda: not sup.learner.is_alive(), 30, "the learner to die")
        observed["steps_at_kill"] = sup.last_status.get("env_steps", 0)

    result, observed = _run_with(sup, chaos)
    assert result.reason == "learner_failed" and result.checkpoint is not None, sup.events
    assert all(slot.process.exitcode is not None for slot in sup.actors)
    kept = checkpoint_env_steps(result.checkpoint)
    assert 0 < kept <= observed["steps_at_kill"]
    # what a kill in the middle of a checkpoint write leaves behind
    stray = checkpoints / f"ckpt_{kept + 1:012d}.tmp"
    stray.write_bytes(b"PK\x03\x04 half a zip")

    budget = kept + 4096
    out = subprocess.run([sys.executable, "-m", "explorer.app.cli", "run", "--resume",
                          str(sup.run_dir), f"total_env_steps={budget}", "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert f"resuming from {result.checkpoint.name}" in log, log
    assert "Traceback" not in log, log
    final = load_checkpoint(latest_checkpoint(checkpoints))
    assert not stray.exists()  # removed by the next checkpoint: it held disk space
    assert budget <= final["env_steps"] < budget + 20_000  # continued, not from zero
    assert final["learner"]["updates"] > load_checkpoint(result.checkpoint)["learner"]["updates"]
