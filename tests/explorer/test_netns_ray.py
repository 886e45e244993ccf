"""Learner and actors on two Ray nodes in different network namespaces, joined by a veth pair:
rollouts and weights really cross a link, with CURVE (the learner binds 0.0.0.0).

The test process is the Ray head in this namespace (10.213.S.1); a second Ray node runs in a
fresh namespace (10.213.S.2) and offers the custom resource ``netns_actor``, which the run's
actors ask for (``launcher.resources.actor_custom``). Skipped, with the reason, where network
namespaces cannot be made (no root, a container without CAP_NET_ADMIN). Namespace, veth and
the second node are always removed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
RAY = Path(sys.executable).with_name("ray")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (pip install -e '.[ray]')")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


@pytest.fixture
def veth_netns():
    """``(namespace, host address, namespace address, host-side interface)``."""
    if shutil.which("ip") is None:
        pytest.skip("network namespaces: no `ip` command here")
    slot = os.getpid() % 200 + 20  # a subnet of its own per test process
    ns, host_if, ns_if = f"explorer-t{os.getpid()}", f"exa{slot}", f"exb{slot}"
    made = _ip("netns", "add", ns, check=False)
    if made.returncode != 0:
        pytest.skip(f"network namespaces not permitted here: {made.stderr.strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"10.213.{slot}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for cmd in (["addr", "add", f"10.213.{slot}.2/24", "dev", ns_if],
                    ["link", "set", ns_if, "up"], ["link", "set", "lo", "up"]):
            _ip("netns", "exec", ns, "ip", *cmd)
        yield ns, f"10.213.{slot}.1", f"10.213.{slot}.2", host_if
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", ns, check=False)


@pytest.fixture
def two_node_cluster(veth_netns, tmp_path: Path):
    """A Ray head here and a second node in the namespace; yields ``veth_netns``."""
    import ray

    ns, host_ip, ns_ip, _ = veth_netns
    if ray.is_initialized():
        ray.shutdown()
    info = ray.init(address="local", num_cpus=2, include_dashboard=False,
                    _node_ip_address=host_ip,
                    configure_logging=False, log_to_driver=True)
    gcs = info.address_info["gcs_address"]
    port = gcs.rsplit(":", 1)[1]
    sockets = tmp_path / "node2"  # the head's session dir holds the head's sockets
    sockets.mkdir()
    node = subprocess.Popen(
        ["ip", "netns", "exec", ns, str(RAY), "start", f"--address={host_ip}:{port}",
         f"--node-ip-address={ns_ip}", "--num-cpus=2", "--block", "--disable-usage-stats",
         "--resources", json.dumps({"netns_actor": 2}),
         f"--plasma-store-socket-name={sockets}/plasma",
         f"--raylet-socket-name={sockets}/raylet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            if node.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"second Ray node did not join:\n{node.communicate()[0]}")
            time.sleep(0.5)
        yield veth_netns
    finally:
        ray.shutdown()
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGTERM)  # ray start --block stops its node
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(10)
        # `ray start` leaves this cluster as the machine's default for `ray.init()`: not ours
        current = Path("/tmp/ray/ray_current_cluster")
        with contextlib.suppress(OSError):
            if current.read_text().strip() == gcs:
                current.unlink()


def _rx_bytes(interface: str) -> int:
    return int(Path(f"/sys/class/net/{interface}/statistics/rx_bytes").read_text())


@pytest.mark.timeout(300)
def test_actors_in_another_namespace_train_over_veth_with_curve(two_node_cluster,
                                                               tmp_path: Path) -> None:
    from actors.envs import probe_env_spec
    from explorer.app.rundir import create_run_dir
    from explorer.app.supervisor import Supervisor
    from explorer.core.curve import generate_keys

    _, host_ip, ns_ip, host_if = two_node_cluster
    keys = tmp_path / "keys"
    generate_keys(keys)  # what `explorer keys gen DIR` writes
    cfg = load_config(QUICKSTART, [
        f"runs_dir={tmp_path}", "total_env_steps=8192", "wire.transport=tcp",
        "wire.host=0.0.0.0", f"wire.curve_keys={keys}", "launcher=ray",
        "launcher.resources.actor_custom.netns_actor=1"])
    rx_before = _rx_bytes(host_if)
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    result = sup.run()
    assert result.reason == "done", (result, sup.events)
    assert result.env_steps >= 8192
    assert any("started learner" in e and f"on {host_ip}" in e for e in sup.events), sup.events
    assert any("started 1 actors" in e and f"on {ns_ip}" in e for e in sup.events), sup.events
    assert sup.addresses["rollout"].startswith(f"tcp://{host_ip}:"), sup.addresses
    received = result.last_status["received_bytes"]
    assert received > 1_000_000  # the actor's rollouts reached the learner ...
    assert _rx_bytes(host_if) - rx_before >= received  # ... through the veth pair


@pytest.mark.timeout(300)
def test_search_workers_in_another_namespace_evaluate_over_veth_with_curve(
        two_node_cluster, tmp_path: Path) -> None:
    """``explorer search`` on two nodes: the driver binds 0.0.0.0 with CURVE, its one
    evaluation worker runs in the namespace and gets its genomes over the veth pair."""
    import numpy as np

    from actors.evaluator import run_episode
    from actors.hardmaze import make_search_env
    from explorer.app.search_pool import EvaluationPool
    from explorer.core.curve import generate_keys
    from explorer.novelty.config import SearchConfig, search_config_problems
    from explorer.novelty.controller import MLPController

    _, host_ip, ns_ip, host_if = two_node_cluster
    keys = tmp_path / "keys"
    generate_keys(keys)
    cfg = load_config(ROOT / "configs" / "hardmaze_ns.yaml", [
        "env.max_episode_steps=100", "workers.num_procs=1", "workers.host=0.0.0.0",
        f"workers.curve_keys={keys}", "launcher=ray",
        "launcher.resources.actor_custom.netns_actor=1"],
        checks=(search_config_problems,), schema=SearchConfig)
    hidden = (cfg.controller.hidden_size,) * cfg.controller.hidden_layers
    controller = MLPController(9, 3, hidden)
    genomes = np.random.default_rng(1).uniform(-5, 5, (8, controller.genome_size))
    events: list[str] = []
    rx_before = _rx_bytes(host_if)
    pool = EvaluationPool(cfg, controller.genome_size, frames=False, on_event=events.append)
    try:
        assert pool.address.startswith(f"tcp://{host_ip}:"), pool.address
        pool.start()
        batch = pool.evaluate(genomes)
    finally:
        pool.close()
    assert any("started 1 evaluation workers" in e and f"on {ns_ip}" in e for e in events), \
        events
    assert _rx_bytes(host_if) - rx_before > 0  # the worker's results came over the link
    env = make_search_env(cfg.env.id, cfg.env.max_episode_steps)
    np.testing.assert_array_equal(batch.fitness,
                                  [run_episode(env, controller, g).fitness for g in genomes])
