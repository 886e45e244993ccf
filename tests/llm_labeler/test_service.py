"""The labeler service with real ZeroMQ sockets and a real SQLite store.

Texts go in over PUSH exactly as actors send them (``actors.texts`` framing); reward tables come
out over SUB and are checked against the labels the backend gave and the store holds.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from explorer.core.config import LabelerConfig
from explorer.core.tables import decode_table, table_schema
from explorer.core.texts import TEXT_PROTOCOL_VERSION, text_id
from llm_labeler.service import META_BUDGET, LabelerService, ServiceArgs, fit_metrics
from llm_labeler.store import LabelStore

POSITIVE = ["You kill the newt!", "You find a hidden passage.", "g - a wand of digging."]
NEGATIVE = ["Really attack the shopkeeper? [yn] (n)", "You see here a rock.", "It's a wall."]


class _Event:
    def __init__(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True


def _frame(texts: list[str], actor_id: int = 0) -> bytes:
    return msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": actor_id, "texts": texts},
                         use_bin_type=True)


class Harness:
    """A service stepped in this thread, an actor-like PUSH socket and a learner-like SUB."""

    def __init__(self, tmp_path: Path, **cfg: object) -> None:
        self.ctx = zmq.Context()
        self.cfg = LabelerConfig(**{"labeler": "rules", "publish_interval_s": 0.2, **cfg})
        self.store_path = tmp_path / "labels.sqlite"
        self.last: tuple[dict[int, float], dict] = ({}, {})
        self.service = self._start()

    def _start(self) -> LabelerService:
        args = ServiceArgs(cfg=self.cfg, store_path=str(self.store_path),
                           texts_address="tcp://127.0.0.1:0",
                           updates_address="tcp://127.0.0.1:0", stop_event=_Event())
        service = LabelerService(args, self.ctx)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(service.texts_address)
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(service.updates_address)
        service.start()
        return service

    def send(self, frames: list[bytes]) -> None:
        self.push.send_multipart(frames)

    def table_until(self, predicate, timeout: float = 120.0) -> tuple[dict[int, float], dict]:
        """Step the service until a received table satisfies ``predicate(table, meta)``."""
        deadline = time.monotonic() + timeout
        table, meta = self.last
        while time.monotonic() < deadline:
            self.service.step(20)
            while self.sub.poll(0):
                msg = decode_table(self.sub.recv_multipart(), table_schema())
                table = dict(zip(msg.arrays["ids"].tolist(), msg.arrays["rewards"].tolist(),
                                 strict=True))
                meta = msg.meta
                self.last = (table, meta)
            if predicate(table, meta):
                return table, meta
        raise AssertionError(f"no matching reward table within {timeout}s; last meta {meta}")

    def restart(self) -> None:
        self.close_service()
        self.last = ({}, {})
        self.service = self._start()

    def close_service(self) -> None:
        self.service.close()
        self.push.close(0)
        self.sub.close(0)

    def close(self) -> None:
        self.close_service()
        self.ctx.term()


@pytest.fixture
def harness(tmp_path: Path):
    h = Harness(tmp_path)
    yield h
    h.close()


def test_texts_become_labels_rewards_and_store_rows(harness: Harness) -> None:
    harness.send([_frame(POSITIVE + NEGATIVE)])
    table, meta = harness.table_until(lambda t, m: len(t) == 6)
    for text in POSITIVE:
        assert table[text_id(text)] == 1.0
    for text in NEGATIVE:
        assert table[text_id(text)] == 0.0
    assert meta["labelled_total"] == 6 and meta["positive_rate"] == pytest.approx(0.5)
    assert meta["queue_depth"] == 0 and meta["relabelled"] == 0
    with LabelStore(harness.store_path, readonly=True) as store:
        assert len(store) == 6 and store.get("You kill the newt!").label == 1


def test_malformed_frames_are_dropped_counted_and_service_survives(harness: Harness) -> None:
    harness.send([b"\xc1 not msgpack"])
    harness.send([msgpack.packb({"v": 99, "actor_id": 0, "texts": ["x"]})])
    harness.send([msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 0, "texts": [1, 2]})])
    harness.send([_frame(["a"]), _frame(["b"])])  # two frames in one message
    harness.send([msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 0,
                                 "texts": [b"\xff\xfe raw bytes"]}, use_bin_type=True)])
    harness.send([_frame(["You kill the jackal!", "x" * 100_000])])  # huge text: truncated
    table, meta = harness.table_until(lambda t, m: len(t) == 2)
    assert meta["dropped_messages"] == 5
    assert table[text_id("You kill the jackal!")] == 1.0
    assert table[text_id("x" * 4096)] == 0.0  # stored truncated
    assert table[text_id("x" * 100_000)] == 0.0  # the key the actor computes from the whole


def test_restart_reloads_store_queues_unlabelled_and_never_relabels(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        h.send([_frame(POSITIVE)])
        h.table_until(lambda t, m: len(t) == 3)
        # a text seen but not yet labelled when the service went down must still get a label
        h.service.store.add_seen(["You kill the grid bug!"])
        h.restart()
        assert h.service.restored == {"seen": 4, "labels": 3, "queued": 1}
        h.send([_frame(POSITIVE)])  # a restarted actor re-sends what the store already has
        table, meta = h.table_until(lambda t, m: len(t) == 4 and m.get("store_hits") == 3)
        assert table[text_id("You kill the grid bug!")] == 1.0
        assert meta["relabelled"] == 0 and meta["labelled_total"] == 4
    finally:
        h.close()


def test_queue_is_bounded_and_drops_oldest(tmp_path: Path) -> None:
    h = Harness(tmp_path, queue_size=4, batch_size=1)
    try:
        h.service._stop.set()  # no labelling: watch the queue alone
        h.service._worker.join()
        h.send([_frame([f"message {i}" for i in range(10)])])
        _, meta = h.table_until(lambda t, m: m.get("texts_received") == 10)
        assert meta["queue_depth"] == 4 and meta["queue_dropped"] == 6
        assert set(h.service.queue.pop_batch(10)) == {f"message {i}" for i in range(6, 10)}
    finally:
        h.close()


class FlakyLabeler:
    """A user labeler that raises on texts containing 'boom' and labels the rest."""

    name = "flaky"

    def label(self, texts):
        from llm_labeler.protocol import Label

        if any("boom" in t for t in texts):
            raise RuntimeError("user code failed")
        return [Label(text=t, label=int("kill" in t), score=float("kill" in t)) for t in texts]


def test_a_raising_custom_labeler_is_counted_not_fatal(tmp_path: Path) -> None:
    h = Harness(tmp_path, labeler=f"{__name__}:FlakyLabeler", batch_size=1)
    try:
        h.send([_frame(["boom", "You kill it"])])
        table, meta = h.table_until(
            lambda t, m: len(t) == 1 and m.get("errors/exception", 0) >= 3)
        assert table[text_id("You kill it")] == 1.0
        assert meta["queue_abandoned"] == 1  # given up after max_attempts, never a stall
    finally:
        h.close()


def test_classification_rewards_unlabelled_texts(tmp_path: Path) -> None:
    h = Harness(tmp_path, labeler="rules", reward_model="classification",
                reward_model_kwargs={"min_labels": 6, "retrain_every": 1000})
    try:
        train = POSITIVE + NEGATIVE + ["You kill the lichen!", "You hear a door open."]
        h.send([_frame(train)])
        h.table_until(lambda t, m: m.get("reward_model/trained_labels", 0) >= 6)
        h.service._stop.set()  # stop labelling: the next texts are rewarded by the model only
        h.service._worker.join()
        unseen = ["You kill the sewer rat!", "You see here a boulder."]
        h.send([_frame(unseen)])
        table, _ = h.table_until(lambda t, m: all(text_id(u) in t for u in unseen))
        assert table[text_id(unseen[0])] == 1.0
        assert table[text_id(unseen[1])] == 0.0
        assert not h.service.store.get_many(unseen)  # rewarded without a label
    finally:
        h.close()


def test_ranking_publishes_normalised_rewards(tmp_path: Path) -> None:
    h = Harness(tmp_path, labeler="rules", reward_model="ranking",
                reward_model_kwargs={"min_preferences": 10, "pairs_per_round": 20,
                                     "threshold_quantile": 0.5})
    try:
        texts = POSITIVE + NEGATIVE + ["You kill the lichen!", "You hear a door open.",
                                       "You feel more confident in your weapon skills.",
                                       "There is a staircase down here."]
        h.send([_frame(texts)])
        _, meta = h.table_until(lambda t, m: m.get("reward_model/trained_preferences", 0) >= 10)
        z = np.array(list(h.service.model.normalised.values()))
        assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0, abs=1e-6)
        assert meta["reward_model/pair_accuracy"] > 0.8
        rewards = h.service.model.rewards()
        assert rewards[text_id("You kill the newt!")] > 0
        assert rewards[text_id("It's a wall.")] == 0.0  # below the quantile: no reward
    finally:
        h.close()


def test_ranking_asks_the_llm_to_compare_pairs(tmp_path: Path) -> None:
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        h = Harness(tmp_path, labeler="openai",
                    backend={"base_url": server.url, "model": "fake", "batch_size": 10},
                    reward_model="ranking",
                    reward_model_kwargs={"min_preferences": 24, "pairs_per_round": 24})
        try:
            texts = ["You kill the newt!", "You kill the jackal!", "You kill the lichen!",
                     "You see here a rock.", "It's a wall.", "You hear a door open.",
                     "There is a doorway here.", "You kill the sewer rat!"]
            h.send([_frame(texts)])
            _, meta = h.table_until(
                lambda t, m: m.get("reward_model/trained_preferences", 0) >= 24)
            pair_requests = [b for b in server.bodies if "pairs of messages"
                             in b["messages"][1]["content"]]
            assert pair_requests, "no comparison was asked"
            assert meta["reward_model/pair_accuracy"] > 0.8
            prefs = h.service.store.preferences()
            assert len(prefs) >= 24 and all(p in (0.0, 1.0) for _, _, p in prefs)
            rewards = h.service.model.rewards()
            kills = [rewards[text_id(t)] for t in texts if "kill" in t]
            others = [rewards[text_id(t)] for t in texts if "kill" not in t]
            assert np.mean(kills) > np.mean(others) + 0.5
        finally:
            h.close()


def test_recurring_texts_are_labelled_first(tmp_path: Path) -> None:
    h = Harness(tmp_path, batch_size=1)
    try:
        h.service._stop.set()  # no labelling: watch the queue order alone
        h.service._worker.join()
        h.send([_frame(["first", "second", "third"])])
        h.table_until(lambda t, m: m.get("texts_received") == 3)
        h.send([msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": 1, "texts": [],
                               "hot": ["first"]}, use_bin_type=True)])
        h.table_until(lambda t, m: h.service.queue.stats()["bumped"] == 1)
        assert h.service.queue.pop_batch(3) == ["first", "third", "second"]
    finally:
        h.close()


class ManyKindsLabeler:
    """Labels texts with 'kill'; fails every other text with one of 20 error kinds, so the
    worker keeps adding error kinds and label times while the main thread reads them."""

    name = "many_kinds"

    def label(self, texts):
        from llm_labeler.protocol import Label, LabelerError

        if any("kill" not in t for t in texts):
            raise LabelerError("no kill", reason=f"kind{hash(texts[0]) % 20}")
        return [Label(text=t, label=1, score=1.0) for t in texts]


def test_stats_never_trip_over_the_worker(tmp_path: Path) -> None:
    # the worker appends label times and latencies and adds error kinds while stats() (main
    # thread) reads them; a thread switch every microsecond makes an unguarded read fail
    h = Harness(tmp_path, labeler=f"{__name__}:ManyKindsLabeler", batch_size=1,
                queue_size=10_000)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        service = h.service
        calls = 0
        for rounds in range(3):
            service.queue.extend([f"rock {rounds} {i}" if i % 4 == 0 else
                                  f"You kill {rounds} {i}" for i in range(3000)])
            while service.queue.stats()["size"] or service.queue.stats()["inflight"]:
                service.stats()
                calls += 1
        meta = service.stats()
    finally:
        sys.setswitchinterval(switch)
        h.close()
    assert calls > 10
    assert meta["labelled_total"] == 3 * 2250 and meta["queue_abandoned"] == 3 * 750
    assert sum(v for k, v in meta.items() if k.startswith("errors/")) == 3 * 750 * 3


def test_an_async_labeler_keeps_its_client_across_batches(tmp_path: Path) -> None:
    from fake_openai_server import FakeOpenAIServer, rule

    with FakeOpenAIServer(keep_alive=True) as server:
        h = Harness(tmp_path, labeler="async_http_labeler:AsyncHTTPLabeler", batch_size=1,
                    backend={"base_url": server.url})
        try:
            h.send([_frame(POSITIVE + NEGATIVE)])
            table, meta = h.table_until(lambda t, m: len(t) == 6)  # six batches, one loop
            assert all(table[text_id(t)] == float(rule(t) == "yes") for t in POSITIVE + NEGATIVE)
            assert not any(k.startswith("errors/") for k in meta)
            labeler = h.service.labeler
        finally:
            h.close()
        assert labeler.batches == 6 and labeler.client.is_closed  # closed with the service


class KindsLabeler:
    """Labels texts with 'kill'; 'fail NN' fails with its own error kind ``kindNN``."""

    name = "kinds"

    def label(self, texts):
        from llm_labeler.protocol import Label, LabelerError

        for t in texts:
            if t.startswith("fail "):
                raise LabelerError("failed", reason=f"kind{t[5:]}")
        return [Label(text=t, label=int("kill" in t), score=float("kill" in t)) for t in texts]


def test_error_counters_survive_the_wire_meta_budget(tmp_path: Path) -> None:
    # 55 error kinds plus the service's own metrics exceed the wire's 64 meta entries: the
    # publication must still go out, with every error counter, and say what it left out
    h = Harness(tmp_path, labeler=f"{__name__}:KindsLabeler", batch_size=1)
    try:
        h.send([_frame([f"fail {i:02d}" for i in range(55)] + POSITIVE)])
        _, meta = h.table_until(lambda t, m: len(t) == 3 and m.get("queue_abandoned") == 55,
                                timeout=60)
    finally:
        h.close()
    assert len(meta) <= META_BUDGET == 64
    errors = {k: v for k, v in meta.items() if k.startswith("errors/")}
    assert errors == {f"errors/kind{i:02d}": 3 for i in range(55)}  # 3 attempts each
    assert meta["metrics_dropped"] > 0 and "queue_depth" in meta


def test_fit_metrics_is_deterministic_and_keeps_every_error() -> None:
    core = {f"core{i:02d}": float(i) for i in range(20)}
    model = {f"reward_model/m{i:02d}": 1.0 for i in range(10)}
    errors = {"errors/timeout": 5.0, "errors/config": 2.0}
    small = fit_metrics({**core, **errors})
    assert small == {**core, **errors, "metrics_dropped": 0.0}

    fitted = fit_metrics({**core, **model, **errors, "config_error": 401.0}, budget=25)
    assert len(fitted) == 25 and fitted == fit_metrics({**core, **model, **errors,
                                                        "config_error": 401.0}, budget=25)
    assert fitted["errors/timeout"] == 5.0 and fitted["errors/config"] == 2.0
    assert fitted["config_error"] == 401.0
    assert list(fitted)[:21] == [*core, "reward_model/m00"]  # the model's are dropped first
    assert fitted["metrics_dropped"] == 9.0

    many = {f"errors/k{i:02d}": float(i) for i in range(30)} | {"errors/other": 100.0}
    tight = fit_metrics({**core, **many}, budget=10)
    assert len(tight) == 10 and tight["metrics_dropped"] == 20 + 22  # core + merged kinds
    kept = {k: v for k, v in tight.items() if k.startswith("errors/")}
    assert list(kept) == [f"errors/k{i}" for i in range(29, 21, -1)] + ["errors/other"]
    assert sum(kept.values()) == sum(many.values())  # no error lost, the rarest summed


def test_a_configuration_error_is_reported_and_texts_wait_for_the_fix(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a bad API key: the server answers 401. Not an outage (breaker closed), not the texts'
    # fault (none abandoned), reported once, visible in the metrics, no request per batch
    from fake_openai_server import FakeOpenAIServer, rule

    texts = POSITIVE + NEGATIVE
    with FakeOpenAIServer(default="http_401") as server, \
            caplog.at_level(logging.WARNING, "llm_labeler"):
        h = Harness(tmp_path, labeler="openai", batch_size=2,
                    backend={"base_url": server.url, "model": "fake", "batch_size": 2,
                             "max_retries": 2, "breaker_failures": 1,
                             "config_retry_s": 3600.0})
        try:
            h.send([_frame(texts)])
            h.table_until(lambda t, m: m.get("config_error") == 401, timeout=30)
            version = h.service.version
            _, meta = h.table_until(lambda t, m: h.service.version >= version + 5)
            assert server.requests == 1
            assert meta["errors/config"] == 2 and meta["breaker_state"] == 0.0
            assert meta["queue_depth"] + meta["queue_inflight"] == 6
            assert meta["queue_abandoned"] == 0 and meta["labelled_total"] == 0

            server.default = "ok"                         # the key is fixed on the server,
            h.service.labeler.config_gate.hold_s = 0.0    # and the hold is over
            table, meta = h.table_until(lambda t, m: len(t) == 6 and m["config_error"] == 0)
            assert all(table[text_id(t)] == float(rule(t) == "yes") for t in texts)
            assert meta["queue_abandoned"] == 0 and meta["relabelled"] == 0
        finally:
            h.close()
    reported = [r for r in caplog.records if "Incorrect API key" in r.getMessage()]
    assert len(reported) == 1 and reported[0].levelno == logging.ERROR


def test_nice_every_thread_lowers_threads_already_running() -> None:
    """The service nices itself once ready, when its worker threads already run: every
    thread must be lowered, not only the caller (Linux's nice is per thread)."""
    import subprocess

    code = (
        "import os, threading, time\n"
        "from llm_labeler.service import _nice_every_thread\n"
        "box = {}\n"
        "def worker():\n"
        "    box['tid'] = threading.get_native_id(); time.sleep(2)\n"
        "t = threading.Thread(target=worker); t.start(); time.sleep(0.2)\n"
        "_nice_every_thread(5)\n"
        "print(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),\n"
        "      os.getpriority(os.PRIO_PROCESS, box['tid']))\n"
        "t.join()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert [int(x) for x in out.stdout.split()] == [min(19, base + 5)] * 2
