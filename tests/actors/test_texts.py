"""Text capture: per-episode counts, deduplicated batches to a real labeler socket."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zmq

from actors.actor import Actor, ActorArgs, ActorStopped
from actors.envs import probe_env_spec
from actors.texts import TextCapture, make_text_source
from explorer.core.config import load_config
from explorer.core.networks import make_actor_critic
from explorer.core.specs import rollout_schema
from explorer.core.texts import MAX_TEXT_CHARS, decode_texts, split_units
from explorer.core.texts import text_id as text_hash
from explorer.core.wire import KIND_WEIGHTS, Message, decode, encode


class _ScriptedEnv:
    """Stands in for an env's message source: the texts each step shows, per env."""

    def __init__(self, steps: list[list[str]]) -> None:
        self.steps = iter(steps)

    def last_messages(self) -> list[str]:
        return next(self.steps)


def test_counts_per_episode_and_reset() -> None:
    env = _ScriptedEnv([["a", ""], ["a", "b"], ["a", "b"], ["a", "a"]])
    capture = TextCapture(make_text_source("nethack_message"), 2, actor_id=0, socket=None)
    hashes, counts = np.zeros((4, 2, 1), np.int64), np.zeros((4, 2, 1), np.int32)
    for t, ended in enumerate([[False, False], [True, False], [False, False], [False, False]]):
        capture.observe({}, env, hashes[t], counts[t])
        capture.end_episodes(np.array(ended))
    np.testing.assert_array_equal(counts[..., 0], [[1, 0], [2, 1], [1, 2], [2, 1]])
    assert hashes[0, 0, 0] == text_hash("a") != 0 and hashes[0, 1, 0] == 0


def test_split_units_keeps_at_most_max_units() -> None:
    text = "You swap places with your kitten.  You see here a rock.  It's a wall!  Ouch."
    assert split_units(text, 4) == ["You swap places with your kitten.", "You see here a rock.",
                                    "It's a wall!", "Ouch."]
    assert split_units(text, 2) == ["You swap places with your kitten.",
                                    "You see here a rock.  It's a wall!  Ouch."]
    assert split_units("Hello Mr. Smith. One space stays.", 4) == [
        "Hello Mr. Smith. One space stays."]


def test_a_long_text_has_one_id_on_both_sides_of_the_wire(tmp_path: Path) -> None:
    """The actor hashes what the env shows; the labeler hashes what arrives (clipped to
    MAX_TEXT_CHARS): both must give the id the reward table is keyed by, or a long text never
    earns a reward."""
    long_text = "You read: " + "a" * 2 * MAX_TEXT_CHARS
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"ipc://{tmp_path}/labeler")
    push.connect(f"ipc://{tmp_path}/labeler")
    try:
        capture = TextCapture(make_text_source("nethack_message"), 1, actor_id=0, socket=push,
                              batch_size=1)
        hashes, counts = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int32)
        capture.observe({}, _ScriptedEnv([[long_text]]), hashes, counts)
        assert pull.poll(2000)
        _, (received,) = decode_texts(pull.recv())
        assert len(received) == MAX_TEXT_CHARS
        assert text_hash(received) == hashes[0, 0] != 0  # the labeler's key = the actor's
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()


def test_sentence_units_are_counted_and_sent_apart(tmp_path: Path) -> None:
    """Each sentence is a unit with its own id, episode count and single send: a sentence
    seen inside a new combination is neither new to the labeler nor counted afresh."""
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"ipc://{tmp_path}/labeler")
    push.connect(f"ipc://{tmp_path}/labeler")
    try:
        steps = [["You see a door.  The newt bites!"], ["The newt bites!"],
                 ["You see a door.  You hear a noise."]]
        capture = TextCapture(make_text_source("nethack_message"), 1, actor_id=0, socket=push,
                              batch_size=100, units="sentences", max_units=3)
        hashes, counts = np.zeros((3, 1, 3), np.int64), np.zeros((3, 1, 3), np.int32)
        env = _ScriptedEnv(steps)
        for t in range(3):
            capture.observe({}, env, hashes[t], counts[t])
        capture.flush()
        received = []
        while pull.poll(500):
            received += decode_texts(pull.recv())[1]
        assert received == ["You see a door.", "The newt bites!", "You hear a noise."]
        np.testing.assert_array_equal(counts[:, 0], [[1, 1, 0], [2, 0, 0], [2, 1, 0]])
        assert hashes[1, 0, 0] == hashes[0, 0, 1] == text_hash("The newt bites!")
        assert hashes[2, 0, 0] == hashes[0, 0, 0] and (hashes[1, 0, 1:] == 0).all()
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()


def test_new_texts_are_sent_once_in_batches(tmp_path: Path) -> None:
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"ipc://{tmp_path}/labeler")
    push.connect(f"ipc://{tmp_path}/labeler")
    try:
        steps = [["x", "y"], ["x", "z"], ["y", "w"], ["x", "x"]]
        capture = TextCapture(make_text_source("nethack_message"), 2, actor_id=3, socket=push,
                              batch_size=3)
        row_h, row_c = np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int32)
        env = _ScriptedEnv(steps)
        for _ in steps:
            capture.observe({}, env, row_h, row_c)
        capture.flush()
        received = []
        while pull.poll(500):
            actor_id, texts = decode_texts(pull.recv())
            assert actor_id == 3
            received.extend(texts)
        assert sorted(received) == ["w", "x", "y", "z"]  # each unique text exactly once
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()


def test_full_labeler_socket_never_blocks(tmp_path: Path) -> None:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 1)
    push.connect(f"ipc://{tmp_path}/nobody")  # no labeler bound: sends cannot complete
    try:
        capture = TextCapture(make_text_source("nethack_message"), 1, 0, push, batch_size=1)
        row_h, row_c = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int32)
        start = time.monotonic()
        env = _ScriptedEnv([[f"m{i}"] for i in range(200)])
        for _ in range(200):
            capture.observe({}, env, row_h, row_c)
        assert time.monotonic() - start < 2.0
        assert capture.stats["send_full"] > 0 and len(capture.pending) <= 10
    finally:
        push.close(0)
        ctx.term()


def test_actor_ships_babyai_missions_and_counts(tmp_path: Path) -> None:
    cfg = load_config(None, ["env.id=BabyAI-GoToRedBallGrey-v0", "env.envs_per_actor=4",
                             "actors.rollout_len=16", "text.source=babyai_mission",
                             f"text.labeler_address=ipc://{tmp_path}/labeler",
                             "text.batch_size=4"])
    spec = probe_env_spec(cfg.env)
    ctx = zmq.Context()
    pull, roll, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
    pull.bind(f"ipc://{tmp_path}/labeler")
    roll.bind(f"ipc://{tmp_path}/r")
    pub.bind(f"ipc://{tmp_path}/w")
    stop = threading.Event()
    actor = Actor(ActorArgs(actor_id=0, cfg=cfg, env_spec=spec,
                            rollout_address=f"ipc://{tmp_path}/r",
                            weights_address=f"ipc://{tmp_path}/w", env_seed=1, torch_seed=2,
                            stop_event=stop), ctx)

    def run() -> None:
        with contextlib.suppress(ActorStopped):
            actor.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    model = make_actor_critic(cfg, spec)
    weights = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
    schema = rollout_schema(spec, 16, 4, model.core_size, 1 << 30, text_units=1)
    rollouts, texts = [], []
    deadline = time.monotonic() + 60
    try:
        while len(rollouts) < 4 and time.monotonic() < deadline:
            pub.send_multipart(encode(Message(kind=KIND_WEIGHTS, arrays=weights)))
            if roll.poll(100):
                rollouts.append(decode(roll.recv_multipart(), schema))
            while pull.poll(0):
                texts.extend(decode_texts(pull.recv())[1])
    finally:
        stop.set()
        thread.join(10)
        actor.close()
        for sock in (pull, roll, pub):
            sock.close(0)
        ctx.term()
    assert len(rollouts) == 4
    assert texts and len(texts) == len(set(texts)), "texts must arrive deduplicated"
    assert all(t.startswith("go to the") for t in texts), texts
    counts = np.concatenate([r.arrays["text_count"] for r in rollouts], axis=0)  # (4T, B, 1)
    # a mission is shown at every step of an episode: its count grows 1, 2, 3, ...
    assert counts.max() > 16
    assert (np.concatenate([r.arrays["text_hash"] for r in rollouts]) != 0).all()


@contextlib.contextmanager
def labeler_socket_pair(tmp_path: Path) -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """(labeler-side PULL, actor-side PUSH) connected over ipc, closed afterwards."""
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"ipc://{tmp_path}/labeler")
    push.connect(f"ipc://{tmp_path}/labeler")
    try:
        yield pull, push
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()


def test_recurring_texts_are_re_announced_as_hot_at_doublings(tmp_path: Path) -> None:
    from explorer.core.texts import parse_texts_message

    with labeler_socket_pair(tmp_path) as (pull, push):
        capture = TextCapture(make_text_source("nethack_message"), 1, actor_id=0, socket=push,
                              batch_size=1)
        row_h, row_c = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int32)
        steps = [["hot"]] * 16 + [["cold"]]
        env = _ScriptedEnv(steps)
        for _ in steps:
            capture.observe({}, env, row_h, row_c)
        capture.flush()
        new, hot = [], []
        while pull.poll(500):
            _, texts, recurring = parse_texts_message(pull.recv())
            new += texts
            hot += recurring
        assert new == ["hot", "cold"]  # each text sent once as new...
        assert hot == ["hot", "hot", "hot"]  # ...and re-announced at occurrences 4, 8, 16
        assert capture.stats["hot_sent"] == 3


def test_texts_the_labeler_already_has_are_never_sent(tmp_path: Path) -> None:
    """The labeler's published table tells actors what it has: those texts are neither sent
    (even from an empty "already sent" set, as after a restart) nor re-announced as hot."""
    from explorer.core.texts import parse_texts_message

    with labeler_socket_pair(tmp_path) as (pull, push):
        capture = TextCapture(make_text_source("nethack_message"), 1, actor_id=0, socket=push,
                              batch_size=100)
        row_h, row_c = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int32)
        env = _ScriptedEnv([["pending"]] + [["known"]] * 8 + [["new"]])
        capture.observe({}, env, row_h, row_c)
        capture.mark_known(np.array([text_hash("known"), text_hash("pending")], np.int64))
        for _ in range(9):
            capture.observe({}, env, row_h, row_c)
        assert row_c[0, 0] == 1 and row_h[0, 0] == text_hash("new")  # still counted per episode
        capture.flush()
        _, texts, hot = parse_texts_message(pull.recv())
        assert texts == ["new"] and hot == []
        assert capture.stats["skipped_known"] == 1 and not pull.poll(200)
