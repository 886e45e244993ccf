"""Which ZeroMQ addresses stay on this machine (zmq-free, so config checks can use it).

A socket bound to a loopback or ``ipc://`` address is reachable from this machine only; one
bound to any other address (``0.0.0.0``, ``*``, a LAN address, a host or interface name) can be
reached by other machines, so the run must authenticate it with CURVE (``explorer.core.curve``).
"""

from __future__ import annotations

import ipaddress

__all__ = ["WILDCARD_HOSTS", "address_host", "is_loopback_address", "is_loopback_host"]

#: Hosts that bind every interface: what peers connect to is the binding machine's address.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "*", "::", ""})

_LOOPBACK_NAMES = frozenset({"localhost", "lo", "ip6-localhost", "ip6-loopback"})


def address_host(address: str) -> str | None:
    """The host part of a ``tcp://HOST:PORT`` address (brackets of IPv6 removed); None for
    other transports."""
    if not address.startswith("tcp://"):
        return None
    host = address[len("tcp://"):].rsplit(":", 1)[0]
    if ";" in host:  # tcp://SOURCE;HOST:PORT (connect with a source address)
        host = host.split(";", 1)[1]
    return host.strip("[]")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine only: 127.0.0.0/8, ::1, ``localhost`` or ``lo``.

    Any other name counts as public (it is not resolved: a name that resolves to loopback
    today may not tomorrow, so the check errs on the safe side).
    """
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: str) -> bool:
    """Whether a socket bound at ``address`` is reachable from this machine only:
    ``ipc://`` and ``inproc://`` addresses, or ``tcp://`` on a loopback host."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    host = address_host(address)
    return host is not None and is_loopback_host(host)
