"""The retrieval-augmented agent through the real system: actors, learner, checkpoint, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import load_checkpoint
from explorer.core.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "minigrid_ra.yaml"
SMALL = ("env.envs_per_actor=4", "actors.rollout_len=16", "learner.minibatches=2",
         "learner.model.retrieval.window_chunks=4")


@pytest.mark.timeout(600)
def test_retrieval_agent_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=256", *SMALL])
    spec = probe_env_spec(cfg.env)
    run_dir = create_run_dir(cfg, ["test"])
    result = Supervisor(cfg, spec, run_dir).run()
    assert result.reason == "done", result.last_status
    assert result.last_status["updates"] >= 2 and result.last_status["dropped"] == 0
    saved = load_checkpoint(result.checkpoint)["learner"]
    core = {k: v for k, v in saved["model"].items() if k.startswith("core.")}
    assert {"core.project.weight", "core.chunk_key.weight", "core.out.weight"} <= set(core)

    more = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=512", *SMALL])
    resumed = Supervisor(more, spec, run_dir, resume_path=result.checkpoint,
                         resume_generation=1).run()
    assert resumed.reason == "done", resumed.last_status
    assert resumed.last_status["updates"] > result.last_status["updates"]  # continued
    after = load_checkpoint(resumed.checkpoint)["learner"]["model"]
    # the resumed learner started from the saved retrieval weights and trained them further
    assert any(not torch.equal(after[k], v) for k, v in core.items())
