"""Binding helper shared by every process that binds a ZeroMQ socket (learner, labeler)."""

from __future__ import annotations

import zmq

from explorer.core.addresses import is_loopback_address

__all__ = ["bind"]


def bind(sock: zmq.Socket, address: str) -> str:
    """Bind ``address``; a tcp port 0 binds a free port. Returns the address peers connect to
    (so a restarted process can bind the very same one).

    Raises:
        PermissionError: ``address`` is reachable from other machines (not loopback or ipc)
            and ``sock`` is not a CURVE server (``explorer.core.curve.SocketSecurity.serve``):
            anyone on the network could otherwise push data in or read it out.
    """
    if not is_loopback_address(address) and not sock.getsockopt(zmq.CURVE_SERVER):
        raise PermissionError(f"refusing to bind {address} without CURVE: it is reachable from "
                              "other machines (run `explorer keys gen DIR` and set "
                              "wire.curve_keys=DIR)")
    if address.startswith("tcp://") and address.endswith(":0"):
        host = address[len("tcp://"):].rsplit(":", 1)[0]
        return f"tcp://{host}:{sock.bind_to_random_port(f'tcp://{host}')}"
    sock.bind(address)
    return address
