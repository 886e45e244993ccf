"""Socket helpers shared by the processes: binding (learner, labeler) and the kernel buffers of
rollout sockets over tcp (actors, learner)."""

from __future__ import annotations

import zmq

from explorer.core.addresses import is_loopback_address

__all__ = ["ROLLOUT_TCP_BUFFER_BYTES", "bind", "cap_tcp_buffers"]

#: Kernel send / receive buffer of a rollout socket over tcp (Linux doubles it). ZeroMQ's
#: high-water marks count messages, but a tcp connection also holds what fits in the kernel's
#: buffers (autotuned to megabytes: dozens of small rollouts), which then age before training:
#: measured on the quickstart model, 40-60% of the env steps arrived older than
#: ``learner.max_policy_lag`` and were dropped over tcp, none over ipc; with this cap, none.
ROLLOUT_TCP_BUFFER_BYTES = 64 * 1024


def cap_tcp_buffers(sock: zmq.Socket, address: str) -> None:
    """Cap the kernel buffers of ``sock`` (before it binds or connects) when ``address`` is
    ``tcp://``: back-pressure then reaches the actor instead of queueing stale rollouts."""
    if address.startswith("tcp://"):
        sock.setsockopt(zmq.SNDBUF, ROLLOUT_TCP_BUFFER_BYTES)
        sock.setsockopt(zmq.RCVBUF, ROLLOUT_TCP_BUFFER_BYTES)


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
