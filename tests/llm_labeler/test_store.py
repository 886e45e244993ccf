"""LabelStore: WAL mode, round trips, restarts, INSERT OR IGNORE, a reader process, odd texts."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from llm_labeler.protocol import Label
from llm_labeler.store import LabelStore, normalize_text, text_hash


def _label(text: str | bytes, label: int = 1, score: float | None = None) -> Label:
    return Label(text=text, label=label, score=float(label) if score is None else score,  # type: ignore[arg-type]
                 rationale="r", backend="test", model="m")


def test_wal_mode_and_pragmas(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "sub" / "labels.sqlite") as store:
        assert store.journal_mode == "wal"
        assert store.stats()["journal_mode"] == "wal"
    conn = sqlite3.connect(tmp_path / "sub" / "labels.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
    conn.close()


def test_round_trip(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        assert store.put_many([_label("You kill the newt!"), _label("It's a wall.", 0, 0.1)],
                              prompt_hash="p1") == 2
        rows = store.get_many(["You kill the newt!", "It's a wall.", "never seen"])
        assert set(rows) == {"You kill the newt!", "It's a wall."}
        row = rows["It's a wall."]
        assert (row.label, row.score, row.backend, row.model, row.prompt_hash) == \
            (0, 0.1, "test", "m", "p1")
        assert row.text_hash == hashlib.sha256(b"It's a wall.").hexdigest()
        assert row.to_label() == Label(text="It's a wall.", label=0, score=0.1, rationale="r",
                                       backend="test", model="m")
        assert row.created > 0 and not row.truncated
        assert len(store) == 2 and "You kill the newt!" in store and "other" not in store
        assert store.get("never seen") is None
        stats = store.stats()
        assert (stats["rows"], stats["positives"], stats["inserted"]) == (2, 1, 2)
        assert (stats["hits"], stats["misses"]) == (2, 2)  # get_many 2+1, get 0+1


def test_reopen_after_close_keeps_labels(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    texts = [f"message {i}" for i in range(250)]
    with LabelStore(path) as store:
        store.put_many([_label(t, i % 2) for i, t in enumerate(texts)], prompt_hash="p")
        before = [(r.text_hash, r.label, r.score, r.created) for r in store.all_labels()]
    with LabelStore(path) as store:
        after = [(r.text_hash, r.label, r.score, r.created) for r in store.all_labels(page=7)]
        assert len(store) == 250
        assert {t: r.label for t, r in store.get_many(texts).items()} == \
            {t: i % 2 for i, t in enumerate(texts)}
    assert after == before


def test_insert_or_ignore_keeps_first_label(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        assert store.put_many([_label("a", 1)], prompt_hash="first") == 1
        assert store.put_many([_label("a", 0), _label("b", 0), _label("b", 1)],
                              prompt_hash="second") == 1
        rows = store.get_many(["a", "b"])
        assert (rows["a"].label, rows["a"].prompt_hash) == (1, "first")
        assert rows["b"].label == 0  # first of the duplicates in one call
        assert store.stats()["ignored"] == 2
        assert store.put_many([], prompt_hash="x") == 0


def test_all_labels_tails_new_rows(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put_many([_label("a"), _label("b")], prompt_hash="p")
        rows = list(store.all_labels())
        assert [r.text for r in rows] == ["a", "b"]
        store.put_many([_label("c")], prompt_hash="p")
        assert [r.text for r in store.all_labels(after_id=rows[-1].row_id)] == ["c"]


def test_reader_process_sees_writes(tmp_path: Path) -> None:
    """One writer (this process) and a read-only reader process share the file in WAL mode."""
    path = tmp_path / "l.sqlite"
    reader = textwrap.dedent(f"""
        import sys, time
        from llm_labeler.store import LabelStore
        store = LabelStore({str(path)!r}, readonly=True)
        print("ready", store.journal_mode, len(store), flush=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            rows = store.get_many(["late text"])
            if rows:
                print("seen", rows["late text"].label, len(store), flush=True)
                break
            time.sleep(0.02)
        try:
            store.put_many([], prompt_hash="p")  # nothing to write: no error
            from llm_labeler.protocol import Label
            store.put_many([Label(text="x", label=1, score=1.0)], prompt_hash="p")
        except Exception as err:
            print("readonly", type(err).__name__, flush=True)
    """)
    with LabelStore(path) as store:
        store.put_many([_label("early text")], prompt_hash="p")
        proc = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["ready", "wal", "1"]
        store.put_many([_label("late text", 0)], prompt_hash="p")  # while the reader is open
        out, err = proc.communicate(timeout=25)
    assert proc.returncode == 0, err
    assert out.split("\n")[:2] == ["seen 0 2", "readonly OperationalError"]


def test_readonly_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LabelStore(tmp_path / "absent.sqlite", readonly=True)


def test_concurrent_threads_one_handle(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        def write(k: int) -> None:
            for i in range(20):
                store.put_many([_label(f"t{k}-{i}")], prompt_hash="p")
                store.get_many([f"t{k}-{i}", "missing"])

        threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store) == 80 and store.stats()["inserted"] == 80


def test_huge_text_truncated_but_hashed_in_full(tmp_path: Path) -> None:
    huge = "You kill the newt! " * 10_000      # 190k characters
    other = huge + "x"                         # same first 4096 characters, different text
    with LabelStore(tmp_path / "l.sqlite", max_text_chars=4096) as store:
        assert store.put_many([_label(huge, 1), _label(other, 0)], prompt_hash="p") == 2
        rows = store.get_many([huge, other])
        assert (rows[huge].label, rows[other].label) == (1, 0)
        assert rows[huge].text == huge and rows[huge].truncated
        assert rows[huge].text_hash == hashlib.sha256(huge.encode()).hexdigest()
        stored = {r.text_hash: r for r in store.all_labels()}
        assert len(stored[text_hash(huge)].text) == 4096
        assert store.stats()["truncated"] == 2


def test_non_utf8_and_odd_texts(tmp_path: Path) -> None:
    bad = b"You see here a \xff\xfe ring."
    surrogate = "caf\udce9"                    # e.g. from surrogateescape decoding
    odd = ["", "nul\x00inside", "emoji 🐉 ünïcödé", "line\nbreak"]
    assert normalize_text(bad) == ("You see here a \ufffd\ufffd ring.", True)
    assert normalize_text("plain") == ("plain", False)
    assert normalize_text(b"plain") == ("plain", False)
    with pytest.raises(TypeError):
        normalize_text(3)  # type: ignore[arg-type]
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put_many([_label(bad), _label(surrogate)] + [_label(t) for t in odd],
                       prompt_hash="p")
        rows = store.get_many([bad, surrogate, *odd])
        assert set(rows) == {bad, surrogate, *odd}
        assert rows[bad].text == "You see here a \ufffd\ufffd ring."
        assert rows["nul\x00inside"].text == "nul\x00inside"
        # the same bytes given as str (decoded the same way) hit the same row
        assert "You see here a \ufffd\ufffd ring." in store
        assert store.stats()["decode_errors"] == 4  # bad + surrogate, on put and on get
    with LabelStore(tmp_path / "l.sqlite") as store:  # and after a restart
        assert {r.text for r in store.all_labels()} >= {"nul\x00inside", "emoji 🐉 ünïcödé"}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_text_chars"):
        LabelStore(tmp_path / "l.sqlite", max_text_chars=0)
    with pytest.raises(ValueError, match="synchronous"):
        LabelStore(tmp_path / "l.sqlite", synchronous="OFF")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        LabelStore(tmp_path / "junk.sqlite")
