"""One 64-bit id per text, shared by actors (rollout ``text_hash``), labeler and learner.

The wire carries ids, not strings; the labeler publishes rewards keyed by the same ids, so the
learner can look up a step's reward without ever seeing the text.
"""

from __future__ import annotations

import hashlib

__all__ = ["text_id"]


def text_id(text: str) -> int:
    """Stable signed 64-bit id of a text (0 is reserved for "no text")."""
    if not text:
        return 0
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1
