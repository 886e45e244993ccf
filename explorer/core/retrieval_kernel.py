"""The retrieval core's actor step, compiled (numba): the part that is many tiny ops.

An actor step over 16 envs scores 16 chunk ends per env, picks the top k, attends over their
states and writes one slot of the window: a few thousand multiply-adds per env, but as NumPy
~25 small array ops whose per-op overhead was the whole cost of retrieval in the actor. Here
it is one loop per env; the dense layers stay one BLAS product each (``RetrievalCore._step``).

Loaded on an actor's first retrieval step, never by the learner (its sequences run in torch,
with autograd). ``cache=True`` keeps the compiled code on disk: only the first process on a
machine pays the compile (a few seconds; loading it back takes ~0.5 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["step_window"]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def step_window(state: np.ndarray, new: np.ndarray, start: np.ndarray, proj: np.ndarray,
                chunk_proj: np.ndarray, proj_bias: np.ndarray, chunk_bias: np.ndarray,
                scale: float, window: int, chunk_len: int, k: int, cross_episode: bool,
                retrieved: np.ndarray) -> None:
    """One step of ``RetrievalCore`` for B envs, all but its dense layers.

    Args:
        state: ``(B, state_size)`` the flat state before this step, in ``RetrievalCore``'s
            layout: W slots of P = 2 + 3d (step, valid, chunk key, state key, state value),
            the head, the chunk-key projections of the L - 1 newest steps; read only.
        new: ``(B, state_size)`` a copy of ``state``, updated in place: this step's slot
            over the oldest, the head moved onto it, the newest projections shifted by one.
        start: ``(B,)`` bool, this step begins an episode.
        proj: ``(B, 4d)`` this step's ``project`` without bias: chunk query, state query,
            state key, state value.
        chunk_proj: ``(B, d)`` this step's ``chunk_key`` projection without bias.
        proj_bias: ``(4d,)``, chunk_bias: ``(d,)`` their biases.
        scale: 1 / sqrt(d), the queries' scale.
        window: W.
        chunk_len: L.
        k: chunks retrieved at most.
        cross_episode: chunks of the env's earlier episodes in the window count too.
        retrieved: ``(B, d)`` output: the two-level attention's summary (0 if none usable).
    """
    batch = proj.shape[0]
    d = chunk_bias.shape[0]
    size = 2 + 3 * d  # P; slot s of env b starts at state[b, s * P]
    heads = window * size  # the head's column; the newest projections follow it
    # candidates: the current episode's chunk ends (W / L of them) or, across episodes,
    # any slot of the window
    chunks = window if cross_episode else window // chunk_len
    picks = min(k, chunks)
    query = np.empty(2 * d, np.float32)
    scores = np.empty(chunks, np.float32)
    ends = np.empty(chunks, np.int64)
    chosen = np.empty(picks, np.int64)
    weights = np.empty(picks, np.float32)
    logits = np.empty(chunk_len, np.float32)
    for b in range(batch):
        head = int(state[b, heads])
        n = 0 if start[b] else int(state[b, head * size]) + 1
        for i in range(2 * d):
            query[i] = (proj[b, i] + proj_bias[i]) * scale
        retrieved[b, :] = 0.0
        # a chunk is usable when it is whole (its end is step >= L - 1 of its episode) and
        # its first step is still in the window; this episode's chunk ends lie at ages
        # n % L + 1 + jL
        limit = min(n - chunk_len + 1, window - chunk_len + 1)
        usable = 0
        for j in range(chunks):
            if cross_episode:  # a slot of age j + 1 ends a whole chunk of its episode
                age = j + 1
                slot = (head + 1 - age) % window
                step = int(state[b, slot * size])
                ok = (age <= window - chunk_len + 1 and step >= chunk_len - 1
                      and (step + 1) % chunk_len == 0)
            else:
                age = n % chunk_len + 1 + j * chunk_len
                slot = (head + 1 - age) % window
                ok = age <= limit
            ends[j] = slot
            if ok and state[b, slot * size + 1] > 0.5:
                acc = np.float32(0.0)
                for i in range(d):
                    acc += state[b, slot * size + 2 + i] * query[i]
                scores[j] = acc
                usable += 1
            else:
                scores[j] = -np.inf
        # the top min(k, usable) by score (their order does not matter to the softmax)
        count = min(picks, usable)
        best = -np.inf
        for p in range(count):
            top = 0
            for j in range(1, chunks):
                if scores[j] > scores[top]:
                    top = j
            chosen[p] = ends[top]
            weights[p] = scores[top]
            best = max(best, scores[top])
            scores[top] = -np.inf
        total = np.float32(0.0)
        for p in range(count):
            weights[p] = np.exp(weights[p] - best)
            total += weights[p]
        for p in range(count):
            # attention over the chunk's L states, oldest first, with the state query
            first = chosen[p] - chunk_len + 1
            high = -np.inf
            for m in range(chunk_len):
                at = ((first + m) % window) * size + 2 + d
                acc = np.float32(0.0)
                for i in range(d):
                    acc += state[b, at + i] * query[d + i]
                logits[m] = acc
                high = max(high, acc)
            norm = np.float32(0.0)
            for m in range(chunk_len):
                logits[m] = np.exp(logits[m] - high)
                norm += logits[m]
            share = weights[p] / (total * norm)
            for m in range(chunk_len):
                at = ((first + m) % window) * size + 2 + 2 * d
                w = logits[m] * share
                for i in range(d):
                    retrieved[b, i] += w * state[b, at + i]
        # last: ``new`` may be ``state`` itself (the slot written is the oldest, read above)
        _write_step(state[b], new[b], n, proj[b], chunk_proj[b], proj_bias, chunk_bias, head,
                    window, chunk_len, size, heads)


@njit(cache=True, nogil=True, inline="always")
def _write_step(state: np.ndarray, new: np.ndarray, n: int, proj: np.ndarray,
                chunk_proj: np.ndarray, proj_bias: np.ndarray, chunk_bias: np.ndarray,
                head: int, window: int, chunk_len: int, size: int, heads: int) -> None:
    """One env's new state: this step's slot (step, valid, chunk key, state key, state
    value) over the oldest, the head moved onto it, the newest projections shifted (this
    step's in). The chunk key is the mean of the L newest chunk-key projections plus bias."""
    d = chunk_bias.shape[0]
    slot = (head + 1) % window
    at = slot * size
    new[at] = n
    new[at + 1] = 1.0
    for i in range(d):
        total = chunk_proj[i]
        for m in range(chunk_len - 1):
            total += state[heads + 1 + m * d + i]
        new[at + 2 + i] = total / chunk_len + chunk_bias[i]
        new[at + 2 + d + i] = proj[2 * d + i] + proj_bias[2 * d + i]
        new[at + 2 + 2 * d + i] = proj[3 * d + i] + proj_bias[3 * d + i]
    new[heads] = slot
    if chunk_len > 1:
        recent = heads + 1
        for m in range(chunk_len - 2):
            for i in range(d):
                new[recent + m * d + i] = state[recent + (m + 1) * d + i]
        for i in range(d):
            new[recent + (chunk_len - 2) * d + i] = chunk_proj[i]
