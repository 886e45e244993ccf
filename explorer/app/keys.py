"""``explorer keys gen DIR``: the ZeroMQ CURVE keys a run needs beyond loopback.

Writes a server and a client key pair and authorises the client (layout in
``explorer.core.curve``); a run then uses them with ``wire.curve_keys=DIR``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_keys_subcommands"]


def _cmd_gen(args: argparse.Namespace) -> int:
    from explorer.core.curve import CurveKeyError, generate_keys

    try:
        files = generate_keys(args.dir, force=args.force)
    except (CurveKeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in files:
        print(path)
    print(f"use them with: explorer run CONFIG wire.curve_keys={args.dir}")
    print("copy DIR to every machine of the run; *.key_secret files are private (mode 0600)")
    return 0


def add_keys_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``keys gen`` under the main CLI's sub-parsers; returns the ``keys`` parser."""
    keys = subparsers.add_parser("keys", help="ZeroMQ CURVE keys for runs beyond loopback")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = sub.add_parser("gen", help="write a server and a client key pair into DIR",
                         description="Write DIR/server.key(_secret), DIR/client.key(_secret) "
                         "and DIR/authorized/client.key. Servers (learner, labeler) accept "
                         "the clients whose public keys are in DIR/authorized/.")
    gen.add_argument("dir", metavar="DIR")
    gen.add_argument("--force", action="store_true", help="overwrite existing keys (every "
                     "machine holding the old ones is locked out)")
    gen.set_defaults(func=_cmd_gen)
    return keys
