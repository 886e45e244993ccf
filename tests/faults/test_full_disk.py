"""A full disk under the checkpoints and under the label store (tiny tmpfs mounts).

Goal: a clear error naming the path, no corrupt or partial file, every earlier checkpoint and
label row kept; the run goes on (label store, periodic checkpoints) or stops with a checkpoint
to resume from (the final checkpoint). Real processes, sockets and files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import torch
import zmq
from fault_helpers import fill
from waiting import run_beside, wait_for

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import (
    CheckpointWriteError,
    checkpoint_env_steps,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from explorer.core.config import load_config
from explorer.core.tables import decode_table, table_schema
from explorer.core.texts import TEXT_PROTOCOL_VERSION, text_id
from llm_labeler.protocol import Label
from llm_labeler.store import HeldWrites, LabelStore, LabelStoreFullError

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"

# probe_env_spec builds a CartPole env, whose Box space warns about float64 bounds
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


def test_a_checkpoint_on_a_full_disk_is_one_clear_error_and_leaves_no_partial_file(
        tmp_path: Path, tmpfs) -> None:
    directory = tmpfs(tmp_path / "checkpoints", 512)
    state = {"w": torch.arange(20_000, dtype=torch.float32), "env_steps": 1000}  # ~80 KB
    first = save_checkpoint(directory, 1000, state)
    filler = fill(directory)
    with pytest.raises(CheckpointWriteError) as caught:
        save_checkpoint(directory, 2000, state)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"checkpoint not written: {directory / 'ckpt_000000002000.pt'}: "
                              "No space left on device"), message
    assert f"newest complete checkpoint: {first}" in message
    assert caught.value.errno == errno.ENOSPC
    # the temp file is gone (a partial file, and it would hold the space the next try needs)
    assert sorted(p.name for p in directory.iterdir()) == [first.name, filler.name]
    assert latest_checkpoint(directory) == first
    assert torch.equal(load_checkpoint(first)["w"], state["w"])
    filler.unlink()
    second = save_checkpoint(directory, 2000, state)  # room again: writes work again
    assert latest_checkpoint(directory) == second


@pytest.mark.timeout(400)
def test_full_checkpoint_disk_mid_run_training_goes_on_then_stops_resumable(
        tmp_path: Path, tmpfs, capfd) -> None:
    """Periodic checkpoints fail (one line each, training goes on); the final one fails too:
    the run ends as learner_failed naming the last complete checkpoint, which loads."""
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}", "total_env_steps=100000000",
                                 "target_return=null", "checkpoint_interval_s=1",
                                 "actors.num_procs=1"])
    run_dir = create_run_dir(cfg, ["test"])
    checkpoints = tmpfs(run_dir / "checkpoints", 1024)
    sup = Supervisor(cfg, probe_env_spec(cfg.env), run_dir)
    observed: dict[str, object] = {}

    def chaos() -> None:
        try:
            wait_for(lambda: latest_checkpoint(checkpoints) is not None, 180,
                      "a periodic checkpoint")
            observed["filler"] = fill(checkpoints)
            observed["last_good"] = latest_checkpoint(checkpoints)
            observed["steps_at_full"] = sup.last_status.get("env_steps", 0)
            time.sleep(3)  # several checkpoint intervals on a full disk
            updates = sup.last_status.get("updates", 0)
            wait_for(lambda: sup.last_status.get("updates", 0) > updates + 5, 120,
                      "training on a full disk")
            observed["steps_after"] = sup.last_status["env_steps"]
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            observed["chaos_error"] = repr(exc)
        finally:
            sup.stop_event.set()

    result = run_beside(sup, chaos)
    err = capfd.readouterr().err
    assert "chaos_error" not in observed, observed["chaos_error"]
    last_good = observed["last_good"]
    assert observed["steps_after"] > observed["steps_at_full"]  # it kept training
    # the periodic failures: one clear line each, naming the file and the cause
    lines = [line for line in err.splitlines() if "checkpoint not written:" in line]
    assert lines, err[-3000:]
    assert all(f"{checkpoints}/ckpt_" in line and "No space left on device" in line
               for line in lines), lines
    assert any("training goes on" in line for line in lines), lines
    assert "Traceback" not in err, err[-3000:]
    # the final checkpoint could not be written: the run says so and names the last good one
    assert result.reason == "learner_failed", (result, sup.events)
    assert result.checkpoint == last_good
    assert all(_ckpt.suffix == ".pt" or _ckpt.name == "filler" for _ckpt in checkpoints.iterdir())
    state = load_checkpoint(last_good)
    assert state["env_steps"] == checkpoint_env_steps(last_good)

    # resuming from it: tests/faults/test_process_faults.py (after a kill -9 of the learner)


def test_label_store_on_a_full_disk_names_itself_keeps_rows_and_reopens(
        tmp_path: Path, tmpfs) -> None:
    directory = tmpfs(tmp_path / "store", 512)
    db = directory / "labels.sqlite"
    store = LabelStore(db, synchronous="NORMAL")
    first = [Label(text=f"You kill the newt {i}!", label=1, score=1.0) for i in range(5)]
    store.put_many(first, prompt_hash="p")
    filler = fill(directory)
    more = [Label(text=f"You see a rock {i}. " + "x" * 3000, label=0, score=0.0)
            for i in range(20)]
    with pytest.raises(LabelStoreFullError, match=f"label store {db}: the disk is full"):
        store.put_many(more, prompt_hash="p")  # was: "cannot rollback", the cause lost
    writes = HeldWrites(store, retry_s=0.0)
    assert not writes.add(labels=more, prompt_hash="p") and writes.held() == 20
    assert len(store) == 5 and _rows(db) == (5, "ok")
    store.close()
    filler.unlink()
    with LabelStore(db) as reopened:  # a labeler restarted once there is room again
        assert len(reopened) == 5
        writes.store = reopened
        assert writes.flush() and writes.held() == 0 and len(reopened) == 25
    # a labeler (re)started while the disk is full (a clean close removed the -wal and -shm
    # files, which opening creates): one line naming the store, not "disk I/O error"
    assert not (directory / "labels.sqlite-wal").exists()
    filler = fill(directory)
    with pytest.raises(LabelStoreFullError, match=f"label store {db}: cannot open it, its "
                                                  "disk is full"):
        LabelStore(db)
    filler.unlink()
    assert _rows(db) == (25, "ok")


def _read_until(proc: subprocess.Popen, prefix: str, lines: list[str]) -> str:
    while True:
        line = proc.stdout.readline()
        assert line, f"labeler serve exited early: {''.join(lines)}"
        lines.append(line)
        if line.startswith(prefix):
            return line.split()[-1]


def _texts(texts: list[str]) -> bytes:
    return msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 0, "texts": texts},
                         use_bin_type=True)


def _rows(db: Path) -> tuple[int, str]:
    """Label rows and SQLite's integrity verdict, read by another connection."""
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                            uri=True)) as conn:  # closed: else it keeps the
        rows = int(conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
        return rows, str(conn.execute("PRAGMA integrity_check").fetchone()[0])  # mount busy


@pytest.mark.timeout(300)
def test_full_label_store_disk_holds_rows_keeps_serving_and_writes_them_later(
        tmp_path: Path, tmpfs) -> None:
    """The labeler process (``explorer labeler serve``) on a label store whose disk fills:
    it stays up, says so once naming the store, keeps publishing the cached labels, loses no
    row, and writes what it held once the disk has room."""
    directory = tmpfs(tmp_path / "store", 2048)
    db = directory / "labels.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.app.cli", "labeler", "serve",
         str(ROOT / "configs" / "nethack_oni.yaml"), "llm_labeler.labeler=rules",
         "llm_labeler.publish_interval_s=0.2", "--store", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    ctx = zmq.Context()
    push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
    for sock in (push, sub):
        sock.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    latest: dict[str, object] = {"table": {}, "meta": {}}

    def table_until(predicate, timeout: float = 120.0) -> tuple[dict, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"labeler died (exit code {proc.returncode})"
            if sub.poll(200):
                msg = decode_table(sub.recv_multipart(), table_schema())
                latest["table"] = dict(zip(msg.arrays["ids"].tolist(),
                                           msg.arrays["rewards"].tolist(), strict=True))
                latest["meta"] = msg.meta
            if predicate(latest["table"], latest["meta"]):
                return latest["table"], latest["meta"]
        raise AssertionError(f"no matching table within {timeout}s; last meta {latest['meta']}")

    lines: list[str] = []
    try:
        push.connect(_read_until(proc, "texts in:", lines))
        sub.connect(_read_until(proc, "updates out:", lines))
        before = ["You kill the newt!", "It's a wall.", "You find a hidden passage."]
        push.send(_texts(before))
        table_until(lambda t, m: len(t) == 3 and m.get("store_held") == 0)
        assert _rows(db) == (3, "ok")
        filler = fill(directory)
        # long texts: every commit needs new pages, which the full disk cannot give
        during = [f"You kill the newt number {i}! " + "x" * 2000 for i in range(40)]
        push.send(_texts(during))
        table_until(lambda t, m: m.get("store_held", 0) > 0
                              and m.get("errors/store_full", 0) >= 2)
        time.sleep(2)  # it stays up while full, still serving the cached labels
        table, _ = table_until(lambda t, m: True)
        assert all(text_id(t) in table for t in before)
        assert _rows(db) == (3, "ok")  # nothing half-written

        filler.unlink()
        table, _ = table_until(lambda t, m: len(t) == 43 and m.get("store_held") == 0)
        assert table[text_id(during[0])] == 1.0
        assert _rows(db) == (43, "ok")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        out = "".join(lines) + out
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        push.close(0)
        sub.close(0)
        ctx.term()
    full = [line for line in out.splitlines() if "the disk is full" in line]
    assert len(full) == 1, out  # said once, not once per try
    assert f"label store {db}" in full[0] and "rows held in memory" in full[0], full
    assert "writable again" in out, out
    assert "Traceback" not in out, out
    assert os.path.exists(db)
