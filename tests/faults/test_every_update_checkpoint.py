"""``checkpoint_interval_s: 0``: a checkpoint after every update, so that a learner killed
with SIGKILL loses no env steps it had counted as trained.

The learner writes each update's checkpoint before the update's env steps leave the process
(weights, status, TensorBoard) and then ``run_dir/progress.json``, its record of the steps it
counted: after a kill, the checkpoint ``--resume`` picks must hold at least those steps.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zmq
from waiting import run_beside, wait_for

from actors.envs import probe_env_spec
from actors.rollout import RolloutStorage
from explorer.app.rundir import create_run_dir, record_resume
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import (
    CheckpointWriteError,
    checkpoint_env_steps,
    latest_checkpoint,
    load_checkpoint,
    read_progress,
)
from explorer.core.config import ConfigError, load_config
from explorer.core.wire import KIND_ROLLOUT, Message
from learner import worker as worker_module
from learner.worker import LearnerArgs, LearnerWorker

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


def test_interval_0_means_every_update_and_a_negative_one_is_refused() -> None:
    assert load_config(CARTPOLE, ["checkpoint_interval_s=0"]).checkpoint_interval_s == 0
    with pytest.raises(ConfigError) as err:
        load_config(CARTPOLE, ["checkpoint_interval_s=-1"])
    assert str(err.value) == "checkpoint_interval_s: must be >= 0, got -1.0"


# -- one learner in this process, fed rollouts by hand -----------------------------------------
T, B = 16, 4


@pytest.fixture
def worker(tmp_path: Path):
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "checkpoint_interval_s=0",
                                 f"actors.rollout_len={T}", f"env.envs_per_actor={B}",
                                 "learner.batch_rollouts=1", "learner.max_policy_lag=1",
                                 "learner.epochs=1", "learner.minibatches=1"])
    spec = probe_env_spec(cfg.env)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sock_dir = tempfile.mkdtemp(prefix="euc-")  # ipc paths are limited to ~100 bytes
    ctx = mp.get_context("spawn")
    args = LearnerArgs(cfg=cfg, env_spec=spec, run_dir=str(run_dir),
                       rollout_address=f"ipc://{sock_dir}/r", weights_address=f"ipc://{sock_dir}/w",
                       stop_event=ctx.Event(), status_queue=ctx.Queue())
    zctx = zmq.Context()
    w = LearnerWorker(args, zctx)
    storage = RolloutStorage(spec, T, B, core_size=w.learner.model.core_size)
    storage.valid[:] = True
    storage.logp[:] = -np.log(spec.num_actions)
    storage.obs["obs"][:] = np.random.default_rng(0).normal(size=storage.obs["obs"].shape)
    w.test_arrays = storage.arrays(np.zeros(0, np.float32), np.zeros(0, np.int32))
    try:
        yield w
    finally:
        w.close()
        zctx.term()


def _rollout(w, version: int | None = None) -> Message:
    return Message(kind=KIND_ROLLOUT, arrays={k: v.copy() for k, v in w.test_arrays.items()},
                   policy_version=w.learner.policy_version if version is None else version)


def test_each_update_is_on_disk_before_its_steps_are_published(worker, monkeypatch,
                                                               capsys) -> None:
    """After every update the newest checkpoint holds its env steps, written before the
    weights broadcast naming them; ``progress.json`` agrees. Stale rollouts (counted, not
    trained) get a checkpoint too. A full disk is counted, not fatal."""
    ckpts = worker.run_dir / "checkpoints"
    seen_at_publish = []
    publish = worker.publish
    monkeypatch.setattr(worker, "publish", lambda: (
        seen_at_publish.append((worker.env_steps, latest_checkpoint(ckpts))), publish()))
    for update in range(1, 4):
        worker.pending = [_rollout(worker)]
        worker.train_step()
        steps = update * T * B
        assert worker.env_steps == steps
        newest = latest_checkpoint(ckpts)
        assert checkpoint_env_steps(newest) == steps
        assert load_checkpoint(newest)["learner"]["updates"] == update
        assert seen_at_publish[-1] == (steps, newest)
        assert read_progress(worker.run_dir) == {
            "env_steps": steps, "updates": update, "policy_version": update,
            "checkpoint": newest.name, "checkpoint_env_steps": steps,
            "checkpoint_every_update": True}
    assert len(list(ckpts.glob("ckpt_*.pt"))) == 3 and not list(ckpts.glob("*.tmp"))

    # a rollout older than max_policy_lag: dropped, its steps counted, so checkpointed
    assert worker._drop_if_stale(_rollout(worker, version=0))
    worker.steps_counted()
    assert checkpoint_env_steps(latest_checkpoint(ckpts)) == 4 * T * B == worker.env_steps
    assert read_progress(worker.run_dir)["env_steps"] == 4 * T * B

    # a full disk: one failure counted per update, training goes on, progress shows the gap
    def full(directory: Path, env_steps: int, state: dict, keep: int = 3) -> Path:
        raise CheckpointWriteError(f"checkpoint not written: {directory}: No space left")

    save = worker_module.save_checkpoint
    monkeypatch.setattr(worker_module, "save_checkpoint", full)
    capsys.readouterr()
    for _ in range(2):
        worker.pending = [_rollout(worker)]
        worker.train_step()
    assert worker.checkpoint_failures == 2 and worker.env_steps == 6 * T * B
    progress = read_progress(worker.run_dir)
    assert (progress["env_steps"], progress["checkpoint_env_steps"]) == (6 * T * B, 4 * T * B)
    worker.steps_counted()  # no retry until the count moves again
    assert worker.checkpoint_failures == 2
    monkeypatch.setattr(worker_module, "save_checkpoint", save)  # room again
    worker.pending = [_rollout(worker)]
    worker.train_step()
    assert checkpoint_env_steps(latest_checkpoint(ckpts)) == 7 * T * B
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # one when they start failing, one when written again
    assert "No space left" in lines[0] and "after every update" in lines[0]
    assert "written again after 2 failed" in lines[1]


# -- the whole system: the learner killed with SIGKILL mid-training, then resumed --------------
@pytest.mark.timeout(300)
def test_learner_killed_9_resumes_with_no_counted_env_steps_lost(tmp_path: Path) -> None:
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=100000000",
                                 "target_return=null", "checkpoint_interval_s=0",
                                 "actors.num_procs=1"])
    spec = probe_env_spec(cfg.env)
    sup = Supervisor(cfg, spec, create_run_dir(cfg, ["test"]))
    run_dir = sup.run_dir
    observed: dict = {}

    def chaos() -> None:
        try:
            wait_for(lambda: sup.last_status.get("updates", 0) > 10, 120, "training")
            os.kill(sup.learner.pid, signal.SIGKILL)  # wherever it is in its update cycle
            wait_for(lambda: not sup.learner.is_alive(), 30, "the learner to die")
            observed["progress"] = read_progress(run_dir)
            observed["status_steps"] = sup.last_status.get("env_steps", 0)
        finally:
            sup.stop_event.set()

    result = run_beside(sup, chaos)
    assert result.reason == "learner_failed", (result, sup.events)
    counted = observed["progress"]["env_steps"]
    resume_from = latest_checkpoint(run_dir / "checkpoints")  # what --resume picks
    assert resume_from == result.checkpoint
    kept = checkpoint_env_steps(resume_from)
    assert load_checkpoint(resume_from)["env_steps"] == kept
    one_update = cfg.learner.batch_rollouts * cfg.actors.rollout_len * cfg.env.envs_per_actor
    # 0 lost; the checkpoint is ahead only if the kill fell between its rename and the
    # progress record written after it (never more than the one update)
    assert counted > 0 and kept - counted in (0, one_update), (counted, kept)
    assert observed["status_steps"] <= kept  # nothing reported beyond the checkpoint

    cfg = load_config(run_dir / "config.yaml", [f"total_env_steps={kept + 2 * one_update}"])
    generation = record_resume(run_dir, cfg, ["test", "--resume"])
    resumed = Supervisor(cfg, spec, run_dir, resume_path=resume_from,
                         resume_generation=generation)
    result = resumed.run()
    assert result.reason == "done", (result, resumed.events)
    final = load_checkpoint(result.checkpoint)
    assert kept + 2 * one_update <= final["env_steps"] <= kept + 4 * one_update  # continued
    assert read_progress(run_dir)["env_steps"] == final["env_steps"]
