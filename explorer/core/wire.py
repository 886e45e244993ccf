"""Wire protocol: versioned multipart ZeroMQ messages of raw numpy buffers.

Frame 0 is a msgpack header ``{v, kind, actor_id, seq, policy_version, env_steps, meta,
arrays: [{name, dtype, shape}]}``; frames 1..n are the arrays' raw bytes, sent with
``copy=False`` and read back with ``np.frombuffer`` (no copy, never pickle). Every received
message is checked against a :class:`WireSchema` before any array is built, so a malformed or
hostile message is rejected with a :class:`WireError` naming the reason, which the receiver
counts and drops (see ``DropCounter``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "ALLOWED_DTYPES",
    "KIND_ROLLOUT",
    "KIND_WEIGHTS",
    "MAX_META_ENTRIES",
    "PROTOCOL_VERSION",
    "ArraySpec",
    "DropCounter",
    "Message",
    "WireError",
    "WireSchema",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 1
KIND_ROLLOUT = "rollout"
KIND_WEIGHTS = "weights"

#: dtypes that may cross the wire; anything else (objects, strings, void) is refused.
ALLOWED_DTYPES = frozenset(
    {"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16",
     "float32", "float64"}
)
_HEADER_KEYS = frozenset(
    {"v", "kind", "actor_id", "seq", "policy_version", "env_steps", "meta", "arrays"}
)
_MAX_HEADER_BYTES = 1 << 20
#: Most entries a message's ``meta`` may have; a message with more is refused.
MAX_META_ENTRIES = 64
_MAX_NDIM = 8


class WireError(ValueError):
    """A received message broke the protocol. ``reason`` is a short stable counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ArraySpec:
    """Expected dtype and shape of one named array; ``None`` in a shape means any length."""

    dtype: str
    shape: tuple[int | None, ...]

    def check(self, name: str, dtype: str, shape: tuple[int, ...]) -> None:
        if dtype != self.dtype:
            raise WireError("bad_dtype", f"array {name!r} has dtype {dtype}, expected {self.dtype}")
        if len(shape) != len(self.shape) or any(
            want is not None and got != want for got, want in zip(shape, self.shape, strict=True)
        ):
            raise WireError("bad_shape", f"array {name!r} has shape {shape}, expected {self.shape}")


@dataclass(frozen=True)
class Message:
    """One decoded message. Arrays are read-only views on the received frames."""

    kind: str
    arrays: dict[str, np.ndarray]
    actor_id: int = 0
    seq: int = 0
    policy_version: int = 0
    env_steps: int = 0
    meta: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class WireSchema:
    """What a receiver accepts: message kind, array names with specs, and a byte cap.

    Args:
        kind: the only message kind accepted.
        arrays: name -> ArraySpec of every array the message must carry (all required).
        optional: name -> ArraySpec of arrays that may be present.
        max_bytes: cap on the total payload bytes of one message.
    """

    kind: str
    arrays: Mapping[str, ArraySpec]
    optional: Mapping[str, ArraySpec] = field(default_factory=dict)
    max_bytes: int = 512 << 20

    def spec(self, name: str) -> ArraySpec:
        spec = self.arrays.get(name) or self.optional.get(name)
        if spec is None:
            raise WireError("unknown_array", f"array name {name!r} is not part of a {self.kind}")
        return spec


class DropCounter(Counter):
    """Counts dropped messages by reason and keeps the newest sample detail of each."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: dict[str, str] = {}

    def record(self, err: WireError) -> None:
        self[err.reason] += 1
        self.samples[err.reason] = err.detail[:200]

    @property
    def total(self) -> int:
        return sum(self.values())


def encode(message: Message) -> list[Any]:
    """Build the frames of ``message``: a msgpack header then one buffer per array.

    Arrays are passed as C-contiguous buffers so ZeroMQ can send them without a copy; the
    caller must keep them unchanged until the send completes (use ``track=True``).
    """
    descriptors = []
    buffers: list[Any] = []
    for name, value in message.arrays.items():
        array = np.asarray(value)
        if not array.dtype.isnative:  # the wire is native byte order: dtype names carry no '>'
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.c_contiguous:  # (ascontiguousarray would turn 0-d into 1-d)
            array = array.copy(order="C")
        descriptors.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape)})
        buffers.append(array.reshape(-1).view(np.uint8) if array.ndim else array.tobytes())
    header = {
        "v": PROTOCOL_VERSION,
        "kind": message.kind,
        "actor_id": int(message.actor_id),
        "seq": int(message.seq),
        "policy_version": int(message.policy_version),
        "env_steps": int(message.env_steps),
        "meta": dict(message.meta),
        "arrays": descriptors,
    }
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def _buffer(frame: Any) -> memoryview:
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def _int_field(header: Mapping[str, Any], key: str) -> int:
    value = header[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError("bad_header", f"header field {key!r} must be a non-negative int")
    return value


def _parse_header(frame: Any) -> dict[str, Any]:
    raw = _buffer(frame)
    if raw.nbytes > _MAX_HEADER_BYTES:
        raise WireError("bad_header", f"header frame is {raw.nbytes} bytes")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types on garbage input
        raise WireError("bad_header", f"header is not msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("bad_header", f"header is a {type(header).__name__}, not a map")
    version = header.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1 must not pass
        raise WireError(
            "bad_version", f"protocol version {header.get('v')!r}, expected {PROTOCOL_VERSION}"
        )
    keys = set(header)
    if keys != _HEADER_KEYS:
        missing, extra = sorted(_HEADER_KEYS - keys), sorted(map(str, keys - _HEADER_KEYS))
        raise WireError("bad_header", f"header keys: missing {missing}, unexpected {extra}")
    return header


def _parse_meta(meta: Any) -> dict[str, float | int | str]:
    if not isinstance(meta, dict) or len(meta) > MAX_META_ENTRIES:
        raise WireError("bad_header",
                        f"meta must be a map of at most {MAX_META_ENTRIES} entries")
    for key, value in meta.items():
        ok_value = isinstance(value, (int, float)) or (isinstance(value, str) and len(value) < 256)
        if not isinstance(key, str) or not ok_value:
            raise WireError("bad_header", f"meta entry {key!r} must map a string to a scalar")
    return meta


def _parse_descriptor(entry: Any) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape"}:
        raise WireError("bad_header", "array descriptor must be {name, dtype, shape}")
    name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
    if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
        raise WireError("bad_header", "array descriptor has wrong field types")
    if dtype not in ALLOWED_DTYPES:
        raise WireError("bad_dtype", f"array {name!r} has disallowed dtype {dtype!r}")
    if len(shape) > _MAX_NDIM or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape
    ):
        raise WireError("bad_shape", f"array {name!r} has invalid shape {shape!r}")
    return name, dtype, tuple(shape)


def decode(frames: Sequence[Any], schema: WireSchema) -> Message:
    """Validate ``frames`` against ``schema`` and return a :class:`Message` of zero-copy views.

    Raises:
        WireError: on any protocol violation; ``reason`` is one of bad_frames, bad_header,
            bad_version, bad_kind, unknown_array, missing_array, bad_dtype, bad_shape,
            too_large, bad_size.
    """
    if len(frames) < 1:
        raise WireError("bad_frames", "empty message")
    header = _parse_header(frames[0])
    if header["kind"] != schema.kind:
        raise WireError("bad_kind", f"message kind {header['kind']!r}, expected {schema.kind!r}")
    descriptors = header["arrays"]
    if not isinstance(descriptors, list):
        raise WireError("bad_header", "arrays must be a list")
    if len(frames) != len(descriptors) + 1:
        raise WireError(
            "bad_frames",
            f"{len(frames)} frames for {len(descriptors)} arrays (want header + 1 each)",
        )
    parsed = [_parse_descriptor(entry) for entry in descriptors]
    names = [name for name, _, _ in parsed]
    if len(set(names)) != len(names):
        raise WireError("bad_header", "duplicate array names")
    total = 0
    for name, dtype, shape in parsed:
        schema.spec(name).check(name, dtype, shape)
        total += math.prod(shape) * np.dtype(dtype).itemsize
    if total > schema.max_bytes:
        raise WireError("too_large", f"payload {total} bytes exceeds cap {schema.max_bytes}")
    missing = sorted(set(schema.arrays) - set(names))
    if missing:
        raise WireError("missing_array", f"required arrays missing: {missing}")
    arrays: dict[str, np.ndarray] = {}
    for (name, dtype, shape), frame in zip(parsed, frames[1:], strict=True):
        buf = _buffer(frame)
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if buf.nbytes != expected:
            raise WireError(
                "bad_size",
                f"array {name!r} frame has {buf.nbytes} bytes, header implies {expected}",
            )
        arrays[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return Message(
        kind=header["kind"],
        arrays=arrays,
        actor_id=_int_field(header, "actor_id"),
        seq=_int_field(header, "seq"),
        policy_version=_int_field(header, "policy_version"),
        env_steps=_int_field(header, "env_steps"),
        meta=_parse_meta(header["meta"]),
    )
