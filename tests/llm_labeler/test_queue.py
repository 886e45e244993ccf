"""PendingQueue: dedup, counted drop-oldest, newest-first batches, known() skip, retries."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llm_labeler.protocol import Label
from llm_labeler.queue import PendingQueue
from llm_labeler.store import LabelStore


def test_dedup_queued_and_in_flight() -> None:
    queue = PendingQueue(10)
    assert queue.push("a") and queue.push("b")
    assert not queue.push("a")
    assert queue.extend(["b", "c", "c"]) == 1
    assert len(queue) == 3 and "a" in queue
    batch = queue.pop_batch(2)
    assert batch == ["c", "b"]
    assert not queue.push("c")                  # in flight: not sent twice
    queue.done(batch)
    assert queue.push("c")                      # done and not known: may come back
    stats = queue.stats()
    assert (stats["duplicates"], stats["enqueued"], stats["inflight"]) == (4, 4, 0)


def test_drop_oldest_counted() -> None:
    queue = PendingQueue(3)
    queue.extend(["m1", "m2", "m3", "m4", "m5"])
    assert len(queue) == 3 and queue.dropped == 2
    assert queue.pop_batch(10) == ["m5", "m4", "m3"]
    assert queue.stats()["dropped"] == 2


def test_pop_batch_newest_first() -> None:
    queue = PendingQueue(100)
    queue.extend([f"m{i}" for i in range(10)])
    assert queue.pop_batch(3) == ["m9", "m8", "m7"]
    assert queue.pop_batch(0) == []
    queue.push("new")
    assert queue.pop_batch(3) == ["new", "m6", "m5"]
    assert len(queue) == 5 and queue.stats()["popped"] == 6


def test_known_texts_skipped() -> None:
    labelled = {"old news"}
    queue = PendingQueue(10, known=labelled.__contains__)
    assert not queue.push("old news")
    assert queue.push("fresh")
    assert queue.stats()["known_skipped"] == 1


def test_known_from_label_store(tmp_path: Path) -> None:
    with LabelStore(tmp_path / "l.sqlite") as store:
        store.put_many([Label(text="You kill the newt!", label=1, score=1.0)], prompt_hash="p")
        queue = PendingQueue(10, known=store.__contains__)
        assert queue.extend(["You kill the newt!", "It's a wall."]) == 1
        assert queue.pop_batch(5) == ["It's a wall."]


def test_requeue_oldest_and_abandon_after_max_attempts() -> None:
    queue = PendingQueue(10, max_attempts=2)
    queue.extend(["a", "b", "c"])
    batch = queue.pop_batch(1)
    assert batch == ["c"]
    assert queue.requeue(batch) == 1            # back as the oldest
    assert queue.pop_batch(10) == ["b", "a", "c"]
    assert queue.requeue(["c"]) == 0            # second failure: given up
    assert queue.stats()["abandoned"] == 1 and "c" not in queue
    assert queue.requeue(["a", "b"]) == 2


def test_requeue_into_full_queue_drops_the_retry() -> None:
    queue = PendingQueue(2)
    queue.extend(["a", "b"])
    batch = queue.pop_batch(1)
    queue.extend(["c"])
    assert queue.requeue(batch) == 0 and queue.dropped == 1
    assert queue.pop_batch(5) == ["c", "a"]


def test_threads_keep_invariants() -> None:
    queue = PendingQueue(50)
    popped: list[str] = []

    def produce(k: int) -> None:
        for i in range(500):
            queue.push(f"{k}-{i % 200}")

    def consume() -> None:
        for _ in range(300):
            batch = queue.pop_batch(7)
            popped.extend(batch)
            queue.done(batch)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = queue.stats()
    assert stats["size"] <= 50
    assert stats["enqueued"] == stats["size"] + stats["dropped"] + stats["popped"]
    assert stats["popped"] == len(popped)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="maxlen"):
        PendingQueue(0)
    with pytest.raises(ValueError, match="max_attempts"):
        PendingQueue(5, max_attempts=0)


def test_bump_moves_waiting_texts_to_the_front_only() -> None:
    queue = PendingQueue(10)
    queue.extend(["a", "b", "c"])
    queue.pop_batch(0)
    assert queue.bump(["a", "zzz"]) == 1
    assert queue.pop_batch(1) == ["a"]  # bumped: popped before the newer "c"
    assert queue.bump(["a"]) == 0  # in flight: left alone
    assert queue.pop_batch(2) == ["c", "b"]
    assert queue.stats()["bumped"] == 1
