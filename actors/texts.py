"""Text capture in the actor: what the agent reads, hashed, counted per episode, sent to label.

ONI divides a message's intrinsic reward by its count in the current episode (to the power
beta), so the actor counts every text per env and episode and ships ``text_hash``/``text_count``
arrays with each rollout. New unique texts go to the labeler over a PUSH socket in batches;
a bounded "already sent" set keeps that traffic to new texts only, and a full socket drops the
batch (counted, and retried later) instead of ever blocking the actor.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from explorer.core.loading import import_object, import_path_problem, unknown_name_problem
from explorer.core.texts import clip_text, encode_texts_message, split_units, text_id

__all__ = ["TextCapture", "TextSource", "make_text_source", "text_source_problems"]


TextSource = Callable[[dict[str, np.ndarray], Any], list[str]]


def _nethack_message(obs: dict[str, np.ndarray], env: Any) -> list[str]:
    return env.last_messages()


def _mission(obs: dict[str, np.ndarray], env: Any) -> list[str]:
    """BabyAI/MiniGrid missions arrive as zero-padded bytes (B, L) uint8."""
    return [bytes(row).rstrip(b"\0").decode("utf-8", "replace") for row in obs["mission"]]


def _minigrid_events() -> TextSource:
    from actors.minigrid_events import MiniGridEvents

    return MiniGridEvents()


#: built-in name -> factory of a source (one per actor: a source may keep state per env)
_SOURCES: dict[str, Callable[[], TextSource]] = {
    "nethack_message": lambda: _nethack_message,
    "babyai_mission": lambda: _mission,
    "minigrid_events": _minigrid_events,
}


def make_text_source(spec: str) -> TextSource:
    """A built-in source name or an import path ``pkg.mod:function(obs, env) -> list[str]``.

    A source with an ``end_episodes(ended)`` method is told which envs' episodes ended.

    Raises:
        ValueError: unknown name or unimportable path.
    """
    if spec in _SOURCES:
        return _SOURCES[spec]()
    if ":" not in spec:
        raise ValueError(f"unknown text source {spec!r}; built-in: {', '.join(_SOURCES)} "
                         "(or an import path package.module:function)")
    return import_object(spec, "text source")


def text_source_problems(cfg: Any) -> list[str]:
    """A config check: ``text.source`` is a built-in name or an importable path."""
    spec = cfg.text.source
    if spec is None:
        return []
    if ":" in spec:
        return import_path_problem("text.source", spec, "text source")
    return unknown_name_problem("text.source", spec, _SOURCES, "text source")


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
                key = text_id(unit)
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
                self.hot[key] = clip_text(unit)
        elif key not in self.pending:
            self.pending[key] = clip_text(unit)

    def end_episodes(self, ended: np.ndarray) -> None:
        """Forget the counts of envs whose episode ended at this step (and tell the source)."""
        for i in np.flatnonzero(ended):
            self.counts[i].clear()
        tell_source = getattr(self.source, "end_episodes", None)
        if tell_source is not None:
            tell_source(ended)

    def flush(self) -> None:
        """Send pending texts without blocking; on a full socket keep them for later."""
        if self.socket is None:  # counting only: nobody to label them
            self.pending.clear()
            return
        if not self.pending and not self.hot:
            return
        frame = encode_texts_message(self.actor_id, list(self.pending.values()),
                                     list(self.hot.values()))
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
