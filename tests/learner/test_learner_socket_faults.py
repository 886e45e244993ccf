"""A real learner process survives hostile rollout-socket traffic and trains on what is valid.

Each test spawns ``learner_main`` as the supervisor does, sends malformed messages through a
real ZeroMQ PUSH socket, then valid rollouts, and watches the learner's status queue.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from actors.envs import probe_env_spec
from actors.rollout import RolloutStorage
from explorer.core.config import Config, config_from_dict
from explorer.core.specs import EnvSpec, rollout_schema
from explorer.core.wire import (
    KIND_ROLLOUT,
    KIND_WEIGHTS,
    Message,
    WireError,
    WireSchema,
    decode,
    encode,
)
from learner.worker import LearnerArgs, learner_main

T, B = 4, 2  # rollout_len, envs_per_actor
MAX_MESSAGE_MB = 0.05
CAP = int(MAX_MESSAGE_MB * (1 << 20))  # the learner's max_bytes and its socket's MAXMSGSIZE
READY_TIMEOUT_S = 60.0
STATUS_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0

# probe_env_spec builds a CartPole env, whose Box space warns about float64 bounds
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


@dataclass
class Learner:
    """A running learner process and what the test needs to talk to it."""

    cfg: Config
    spec: EnvSpec
    schema: WireSchema  # what the learner validates rollouts against
    process: Any
    stop_event: Any
    status_queue: Any
    run_dir: Path
    rollout_address: str
    last_status: dict[str, Any] | None = None

    def next_message(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        try:
            kind, payload = self.status_queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if kind == "status":
            self.last_status = payload
        return kind, payload

    def wait_status(self, done: Callable[[dict[str, Any]], bool],
                    timeout: float = STATUS_TIMEOUT_S) -> dict[str, Any]:
        """The first status report for which ``done`` holds; fails if the learner dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.is_alive(), f"learner died (exit code {self.process.exitcode})"
            item = self.next_message(timeout=0.5)
            if item is not None and item[0] == "status" and done(item[1]):
                return item[1]
        pytest.fail(f"no matching learner status within {timeout} s; last: {self.last_status}")

    def stop(self) -> tuple[int | None, list[tuple[str, dict[str, Any]]]]:
        """Set the stop event; return the exit code and the final status messages."""
        self.stop_event.set()
        final: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        # keep draining: a child blocked on a full status pipe could not exit
        while self.process.is_alive() and time.monotonic() < deadline:
            item = self.next_message(timeout=0.2)
            if item is not None:
                final.append(item)
        self.process.join(max(0.0, deadline - time.monotonic()))
        while (item := self.next_message(timeout=0.2)) is not None:
            final.append(item)
        return self.process.exitcode, final


def make_config(runs_dir: Path) -> Config:
    return config_from_dict({
        "name": "socket-faults",
        "seed": 3,
        "total_env_steps": 10**9,
        "runs_dir": str(runs_dir),
        "log_interval_s": 0.2,
        "checkpoint_interval_s": 3600,
        "env": {"id": "CartPole-v1", "envs_per_actor": B},
        "actors": {"num_procs": 1, "rollout_len": T},
        "learner": {"batch_rollouts": 1, "device": "cpu",
                    "model": {"kind": "mlp", "hidden_size": 16, "core": "none"}},
        "wire": {"transport": "ipc", "send_hwm": 4, "max_message_mb": MAX_MESSAGE_MB},
    })


@pytest.fixture
def learner(tmp_path: Path) -> Iterator[Learner]:
    cfg = make_config(tmp_path / "runs")
    spec = probe_env_spec(cfg.env)
    run_dir = tmp_path / "runs" / cfg.name
    run_dir.mkdir(parents=True)
    # ipc paths are limited to ~100 bytes, so the sockets live in a short temp dir
    sock_dir = tempfile.mkdtemp(prefix="lsf-")
    ctx = mp.get_context("spawn")
    stop_event, status_queue = ctx.Event(), ctx.Queue()
    args = LearnerArgs(cfg=cfg, env_spec=spec, run_dir=str(run_dir),
                       rollout_address=f"ipc://{sock_dir}/r",
                       weights_address=f"ipc://{sock_dir}/w",
                       stop_event=stop_event, status_queue=status_queue)
    process = ctx.Process(target=learner_main, args=(args,), name="test-learner", daemon=True)
    process.start()
    handle = Learner(cfg=cfg, spec=spec,
                     schema=rollout_schema(spec, T, B, core_size=0, max_bytes=CAP),
                     process=process, stop_event=stop_event, status_queue=status_queue,
                     run_dir=run_dir, rollout_address=args.rollout_address)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.is_alive(), f"learner died at start (exit code {process.exitcode})"
            assert time.monotonic() < deadline, "learner never reported ready"
            item = handle.next_message(timeout=0.5)
            if item is not None and item[0] == "ready":
                assert item[1] == {"rollout": args.rollout_address,
                                   "weights": args.weights_address}
                break
        yield handle
    finally:
        stop_event.set()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        status_queue.close()
        status_queue.cancel_join_thread()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def push_socket(ctx: zmq.Context, address: str, monitor_events: int = 0
                ) -> tuple[zmq.Socket, zmq.Socket | None]:
    """A connected PUSH socket, and a monitor of ``monitor_events`` attached before connecting."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 10_000)  # a stuck send fails the test instead of hanging
    monitor = sock.get_monitor_socket(monitor_events) if monitor_events else None
    sock.connect(address)
    return sock, monitor


# --------------------------------------------------------------------------- messages


def rollout_arrays(spec: EnvSpec, seed: int, n_returns: int = 1,
                   n_lengths: int | None = None) -> dict[str, np.ndarray]:
    """A plausible CartPole rollout (core "none": core_state is (B, 0))."""
    rng = np.random.default_rng(seed)
    storage = RolloutStorage(spec, T, B, core_size=0)
    for array in storage.obs.values():
        array[:] = rng.standard_normal(array.shape).astype(array.dtype)
    storage.actions[:] = rng.integers(0, spec.num_actions, storage.actions.shape)
    storage.logp[:] = np.log(1.0 / spec.num_actions)
    storage.values[:] = rng.standard_normal(storage.values.shape)
    storage.rewards[:] = 1.0
    storage.valid[:] = True
    storage.episode_start[0] = True
    n_lengths = n_returns if n_lengths is None else n_lengths
    return storage.arrays(np.full(n_returns, 12.0, np.float32),
                          np.full(n_lengths, 12, np.int32))


def rollout_frames(spec: EnvSpec, seq: int, **kwargs: Any) -> list[bytes]:
    msg = Message(kind=KIND_ROLLOUT, arrays=rollout_arrays(spec, seq, **kwargs), actor_id=0,
                  seq=seq, policy_version=0, env_steps=(seq + 1) * T * B, meta={"fps": 100.0})
    return [bytes(frame) for frame in encode(msg)]


def edit_header(frames: list[bytes], edit: Callable[[dict[str, Any], list[bytes]], None]
                ) -> list[bytes]:
    """Apply ``edit(header, array_frames)`` in place to a copy of ``frames``."""
    header, buffers = msgpack.unpackb(frames[0]), list(frames[1:])
    edit(header, buffers)
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def descriptor(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in header["arrays"] if d["name"] == name)


def array_index(header: dict[str, Any], name: str) -> int:
    return [d["name"] for d in header["arrays"]].index(name)


def bad_messages(spec: EnvSpec) -> list[tuple[str, list[bytes], str]]:
    """(label, frames, the drop reason the learner must count) for each hostile message."""
    rng = np.random.default_rng(99)
    good = rollout_frames(spec, seq=0)

    def add_unknown(h: dict[str, Any], bufs: list[bytes]) -> None:
        h["arrays"].append({"name": "intrinsic_reward", "dtype": "float32", "shape": [T, B]})
        bufs.append(bytes(4 * T * B))

    def drop_required(h: dict[str, Any], bufs: list[bytes]) -> None:
        i = array_index(h, "valid")
        del h["arrays"][i], bufs[i]

    def bad_shape(h: dict[str, Any], bufs: list[bytes]) -> None:
        i = array_index(h, "obs/obs")
        h["arrays"][i]["shape"] = [T + 1, B, 5]
        bufs[i] = bytes(4 * (T + 1) * B * 5)

    def short_frame(h: dict[str, Any], bufs: list[bytes]) -> None:
        i = array_index(h, "actions")
        bufs[i] = bufs[i][:-3]

    # Over the learner's cap in total, but every frame under the socket's MAXMSGSIZE, so the
    # message reaches decode() instead of getting the connection dropped by ZeroMQ.
    n_big = math.ceil(0.6 * CAP / 4)
    too_large = rollout_frames(spec, seq=0, n_returns=n_big)
    assert max(map(len, too_large)) < CAP < sum(map(len, too_large[1:]))

    return [
        ("random bytes", [rng.bytes(97)], "bad_header"),
        ("random multi-frame garbage", [rng.bytes(n) for n in (40, 7, 300, 1)], "bad_header"),
        ("wrong protocol version", edit_header(good, lambda h, _: h.update(v=99)),
         "bad_version"),
        ("wrong kind", edit_header(good, lambda h, _: h.update(kind=KIND_WEIGHTS)), "bad_kind"),
        ("unknown array name", edit_header(good, add_unknown), "unknown_array"),
        ("missing required array", edit_header(good, drop_required), "missing_array"),
        ("disallowed dtype", edit_header(good, lambda h, _: descriptor(h, "rewards").update(
            dtype="object")), "bad_dtype"),
        ("shape mismatch", edit_header(good, bad_shape), "bad_shape"),
        ("byte-count mismatch", edit_header(good, short_frame), "bad_size"),
        ("over max_message_mb", too_large, "too_large"),
        ("wrong number of frames", good[:-1], "bad_frames"),
    ]


# --------------------------------------------------------------------------- tests


def test_valid_rollout_fits_under_the_cap() -> None:
    spec = EnvSpec(obs_spec={"obs": ((4,), "float32")}, num_actions=2)
    frames = rollout_frames(spec, seq=0)
    assert sum(map(len, frames[1:])) < CAP // 10
    decode(frames, rollout_schema(spec, T, B, core_size=0, max_bytes=CAP))


@pytest.mark.timeout(120)
def test_learner_counts_and_survives_bad_messages(learner: Learner, zctx: zmq.Context) -> None:
    cases = bad_messages(learner.spec)
    # each crafted message is rejected, for its reason, by the schema the learner uses
    for label, frames, reason in cases:
        with pytest.raises(WireError) as info:
            decode(frames, learner.schema)
        assert info.value.reason == reason, (label, info.value.detail)
    expected_drops = Counter(reason for _, _, reason in cases)
    assert set(expected_drops) == {
        "bad_header", "bad_version", "bad_kind", "unknown_array", "missing_array", "bad_dtype",
        "bad_shape", "bad_size", "too_large", "bad_frames"}
    n_valid = 3
    valid = [rollout_frames(learner.spec, seq=i) for i in range(n_valid)]
    for frames in valid:
        decode(frames, learner.schema)

    push, _ = push_socket(zctx, learner.rollout_address)
    for _, frames, _ in cases:
        push.send_multipart(frames)
    for frames in valid:
        push.send_multipart(frames)

    status = learner.wait_status(
        lambda s: s["received"] >= len(cases) + n_valid and s["updates"] >= n_valid)
    assert status["dropped_by_reason"] == dict(expected_drops)
    assert status["dropped"] == len(cases)
    assert status["received"] == len(cases) + n_valid
    assert status["updates"] == n_valid  # batch_rollouts=1: one update per valid rollout
    assert status["env_steps"] == n_valid * T * B
    assert status["policy_version"] >= 1
    assert status["episodes"] == n_valid  # one finished episode per valid rollout
    assert status["actors_seen"] == [0]
    assert learner.process.is_alive()

    code, final = learner.stop()
    assert code == 0
    kinds = [kind for kind, _ in final]
    assert "stopped" in kinds, kinds
    stopped = dict(final)["stopped"]
    assert stopped["env_steps"] == n_valid * T * B
    checkpoint = Path(stopped["checkpoint"])
    assert checkpoint.is_file()
    assert checkpoint.parent == learner.run_dir / "checkpoints"
    assert list((learner.run_dir / "checkpoints").glob("ckpt_*.pt"))


@pytest.mark.timeout(120)
def test_learner_survives_frame_over_maxmsgsize(learner: Learner, zctx: zmq.Context) -> None:
    """ZeroMQ drops a peer that sends a frame over MAXMSGSIZE; the learner must not care."""
    oversized = rollout_frames(learner.spec, seq=0, n_returns=CAP // 4 + 256)
    assert len(oversized[-2]) > CAP  # the ep_returns frame alone is over the socket limit
    first, monitor = push_socket(zctx, learner.rollout_address,
                                 zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    assert monitor is not None
    first.send_multipart(oversized)
    events = []
    deadline = time.monotonic() + 10.0
    while zmq.EVENT_DISCONNECTED not in events and time.monotonic() < deadline:
        if monitor.poll(200):
            events.append(recv_monitor_message(monitor)["event"])
    # the learner's socket read the frame size and hung up on us
    assert events[:1] == [zmq.EVENT_CONNECTED] and zmq.EVENT_DISCONNECTED in events, events
    assert learner.process.is_alive()
    first.disable_monitor()
    monitor.close(linger=0)
    first.close(linger=0)

    n_valid = 2
    second, _ = push_socket(zctx, learner.rollout_address)
    for seq in range(1, n_valid + 1):
        second.send_multipart(rollout_frames(learner.spec, seq=seq))
    status = learner.wait_status(lambda s: s["updates"] >= n_valid)
    assert status["updates"] == n_valid
    assert status["received"] == n_valid  # the oversized message never reached the learner
    assert status["dropped"] == 0 and status["dropped_by_reason"] == {}
    assert status["env_steps"] == n_valid * T * B
    assert learner.process.is_alive()

    code, final = learner.stop()
    assert code == 0
    assert "stopped" in [kind for kind, _ in final]
    assert list((learner.run_dir / "checkpoints").glob("ckpt_*.pt"))
