"""``explorer search`` starts its evaluation workers through the run's launcher: the
``launcher`` section (same keys and checks as a run's), and ``launcher=ray`` on a real Ray
instance the test starts (head on 127.0.0.1, 4 logical CPUs, no dashboard, always shut down),
where a kill -9 of an evaluator's OS process is restarted and the search ends with every
genome evaluated, as a local-launcher search of the same seed does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import threading
import time

import pytest
import torch

import explorer.app.search as search_module
from explorer.app.cli import main
from explorer.app.search_pool import EvaluationPool
from explorer.core.config import ConfigError, load_config
from explorer.novelty.config import SearchConfig, search_config_problems

NS = "configs/hardmaze_ns.yaml"
# episodes long enough that a worker holds a task most of the time (the kill lands in one)
TINY = ["novelty.pop_size=10", "env.max_episode_steps=200", "workers.num_procs=2",
        "workers.task_size=4", "workers.restart_backoff_s=0.1", "log_interval_s=0.5",
        "budget=130"]

requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                  reason="ray is not installed (pip install -e '.[ray]')")


def _search_config(overrides: list[str]) -> SearchConfig:
    return load_config(NS, overrides, checks=(search_config_problems,), schema=SearchConfig)


# -- config --------------------------------------------------------------------------------
def test_search_launcher_section_is_the_runs() -> None:
    assert _search_config([]).launcher.kind == "local"
    cfg = _search_config(["launcher=ray", "launcher.resources.actor_cpus=0.5"])
    assert (cfg.launcher.kind, cfg.launcher.resources.actor_cpus) == ("ray", 0.5)


@pytest.mark.parametrize(("overrides", "problem"), [
    (["launcher.adress=x"], "unknown key 'launcher.adress'; did you mean 'launcher.address'?"),
    (["launcher=rey"], "launcher.kind: 'rey' is not one of local, ray; did you mean 'ray'?"),
    (["launcher.address=auto"], "launcher.address: 'auto' is for launcher.kind=ray"),
])
def test_search_launcher_errors_name_the_key(overrides: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        _search_config(overrides)
    assert any(problem in line for line in err.value.problems), err.value.problems


# -- a real Ray instance ----------------------------------------------------------------------
def _session_processes(session_dir: str) -> list[int]:
    """Pids of processes whose command line names ``session_dir`` (this instance's)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if session_dir.encode() in f.read():
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def ray_head():
    """A one-node Ray instance on 127.0.0.1, shut down after the test (with any of its
    processes still running 10 s later, e.g. a dashboard agent left behind)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             _node_ip_address="127.0.0.1", configure_logging=False, log_to_driver=True)
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    try:
        yield
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 10
        while _session_processes(session_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _session_processes(session_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _final_state(run_dir):
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    return torch.load(ckpts[-1], weights_only=True)


@requires_ray
@pytest.mark.timeout(420)
def test_ray_search_restarts_a_killed_evaluator_and_evaluates_every_genome(
        tmp_path, ray_head, monkeypatch) -> None:
    pools: list[EvaluationPool] = []
    events: list[str] = []

    class RecordingPool(EvaluationPool):
        def __init__(self, *args, on_event, **kwargs) -> None:
            super().__init__(*args, on_event=lambda e: (events.append(e), on_event(e)),
                             **kwargs)
            pools.append(self)

    monkeypatch.setattr(search_module, "EvaluationPool", RecordingPool)
    observed: dict[str, object] = {}

    def kill_busy_evaluator() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            slot = pools[0].slots[0] if pools else None
            if slot is not None and slot.identity is not None and slot.task is not None:
                observed["pid"] = pid = slot.process.pid  # the OS process Ray runs it in
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_busy_evaluator, daemon=True)
    killer.start()
    common = ["search", "--quiet", NS, *TINY, f"runs_dir={tmp_path}"]
    assert main([*common, "name=ray", "launcher=ray"]) == 0
    killer.join(5)
    out = "\n".join(events)
    pool = pools[0]
    assert pool.launcher.kind == "ray" and pool.cfg.workers.transport == "tcp"
    assert "pid" in observed, "no evaluator was killed while it held a task"
    assert pool.restarts >= 1
    assert "evaluated again" in out and "restarted evaluator-0" in out, out
    assert " on 127.0.0.1" in out, out  # `where` of a Ray actor: pid ... on its node

    # every genome was evaluated, with the results a local-launcher search gets
    monkeypatch.setattr(search_module, "EvaluationPool", EvaluationPool)
    assert main([*common, "name=local"]) == 0
    ray_state, local = _final_state(tmp_path / "ray"), _final_state(tmp_path / "local")
    assert ray_state["scheduler"]["evaluations"] == local["scheduler"]["evaluations"] == 130
    for key in ("solutions", "descriptors", "fitness"):
        assert torch.equal(ray_state["scheduler"]["archive"][key],
                           local["scheduler"]["archive"][key])
    assert torch.equal(ray_state["coverage"]["counts"], local["coverage"]["counts"])
