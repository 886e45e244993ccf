"""ZeroMQ CURVE for every socket of a run that other machines can reach.

CURVE (libzmq's elliptic-curve handshake, in pyzmq) encrypts a connection and, with a ZAP
authenticator on the binding side, refuses any client whose public key is not authorised: such
a client can neither push rollouts or texts nor subscribe to weights or reward tables.

Key directory (written by ``explorer keys gen DIR``, read by :func:`load_curve_keys`)::

    DIR/server.key, DIR/server.key_secret   processes that bind (learner, labeler)
    DIR/client.key, DIR/client.key_secret   processes that connect (actors; the learner
                                            connecting to the labeler)
    DIR/authorized/*.key                    client public keys the binding side accepts

The launcher reads the *public* keys once and hands them to the processes in their arguments
(:class:`CurveKeys`); each process reads its own *secret* key from ``DIR`` on its machine, so
secrets never travel through the launcher. To let another machine's key in, copy its
``.key`` (public) file into ``DIR/authorized/``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["AUTHORIZED_DIR", "CurveKeyError", "CurveKeys", "SocketSecurity", "curve_available",
           "curve_key_problems", "generate_keys", "keys_dir_problems", "load_curve_keys"]

SERVER = "server"
CLIENT = "client"
#: Sub-directory of client public keys the binding side accepts.
AUTHORIZED_DIR = "authorized"


class CurveKeyError(ValueError):
    """A key directory is missing, incomplete or unreadable (the message is one line)."""


def curve_available() -> bool:
    """Whether this libzmq was built with CURVE (libsodium / tweetnacl)."""
    return bool(zmq.has("curve"))


@dataclass(frozen=True)
class CurveKeys:
    """The public half of a run's keys, handed by the launcher to every process.

    Attributes:
        keys_dir: Where each process reads its own secret key (same path on every machine).
        server_public: z85 public key of the binding side; clients pin it.
        authorized: z85 public keys of the clients the binding side accepts.
    """

    keys_dir: str
    server_public: bytes
    authorized: tuple[bytes, ...]


def generate_keys(keys_dir: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Write a server and a client key pair, and authorise the client, under ``keys_dir``.

    Secret files are readable by their owner only (0600, in a 0700 directory).

    Returns:
        The files written.

    Raises:
        CurveKeyError: CURVE is not built into libzmq, or keys exist there already (without
            ``force``: overwriting keys would lock out every machine holding the old ones).
    """
    if not curve_available():
        raise CurveKeyError("this libzmq has no CURVE support (pyzmq wheels include it)")
    root = Path(keys_dir)
    existing = [p for p in (root / f"{SERVER}.key", root / f"{CLIENT}.key") if p.exists()]
    if existing and not force:
        raise CurveKeyError(f"{existing[0]} exists; refusing to overwrite keys (use --force)")
    (root / AUTHORIZED_DIR).mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    written: list[Path] = []
    for name in (SERVER, CLIENT):
        public, secret = zmq.auth.create_certificates(root, name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    authorized = root / AUTHORIZED_DIR / f"{CLIENT}.key"
    authorized.write_bytes((root / f"{CLIENT}.key").read_bytes())
    return [*written, authorized]


def _public_key(path: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise CurveKeyError(f"{path}: cannot read a CURVE public key ({err})") from None
    if not public:
        raise CurveKeyError(f"{path}: no public-key line in it")
    return public


def _key_pair(keys_dir: str, name: str) -> tuple[bytes, bytes]:
    path = Path(keys_dir) / f"{name}.key_secret"
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise CurveKeyError(f"{path}: cannot read a CURVE secret key ({err}); "
                            f"run `explorer keys gen {keys_dir}`") from None
    if not public or not secret:
        raise CurveKeyError(f"{path}: no secret-key line in it")
    return public, secret


def load_curve_keys(keys_dir: str | os.PathLike[str]) -> CurveKeys:
    """The public keys of ``keys_dir`` (what the launcher hands to the processes).

    Raises:
        CurveKeyError: no CURVE in libzmq, no server public key, or no authorised client key.
    """
    if not curve_available():
        raise CurveKeyError("this libzmq has no CURVE support (pyzmq wheels include it)")
    root = Path(keys_dir)
    if not root.is_dir():
        raise CurveKeyError(f"{root}: no such key directory; run `explorer keys gen {root}`")
    server = _public_key(root / f"{SERVER}.key")
    authorized = tuple(sorted(_public_key(p) for p in (root / AUTHORIZED_DIR).glob("*.key")))
    if not authorized:
        raise CurveKeyError(f"{root / AUTHORIZED_DIR}: no client public key (*.key) in it; "
                            "no client could connect")
    return CurveKeys(keys_dir=str(root), server_public=server, authorized=authorized)


def curve_key_problems(cfg: Any) -> list[str]:
    """Run check: ``wire.curve_keys`` holds every key a run on this machine needs (the
    public keys and both secrets). One line naming the key, or nothing."""
    keys_dir = cfg.wire.curve_keys
    return [] if keys_dir is None else keys_dir_problems(keys_dir, "wire.curve_keys")


def keys_dir_problems(keys_dir: str, key: str) -> list[str]:
    """Config check of one key directory (config key ``key``): the public keys and both
    secrets are there and readable. One line naming the key, or nothing."""
    try:
        load_curve_keys(keys_dir)
        _key_pair(keys_dir, SERVER)
        _key_pair(keys_dir, CLIENT)
    except CurveKeyError as err:
        return [f"{key}: {err}"]
    return []


class _AllowList:
    """ZAP credentials provider: accepts the authorised client keys, counts the others."""

    def __init__(self, authorized: tuple[bytes, ...]) -> None:
        self.authorized = frozenset(authorized)
        self.rejected = 0
        self._lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.authorized:
            return True
        with self._lock:
            self.rejected += 1
        return False


def _curve_safe_rcvhwm(sock: zmq.Socket) -> None:
    """Raise a receive high-water mark of 1 to 2: libzmq 4.3.5 delivers nothing through a CURVE
    connection whose RCVHWM is 1 (measured: poll reports a message, recv never gets it), which
    would hang the learner's rollout PULL. Any other value is left alone."""
    if sock.getsockopt(zmq.RCVHWM) == 1:
        sock.setsockopt(zmq.RCVHWM, 2)


class SocketSecurity:
    """Applies a run's CURVE keys to the sockets of one process (one ZeroMQ context).

    Call :meth:`serve` on a socket before binding it and :meth:`connect` before connecting it
    (after setting its high-water marks: a RCVHWM of 1 becomes 2, see
    :func:`_curve_safe_rcvhwm`). Without keys (a run on loopback or ipc) both do nothing. The
    first :meth:`serve` starts the ZAP authenticator thread of the context; :meth:`close`
    stops it (before ``ctx.term()``).

    Args:
        ctx: The process's context.
        keys: The run's public keys (:class:`CurveKeys`), or None for no CURVE.
    """

    def __init__(self, ctx: zmq.Context, keys: CurveKeys | None) -> None:
        self.ctx = ctx
        self.keys = keys
        self._server_pair: tuple[bytes, bytes] | None = None
        self._client_pair: tuple[bytes, bytes] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._allow: _AllowList | None = None

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    @property
    def rejected(self) -> int:
        """Handshakes refused so far because the client's key is not authorised."""
        return 0 if self._allow is None else self._allow.rejected

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server that accepts authorised clients only."""
        if self.keys is None:
            return
        if self._auth is None:
            self._server_pair = _key_pair(self.keys.keys_dir, SERVER)
            self._allow = _AllowList(self.keys.authorized)
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=self._allow)
        public, secret = self._server_pair
        _curve_safe_rcvhwm(sock)
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_server = True

    def connect(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client that only talks to the run's server key."""
        if self.keys is None:
            return
        if self._client_pair is None:
            self._client_pair = _key_pair(self.keys.keys_dir, CLIENT)
        public, secret = self._client_pair
        _curve_safe_rcvhwm(sock)
        sock.curve_serverkey = self.keys.server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def close(self) -> None:
        """Stop the authenticator thread (idempotent)."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
