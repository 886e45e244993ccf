"""NetHack through the whole system: actor processes -> ZeroMQ -> learner, messages -> labeler."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

from actors.envs import probe_env_spec
from actors.texts import decode_texts
from explorer.config import load_config
from explorer.rundir import create_run_dir
from explorer.supervisor import Supervisor

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "nethack_score.yaml"


@pytest.mark.timeout(600)
def test_nethack_rollouts_train_and_messages_reach_the_labeler(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/labeler"
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=1024",
                               "env.envs_per_actor=4", "actors.rollout_len=32",
                               "learner.model.hidden_size=64", "learner.model.core_size=64",
                               "text.source=nethack_message", f"text.labeler_address={address}",
                               "text.batch_size=8"])
    ctx = zmq.Context()
    labeler = ctx.socket(zmq.PULL)
    labeler.bind(address)
    received: list[tuple[int, list[str]]] = []
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            if labeler.poll(100):
                received.append(decode_texts(labeler.recv()))

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        result = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["t"])).run()
    finally:
        done.set()
        thread.join(5)
        labeler.close(0)
        ctx.term()
    assert result.reason == "done" and result.env_steps >= 1024
    status = result.last_status
    assert status["dropped"] == 0 and status["updates"] >= 1024 // (2 * 4 * 32)
    assert sorted(status["actors_seen"]) == [0, 1]
    per_actor: dict[int, list[str]] = {}
    for actor_id, texts in received:
        per_actor.setdefault(actor_id, []).extend(texts)
    assert per_actor, "no NetHack messages reached the labeler socket"
    for texts in per_actor.values():
        assert len(texts) == len(set(texts)), "an actor sent the same message twice"
        assert all(t.strip() for t in texts)
