"""Text capture in the actor: what the agent reads, hashed, counted per episode, sent to label.

ONI divides a message's intrinsic reward by its count in the current episode (to the power
beta), so the actor counts every text per env and episode and ships ``text_hash``/``text_count``
arrays with each rollout. New unique texts go to the labeler over a PUSH socket in batches;
a bounded "already sent" set keeps that traffic to new texts only, and a full socket drops the
batch (counted, and retried later) instead of ever blocking the actor.
"""

from __future__ import annotations

import collections
import importlib
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import zmq

from explorer.text_ids import text_id as text_hash

__all__ = ["TEXT_PROTOCOL_VERSION", "TextCapture", "decode_texts", "make_text_source",
           "text_hash"]

TEXT_PROTOCOL_VERSION = 1
_MAX_TEXT_CHARS = 4096

TextSource = Callable[[dict[str, np.ndarray], Any], list[str]]


def _nethack_message(obs: dict[str, np.ndarray], env: Any) -> list[str]:
    return env.last_messages()


def _mission(obs: dict[str, np.ndarray], env: Any) -> list[str]:
    """BabyAI/MiniGrid missions arrive as zero-padded bytes (B, L) uint8."""
    return [bytes(row).rstrip(b"\0").decode("utf-8", "replace") for row in obs["mission"]]


_SOURCES: dict[str, TextSource] = {"nethack_message": _nethack_message,
                                   "babyai_mission": _mission}


def make_text_source(spec: str) -> TextSource:
    """A built-in source name or an import path ``pkg.mod:function(obs, env) -> list[str]``.

    Raises:
        ValueError: unknown name or unimportable path.
    """
    if spec in _SOURCES:
        return _SOURCES[spec]
    if ":" not in spec:
        raise ValueError(f"unknown text source {spec!r}; built-in: {', '.join(_SOURCES)} "
                         "(or an import path package.module:function)")
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import text source {spec!r}: {err}") from None


def parse_texts_message(frame: bytes) -> tuple[int, list[str], list[str]]:
    """Parse a texts message into (actor_id, new texts, hot texts); raises ValueError naming
    what is wrong. ``hot`` (optional) re-announces texts already sent that keep recurring, so
    the labeler can label frequent texts first."""
    try:
        msg = msgpack.unpackb(frame, raw=False, max_bin_len=0)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage input
        raise ValueError(f"texts message is not msgpack ({type(exc).__name__})") from None
    if not isinstance(msg, dict) or msg.get("v") != TEXT_PROTOCOL_VERSION:
        raise ValueError("texts message: not a map with protocol version "
                         f"{TEXT_PROTOCOL_VERSION}")
    texts, actor_id, hot = msg.get("texts"), msg.get("actor_id"), msg.get("hot", [])
    if not isinstance(actor_id, int) or not all(
            isinstance(x, list) and all(isinstance(t, str) for t in x) for x in (texts, hot)):
        raise ValueError("texts message: needs int actor_id and lists of strings")
    return actor_id, texts, hot


def decode_texts(frame: bytes) -> tuple[int, list[str]]:
    """Parse a texts message into (actor_id, new texts); raises ValueError naming what is
    wrong."""
    actor_id, texts, _ = parse_texts_message(frame)
    return actor_id, texts


class TextCapture:
    """Per-env episode counts of texts, and batched sending of new ones.

    Args:
        source: returns the B texts the envs show after a step.
        num_envs: B.
        actor_id: stamped on messages to the labeler.
        socket: a connected PUSH socket, or None to only count (no labeler).
        batch_size: texts per message to the labeler.
        sent_capacity: size of the "already sent" LRU set.
    """

    def __init__(self, source: TextSource, num_envs: int, actor_id: int,
                 socket: zmq.Socket | None, batch_size: int = 64,
                 sent_capacity: int = 100_000) -> None:
        self.source = source
        self.actor_id = actor_id
        self.socket = socket
        self.batch_size = batch_size
        self.sent_capacity = sent_capacity
        self.counts: list[collections.Counter] = [collections.Counter() for _ in range(num_envs)]
        #: text id -> occurrences since it was sent (LRU-bounded)
        self.sent: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.pending: dict[int, str] = {}
        self.hot: dict[int, str] = {}
        self.stats = collections.Counter()

    def observe(self, obs: dict[str, np.ndarray], env: Any, hashes: np.ndarray,
                counts: np.ndarray) -> None:
        """Record the texts shown after a step into ``hashes``/``counts`` rows (B,)."""
        for i, text in enumerate(self.source(obs, env)):
            key = text_hash(text)
            hashes[i] = key
            if key == 0:
                counts[i] = 0
                continue
            self.counts[i][key] += 1
            counts[i] = self.counts[i][key]
            seen = self.sent.get(key)
            if seen is not None:
                self.sent[key] = seen = seen + 1
                if seen >= 4 and seen & (seen - 1) == 0:  # 4, 8, 16, ...: still recurring
                    self.hot[key] = text[:_MAX_TEXT_CHARS]
            elif key not in self.pending:
                self.pending[key] = text[:_MAX_TEXT_CHARS]
        if len(self.pending) + len(self.hot) >= self.batch_size:
            self.flush()

    def end_episodes(self, ended: np.ndarray) -> None:
        """Forget the counts of envs whose episode ended at this step."""
        for i in np.flatnonzero(ended):
            self.counts[i].clear()

    def flush(self) -> None:
        """Send pending texts without blocking; on a full socket keep them for later."""
        if self.socket is None:  # counting only: nobody to label them
            self.pending.clear()
            return
        if not self.pending and not self.hot:
            return
        frame = msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": self.actor_id,
                               "texts": list(self.pending.values()),
                               "hot": list(self.hot.values())}, use_bin_type=True)
        try:
            self.socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.stats["send_full"] += 1
            self.hot.clear()  # a hint only: the next doubling re-announces them
            if len(self.pending) > 10 * self.batch_size:  # bounded: drop the oldest half
                for key in list(self.pending)[: len(self.pending) // 2]:
                    del self.pending[key]
                    self.stats["dropped"] += 1
            return
        self.stats["sent"] += len(self.pending)
        self.stats["hot_sent"] += len(self.hot)
        for key in self.pending:
            self.sent[key] = 1
        while len(self.sent) > self.sent_capacity:
            self.sent.popitem(last=False)
        self.pending.clear()
        self.hot.clear()
