"""Wire messages between the search driver and its evaluation workers (ZeroMQ, no pickle).

The driver (a ROUTER) sends a worker (a DEALER) one ``eval_task`` at a time: genome ids and
genomes. The worker answers with an ``eval_result``: the same ids, fitness, final positions and,
for STAX, final frames. A worker announces itself with an empty result (0 rows). Both kinds are
validated by :func:`explorer.core.wire.decode` against the schemas below before use.
"""

from __future__ import annotations

from explorer.core.wire import ArraySpec, WireSchema

__all__ = ["KIND_EVAL_RESULT", "KIND_EVAL_TASK", "MAX_BATCH", "result_schema", "task_schema"]

KIND_EVAL_TASK = "eval_task"
KIND_EVAL_RESULT = "eval_result"
#: Most genomes in one task: bounds what a worker holds and what one crash loses.
MAX_BATCH = 4096


def task_schema(genome_size: int) -> WireSchema:
    """``ids (B,) int64`` and ``genomes (B, G) float64``."""
    return WireSchema(kind=KIND_EVAL_TASK,
                      arrays={"ids": ArraySpec("int64", (None,)),
                              "genomes": ArraySpec("float64", (None, genome_size))},
                      max_bytes=MAX_BATCH * (genome_size + 1) * 8)


def result_schema(frame_size: int) -> WireSchema:
    """``ids (B,)``, ``fitness (B,)``, ``positions (B, 2)``, ``reached (B,)``; optional
    ``frames (B, H, H) uint8`` (STAX)."""
    return WireSchema(kind=KIND_EVAL_RESULT,
                      arrays={"ids": ArraySpec("int64", (None,)),
                              "fitness": ArraySpec("float64", (None,)),
                              "positions": ArraySpec("float64", (None, 2)),
                              "reached": ArraySpec("bool", (None,))},
                      optional={"frames": ArraySpec("uint8", (None, frame_size, frame_size))},
                      max_bytes=MAX_BATCH * (8 * 4 + 1 + frame_size * frame_size))
