"""Texts on the wire: one id per text and the actor -> labeler texts message.

The rollout wire carries text ids, not strings; the labeler publishes rewards keyed by the same
ids, so the learner looks up a step's reward without ever seeing the text. Both sides must
therefore truncate and hash a text the same way: :func:`clip_text` is the one truncation and
:func:`text_id` hashes the clipped text, so a text longer than :data:`MAX_TEXT_CHARS` gets the
same id whether the actor hashes it whole or the labeler hashes what arrived.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import msgpack

__all__ = ["MAX_TEXT_CHARS", "TEXT_PROTOCOL_VERSION", "clip_text", "decode_texts",
           "encode_texts_message", "parse_texts_message", "split_units", "text_id"]

TEXT_PROTOCOL_VERSION = 1
#: Longest text sent to (and labelled by) the labeler; longer texts are cut to this.
MAX_TEXT_CHARS = 4096
#: NetHack (and most game text) separates sentences on one line with two spaces.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s{2,}")


def clip_text(text: str) -> str:
    """The part of ``text`` that travels and gets labelled: its first MAX_TEXT_CHARS chars."""
    return text[:MAX_TEXT_CHARS]


def text_id(text: str) -> int:
    """Stable signed 64-bit id of a text (0 is reserved for "no text"); hashes the clipped
    text, so every side that sees a prefix of MAX_TEXT_CHARS characters agrees."""
    if not text:
        return 0
    digest = hashlib.blake2b(clip_text(text).encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def split_units(text: str, max_units: int) -> list[str]:
    """The sentences of ``text`` (at most ``max_units``: the rest stay joined in the last)."""
    parts = [p for p in _SENTENCE_BREAK.split(text.strip()) if p]
    if len(parts) > max_units:
        parts[max_units - 1:] = ["  ".join(parts[max_units - 1:])]
    return parts


def encode_texts_message(actor_id: int, texts: Sequence[str], hot: Sequence[str] = ()) -> bytes:
    """One actor -> labeler message (msgpack, never pickle); texts are clipped here."""
    return msgpack.packb({"v": TEXT_PROTOCOL_VERSION, "actor_id": actor_id,
                          "texts": [clip_text(t) for t in texts],
                          "hot": [clip_text(t) for t in hot]}, use_bin_type=True)


def parse_texts_message(frame: bytes) -> tuple[int, list[str], list[str]]:
    """Parse a texts message into (actor_id, new texts, hot texts), each text clipped; raises
    ValueError naming what is wrong. ``hot`` (optional) re-announces texts already sent that
    keep recurring, so the labeler can label frequent texts first."""
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
    return actor_id, [clip_text(t) for t in texts], [clip_text(t) for t in hot]


def decode_texts(frame: bytes) -> tuple[int, list[str]]:
    """Parse a texts message into (actor_id, new texts); raises ValueError naming what is
    wrong."""
    actor_id, texts, _ = parse_texts_message(frame)
    return actor_id, texts
