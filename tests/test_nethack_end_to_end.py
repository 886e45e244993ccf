"""NetHack through the whole system: actor processes -> ZeroMQ -> learner, messages -> labeler,
episode stats -> TensorBoard."""

from __future__ import annotations

import multiprocessing as mp
import queue
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zmq
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import load_config
from explorer.core.specs import LABEL_BYTES, rollout_schema
from explorer.core.texts import decode_texts
from explorer.core.wire import KIND_ROLLOUT, Message, encode
from learner.worker import LearnerArgs, LearnerWorker

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "nethack_score.yaml"
SMALL_MODEL = ["learner.model.hidden_size=32", "learner.model.core=none",
               "learner.model.encoder_kwargs={embed_dim: 8, full_map: false, message_dim: 0}"]
STATS = ("score", "depth", "xp_level", "gold", "turns", "unique_messages")


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


@pytest.mark.timeout(600)
def test_nethack_episode_stats_reach_tensorboard(tmp_path: Path) -> None:
    # extended actions include PRAY: a near-uniform policy angers its god within a few hundred
    # steps, so deaths (with NetHack's reasons) happen alongside step-limit ends
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "total_env_steps=8192",
                               "env.envs_per_actor=8", "env.max_episode_steps=300",
                               "actors.num_procs=1", "log_interval_s=1", *SMALL_MODEL])
    spec = probe_env_spec(cfg.env)
    run_dir = create_run_dir(cfg, ["t"])
    result = Supervisor(cfg, spec, run_dir).run()
    assert result.reason == "done"
    status = result.last_status
    assert status["dropped"] == 0 and status["episodes"] >= 16

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    last = {tag: acc.Scalars(tag)[-1].value for tag in tags}
    for name in STATS:
        assert f"nethack/{name}" in tags, name
    assert last["nethack/depth"] >= 1 and last["nethack/xp_level"] >= 1
    assert last["nethack/turns"] > 0 and last["nethack/unique_messages"] >= 2
    assert last["nethack/score"] >= 0 and last["nethack/gold"] >= 0
    # the status carries the same window means
    assert status["episode_stats"]["depth"] == pytest.approx(last["nethack/depth"])
    # every trained episode has exactly one end; deaths have a reason
    ends = {t: v for t, v in last.items() if t.startswith("nethack/end/")}
    assert set(ends) <= {f"nethack/end/{e}" for e in ("death", "aborted", "success", "crash")}
    assert sum(ends.values()) == status["episodes"]
    deaths = {t: v for t, v in last.items() if t.startswith("nethack/death/")}
    assert deaths and sum(deaths.values()) == ends.get("nethack/end/death", 0)
    assert all(re.fullmatch(r"nethack/death/[a-z0-9_]+", t) for t in deaths)
    assert any(t.startswith("nethack/death/killed_by_") for t in deaths), deaths
    texts = set(acc.Tags()["tensors"])
    assert {"nethack/end/text_summary", "nethack/death/text_summary"} <= texts
    table = acc.Tensors("nethack/death/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| death | episodes | share |") and "killed_by_" in table


def _forged_rollout(schema, actor_id: int, seq: int, stats: np.ndarray,
                    labels: np.ndarray) -> list:
    """A rollout that passes the schema: zero arrays plus the given episode stats."""
    arrays = {name: np.zeros([1 if d is None else d for d in spec.shape], spec.dtype)
              for name, spec in schema.arrays.items()}
    arrays["ep_returns"] = np.zeros(len(stats), np.float32)
    arrays["ep_lengths"] = np.ones(len(stats), np.int32)
    arrays.update(ep_stats=stats, ep_labels=labels)
    return encode(Message(kind=KIND_ROLLOUT, arrays=arrays, actor_id=actor_id, seq=seq))


def _labels(*episodes: tuple[bytes, bytes]) -> np.ndarray:
    out = np.zeros((len(episodes), 2, LABEL_BYTES), np.uint8)  # (K, L, LABEL_BYTES)
    for i, episode in enumerate(episodes):
        for j, raw in enumerate(episode):
            out[i, j, :len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def test_learner_drops_and_counts_bad_episode_stats(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "env.envs_per_actor=2",
                               "actors.rollout_len=4", "learner.batch_rollouts=1",
                               "learner.device=cpu", *SMALL_MODEL])
    spec = probe_env_spec(cfg.env)
    args = LearnerArgs(cfg=cfg, env_spec=spec, run_dir=str(tmp_path / "run"),
                       rollout_address=f"ipc://{tmp_path}/rollouts",
                       weights_address=f"ipc://{tmp_path}/weights",
                       stop_event=mp.Event(), status_queue=queue.Queue())
    ctx = zmq.Context()
    worker = LearnerWorker(args, ctx)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(worker.rollout_address)
    schema = rollout_schema(spec, 4, 2, 0, 1 << 30)
    good = np.array([[120, 3, 2, 40, 900, 17]], np.float32)  # (K=1, S=6)
    messages = [
        _forged_rollout(schema, 0, 0, good, _labels((b"death", b"killed_by_newt"))),
        _forged_rollout(schema, 0, 1, good, _labels((b"death", b"Killed By Newt"))),
        _forged_rollout(schema, 0, 2, good, _labels((b"death", b"newt\0junk"))),
        _forged_rollout(schema, 0, 3, np.full((1, 6), np.nan, np.float32),
                        _labels((b"aborted", b""))),
        _forged_rollout(schema, 0, 4, np.concatenate([good, good]),
                        _labels((b"aborted", b""))),
    ]
    try:
        for frames in messages:
            push.send_multipart(frames)
        kept = []  # the learner holds one batch: take it out to read the rest
        while worker.received < len(messages):
            worker.receive(1000)
            kept += worker.pending
            worker.pending = []
        assert dict(worker.drops) == {"bad_episode_stats": 4} and len(kept) == 1
        worker.pending = kept
        worker.train_step()
        assert worker.status()["episode_stats"] == dict(zip(STATS, good[0].tolist(),
                                                            strict=True))
        worker.log()
        checkpoint = worker.checkpoint()
    finally:
        push.close(0)
        worker.close()
    # a resumed learner continues the window and the counts
    resumed = LearnerWorker(replace(args, resume_path=str(checkpoint), run_dir=str(tmp_path / "r2"),
                                    rollout_address=f"ipc://{tmp_path}/rollouts2",
                                    weights_address=f"ipc://{tmp_path}/weights2"), ctx)
    try:
        assert resumed.status()["episode_stats"]["score"] == 120
        assert resumed.episode_stats.scalars()["nethack/death/killed_by_newt"] == 1
    finally:
        resumed.close()
        ctx.term()
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert acc.Scalars("nethack/score")[-1].value == 120
    assert acc.Scalars("nethack/death/killed_by_newt")[-1].value == 1
    assert acc.Scalars("wire/dropped/bad_episode_stats")[-1].value == 4
