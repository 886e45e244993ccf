"""Bounded staleness: a learner much slower than its actors never trains on a rollout older
than ``learner.max_policy_lag`` policy versions, drops (and counts) the older ones, and the run
neither deadlocks nor loses the episodes and env steps of what it dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.timeout(300)
def test_slow_learner_trains_only_within_the_lag_bound(tmp_path: Path) -> None:
    # 3 actors feed a learner doing 40 epochs per one-rollout batch: the learner is far the
    # slower side, so rollouts queue up behind it and age while they wait.
    cfg = load_config(CONFIGS / "cartpole.yaml", [
        f"runs_dir={tmp_path}", "target_return=null", "total_env_steps=12000",
        "actors.num_procs=3", "env.envs_per_actor=4", "actors.rollout_len=16",
        "learner.batch_rollouts=1", "learner.epochs=40", "learner.minibatches=4",
        "learner.max_policy_lag=1", "log_interval_s=0.5"])
    run_dir = create_run_dir(cfg, ["test"])
    result = Supervisor(cfg, probe_env_spec(cfg.env), run_dir).run()

    assert result.reason == "done", result.last_status  # finished: no deadlock, no stall
    status = result.last_status
    assert status["policy_lag_max_trained"] <= 1
    stale = status["dropped_by_reason"].get("stale", 0)
    assert stale > 0, "the bound was never exercised: the learner was not the slow side"
    assert set(status["dropped_by_reason"]) == {"stale"}  # nothing else went wrong
    # dropped rollouts' env steps still count, and are reported apart
    assert status["stale_env_steps"] == stale * 4 * 16
    assert status["env_steps"] >= cfg.total_env_steps

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("perf/policy_lag_min", "perf/policy_lag_mean", "perf/policy_lag_max",
                "wire/dropped/stale", "perf/stale_env_steps"):
        assert tag in tags, f"{tag} missing from TensorBoard"
    assert max(e.value for e in acc.Scalars("perf/policy_lag_max")) <= 1
