"""The labeler's reward-table publication: one wire message (``explorer.core.wire``) per update.

Arrays ``ids`` (N,) int64 and ``rewards`` (N,) float32 are the whole table (tables are small:
one entry per distinct text, a few hundred KB for NetHack), so a subscriber that joins late or
misses a message is complete again at the next publication; ``policy_version`` carries the table
version and ``meta`` the labeler's counters (queue depth, throughput, errors, ...), which the
learner logs to TensorBoard under ``labeler/``. The learner rewards with the table; actors use
it to stop sending texts the labeler already has.
"""

from __future__ import annotations

import numpy as np
import zmq

from explorer.core.curve import SocketSecurity
from explorer.core.wire import (
    ArraySpec,
    DropCounter,
    Message,
    WireError,
    WireSchema,
    decode,
    encode,
)

__all__ = ["KIND_REWARD_TABLE", "TableSubscriber", "decode_table", "encode_table",
           "table_schema"]

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


class TableSubscriber:
    """A SUB socket on the labeler's publications that only ever hands out the newest one.

    ``poll()`` never waits: it drains what arrived, validates the newest publication and
    returns it (or None); a bad one is dropped and counted in ``drops``.
    """

    def __init__(self, ctx: zmq.Context, address: str,
                 security: SocketSecurity | None = None) -> None:
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 4)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        if security is not None:
            security.connect(self.socket)
        self.socket.connect(address)
        self.schema = table_schema()
        self.drops = DropCounter()

    def poll(self) -> Message | None:
        newest = None
        while self.socket.poll(0):
            newest = self.socket.recv_multipart(copy=False)
        if newest is None:
            return None
        try:
            return decode_table(newest, self.schema)
        except WireError as err:
            self.drops.record(err)
            return None

    def close(self) -> None:
        self.socket.close(0)
