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


@pytest.mark.timeout(600)
def test_run_memory_is_written_by_the_learner_and_resumed_exactly(tmp_path: Path) -> None:
    """``source: run``: the learner writes chunks of each batch into the run memory, the
    checkpoint holds it, and a resumed run goes on from exactly that memory (FIFO: the
    entries the new chunks did not overwrite are the saved ones, bit for bit)."""
    memory = ["learner.model.retrieval.source=run", "learner.model.retrieval.memory_chunks=512",
              "learner.model.retrieval.memory_inserts=8"]
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=256", *SMALL, *memory])
    spec = probe_env_spec(cfg.env)
    run_dir = create_run_dir(cfg, ["test"])
    result = Supervisor(cfg, spec, run_dir).run()
    assert result.reason == "done", result.last_status
    saved = load_checkpoint(result.checkpoint)["learner"]
    count = int(saved["model"]["core.memory_count"][0])
    assert count == 8 * saved["updates"] > 0  # 8 chunks per update, each batch has them
    keys = saved["model"]["core.memory_keys"]
    assert keys[:count].abs().sum(-1).gt(0).all() and not keys[count:].any()

    more = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=512", *SMALL, *memory])
    resumed = Supervisor(more, spec, run_dir, resume_path=result.checkpoint,
                         resume_generation=1).run()
    assert resumed.reason == "done", resumed.last_status
    after = load_checkpoint(resumed.checkpoint)["learner"]["model"]
    assert int(after["core.memory_count"][0]) > count  # went on from the saved count
    torch.testing.assert_close(after["core.memory_keys"][:count], keys[:count], atol=0, rtol=0)
    torch.testing.assert_close(after["core.memory_states"][:count],
                               saved["model"]["core.memory_states"][:count], atol=0, rtol=0)
