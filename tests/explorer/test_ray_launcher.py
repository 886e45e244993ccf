"""The Ray launcher on real Ray instances: a kill -9 of an actor's OS process is restarted by
the supervisor and a stop writes a checkpoint (in-process supervisor, on a cluster the test
starts: head on 127.0.0.1, 4 logical CPUs, no dashboard, always shut down); ``explorer run
... launcher=ray`` (its own private Ray instance) checkpoints on Ctrl-C and ``--resume`` trains
on to ``done``. Plus the ``launcher`` config section.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import run_beside, wait_for

from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint, load_checkpoint
from explorer.core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                  reason="ray is not installed (pip install -e '.[ray]')")


# -- config --------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "address"), [
    (["launcher=ray"], None),
    (["launcher=ray", "launcher.address=auto"], "auto"),
    (["launcher.address=10.0.0.1:6379", "launcher=ray"], "10.0.0.1:6379"),
])
def test_launcher_shorthand_sets_kind_in_any_order(overrides: list[str],
                                                   address: str | None) -> None:
    cfg = load_config(QUICKSTART, overrides)
    assert (cfg.launcher.kind, cfg.launcher.address) == ("ray", address)


def test_launcher_shorthand_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("launcher: ray\n")
    assert load_config(path).launcher.kind == "ray"
    assert load_config(QUICKSTART).launcher.kind == "local"


@pytest.mark.parametrize(("overrides", "problem"), [
    (["launcher=rey"], "launcher.kind: 'rey' is not one of local, ray; did you mean 'ray'?"),
    (["launcher.address=auto"], "launcher.address: 'auto' is for launcher.kind=ray"),
    (["launcher=ray", "launcher.address=not an address"], "launcher.address: 'not an address' "
                                                          "must match auto, HOST:PORT"),
    (["launcher.adress=x"], "unknown key 'launcher.adress'; did you mean 'launcher.address'?"),
    (["launcher=ray", "launcher.resources.actor_custom.node=abc"],
     "launcher.resources.actor_custom.node: expected an amount >= 0, got 'abc' (str)"),
    (["launcher=ray", "launcher.resources.actor_cpus=-1"],
     "launcher.resources.actor_cpus: must be >= 0"),
])
def test_launcher_config_errors_name_the_key(overrides: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, overrides)
    assert any(line.startswith(problem) or problem in line for line in err.value.problems), \
        err.value.problems


def test_public_bind_under_ray_still_needs_curve_keys() -> None:
    with pytest.raises(ConfigError, match=r"wire\.host: binding 0\.0\.0\.0 .* needs CURVE keys"):
        load_config(QUICKSTART, ["launcher=ray", "wire.transport=tcp", "wire.host=0.0.0.0"])


# -- a real Ray cluster ----------------------------------------------------------------------
@pytest.fixture
def ray_head():
    """A one-node Ray cluster on 127.0.0.1, shut down after the test; yields its address."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    info = ray.init(address="local", num_cpus=4, include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    configure_logging=False, log_to_driver=True)
    try:
        yield info.address_info["gcs_address"]
    finally:
        ray.shutdown()


@requires_ray
@pytest.mark.timeout(120)
def test_ray_control_channels_long_poll(ray_head: str) -> None:
    """Stop event and queues answer from open long-poll calls; a gone control actor reads as
    stopped and as an empty queue."""
    import ray

    from explorer.app.ray_launcher import RayEvent, RayQueue, _Control

    control = _Control.remote()
    setter, watcher = RayEvent(control), RayEvent(control)  # two processes' views
    writer, reader = RayQueue(control, "status", maxsize=2), RayQueue(control, "status")
    assert not watcher.is_set()
    with pytest.raises(queue.Empty):
        reader.get(timeout=0.3)
    for item in (1, 2):  # the first answers the reader's open call
        writer.put_nowait(item)
    assert [reader.get(timeout=30), reader.get(timeout=30)] == [1, 2]
    with pytest.raises(queue.Empty):
        reader.get(timeout=0.3)
    full = RayQueue(control, "full", maxsize=1)
    for item in (3, 4):  # nobody reads "full" yet: the second finds it full and is dropped
        full.put_nowait(item)
    assert full.get(timeout=30) == 3
    with pytest.raises(queue.Empty):
        full.get(timeout=0.3)
    setter.set()
    wait_for(watcher.is_set, 30, "the stop seen by another process")
    late = RayEvent(control)
    ray.kill(control)
    wait_for(late.is_set, 30, "a gone control actor read as stopped")
    with pytest.raises(queue.Empty):
        reader.get(timeout=30)


@requires_ray
@pytest.mark.timeout(240)
def test_ray_run_restarts_a_killed_actor_and_stop_writes_checkpoint(tmp_path: Path,
                                                                     ray_head: str) -> None:
    from actors.envs import probe_env_spec
    from explorer.app.rundir import create_run_dir
    from explorer.app.supervisor import Supervisor

    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=10000000",
                                 "target_return=null", "actors.restart_backoff_s=0.5",
                                 "launcher=ray"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    observed: dict[str, object] = {}

    def chaos() -> None:
        try:
            wait_for(lambda: sup.last_status.get("env_steps", 0) > 3000, 120, "first steps")
            victim = sup.actors[0].process.pid
            observed["victim_pid"] = victim
            os.kill(victim, signal.SIGKILL)  # the OS process Ray runs actor-0 in
            wait_for(lambda: any("restarted actor-0" in e for e in sup.events), 60, "restart")
            observed["new_pid"] = sup.actors[0].process.pid
            updates = sup.last_status["updates"]
            wait_for(lambda: sup.last_status["updates"] > updates + 5, 60,
                      "training after the restart")
            observed["trained_after"] = True
        finally:
            sup.stop_event.set()

    result = run_beside(sup, chaos)
    assert observed.get("trained_after"), (observed, sup.events)
    assert observed["new_pid"] != observed["victim_pid"]
    assert result.reason == "stopped" and result.actor_restarts == 1, (result, sup.events)
    assert result.checkpoint == latest_checkpoint(sup.run_dir / "checkpoints")
    assert load_checkpoint(result.checkpoint)["env_steps"] == result.env_steps > 3000
    assert sup.actors[0].process.exitcode == 0  # the replacement stopped cleanly
    assert any("ipc -> tcp" in e for e in sup.events), sup.events
    assert any("started learner (pid" in e and "on 127.0.0.1" in e for e in sup.events)
    assert any("actor-0" in e and "died" in e for e in sup.events), sup.events
    assert result.last_status["received_bytes"] > 0


@requires_ray
@pytest.mark.timeout(180)
def test_ray_learner_takes_the_clusters_gpu_and_actors_take_none(tmp_path: Path) -> None:
    """On a cluster that has a GPU (declared here: Ray counts GPUs as resources, this machine
    has none) the learner's Ray actor reserves it and the actors reserve none; the learner
    then trains on whatever torch sees (the CPU here, CUDA on a GPU node)."""
    import ray

    from actors.envs import probe_env_spec
    from explorer.app.rundir import create_run_dir
    from explorer.app.supervisor import Supervisor

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False,
             _node_ip_address="127.0.0.1", configure_logging=False, log_to_driver=True)
    try:
        cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=10000000",
                                     "target_return=null", "launcher=ray"])
        sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
        seen: dict[str, float] = {}

        def watch() -> None:
            try:
                wait_for(lambda: sup.last_status.get("updates", 0) > 3, 120, "training")
                seen["gpus_free"] = ray.available_resources().get("GPU", 0.0)
                seen["gpus"] = ray.cluster_resources().get("GPU", 0.0)
            finally:
                sup.stop_event.set()

        result = run_beside(sup, watch)
    finally:
        ray.shutdown()
    assert seen == {"gpus_free": 0.0, "gpus": 1.0}, (seen, sup.events)
    assert result.reason == "stopped" and result.env_steps > 0, result


def _run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "explorer.app.cli", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)


@requires_ray
@pytest.mark.timeout(300)
def test_ray_cli_ctrl_c_checkpoints_and_resume_trains_to_done(tmp_path: Path) -> None:
    run_dir = tmp_path / "quickstart"
    proc = _run_cli(str(QUICKSTART), "launcher=ray", f"runs_dir={tmp_path}",
                    "total_env_steps=10000000", "checkpoint_interval_s=1")

    def trained() -> bool:  # a periodic checkpoint after a few updates
        path = latest_checkpoint(run_dir / "checkpoints")
        return path is not None and checkpoint_env_steps(path) >= 3 * 2048

    deadline = time.monotonic() + 150
    while not trained() and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no trained checkpoint within 150 s:\n{proc.communicate()[0]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the supervisor's handler stops the run
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert "stopped:" in out and f"explorer run --resume {run_dir}" in out, out
    first_path = latest_checkpoint(run_dir / "checkpoints")
    first = load_checkpoint(first_path)
    assert f"{first['env_steps']:,} env steps; checkpoint {first_path}" in out, out

    budget = first["env_steps"] + 4096
    resume = _run_cli("--resume", str(run_dir), f"total_env_steps={budget}", "--quiet")
    out2, _ = resume.communicate(timeout=180)
    assert resume.returncode == 0, out2
    assert f"resuming from {first_path.name}" in out2 and "done:" in out2, out2
    second = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert budget <= second["env_steps"] < budget + 20_000  # continued, not from zero
    assert second["learner"]["updates"] > first["learner"]["updates"] > 0


@requires_ray
@pytest.mark.timeout(240)
def test_ray_run_with_labeler_labels_texts_and_ends_done(tmp_path: Path, ray_head: str) -> None:
    """The labeler is a Ray actor too; actors find it through the addresses it reports."""
    import sqlite3

    from actors.envs import probe_env_spec
    from explorer.app.rundir import create_run_dir
    from explorer.app.supervisor import Supervisor

    cfg = load_config(ROOT / "configs" / "nethack_oni.yaml", [
        f"runs_dir={tmp_path}", "total_env_steps=4096", "actors.num_procs=1",
        "env.envs_per_actor=8", "env.max_episode_steps=300", "learner.model.hidden_size=32",
        "learner.model.core=none",
        "learner.model.encoder_kwargs={embed_dim: 8, full_map: false, message_dim: 0}",
        "llm_labeler.labeler=rules", "launcher=ray"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    result = sup.run()
    assert result.reason == "done", (result, sup.events)
    assert any("started labeler (pid" in e and "on 127.0.0.1" in e for e in sup.events)
    with sqlite3.connect(sup.run_dir / "labels.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0] > 0
