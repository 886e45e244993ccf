"""``explorer search`` end to end: real worker processes on the real ZeroMQ layer."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from actors.evaluator import run_episode
from actors.hardmaze import make_search_env
from explorer.app.cli import main
from explorer.app.search_pool import EvaluationPool
from explorer.core.config import load_config
from explorer.novelty.config import SearchConfig
from explorer.novelty.controller import MLPController

TINY = ["novelty.pop_size=10", "env.max_episode_steps=60", "workers.num_procs=2",
        "log_interval_s=0.5"]


def _final_state(run_dir):
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    return torch.load(ckpts[-1], weights_only=True)


def test_bad_config_is_one_line_naming_the_key(tmp_path, capsys):
    code = main(["search", "configs/hardmaze_ns.yaml", "novelty.insertion=threshold",
                 "workers.num_procs=0", f"runs_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: workers.num_procs: must be >= 1, got 0",
                   "error: novelty.novelty_threshold: needed with novelty.insertion=threshold"]
    assert not any(tmp_path.iterdir())  # no run directory for a bad config


@pytest.mark.timeout(300)
def test_resumed_search_asks_what_an_uninterrupted_one_asks(tmp_path):
    common = ["search", "--quiet", "configs/hardmaze_ns.yaml", *TINY, f"runs_dir={tmp_path}"]
    assert main([*common, "name=whole", "budget=130"]) == 0
    assert main([*common, "name=split", "budget=70"]) == 0
    assert main(["search", "--quiet", "--resume", str(tmp_path / "split"), "budget=130"]) == 0
    whole, split = _final_state(tmp_path / "whole"), _final_state(tmp_path / "split")
    assert whole["scheduler"]["evaluations"] == split["scheduler"]["evaluations"] == 130
    for key in ("solutions", "descriptors", "fitness"):
        assert torch.equal(whole["scheduler"]["archive"][key],
                           split["scheduler"]["archive"][key])
    for key in ("population", "pop_descriptors"):
        assert torch.equal(whole["scheduler"]["emitters"][0][key],
                           split["scheduler"]["emitters"][0][key])
    assert torch.equal(whole["coverage"]["counts"], split["coverage"]["counts"])
    assert (tmp_path / "whole" / "tb").is_dir()


def _assert_same(a, b, path="state"):
    """Nested checkpoint contents equal exactly: tensors bit for bit, the rest by ==."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (path, sorted(a), sorted(b))
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, (path, a, b)


def _whole_vs_resumed(tmp_path, config, overrides, budget, split):
    """One uninterrupted run of ``budget`` evaluations, and one stopped at ``split`` and
    resumed to ``budget`` with the same seed: their final checkpoints, less the global RNG
    snapshot, must be identical."""
    common = ["search", "--quiet", config, *TINY, *overrides, f"runs_dir={tmp_path}"]
    assert main([*common, "name=whole", f"budget={budget}"]) == 0
    assert main([*common, "name=split", f"budget={split}"]) == 0
    stopped = _final_state(tmp_path / "split")["scheduler"]["evaluations"]
    assert split <= stopped < budget
    assert main(["search", "--quiet", "--resume", str(tmp_path / "split"),
                 f"budget={budget}"]) == 0
    whole, resumed = _final_state(tmp_path / "whole"), _final_state(tmp_path / "split")
    assert whole["scheduler"]["evaluations"] >= budget
    for key in set(whole) - {"rng"}:
        _assert_same(whole[key], resumed[key], key)
    return whole


@pytest.mark.timeout(300)
def test_resumed_serene_search_equals_an_uninterrupted_one(tmp_path):
    """SERENE stopped inside an exploitation chunk with CMA-ES emitters alive (every solution
    counts as rewarded: reward_threshold -1), resumed through further chunks."""
    whole = _whole_vs_resumed(
        tmp_path, "configs/hardmaze_serene.yaml",
        ["serene.chunk_size=40", "serene.reward_threshold=-1", "serene.emitter_pop_size=4",
         "serene.bootstrap_evals=8"], budget=200, split=60)
    serene = whole["scheduler"]
    assert serene["counts"]["created"] > 0, serene["counts"]  # emitters did run


@pytest.mark.timeout(300)
def test_resumed_stax_search_equals_an_uninterrupted_one(tmp_path):
    """STAX stopped between autoencoder trainings (after chunk 1 at 40 evaluations, chunk 3 at
    120) and resumed across the next one: weights, optimiser, frame buffer, latents equal."""
    whole = _whole_vs_resumed(
        tmp_path, "configs/hardmaze_stax.yaml",
        ["stax.chunk_size=40", "stax.epochs=1", "stax.buffer_size=200", "stax.batch_size=16"],
        budget=160, split=80)
    assert whole["stax"]["trainings"] >= 3, whole["stax"]["trainings"]


@pytest.mark.timeout(300)
def test_killed_worker_is_restarted_and_its_genomes_evaluated_again():
    cfg = load_config(None, ["env.max_episode_steps=200", "workers.num_procs=2",
                             "workers.task_size=8", "workers.restart_backoff_s=0.1"],
                      schema=SearchConfig)
    env = make_search_env("HardMaze-v0", 200)
    controller = MLPController(9, 3, (5,))
    genomes = np.random.default_rng(0).uniform(-5, 5, (48, controller.genome_size))
    events = []
    pool = EvaluationPool(cfg, controller.genome_size, frames=False, on_event=events.append)
    try:
        pool.start()
        pool.evaluate(genomes[:2])  # both workers up

        def kill_busy_worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                slot = pool.slots[0]
                if slot.task is not None:
                    os.kill(slot.process.pid, signal.SIGKILL)
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_busy_worker)
        killer.start()
        batch = pool.evaluate(genomes)
        killer.join()
    finally:
        pool.close()
    assert pool.restarts >= 1
    assert any("evaluated again" in e for e in events), events
    want = [run_episode(env, controller, g) for g in genomes]
    np.testing.assert_array_equal(batch.fitness, [r.fitness for r in want])
    np.testing.assert_array_equal(batch.positions, np.array([r.position for r in want]))
