"""The labeler's reward-table publication: one wire message (``explorer.wire``) per update.

Arrays ``ids`` (N,) int64 and ``rewards`` (N,) float32 are the whole table (tables are small:
one entry per distinct text, a few hundred KB for NetHack), so a subscriber that joins late or
misses a message is complete again at the next publication; ``policy_version`` carries the table
version and ``meta`` the labeler's counters (queue depth, throughput, errors, ...), which the
learner logs to TensorBoard under ``labeler/``.
"""

from __future__ import annotations

import numpy as np

from explorer.wire import ArraySpec, Message, WireError, WireSchema, decode, encode

__all__ = ["KIND_REWARD_TABLE", "decode_table", "encode_table", "table_schema"]

KIND_REWARD_TABLE = "reward_table"


def table_schema(max_bytes: int = 256 << 20) -> WireSchema:
    return WireSchema(kind=KIND_REWARD_TABLE,
                      arrays={"ids": ArraySpec("int64", (None,)),
                              "rewards": ArraySpec("float32", (None,))},
                      max_bytes=max_bytes)


def encode_table(ids: np.ndarray, rewards: np.ndarray, version: int,
                 meta: dict[str, float | int | str]) -> list:
    return encode(Message(kind=KIND_REWARD_TABLE, arrays={"ids": ids, "rewards": rewards},
                          policy_version=version, meta=meta))


def decode_table(frames: list, schema: WireSchema) -> Message:
    """Validate a publication; raises :class:`WireError` (counted by the caller) when bad."""
    msg = decode(frames, schema)
    if msg.arrays["ids"].shape != msg.arrays["rewards"].shape:
        raise WireError("bad_shape", f"reward table: {msg.arrays['ids'].shape[0]} ids but "
                        f"{msg.arrays['rewards'].shape[0]} rewards")
    if not np.isfinite(msg.arrays["rewards"]).all():
        raise WireError("bad_value", "reward table: non-finite reward")
    return msg
