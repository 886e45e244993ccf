"""A whole run bound beyond loopback: every socket on CURVE, texts capped per sender.

The launcher reads the keys once and hands the public ones to the learner, the labeler and the
NetHack actor process; the learner and labeler bind ``0.0.0.0`` (which ``bind`` refuses without
CURVE), the actor pushes rollouts and texts and subscribes to weights and reward tables, the
learner subscribes to the tables. A per-sender cap of 5 texts is hit and shows in TensorBoard.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.app.validate import load_run_config
from explorer.core.curve import generate_keys

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["actors.num_procs=1", "env.envs_per_actor=8", "env.max_episode_steps=300",
         "learner.model.hidden_size=32", "learner.model.core=none",
         "learner.model.encoder_kwargs={embed_dim: 8, full_map: false, message_dim: 0}",
         "log_interval_s=1", "llm_labeler.publish_interval_s=0.5"]


@pytest.mark.timeout(600)
def test_a_public_run_works_on_curve_and_caps_texts_per_sender(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    cfg = load_run_config(ROOT / "configs" / "nethack_oni.yaml", [
        f"runs_dir={tmp_path}", *SMALL, "total_env_steps=4096", "llm_labeler.labeler=rules",
        "wire.transport=tcp", "wire.host=0.0.0.0", f"wire.curve_keys={tmp_path / 'keys'}",
        "llm_labeler.texts_address=tcp://0.0.0.0:0",
        "llm_labeler.updates_address=tcp://0.0.0.0:0", "llm_labeler.max_texts_per_sender=5"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    result = sup.run()
    assert result.reason == "done", sup.events
    assert result.env_steps >= 4096 and result.last_status["dropped"] == 0
    assert sup.addresses["rollout"].startswith("tcp://0.0.0.0:")
    with sqlite3.connect(sup.run_dir / "labels.sqlite") as conn:
        seen = conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0]
    assert seen == 5  # one actor, five texts: the rest were refused

    acc = EventAccumulator(str(sup.run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert max(scalars["labeler/texts_refused_sender"]) > 0  # the tables reached the learner
    assert max(scalars["labeler/texts_accepted_total"]) == 5
    assert max(scalars["labeler/labelled_total"]) == 5
    assert max(scalars["wire/auth_rejected"]) == 0
