"""The labeler inside real runs: launcher, NetHack actor process, learner, labeler process.

Covers the ONI path end to end (messages -> labels on disk -> reward table -> learner reward),
a labeler killed with SIGKILL (restarted, store intact, nothing labelled twice) and an LLM
server that dies mid-run and comes back (training goes on, texts wait, no duplicates).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from waiting import run_beside, wait_for

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import load_checkpoint
from explorer.core.config import load_config
from explorer.core.texts import text_id

ROOT = Path(__file__).resolve().parents[2]
ONI = ROOT / "configs" / "nethack_oni.yaml"
SMALL = ["actors.num_procs=1", "env.envs_per_actor=8", "env.max_episode_steps=300",
         "learner.model.hidden_size=32", "learner.model.core=none",
         "learner.model.encoder_kwargs={embed_dim: 8, full_map: false, message_dim: 0}",
         "log_interval_s=1", "actors.restart_backoff_s=0.5", "llm_labeler.publish_interval_s=0.5"]


def _rows(db: Path, table: str = "labels") -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _supervisor(tmp_path: Path, *overrides: str) -> Supervisor:
    cfg = load_config(ONI, [f"runs_dir={tmp_path}", *SMALL, *overrides])
    return Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))


@pytest.mark.timeout(600)
def test_oni_run_labels_messages_and_the_learner_rewards_them(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "total_env_steps=6144")
    result = sup.run()
    assert result.reason == "done", sup.events
    db = sup.run_dir / "labels.sqlite"
    with sqlite3.connect(db) as conn:
        labelled = dict(conn.execute("SELECT text, label FROM labels").fetchall())
        seen = [r[0] for r in conn.execute("SELECT text FROM seen")]
    assert len(labelled) >= 10 and set(labelled) <= set(seen)
    assert 0 < sum(labelled.values()) < len(labelled)  # some, not all, messages are progress
    # the ONI config labels sentences: no seen text joins two of them
    assert not any(re.search(r"[.!?] {2,}\S", text) for text in seen)

    table = load_checkpoint(result.checkpoint)["learner"]["text_reward"]["table"]
    rewards = dict(zip(table["ids"].tolist(), table["rewards"].tolist(), strict=True))
    # the learner's table is the labeler's labels (as of its last publication before the
    # checkpoint), keyed by the ids actors put on the wire
    found = [text for text in labelled if text_id(text) in rewards]
    assert len(found) >= 10 and len(found) == len(rewards)
    assert all(rewards[text_id(t)] == float(labelled[t]) for t in found)

    scalars = _scalars(sup.run_dir)
    for tag in ("labeler/queue_depth", "labeler/labelled_total", "labeler/positive_rate",
                "labeler/cache_hit_rate", "labeler/intrinsic_reward_mean",
                "labeler/throughput_texts_per_s", "labeler/latency_p95_s",
                "labeler/breaker_state", "labeler/table_size"):
        assert tag in scalars, f"{tag} missing from TensorBoard"
    assert max(scalars["labeler/labelled_total"]) > 0
    assert max(scalars["labeler/cache_hit_rate"]) > 0.5
    # actors subscribe to the tables too: they learn which texts the labeler has
    assert max(scalars["text/actor_0/known"]) >= 10


@pytest.mark.timeout(600)
def test_labeler_killed_is_restarted_with_its_store_and_labels_nothing_twice(
        tmp_path: Path) -> None:
    log = tmp_path / "asked.jsonl"
    sup = _supervisor(tmp_path, "total_env_steps=100000000",
                      "llm_labeler.labeler=recording_labeler:RecordingLabeler",
                      f"llm_labeler.backend={{log_path: '{log}'}}")
    db = sup.run_dir / "labels.sqlite"
    observed: dict[str, object] = {}

    def asked() -> list[str]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def chaos() -> None:
        try:
            wait_for(lambda: _rows(db) >= 5, 240, "first labels")
            # kill between batches: every text the backend was asked about is stored
            wait_for(lambda: _rows(db) == len(asked()), 60, "an idle moment")
            observed["rows_before"] = _rows(db)
            victim = sup.labeler.process.pid
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: any("restarted labeler" in e for e in sup.events), 60, "restart")
            observed["new_pid"] = sup.labeler.process.pid
            observed["victim"] = victim
            steps = sup.last_status.get("env_steps", 0)
            wait_for(lambda: _rows(db) > observed["rows_before"] + 3, 240, "labels after")
            wait_for(lambda: sup.last_status.get("env_steps", 0) > steps, 60, "training")
        finally:
            sup.stop_event.set()

    result = run_beside(sup, chaos)
    assert result.reason == "stopped", sup.events
    assert observed.get("new_pid") not in (None, observed.get("victim")), sup.events
    assert sup.labeler.restarts == 1
    texts = asked()
    twice = [t for t, n in Counter(texts).items() if n > 1]
    assert not twice, f"labelled twice: {twice[:5]}"
    assert _rows(db) == len(texts) > observed["rows_before"]


@pytest.mark.timeout(600)
def test_dead_llm_server_never_stalls_training_and_labelling_resumes(tmp_path: Path) -> None:
    server = FakeOpenAIServer().start()
    sup = _supervisor(tmp_path, "total_env_steps=100000000", "llm_labeler.labeler=openai",
                      f"llm_labeler.backend={{base_url: '{server.url}', model: fake, "
                      "timeout_s: 2, max_retries: 0, breaker_failures: 2, "
                      "breaker_cooldown_s: 1.0}")
    db = sup.run_dir / "labels.sqlite"
    observed: dict[str, float] = {}

    def chaos() -> None:
        try:
            wait_for(lambda: _rows(db) >= 5 and sup.last_status.get("env_steps", 0) > 0, 240,
                      "first labels and a learner status")
            server.stop()
            observed["steps_at_kill"] = sup.last_status["env_steps"]
            # replies sent just before the stop are still being stored: give them longer
            # than the client's timeout, then nothing more may be labelled
            time.sleep(5)
            observed["rows_at_kill"] = _rows(db)
            time.sleep(10)
            observed["steps_while_dead"] = sup.last_status["env_steps"]
            observed["rows_while_dead"] = _rows(db)
            observed["seen_while_dead"] = _rows(db, "seen")
            observed["answered_before_kill"] = sum(map(len, server.seen_messages))
            server.start()  # same port
            wait_for(lambda: _rows(db) > observed["rows_while_dead"], 120, "labels again")
            wait_for(lambda: _rows(db) >= observed["seen_while_dead"], 120,
                      "the texts that waited got labelled")
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            observed["chaos_error"] = repr(exc)
        finally:
            sup.stop_event.set()

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        result = sup.run()
    finally:
        thread.join(10)
        server.stop()
    assert result.reason == "stopped", sup.events
    assert "chaos_error" not in observed, observed["chaos_error"]
    assert observed["steps_while_dead"] > observed["steps_at_kill"]  # training went on
    assert observed["rows_while_dead"] == observed["rows_at_kill"]  # nothing labelled...
    # ...but every text the server answered before it went down was stored
    assert observed["rows_at_kill"] == observed["answered_before_kill"]
    assert observed["seen_while_dead"] > observed["rows_at_kill"]  # ...while new texts waited
    sent = [m for request in server.seen_messages for m in request]
    assert len(sent) == len(set(sent)), "a text was sent to the LLM twice"
    scalars = _scalars(sup.run_dir)
    assert max(scalars["labeler/breaker_state"]) == 2.0  # the breaker opened
    assert scalars["labeler/errors/connection"][-1] > 0


@pytest.mark.timeout(300)
def test_a_labeler_that_cannot_start_ends_the_run_with_its_reason(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "total_env_steps=1000", "llm_labeler.labeler=openai",
                      "llm_labeler.backend={base_url: 'http://127.0.0.1:9/v1', bogus: 1}")
    result = sup.run()
    assert result.reason == "labeler_failed" and result.exit_code == 1
    assert "bogus" in result.last_status["error"]
    assert sup.learner is None  # nothing else was started
