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
import re
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import zmq

from explorer.text_ids import text_id as text_hash

__all__ = ["TEXT_PROTOCOL_VERSION", "TextCapture", "decode_texts", "make_text_source",
           "split_units", "text_hash"]

TEXT_PROTOCOL_VERSION = 1
_MAX_TEXT_CHARS = 4096
#: NetHack (and most game text) separates sentences on one line with two spaces.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s{2,}")

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


def split_units(text: str, max_units: int) -> list[str]:
    """The sentences of ``text`` (at most ``max_units``: the rest stay joined in the last)."""
    parts = [p for p in _SENTENCE_BREAK.split(text.strip()) if p]
    if len(parts) > max_units:
        parts[max_units - 1:] = ["  ".join(parts[max_units - 1:])]
    return parts


def decode_texts(frame: bytes) -> tuple[int, list[str]]:
    """Parse a texts message into (actor_id, new texts); raises ValueError naming what is
    wrong."""
    actor_id, texts, _ = parse_texts_message(frame)
    return actor_id, texts


class TextCapture:
    """Per-env episode counts of text units, and batched sending of new ones.

    A unit is what gets one label: the whole text a step shows, or (``units="sentences"``)
    each of its sentences.

    Args:
        source: returns the B texts the envs show after a step.
        num_envs: B.
        actor_id: stamped on messages to the labeler.
        socket: a connected PUSH socket, or None to only count (no labeler).
        batch_size: texts per message to the labeler.
        sent_capacity: size of the "already sent" LRU set.
        units: ``message`` or ``sentences``.
        max_units: U, units per step on the wire (1 for ``message``).
    """

    def __init__(self, source: TextSource, num_envs: int, actor_id: int,
                 socket: zmq.Socket | None, batch_size: int = 64,
                 sent_capacity: int = 100_000, units: str = "message",
                 max_units: int = 1) -> None:
        if units not in ("message", "sentences"):
            raise ValueError(f"text units must be 'message' or 'sentences', not {units!r}")
        self.max_units = 1 if units == "message" else max_units
        self._split = units == "sentences"
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
        #: ids in the labeler's newest published table: it has them, never send them again
        self.known: frozenset[int] = frozenset()
        self.stats = collections.Counter()

    def observe(self, obs: dict[str, np.ndarray], env: Any, hashes: np.ndarray,
                counts: np.ndarray) -> None:
        """Record the text units shown after a step into ``hashes``/``counts`` rows (B, U)."""
        hashes.fill(0)
        counts.fill(0)
        for i, text in enumerate(self.source(obs, env)):
            if not text:
                continue
            units = split_units(text, self.max_units) if self._split else [text]
            for j, unit in enumerate(units):
                key = text_hash(unit)
                hashes[i, j] = key
                if key == 0:
                    continue
                self.counts[i][key] += 1
                counts[i, j] = self.counts[i][key]
                self._note_sent(key, unit)
        if len(self.pending) + len(self.hot) >= self.batch_size:
            self.flush()

    def mark_known(self, ids: np.ndarray) -> None:
        """Install the ids of the labeler's newest table (an actor restarted with an empty
        "already sent" set, or a text another actor sent first, then costs no traffic)."""
        self.known = frozenset(ids.tolist())
        for key in [k for k in self.pending if k in self.known]:
            del self.pending[key]
            self.stats["skipped_known"] += 1

    def _note_sent(self, key: int, unit: str) -> None:
        """Queue a new unit for the labeler, or re-announce a recurring one as hot."""
        if key in self.known:
            return
        seen = self.sent.get(key)
        if seen is not None:
            self.sent[key] = seen = seen + 1
            if seen >= 4 and seen & (seen - 1) == 0:  # 4, 8, 16, ...: still recurring
                self.hot[key] = unit[:_MAX_TEXT_CHARS]
        elif key not in self.pending:
            self.pending[key] = unit[:_MAX_TEXT_CHARS]

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
