"""The real multi-process system (supervisor + learner + actor processes over ZeroMQ) learns.

Each run is seeded and stops as soon as the mean return of the last 100 episodes reaches its
target (``target_return``), or fails at the step budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _train(config: str, tmp_path: Path, *overrides: str):
    cfg = load_config(CONFIGS / config, [f"runs_dir={tmp_path}", *overrides])
    run_dir = create_run_dir(cfg, ["test"])
    result = Supervisor(cfg, probe_env_spec(cfg.env), run_dir).run()
    return cfg, result


@pytest.mark.timeout(600)
def test_cartpole_reaches_400(tmp_path: Path) -> None:
    cfg, result = _train("cartpole.yaml", tmp_path, "target_return=400",
                         "total_env_steps=800000")
    assert result.reason == "done"
    assert result.last_status["episode_return"] >= 400, result.last_status
    assert result.env_steps < cfg.total_env_steps, "stopped by budget, not by reaching 400"
    assert result.checkpoint is not None and result.checkpoint.exists()


@pytest.mark.timeout(600)
def test_minigrid_empty_5x5_reaches_0_9(tmp_path: Path) -> None:
    cfg, result = _train("quickstart.yaml", tmp_path, "env.id=MiniGrid-Empty-5x5-v0",
                         "target_return=0.9", "total_env_steps=600000")
    assert result.reason == "done"
    assert result.last_status["episode_return"] >= 0.9, result.last_status
    assert result.env_steps < cfg.total_env_steps
    tb_files = list((result.run_dir / "tb").glob("events.out.tfevents.*"))
    assert tb_files, "no TensorBoard event file written"


@pytest.mark.timeout(600)
def test_atari_nature_cnn_with_gru_core_runs(tmp_path: Path) -> None:
    """Atari frames (4x84x84 uint8) and a recurrent core through the whole system."""
    _, result = _train("quickstart.yaml", tmp_path, "env.id=Pong-v5", "env.envs_per_actor=4",
                       "actors.rollout_len=16", "total_env_steps=2000",
                       "learner.model.kind=nature_cnn", "learner.model.core=gru",
                       "learner.model.core_size=32", "learner.model.hidden_size=64",
                       "learner.model.separate_critic=false")
    assert result.reason == "done"
    assert result.env_steps >= 2000
    assert result.last_status["dropped"] == 0
    assert result.last_status["updates"] >= 2000 // (2 * 4 * 16)
