"""Tests for explorer.core.wire: round trips, one test per rejection reason, and a mutation fuzz."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from explorer.core.specs import EnvSpec, rollout_schema, weights_schema
from explorer.core.wire import (
    ALLOWED_DTYPES,
    KIND_ROLLOUT,
    KIND_WEIGHTS,
    PROTOCOL_VERSION,
    ArraySpec,
    DropCounter,
    Message,
    WireError,
    WireSchema,
    decode,
    encode,
)

Frames = list[Any]


def as_bytes(frames: Frames) -> list[bytes]:
    """What a receiver gets: every frame as its own bytes object (ndarray views are copied)."""
    return [bytes(frame) for frame in frames]


def schema_for(arrays: dict[str, np.ndarray], kind: str = KIND_ROLLOUT,
               wildcard: bool = False, max_bytes: int = 1 << 20) -> WireSchema:
    """A schema accepting exactly ``arrays`` (with ``wildcard``, any length on axis 0)."""
    specs = {
        name: ArraySpec(a.dtype.name, (None, *a.shape[1:]) if wildcard and a.ndim else a.shape)
        for name, a in arrays.items()
    }
    return WireSchema(kind=kind, arrays=specs, max_bytes=max_bytes)


def assert_conforms(msg: Message, schema: WireSchema) -> None:
    """``msg`` is something ``schema`` allows (what every successful decode must return)."""
    assert msg.kind == schema.kind
    names = set(msg.arrays)
    assert set(schema.arrays) <= names <= set(schema.arrays) | set(schema.optional)
    total = 0
    for name, array in msg.arrays.items():
        spec = schema.spec(name)
        assert isinstance(array, np.ndarray)
        assert array.dtype.name == spec.dtype
        assert array.ndim == len(spec.shape)
        assert all(want is None or got == want
                   for got, want in zip(array.shape, spec.shape, strict=True))
        total += array.nbytes
    assert total <= schema.max_bytes
    for value in (msg.actor_id, msg.seq, msg.policy_version, msg.env_steps):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
    assert isinstance(msg.meta, dict) and len(msg.meta) <= 64
    for key, value in msg.meta.items():
        assert isinstance(key, str)
        assert isinstance(value, int | float) or (isinstance(value, str) and len(value) < 256)


# --------------------------------------------------------------------------- round trips


def _filled(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


ROUND_TRIP_CASES = {
    "bool_2d": {"flags": _filled("bool", (5, 3))},
    "every_dtype": {dt: _filled(dt, (2, 3), seed=i) for i, dt in enumerate(sorted(ALLOWED_DTYPES))},
    "empty_1d": {"ep_returns": np.zeros(0, np.float32), "ep_lengths": np.zeros(0, np.int32)},
    "empty_inner_axis": {"core": np.zeros((3, 0), np.float32), "x": _filled("int64", (3,))},
    "empty_middle_axis": {"x": np.zeros((2, 0, 4), np.uint8)},
    "multi_dim": {"obs/image": _filled("uint8", (5, 4, 7, 7, 3)), "v": _filled("float64", (5, 4))},
    "eight_dims": {"x": _filled("int16", (1, 2, 1, 2, 1, 2, 1, 2))},
    "no_arrays": {},
    "non_contiguous_input": {"x": _filled("float32", (6, 4))[::2, ::-1]},
    "fortran_order_input": {"x": np.asfortranarray(_filled("int32", (3, 5)))},
    # 0-d arrays must stay 0-d (np.ascontiguousarray would make them (1,)): the model's
    # value_mean/value_std buffers are 0-d and travel with every weights broadcast.
    "zero_d": {"scalar": np.array(3.5, np.float32), "count": np.array(7, np.int64)},
}
@pytest.mark.parametrize("wildcard", [False, True], ids=["exact", "wildcard"])
@pytest.mark.parametrize("arrays", list(ROUND_TRIP_CASES.values()), ids=list(ROUND_TRIP_CASES))
def test_round_trip(arrays: dict[str, np.ndarray], wildcard: bool) -> None:
    schema = schema_for(arrays, wildcard=wildcard)
    msg = Message(kind=KIND_ROLLOUT, arrays=arrays, actor_id=7, seq=2**40, policy_version=3,
                  env_steps=123_456_789, meta={"fps": 1234.5, "n": -3, "host": "node-1", "t": 0})
    frames = as_bytes(encode(msg))
    assert len(frames) == len(arrays) + 1
    out = decode(frames, schema)

    assert (out.kind, out.actor_id, out.seq, out.policy_version, out.env_steps) == (
        KIND_ROLLOUT, 7, 2**40, 3, 123_456_789)
    assert out.meta == {"fps": 1234.5, "n": -3, "host": "node-1", "t": 0}
    assert list(out.arrays) == list(arrays)  # order kept
    for (name, want), frame in zip(arrays.items(), frames[1:], strict=True):
        got = out.arrays[name]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable  # a view on an immutable received frame
        if got.size:
            assert np.shares_memory(got, np.frombuffer(frame, np.uint8)), name
    assert_conforms(out, schema)


def test_encode_is_zero_copy_for_contiguous_arrays() -> None:
    arrays = {"a": _filled("float32", (4, 3)), "b": _filled("bool", (7,))}
    frames = encode(Message(kind=KIND_ROLLOUT, arrays=arrays))
    for (name, source), frame in zip(arrays.items(), frames[1:], strict=True):
        assert np.shares_memory(frame, source), name
    out = decode(frames, schema_for(arrays))  # decoding the unsent frames: still the same memory
    for name, source in arrays.items():
        assert np.shares_memory(out.arrays[name], source)


def test_round_trip_over_zmq_keeps_frame_memory() -> None:
    arrays = {"obs/obs": _filled("float32", (5, 2, 4)), "valid": _filled("bool", (4, 2)),
              "ep_lengths": np.zeros(0, np.int32)}
    schema = schema_for(arrays)
    ctx = zmq.Context()
    try:
        with ctx.socket(zmq.PAIR) as tx, ctx.socket(zmq.PAIR) as rx:
            tx.setsockopt(zmq.LINGER, 0)
            rx.setsockopt(zmq.LINGER, 0)
            rx.bind("inproc://wire-test")
            tx.connect("inproc://wire-test")
            tx.send_multipart(encode(Message(kind=KIND_ROLLOUT, arrays=arrays, seq=9)), copy=False)
            assert rx.poll(5000)
            frames = rx.recv_multipart(copy=False)
            out = decode(frames, schema)
            assert out.seq == 9
            for (name, want), frame in zip(arrays.items(), frames[1:], strict=True):
                np.testing.assert_array_equal(out.arrays[name], want)
                if want.size:
                    assert np.shares_memory(out.arrays[name],
                                            np.frombuffer(frame.buffer, np.uint8)), name
    finally:
        ctx.term()


def test_optional_array_may_be_present_or_absent() -> None:
    schema = WireSchema(kind=KIND_ROLLOUT, arrays={"x": ArraySpec("float32", (2,))},
                        optional={"bonus": ArraySpec("float32", (None, 2))})
    x = np.ones(2, np.float32)
    assert set(decode(as_bytes(encode(Message(KIND_ROLLOUT, {"x": x}))), schema).arrays) == {"x"}
    both = {"x": x, "bonus": np.zeros((3, 2), np.float32)}
    assert set(decode(as_bytes(encode(Message(KIND_ROLLOUT, both))), schema).arrays) == {
        "x", "bonus"}


def test_rollout_schema_accepts_rollout_storage_arrays() -> None:
    from actors.rollout import RolloutStorage

    spec = EnvSpec(obs_spec={"image": ((7, 7, 3), "uint8"), "direction": ((), "int32")},
                   num_actions=3)
    storage = RolloutStorage(spec, rollout_len=4, num_envs=2, core_size=0)
    arrays = storage.arrays(np.array([1.5], np.float32), np.array([9], np.int32))
    schema = rollout_schema(spec, 4, 2, 0, max_bytes=1 << 20)
    out = decode(as_bytes(encode(Message(KIND_ROLLOUT, arrays))), schema)
    assert out.arrays["obs/image"].shape == (5, 2, 7, 7, 3)
    assert out.arrays["obs/direction"].shape == (5, 2)
    assert out.arrays["core_state"].shape == (2, 0)
    assert_conforms(out, schema)


def test_weights_schema_accepts_zero_d_buffers() -> None:
    """Weights broadcasts carry 0-d buffers; the actor-side schema must accept them."""
    params = {"w": np.ones((2, 3), np.float32), "value_mean": np.zeros((), np.float32),
              "value_std": np.ones((), np.float32)}
    out = decode(as_bytes(encode(Message(KIND_WEIGHTS, params, policy_version=4))),
                 weights_schema(params, 1 << 20))
    assert out.policy_version == 4
    assert out.arrays["value_mean"].shape == () and out.arrays["value_std"] == 1.0


# --------------------------------------------------------------------------- rejections

SCHEMA = WireSchema(
    kind=KIND_ROLLOUT,
    arrays={"x": ArraySpec("float32", (2, 3)), "flag": ArraySpec("bool", (None,))},
    optional={"extra": ArraySpec("int64", (None, 2))},
    max_bytes=1024,
)


def valid_parts() -> tuple[dict[str, Any], list[bytes]]:
    """Header (as a mutable dict) and array frames of a message that ``SCHEMA`` accepts."""
    msg = Message(kind=KIND_ROLLOUT,
                  arrays={"x": np.arange(6, dtype=np.float32).reshape(2, 3),
                          "flag": np.array([True, False, True, True])},
                  actor_id=1, seq=2, policy_version=3, env_steps=4, meta={"fps": 10.0})
    header, *buffers = as_bytes(encode(msg))
    return msgpack.unpackb(header), buffers


def pack(header: dict[str, Any], buffers: list[bytes]) -> list[bytes]:
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def with_header(**changes: Any) -> list[bytes]:
    header, buffers = valid_parts()
    header.update(changes)
    return pack(header, buffers)


def without_header_key(key: str) -> list[bytes]:
    header, buffers = valid_parts()
    del header[key]
    return pack(header, buffers)


def with_descriptor(index: int, **changes: Any) -> list[bytes]:
    header, buffers = valid_parts()
    header["arrays"][index].update(changes)
    return pack(header, buffers)


def with_array(name: str, dtype: str, shape: list[int], data: bytes | None = None) -> list[bytes]:
    """The valid message plus one more array descriptor and frame."""
    header, buffers = valid_parts()
    header["arrays"].append({"name": name, "dtype": dtype, "shape": shape})
    if data is None:
        data = bytes(math.prod(shape) * np.dtype(dtype).itemsize)
    return pack(header, [*buffers, data])


def without_array(name: str) -> list[bytes]:
    header, buffers = valid_parts()
    index = [d["name"] for d in header["arrays"]].index(name)
    del header["arrays"][index]
    del buffers[index]
    return pack(header, buffers)


def with_frames(edit: Callable[[list[bytes]], list[bytes]]) -> list[bytes]:
    header, buffers = valid_parts()
    return edit(pack(header, buffers))


RNG_BYTES = np.random.default_rng(1234).bytes(64)

REJECTIONS: dict[str, tuple[Callable[[], list[Any]], str]] = {
    # frames
    "no_frames": (lambda: [], "bad_frames"),
    "too_few_frames": (lambda: with_frames(lambda f: f[:-1]), "bad_frames"),
    "header_only": (lambda: with_frames(lambda f: f[:1]), "bad_frames"),
    "too_many_frames": (lambda: with_frames(lambda f: [*f, b"\0" * 8]), "bad_frames"),
    "duplicated_frame": (lambda: with_frames(lambda f: [*f, f[-1]]), "bad_frames"),
    # header frame
    "random_bytes_header": (lambda: with_frames(lambda f: [RNG_BYTES, *f[1:]]), "bad_header"),
    "empty_header": (lambda: with_frames(lambda f: [b"", *f[1:]]), "bad_header"),
    "truncated_header": (lambda: with_frames(lambda f: [f[0][:-3], *f[1:]]), "bad_header"),
    "trailing_header_bytes": (lambda: with_frames(lambda f: [f[0] + b"\x01", *f[1:]]),
                              "bad_header"),
    "header_over_1mib": (lambda: with_frames(lambda f: [f[0] + bytes(1 << 20), *f[1:]]),
                         "bad_header"),
    "msgpack_list": (lambda: [msgpack.packb([1, 2, 3])], "bad_header"),
    "msgpack_str": (lambda: [msgpack.packb("rollout")], "bad_header"),
    "msgpack_nil": (lambda: [msgpack.packb(None)], "bad_header"),
    "msgpack_bin": (lambda: [msgpack.packb(b"abc", use_bin_type=True)], "bad_header"),
    "int_map_keys": (lambda: [msgpack.packb({1: 2})], "bad_header"),
    # protocol version
    "version_2": (lambda: with_header(v=PROTOCOL_VERSION + 1), "bad_version"),
    "version_0": (lambda: with_header(v=0), "bad_version"),
    "version_str": (lambda: with_header(v="1"), "bad_version"),
    "version_missing": (lambda: without_header_key("v"), "bad_version"),
    # header keys
    "missing_seq": (lambda: without_header_key("seq"), "bad_header"),
    "missing_meta": (lambda: without_header_key("meta"), "bad_header"),
    "missing_arrays": (lambda: without_header_key("arrays"), "bad_header"),
    "extra_key": (lambda: with_header(extra=1), "bad_header"),
    # kind
    "wrong_kind": (lambda: with_header(kind=KIND_WEIGHTS), "bad_kind"),
    "kind_not_str": (lambda: with_header(kind=1), "bad_kind"),
    # array descriptors
    "arrays_not_list": (lambda: with_header(arrays={"x": 1}), "bad_header"),
    "descriptor_not_map": (lambda: with_header(arrays=["x", "flag"]), "bad_header"),
    "descriptor_missing_shape": (
        lambda: with_header(arrays=[{"name": "x", "dtype": "float32"}, {"name": "flag"}]),
        "bad_header"),
    "descriptor_extra_key": (lambda: with_descriptor(0, offset=0), "bad_header"),
    "descriptor_name_not_str": (lambda: with_descriptor(0, name=5), "bad_header"),
    "descriptor_shape_not_list": (lambda: with_descriptor(0, shape="2,3"), "bad_header"),
    "duplicate_names": (lambda: with_array("x", "float32", [2, 3]), "bad_header"),
    "unknown_array": (lambda: with_array("intrinsic", "float32", [2, 3]), "unknown_array"),
    "missing_required_array": (lambda: without_array("flag"), "missing_array"),
    # dtypes
    "dtype_object": (lambda: with_descriptor(0, dtype="object"), "bad_dtype"),
    "dtype_unicode": (lambda: with_descriptor(0, dtype="<U4"), "bad_dtype"),
    "dtype_complex64": (lambda: with_descriptor(0, dtype="complex64"), "bad_dtype"),
    "dtype_void": (lambda: with_descriptor(0, dtype="V24"), "bad_dtype"),
    "dtype_byteorder_code": (lambda: with_descriptor(0, dtype="<f4"), "bad_dtype"),
    "dtype_not_str": (lambda: with_descriptor(0, dtype=5), "bad_header"),
    "dtype_allowed_but_wrong": (lambda: with_descriptor(0, dtype="int32"), "bad_dtype"),
    # shapes
    "shape_transposed": (lambda: with_descriptor(0, shape=[3, 2]), "bad_shape"),
    "shape_wrong_ndim": (lambda: with_descriptor(0, shape=[6]), "bad_shape"),
    "shape_extra_axis": (lambda: with_descriptor(0, shape=[2, 3, 1]), "bad_shape"),
    "dim_negative": (lambda: with_descriptor(1, shape=[-1]), "bad_shape"),
    "dim_huge": (lambda: with_descriptor(1, shape=[1 << 40]), "bad_shape"),
    "dim_uint64_max": (lambda: with_descriptor(1, shape=[2**64 - 1]), "bad_shape"),
    "dim_float": (lambda: with_descriptor(1, shape=[4.0]), "bad_shape"),
    "dim_bool": (lambda: with_descriptor(1, shape=[True]), "bad_shape"),
    "dim_str": (lambda: with_descriptor(1, shape=["4"]), "bad_shape"),
    "ndim_over_8": (lambda: with_array("extra", "int64", [1] * 9), "bad_shape"),
    # sizes
    "total_over_max_bytes": (lambda: with_array("extra", "int64", [64, 2]), "too_large"),
    "wildcard_over_max_bytes": (lambda: with_descriptor(1, shape=[5000]), "too_large"),
    "frame_one_byte_short": (lambda: with_frames(lambda f: [f[0], f[1][:-1], f[2]]), "bad_size"),
    "frame_one_byte_long": (lambda: with_frames(lambda f: [f[0], f[1], f[2] + b"\1"]),
                            "bad_size"),
    "frames_swapped": (lambda: with_frames(lambda f: [f[0], f[2], f[1]]), "bad_size"),
    "declared_len_mismatch": (lambda: with_descriptor(1, shape=[5]), "bad_size"),
    # meta
    "meta_not_map": (lambda: with_header(meta=[1, 2]), "bad_header"),
    "meta_too_many_entries": (lambda: with_header(meta={f"k{i}": i for i in range(65)}),
                              "bad_header"),
    "meta_nested_value": (lambda: with_header(meta={"a": {"b": 1}}), "bad_header"),
    "meta_list_value": (lambda: with_header(meta={"a": [1]}), "bad_header"),
    "meta_nil_value": (lambda: with_header(meta={"a": None}), "bad_header"),
    "meta_long_str": (lambda: with_header(meta={"a": "x" * 256}), "bad_header"),
    # integer header fields
    "actor_id_str": (lambda: with_header(actor_id="3"), "bad_header"),
    "actor_id_float": (lambda: with_header(actor_id=1.0), "bad_header"),
    "actor_id_bool": (lambda: with_header(actor_id=True), "bad_header"),
    "actor_id_negative": (lambda: with_header(actor_id=-1), "bad_header"),
    "actor_id_nil": (lambda: with_header(actor_id=None), "bad_header"),
    "seq_negative": (lambda: with_header(seq=-5), "bad_header"),
    "policy_version_str": (lambda: with_header(policy_version="7"), "bad_header"),
    "env_steps_float": (lambda: with_header(env_steps=2.5), "bad_header"),
}


def test_valid_parts_decode() -> None:
    header, buffers = valid_parts()
    msg = decode(pack(header, buffers), SCHEMA)
    assert_conforms(msg, SCHEMA)
    assert msg.meta == {"fps": 10.0}


@pytest.mark.parametrize(("build", "reason"), list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_rejection(build: Callable[[], list[Any]], reason: str) -> None:
    frames = build()
    with pytest.raises(WireError) as info:
        decode(frames, SCHEMA)
    assert info.value.reason == reason, info.value.detail
    assert str(info.value).startswith(f"{reason}: ")


def test_every_documented_reason_is_covered() -> None:
    documented = {"bad_frames", "bad_header", "bad_version", "bad_kind", "unknown_array",
                  "missing_array", "bad_dtype", "bad_shape", "too_large", "bad_size"}
    assert {reason for _, reason in REJECTIONS.values()} == documented


def test_rejects_zmq_frames_too() -> None:
    """Real zmq.Frame objects (``recv_multipart(copy=False)``) go through the same checks."""
    frames = [zmq.Frame(f) for f in with_frames(lambda f: [f[0], f[1][:-4], f[2]])]
    with pytest.raises(WireError) as info:
        decode(frames, SCHEMA)
    assert info.value.reason == "bad_size"


def test_drop_counter() -> None:
    drops = DropCounter()
    assert drops.total == 0 and dict(drops) == {}
    for name in ("version_2", "wrong_kind", "version_0", "duplicate_names"):
        build, _ = REJECTIONS[name]
        with pytest.raises(WireError) as info:
            decode(build(), SCHEMA)
        drops.record(info.value)
    assert dict(drops) == {"bad_version": 2, "bad_kind": 1, "bad_header": 1}
    assert drops.total == 4
    assert set(drops.samples) == set(drops)
    assert "expected 1" in drops.samples["bad_version"]
    drops.record(WireError("bad_header", "x" * 1000))
    assert drops["bad_header"] == 2
    assert drops.samples["bad_header"] == "x" * 200  # newest detail, truncated


# --------------------------------------------------------------------------- fuzz

FUZZ_SPEC = EnvSpec(obs_spec={"obs": ((4,), "float32"), "direction": ((), "int32")},
                    num_actions=2)
FUZZ_SCHEMA = rollout_schema(FUZZ_SPEC, rollout_len=3, num_envs=2, core_size=2, max_bytes=4096)


def fuzz_frames() -> list[bytes]:
    from actors.rollout import RolloutStorage

    storage = RolloutStorage(FUZZ_SPEC, rollout_len=3, num_envs=2, core_size=2)
    rng = np.random.default_rng(0)
    storage.obs["obs"][:] = rng.standard_normal(storage.obs["obs"].shape)
    storage.actions[:] = rng.integers(0, 2, storage.actions.shape)
    storage.valid[:] = True
    arrays = storage.arrays(np.array([3.0, 4.0], np.float32), np.array([3, 4], np.int32))
    msg = Message(kind=KIND_ROLLOUT, arrays=arrays, actor_id=2, seq=11, policy_version=5,
                  env_steps=600, meta={"fps": 99.5, "send_blocked_frac": 0.1, "host": "a"})
    return as_bytes(encode(msg))


def _flip_header(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    header = bytearray(frames[0])
    for i in rng.integers(0, len(header), size=int(rng.integers(1, 4))):
        header[i] = int(rng.integers(0, 256))
    return [bytes(header), *frames[1:]]


def _xor_header_bit(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    header = bytearray(frames[0])
    header[int(rng.integers(0, len(header)))] ^= 1 << int(rng.integers(0, 8))
    return [bytes(header), *frames[1:]]


def _truncate(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    i = int(rng.integers(0, len(frames)))
    frames = list(frames)
    frames[i] = frames[i][: int(rng.integers(0, len(frames[i]) + 1))]
    return frames


def _extend(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    i = int(rng.integers(0, len(frames)))
    frames = list(frames)
    frames[i] = frames[i] + rng.bytes(int(rng.integers(1, 9)))
    return frames


def _drop(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    if not frames:
        return frames
    i = int(rng.integers(0, len(frames)))
    return frames[:i] + frames[i + 1:]


def _duplicate(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    if not frames:
        return frames
    i = int(rng.integers(0, len(frames)))
    return frames[: i + 1] + frames[i:]


def _swap(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    if len(frames) < 2:
        return frames
    i, j = rng.choice(len(frames), size=2, replace=False)
    frames = list(frames)
    frames[i], frames[j] = frames[j], frames[i]
    return frames


def _corrupt_payload(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    if len(frames) < 2:
        return frames
    i = int(rng.integers(1, len(frames)))
    frames = list(frames)
    frames[i] = rng.bytes(len(frames[i]))
    return frames


def _random_header(frames: list[bytes], rng: np.random.Generator) -> list[bytes]:
    return [rng.bytes(int(rng.integers(0, 200))), *frames[1:]]


MUTATIONS = [_flip_header, _xor_header_bit, _truncate, _extend, _drop, _duplicate, _swap,
             _corrupt_payload, _random_header]


def test_fuzz_mutations_only_raise_wire_error() -> None:
    base = fuzz_frames()
    assert_conforms(decode(base, FUZZ_SCHEMA), FUZZ_SCHEMA)
    rng = np.random.default_rng(20240601)
    outcomes: Counter[str] = Counter()
    for trial in range(2000):
        frames = base
        applied = []
        for _ in range(int(rng.integers(1, 4))):
            mutation = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
            applied.append(mutation.__name__)
            frames = mutation(frames, rng)
        try:
            msg = decode(frames, FUZZ_SCHEMA)
        except WireError as err:
            outcomes[err.reason] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is the failure we hunt
            pytest.fail(f"trial {trial} ({applied}) raised {type(exc).__name__}: {exc}")
        outcomes["decoded"] += 1
        assert_conforms(msg, FUZZ_SCHEMA)
    assert sum(outcomes.values()) == 2000
    # the mutations reach deep into decode(), not just the msgpack parser
    assert outcomes["decoded"] > 0
    assert {"bad_header", "bad_frames", "bad_size"} <= set(outcomes)
    assert len(outcomes) >= 6, outcomes


def test_big_endian_arrays_arrive_with_their_values() -> None:
    values = np.arange(6, dtype=">f4").reshape(2, 3)
    schema = WireSchema(kind=KIND_ROLLOUT, arrays={"x": ArraySpec("float32", (2, 3))})
    frames = [bytes(memoryview(f)) for f in encode(Message(kind=KIND_ROLLOUT,
                                                           arrays={"x": values}))]
    np.testing.assert_array_equal(decode(frames, schema).arrays["x"], values)


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_int_one(version: object) -> None:
    schema = WireSchema(kind=KIND_ROLLOUT, arrays={})
    frames = encode(Message(kind=KIND_ROLLOUT, arrays={}))
    header = msgpack.unpackb(frames[0])
    header["v"] = version
    with pytest.raises(WireError) as err:
        decode([msgpack.packb(header)], schema)
    assert err.value.reason == "bad_version"
