"""``explorer labeler serve``: the service as a standalone command, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import zmq

from explorer.core.tables import decode_table, table_schema
from explorer.core.texts import TEXT_PROTOCOL_VERSION, text_id
from llm_labeler.store import LabelStore

ROOT = Path(__file__).resolve().parents[2]


def test_serve_labels_publishes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    store = tmp_path / "labels.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.app.cli", "labeler", "serve",
         str(ROOT / "configs" / "nethack_oni.yaml"), "llm_labeler.labeler=rules",
         "llm_labeler.publish_interval_s=0.2", "--store", str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    ctx = zmq.Context()
    try:
        lines = []
        while not any(line.startswith("updates out:") for line in lines):
            line = proc.stdout.readline()
            assert line, f"serve exited early: {''.join(lines)}"
            lines.append(line)
        texts_addr = next(x for x in lines if x.startswith("texts in:")).split()[-1]
        updates_addr = next(x for x in lines if x.startswith("updates out:")).split()[-1]
        push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        push.connect(texts_addr)
        sub.connect(updates_addr)
        push.send(msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 0,
                                 "texts": ["You kill the newt!", "It's a wall."]}))
        table: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while len(table) < 2 and time.monotonic() < deadline:
            if sub.poll(500):
                msg = decode_table(sub.recv_multipart(), table_schema())
                table = dict(zip(msg.arrays["ids"].tolist(), msg.arrays["rewards"].tolist(),
                                 strict=True))
        assert table == {text_id("You kill the newt!"): 1.0, text_id("It's a wall."): 0.0}
        push.close(0)
        sub.close(0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "labeler stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        ctx.term()
    with LabelStore(store, readonly=True) as db:
        assert len(db) == 2


def test_serve_without_a_labeler_is_a_clear_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "explorer.app.cli", "labeler", "serve",
                           str(ROOT / "configs" / "nethack_score.yaml")],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "llm_labeler.labeler is not set" in proc.stderr
