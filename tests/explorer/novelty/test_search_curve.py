"""``explorer search`` beyond one machine: the driver binds ``workers.host`` (``0.0.0.0``: any
node of a Ray cluster may run workers) as a CURVE server, and only workers holding the
search's client key get genomes. Real sockets and worker processes, on this machine."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from actors.evaluator import run_episode
from actors.hardmaze import make_search_env
from explorer.app.search_pool import EvaluationPool
from explorer.core.config import ConfigError, load_config
from explorer.core.curve import CurveKeys, SocketSecurity, generate_keys, load_curve_keys
from explorer.core.wire import Message, encode
from explorer.novelty.config import SearchConfig, search_config_problems
from explorer.novelty.controller import MLPController
from explorer.novelty.protocol import KIND_EVAL_RESULT

NS = "configs/hardmaze_ns.yaml"


def _search_config(overrides: list[str]) -> SearchConfig:
    return load_config(NS, overrides, checks=(search_config_problems,), schema=SearchConfig)


@pytest.mark.parametrize(("overrides", "problem"), [
    (["workers.transport=tcp", "workers.host=0.0.0.0"],
     "workers.host: binding 0.0.0.0 (reachable from other machines) needs CURVE keys: run "
     "`explorer keys gen DIR` and set workers.curve_keys=DIR"),
    (["workers.host=0.0.0.0", "workers.curve_keys=/nonexistent/keys"],
     "workers.host: 0.0.0.0 needs workers.transport=tcp (ipc sockets are files on one "
     "machine)"),
    (["workers.transport=tcp", "workers.host=0.0.0.0", "workers.curve_keys=/nonexistent/k"],
     "workers.curve_keys: "),
])
def test_a_public_driver_bind_without_keys_or_tcp_is_a_one_line_error(
        overrides: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        _search_config(overrides)
    assert any(line.startswith(problem) for line in err.value.problems), err.value.problems


def test_loopback_and_ray_need_no_keys() -> None:
    assert _search_config(["workers.transport=tcp"]).workers.curve_keys is None
    assert _search_config(["launcher=ray"]).workers.host == "127.0.0.1"


def test_a_multi_node_cluster_needs_a_driver_bind_other_nodes_reach() -> None:
    # a stand-in: this machine cannot make a second Ray node; the pool reads ``nodes`` only
    class TwoNodeLauncher:
        kind, nodes = "ray", 2

        def close(self) -> None:
            pass

    with pytest.raises(ConfigError) as err:
        EvaluationPool(_search_config(["launcher=ray"]), 68, frames=False,
                       on_event=lambda _: None, launcher=TwoNodeLauncher())
    assert err.value.problems == [
        "workers.host: 127.0.0.1 is loopback but the Ray cluster has 2 nodes: workers on other "
        "nodes cannot reach the driver (set workers.host=0.0.0.0 and workers.curve_keys)"]


def _intruder(ctx: zmq.Context, keys: CurveKeys, tmp_path: Path, address: str) -> zmq.Socket:
    """A DEALER with a key pair of its own (not authorised) that knows the driver's key and
    says hello as a worker would."""
    generate_keys(tmp_path / "intruder")
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"99.0")
    SocketSecurity(ctx, CurveKeys(str(tmp_path / "intruder"), keys.server_public, ())
                   ).connect(sock)
    sock.connect(address)
    sock.send_multipart(encode(Message(
        kind=KIND_EVAL_RESULT, arrays={"ids": np.zeros(0, np.int64)}, actor_id=99)),
        copy=True)
    return sock


@pytest.mark.timeout(300)
def test_curve_workers_on_a_public_bind_evaluate_and_an_intruder_gets_no_genome(
        tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    keys = load_curve_keys(tmp_path / "keys")
    cfg = _search_config(["env.max_episode_steps=100", "workers.num_procs=1",
                          "workers.transport=tcp", "workers.host=0.0.0.0",
                          f"workers.curve_keys={tmp_path / 'keys'}"])
    controller = MLPController(9, 3, (cfg.controller.hidden_size,) * cfg.controller.hidden_layers)
    genomes = np.random.default_rng(0).uniform(-5, 5, (6, controller.genome_size))
    intruder_ctx = zmq.Context()
    pool = EvaluationPool(cfg, controller.genome_size, frames=False, on_event=lambda _: None)
    try:
        # a wildcard bind is handed out as this node's address, on a random port
        assert pool.address.startswith("tcp://127.0.0.1:"), pool.address
        intruder = _intruder(intruder_ctx, keys, tmp_path, pool.address)
        pool.start()
        batch = pool.evaluate(genomes)
        deadline = time.monotonic() + 2.0
        while pool.security.rejected == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.security.rejected >= 1  # its handshake was refused by the driver's ZAP
        assert not intruder.poll(200)  # and it was never sent a task
        intruder.close(0)
    finally:
        pool.close()
        intruder_ctx.term()
    env = make_search_env(cfg.env.id, cfg.env.max_episode_steps)
    want = [run_episode(env, controller, g).fitness for g in genomes]
    np.testing.assert_array_equal(batch.fitness, want)
