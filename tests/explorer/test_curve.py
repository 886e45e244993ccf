"""ZeroMQ CURVE with real sockets: only clients holding the run's client key get in.

Each case binds a server socket the way the learner and labeler do (``SocketSecurity.serve``
then ``explorer.core.sockets.bind``) and connects real clients from their own contexts (as
separate processes would): an authorised one, an intruder with its own key pair that knows the
server's public key, and a plain client without CURVE.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from explorer.app.cli import main
from explorer.app.validate import load_run_config
from explorer.core.config import ConfigError, load_config
from explorer.core.curve import (
    CurveKeyError,
    CurveKeys,
    SocketSecurity,
    generate_keys,
    load_curve_keys,
)
from explorer.core.sockets import bind
from explorer.core.wire import (
    KIND_ROLLOUT,
    ArraySpec,
    Message,
    WireSchema,
    decode,
    encode,
)

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")

_SCHEMA = WireSchema(kind=KIND_ROLLOUT, arrays={"x": ArraySpec("float32", (4,))})


@pytest.fixture
def keys(tmp_path: Path) -> CurveKeys:
    generate_keys(tmp_path / "keys")
    return load_curve_keys(tmp_path / "keys")


def _intruder_security(ctx: zmq.Context, keys: CurveKeys, tmp_path: Path) -> SocketSecurity:
    """A client with a key pair of its own (not authorised) that knows the server's key."""
    generate_keys(tmp_path / "intruder")
    # its own client secret, the run's server public key
    return SocketSecurity(ctx, CurveKeys(str(tmp_path / "intruder"), keys.server_public, ()))


def _rollout(value: float) -> list:
    return encode(Message(kind=KIND_ROLLOUT, arrays={"x": np.full(4, value, np.float32)}))


def _received(sock: zmq.Socket, timeout_s: float) -> list[float]:
    """Values of every rollout that arrives within ``timeout_s``."""
    got = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            got.append(float(decode(sock.recv_multipart(), _SCHEMA).arrays["x"][0]))
    return got


def test_only_the_authorised_client_can_push_rollouts(keys: CurveKeys, tmp_path: Path) -> None:
    server_ctx, ctxs = zmq.Context(), [zmq.Context() for _ in range(3)]
    server = SocketSecurity(server_ctx, keys)
    pull = server_ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    server.serve(pull)
    address = bind(pull, "tcp://127.0.0.1:0")
    clients = [SocketSecurity(ctxs[0], keys), _intruder_security(ctxs[1], keys, tmp_path),
               SocketSecurity(ctxs[2], None)]  # authorised, wrong key, no CURVE
    pushes = []
    try:
        for value, (ctx, security) in enumerate(zip(ctxs, clients, strict=True)):
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDHWM, 100)
            security.connect(push)
            push.connect(address)
            pushes.append(push)
            for _ in range(3):
                push.send_multipart(_rollout(float(value)), flags=zmq.NOBLOCK) \
                    if push.poll(0, zmq.POLLOUT) else None
        got = _received(pull, 2.0)
        assert got == [0.0, 0.0, 0.0]  # the authorised client's three rollouts, nothing else
        assert server.rejected >= 1  # the intruder's handshake was refused by its key
    finally:
        for sock in (pull, *pushes):
            sock.close(0)
        server.close()
        for ctx in (server_ctx, *ctxs):
            ctx.term()


def test_a_pull_at_rcvhwm_1_still_receives_over_curve(keys: CurveKeys) -> None:
    """The learner's rollout PULL has RCVHWM 1; libzmq delivers nothing through CURVE at 1."""
    server_ctx, client_ctx = zmq.Context(), zmq.Context()
    server, client = SocketSecurity(server_ctx, keys), SocketSecurity(client_ctx, keys)
    pull = server_ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.setsockopt(zmq.LINGER, 0)
    server.serve(pull)
    address = bind(pull, "tcp://127.0.0.1:0")
    push = client_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    client.connect(push)
    push.connect(address)
    try:
        for value in (1.0, 2.0, 3.0):
            push.send_multipart(_rollout(value))
        assert _received(pull, 2.0) == [1.0, 2.0, 3.0]
    finally:
        push.close(0)
        pull.close(0)
        server.close()
        server_ctx.term()
        client_ctx.term()


def test_only_the_authorised_client_can_subscribe_to_weights(keys: CurveKeys,
                                                              tmp_path: Path) -> None:
    server_ctx, ctxs = zmq.Context(), [zmq.Context() for _ in range(3)]
    server = SocketSecurity(server_ctx, keys)
    pub = server_ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    server.serve(pub)
    address = bind(pub, "tcp://127.0.0.1:0")
    clients = [SocketSecurity(ctxs[0], keys), _intruder_security(ctxs[1], keys, tmp_path),
               SocketSecurity(ctxs[2], None)]
    subs = []
    try:
        for ctx, security in zip(ctxs, clients, strict=True):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            security.connect(sub)
            sub.connect(address)
            subs.append(sub)
        counts = [0, 0, 0]
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pub.send_multipart(_rollout(7.0))
            for i, sub in enumerate(subs):
                while sub.poll(0):
                    assert decode(sub.recv_multipart(), _SCHEMA).arrays["x"][0] == 7.0
                    counts[i] += 1
            time.sleep(0.02)
        assert counts[0] > 0 and counts[1:] == [0, 0]
        assert server.rejected >= 1
    finally:
        for sock in (pub, *subs):
            sock.close(0)
        server.close()
        for ctx in (server_ctx, *ctxs):
            ctx.term()


def test_a_client_pins_the_server_key(keys: CurveKeys, tmp_path: Path) -> None:
    """A server with another key pair (an impostor) gets nothing from a run's client."""
    generate_keys(tmp_path / "impostor")
    impostor_keys = CurveKeys(str(tmp_path / "impostor"), b"", keys.authorized)
    server_ctx, client_ctx = zmq.Context(), zmq.Context()
    impostor = SocketSecurity(server_ctx, impostor_keys)
    pull = server_ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    impostor.serve(pull)
    address = bind(pull, "tcp://127.0.0.1:0")
    client = SocketSecurity(client_ctx, keys)
    push = client_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    client.connect(push)
    push.connect(address)
    try:
        if push.poll(500, zmq.POLLOUT):
            push.send_multipart(_rollout(1.0))
        assert _received(pull, 1.0) == []
    finally:
        push.close(0)
        pull.close(0)
        impostor.close()
        server_ctx.term()
        client_ctx.term()


def test_bind_refuses_a_public_address_without_curve(keys: CurveKeys) -> None:
    ctx = zmq.Context()
    plain = ctx.socket(zmq.PULL)
    secured = ctx.socket(zmq.PULL)
    security = SocketSecurity(ctx, keys)
    try:
        with pytest.raises(PermissionError, match="without CURVE"):
            bind(plain, "tcp://0.0.0.0:0")
        assert bind(plain, "tcp://127.0.0.1:0").startswith("tcp://127.0.0.1:")  # loopback: ok
        security.serve(secured)
        assert bind(secured, "tcp://0.0.0.0:0").startswith("tcp://0.0.0.0:")
    finally:
        plain.close(0)
        secured.close(0)
        security.close()
        ctx.term()


def test_keys_gen_writes_private_secrets_and_refuses_to_overwrite(tmp_path: Path,
                                                                  capsys) -> None:
    target = tmp_path / "k"
    assert main(["keys", "gen", str(target)]) == 0
    for name in ("server", "client"):
        assert stat.S_IMODE((target / f"{name}.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    before = (target / "server.key_secret").read_bytes()
    assert main(["keys", "gen", str(target)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (target / "server.key_secret").read_bytes() == before
    loaded = load_curve_keys(target)
    assert loaded.authorized == (loaded.authorized[0],) and len(loaded.server_public) == 40


@pytest.mark.parametrize(("overrides", "key"), [
    (["wire.transport=tcp", "wire.host=0.0.0.0"], "wire.host"),
    (["wire.transport=tcp", "wire.host='*'"], "wire.host"),
    (["wire.transport=tcp", "wire.host=10.1.2.3"], "wire.host"),
    (["llm_labeler.labeler=rules", "text.source=babyai_mission",
      "llm_labeler.texts_address=tcp://0.0.0.0:0"], "llm_labeler.texts_address"),
    (["llm_labeler.labeler=rules", "text.source=babyai_mission", "llm_labeler.external=true",
      "llm_labeler.texts_address=tcp://10.0.0.5:5555",
      "llm_labeler.updates_address=tcp://127.0.0.1:5556"], "llm_labeler.texts_address"),
])
def test_a_public_bind_without_keys_is_one_line(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{key}: ") and "explorer keys gen" in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["wire.transport=tcp", "wire.host=127.0.0.1"], ["wire.transport=tcp", "wire.host=localhost"],
    ["wire.transport=tcp", "wire.host=::1"], ["wire.transport=ipc", "wire.host=0.0.0.0"],
])
def test_loopback_and_ipc_run_without_keys(overrides: list[str]) -> None:
    load_config(None, overrides)


def test_missing_or_incomplete_keys_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(None, [f"wire.curve_keys={tmp_path / 'none'}"])
    assert len(err.value.problems) == 1 and "no such key directory" in str(err.value)
    generate_keys(tmp_path / "k")
    (tmp_path / "k" / "client.key_secret").unlink()
    with pytest.raises(ConfigError) as err:
        load_run_config(None, ["wire.transport=tcp", "wire.host=0.0.0.0",
                               f"wire.curve_keys={tmp_path / 'k'}"])
    assert err.value.problems == [err.value.problems[0]]
    assert err.value.problems[0].startswith("wire.curve_keys: ") and "client.key_secret" in str(
        err.value)
    with pytest.raises(CurveKeyError, match="no client public key"):
        for path in (tmp_path / "k" / "authorized").glob("*.key"):
            path.unlink()
        load_curve_keys(tmp_path / "k")


@pytest.mark.parametrize("argv", [
    ["run", "configs/quickstart.yaml", "wire.transport=tcp", "wire.host=0.0.0.0"],
    ["labeler", "serve", "llm_labeler.labeler=rules", "text.source=babyai_mission",
     "llm_labeler.texts_address=tcp://0.0.0.0:0"],
])
def test_commands_refuse_a_public_bind_without_keys_in_one_line(argv: list[str], capsys,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "explorer keys gen" in err[0]
