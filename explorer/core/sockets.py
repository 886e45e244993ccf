"""Binding helper shared by every process that binds a ZeroMQ socket (learner, labeler)."""

from __future__ import annotations

import zmq

__all__ = ["bind"]


def bind(sock: zmq.Socket, address: str) -> str:
    """Bind ``address``; a tcp port 0 binds a free port. Returns the address peers connect to
    (so a restarted process can bind the very same one)."""
    if address.startswith("tcp://") and address.endswith(":0"):
        host = address[len("tcp://"):].rsplit(":", 1)[0]
        return f"tcp://{host}:{sock.bind_to_random_port(f'tcp://{host}')}"
    sock.bind(address)
    return address
