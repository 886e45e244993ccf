"""What ZeroMQ CURVE costs a run: rollout throughput over tcp with and without encryption.

One PUSH -> PULL pair over ``tcp://127.0.0.1`` (separate contexts, as two processes would have;
libzmq's I/O threads encrypt outside the GIL) sends ``--messages`` multipart rollout-sized
messages of each ``--sizes`` (MiB), plain and with the run's CURVE keys
(``explorer.core.curve``), and reports MB/s and messages/s for both and their ratio. A CURVE
run's weights broadcast and texts pay the same per-byte cost, so the ratio at the rollout size
of a config (``T x B x obs bytes``) tells what CURVE takes from a multi-node run's bandwidth.

Prints a table, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/curve.py --sizes 0.06 1 8 --messages 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from explorer.core.curve import SocketSecurity, generate_keys, load_curve_keys
from explorer.core.sockets import bind


def _throughput(size_mb: float, messages: int, keys) -> float:
    """Seconds to move ``messages`` messages of ``size_mb`` MiB (4 frames) PUSH -> PULL."""
    server_ctx, client_ctx = zmq.Context(), zmq.Context()
    server, client = SocketSecurity(server_ctx, keys), SocketSecurity(client_ctx, keys)
    pull = server_ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 2)
    server.serve(pull)
    address = bind(pull, "tcp://127.0.0.1:0")
    push = client_ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 2)
    client.connect(push)
    push.connect(address)
    payload = np.random.default_rng(0).integers(0, 255, int(size_mb * (1 << 20)), np.uint8)
    parts = [b"header", payload[: len(payload) // 2], payload[len(payload) // 2:], b"meta"]

    def send() -> None:
        for _ in range(messages + 1):  # the first is a warm-up (handshake)
            push.send_multipart(parts, copy=False)

    sender = threading.Thread(target=send)
    sender.start()
    pull.recv_multipart(copy=False)
    start = time.perf_counter()
    for _ in range(messages):
        pull.recv_multipart(copy=False)
    elapsed = time.perf_counter() - start
    sender.join()
    push.close(0)
    pull.close(0)
    server.close()
    server_ctx.term()
    client_ctx.term()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.0625, 1.0, 8.0],
                        help="message sizes in MiB")
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate_keys(Path(tmp) / "keys")
        keys = load_curve_keys(Path(tmp) / "keys")
        rows = []
        for size in args.sizes:
            n = max(10, int(args.messages / max(size, 1.0)))
            plain = _throughput(size, n, None)
            curve = _throughput(size, n, keys)
            mb = size * n * (1 << 20) / 1e6
            rows.append({"size_mib": size, "messages": n, "plain_mb_s": mb / plain,
                         "curve_mb_s": mb / curve, "curve_over_plain": plain / curve,
                         "plain_msg_s": n / plain, "curve_msg_s": n / curve})
    print(f"{'MiB':>8} {'msgs':>6} {'plain MB/s':>11} {'CURVE MB/s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['size_mib']:>8.3f} {r['messages']:>6} {r['plain_mb_s']:>11.0f} "
              f"{r['curve_mb_s']:>11.0f} {r['curve_over_plain']:>6.2f}")
    print(json.dumps({"benchmark": "curve", "rows": rows}))


if __name__ == "__main__":
    main()
