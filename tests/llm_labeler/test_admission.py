"""Texts from the network are bounded per sender and in total (``llm_labeler.admission``).

The caps are checked on :class:`TextAdmission` alone and on the labeler service with real
sockets: a flood of distinct texts from one sender fills its quota and the run's total, the
store and queue stop growing, honest senders keep theirs, and the refusals are counted in the
publication the learner logs to TensorBoard (``labeler/texts_refused_*``). With CURVE on, a
client without the run's key cannot send texts at all.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import pytest
import zmq

from explorer.core.config import LabelerConfig
from explorer.core.curve import CurveKeys, SocketSecurity, generate_keys, load_curve_keys
from explorer.core.tables import decode_table, table_schema
from explorer.core.texts import TEXT_PROTOCOL_VERSION
from llm_labeler.admission import TextAdmission
from llm_labeler.service import LabelerService, ServiceArgs
from llm_labeler.store import LabelStore


class _Event:
    def is_set(self) -> bool:
        return False


def _frame(texts: list[str], actor_id: int) -> bytes:
    return msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": actor_id, "texts": texts},
                         use_bin_type=True)


@pytest.mark.parametrize(("caps", "batches", "admitted", "refused_sender", "refused_total"), [
    # (max_total, max_per_sender), [(sender, n new texts)], admitted per batch, refusals
    ((100, 10), [(0, 4), (0, 4), (0, 4)], [4, 4, 2], 2, 0),
    ((100, 10), [(0, 12), (1, 3)], [10, 3], 2, 0),
    ((6, 10), [(0, 4), (1, 4), (2, 4)], [4, 2, 0], 0, 6),
    ((6, 3), [(0, 5), (1, 5)], [3, 3], 4, 0),   # each sender's quota binds first
    ((5, 4), [(0, 4), (1, 4)], [4, 1], 0, 3),   # then the total
])
def test_caps_per_sender_and_in_total(caps, batches, admitted, refused_sender,
                                      refused_total) -> None:
    adm = TextAdmission(*caps)
    got = [len(adm.admit(sender, [f"{sender}-{i}-{j}" for j in range(n)]))
           for i, (sender, n) in enumerate(batches)]
    assert got == admitted
    stats = adm.stats()
    assert stats["texts_refused_sender"] == refused_sender
    assert stats["texts_refused_total"] == refused_total
    assert stats["texts_accepted_total"] == sum(admitted) <= caps[0]


def test_a_restart_counts_the_stored_texts_against_the_total() -> None:
    adm = TextAdmission(max_total=10, max_per_sender=10, already=8)
    assert adm.admit(0, ["a", "b", "c"]) == ["a", "b"]
    assert adm.stats()["texts_refused_total"] == 1
    assert TextAdmission(10, 10, already=12).admit(0, ["a"]) == []  # a lowered cap holds too


class _Service:
    """A labeler service stepped in this thread, with its publications read over SUB."""

    def __init__(self, tmp_path: Path, keys: CurveKeys | None = None, **cfg: object) -> None:
        self.ctx = zmq.Context()
        self.cfg = LabelerConfig(**{"labeler": "rules", "publish_interval_s": 0.2, **cfg})
        self.store_path = tmp_path / "labels.sqlite"
        args = ServiceArgs(cfg=self.cfg, store_path=str(self.store_path),
                           texts_address="tcp://127.0.0.1:0",
                           updates_address="tcp://127.0.0.1:0", stop_event=_Event(), curve=keys)
        self.service = LabelerService(args, self.ctx)
        self.security = SocketSecurity(self.ctx, keys)  # the learner's side of the updates
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.security.connect(self.sub)
        self.sub.connect(self.service.updates_address)
        self.sockets = [self.sub]
        self.service.start()

    def pusher(self, ctx: zmq.Context, security: SocketSecurity) -> zmq.Socket:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        security.connect(push)
        push.connect(self.service.texts_address)
        self.sockets.append(push)
        return push

    def meta_until(self, predicate, timeout: float = 60.0) -> dict:
        deadline, meta = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            self.service.step(20)
            while self.sub.poll(0):
                meta = decode_table(self.sub.recv_multipart(), table_schema()).meta
            if meta and predicate(meta):
                return meta
        raise AssertionError(f"no matching publication within {timeout}s; last meta {meta}")

    def close(self) -> None:
        self.service.close()
        for sock in self.sockets:
            sock.close(0)
        self.security.close()
        self.ctx.term()


def test_a_flood_of_distinct_texts_is_capped_and_counted(tmp_path: Path) -> None:
    h = _Service(tmp_path, max_texts=300, max_texts_per_sender=200, queue_size=10_000)
    try:
        push = h.pusher(h.ctx, SocketSecurity(h.ctx, None))
        for i in range(20):  # the flooder: 2,000 distinct texts as actor 7
            push.send(_frame([f"You see {i}-{j} gold pieces." for j in range(100)], 7))
        honest = [f"You kill the newt number {j}!" for j in range(150)]
        push.send(_frame(honest, 0))
        meta = h.meta_until(lambda m: m["texts_received"] == 2150)
        assert meta["texts_accepted_total"] == 300  # 200 of the flooder's, 100 of the honest
        assert meta["texts_refused_sender"] == 1800
        assert meta["texts_refused_total"] == 50
        assert meta["senders"] == 2
        push.send(_frame(["One more new text."], 1))  # a new sender: the total is spent
        meta = h.meta_until(lambda m: m["texts_received"] == 2151)
        assert meta["texts_refused_total"] == 51 and meta["texts_accepted_total"] == 300
        with LabelStore(h.store_path, readonly=True) as store:
            assert len(store.seen_texts()) == 300
    finally:
        h.close()


def test_with_curve_a_client_without_the_key_sends_no_texts(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    generate_keys(tmp_path / "intruder")
    keys = load_curve_keys(tmp_path / "keys")
    h = _Service(tmp_path, keys=keys)
    intruder_ctx = zmq.Context()
    try:
        intruder = h.pusher(intruder_ctx, SocketSecurity(
            intruder_ctx, CurveKeys(str(tmp_path / "intruder"), keys.server_public, ())))
        plain = h.pusher(intruder_ctx, SocketSecurity(intruder_ctx, None))
        for sock in (intruder, plain):
            if sock.poll(200, zmq.POLLOUT):
                sock.send(_frame(["Intruder text."], 3), zmq.NOBLOCK)
        honest = h.pusher(h.ctx, SocketSecurity(h.ctx, keys))
        honest.send(_frame(["You kill the newt!"], 0))
        meta = h.meta_until(lambda m: m["texts_received"] >= 1)
        time.sleep(1.0)
        meta = h.meta_until(lambda m: True)
        assert meta["texts_received"] == 1 and meta["texts_accepted_total"] == 1
        assert meta["auth_rejected"] >= 1  # the intruder's handshake, published to the learner
    finally:
        h.close()
        intruder_ctx.term()
