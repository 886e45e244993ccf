"""The retrieval core's actor step, compiled (numba): one call for the whole core.

An actor step over 16 envs projects 16 feature vectors, scores 16 chunk ends per env, picks
the top k, attends over their states, writes one slot of the window and applies the output
layer: a few hundred thousand multiply-adds, but as NumPy ~30 small array calls, each paying
its dispatch and, between env steps, a cold cache. Inside an actor's loop that overhead,
not the arithmetic, was the cost of retrieval; here it is one call: the dense layers are BLAS
products (``np.dot``) and the rest one loop per env.

Loaded on an actor's first retrieval step, never by the learner (its sequences run in torch,
with autograd). ``cache=True`` keeps the compiled code on disk: only the first process on a
machine pays the compile (a few seconds; loading it back takes ~0.5 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["core_step"]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def core_step(state: np.ndarray, new: np.ndarray, start: np.ndarray, x: np.ndarray,
              w_proj: np.ndarray, b_proj: np.ndarray, w_chunk: np.ndarray,
              b_chunk: np.ndarray, w_out: np.ndarray, b_out: np.ndarray,
              memory_keys: np.ndarray, memory_states: np.ndarray, memory_count: np.ndarray,
              window: int, chunk_len: int, k: int, cross_episode: bool,
              out: np.ndarray) -> None:
    """One step of ``RetrievalCore`` for B envs.

    Args:
        state: ``(B, state_size)`` the flat state before this step, in ``RetrievalCore``'s
            layout: W slots of P = 2 + 3d (step, valid, chunk key, state key, state value),
            the head, the chunk-key projections of the L - 1 newest steps.
        new: ``(B, state_size)`` where the state after this step goes: a copy of ``state``
            (then only this step's slot, the head and the newest projections are written) or
            ``state`` itself (updated in place: each env's slot written is the oldest, read
            before it is overwritten).
        start: ``(B,)`` bool, this step begins an episode.
        x: ``(B, F)`` the encoder's features.
        w_proj: ``(4d, F)``, b_proj: ``(4d,)`` the ``project`` layer: chunk query, state
            query, state key, state value.
        w_chunk: ``(d, F)``, b_chunk: ``(d,)`` the ``chunk_key`` layer.
        w_out: ``(H, F + d)``, b_out: ``(H,)`` the ``out`` layer.
        memory_keys: ``(N, d)`` chunk keys of the run memory, memory_states: ``(N, L, 2d)``
            their states' keys and values, memory_count: ``(1,)`` chunks ever written (the
            first ``min(count, N)`` entries are filled); N = 0 without a memory.
        window: W.
        chunk_len: L.
        k: chunks retrieved at most.
        cross_episode: chunks of the env's earlier episodes in the window count too.
        out: ``(B, H)`` output: ``relu(out([x, retrieved]))``.
    """
    batch = x.shape[0]
    d = b_chunk.shape[0]
    scale = np.float32(1.0 / np.sqrt(d))
    size = 2 + 3 * d  # P; slot s of env b starts at state[b, s * P]
    heads = window * size  # the head's column; the newest projections follow it
    # candidates: the current episode's chunk ends (W / L of them) or, across episodes,
    # any slot of the window
    chunks = window if cross_episode else window // chunk_len
    memory = min(memory_count[0], memory_keys.shape[0])  # N', the filled entries
    picks = min(k, chunks + memory)
    proj = np.dot(x, w_proj.T)  # (B, 4d) without bias
    chunk_proj = np.dot(x, w_chunk.T)  # (B, d) without bias
    queries = (proj[:, :2 * d] + b_proj[:2 * d]) * scale  # (B, 2d): chunk, state query
    if memory:  # every env's chunk query against the memory's keys at once: (B, N')
        memory_scores = np.dot(np.ascontiguousarray(queries[:, :d]), memory_keys[:memory].T)
    else:
        memory_scores = np.zeros((batch, 0), np.float32)
    retrieved = np.zeros((batch, d), np.float32)
    scores = np.empty(chunks, np.float32)
    ends = np.empty(chunks, np.int64)
    chosen = np.empty(picks, np.int64)  # window slot of the chunk's end, or W + memory entry
    weights = np.empty(picks, np.float32)
    logits = np.empty(chunk_len, np.float32)
    for b in range(batch):
        env = state[b]
        query = queries[b]
        head = int(env[heads])
        n = 0 if start[b] else int(env[head * size]) + 1
        # a chunk is usable when it is whole (its end is step >= L - 1 of its episode) and
        # its first step is still in the window; this episode's chunk ends lie at ages
        # n % L + 1 + jL
        limit = min(n - chunk_len + 1, window - chunk_len + 1)
        phase = n % chunk_len
        for j in range(chunks):
            if cross_episode:  # a slot of age j + 1 ends a whole chunk of its episode
                age = j + 1
                slot = _wrap(head + 1 - age, window)
                step = int(env[slot * size])
                ok = (age <= window - chunk_len + 1 and step >= chunk_len - 1
                      and (step + 1) % chunk_len == 0)
            else:
                age = phase + 1 + j * chunk_len
                slot = _wrap(head + 1 - age, window)
                ok = age <= limit
            ends[j] = slot
            if ok and env[slot * size + 1] > 0.5:
                acc = np.float32(0.0)
                for i in range(d):
                    acc += env[slot * size + 2 + i] * query[i]
                scores[j] = acc
            else:
                scores[j] = -np.inf
        # the top min(k, usable chunks + N') by score, in one pass over the candidates (their
        # order does not matter to the softmax): the window's chunk ends, then the memory's
        count = 0
        low = 0  # the weakest of the chosen, once ``picks`` are chosen
        for j in range(chunks + memory):
            if j < chunks:
                score = scores[j]
                if score == -np.inf:
                    continue
                at = ends[j]
            else:
                score = memory_scores[b, j - chunks]
                at = window + j - chunks
            if count < picks:
                chosen[count] = at
                weights[count] = score
                count += 1
                if count == picks:
                    low = _weakest(weights)
            elif score > weights[low]:
                chosen[low] = at
                weights[low] = score
                low = _weakest(weights)
        best = -np.inf
        for p in range(count):
            best = max(best, weights[p])
        total = np.float32(0.0)
        for p in range(count):
            weights[p] = np.exp(weights[p] - best)
            total += weights[p]
        for p in range(count):
            # attention over the chunk's L states, oldest first, with the state query; a
            # window chunk's state m is in slot (first + m) % W (key at 2 + d, value at
            # 2 + 2d), a memory entry's in memory_states[entry, m] (key, then value)
            stored = chosen[p] >= window
            entry = chosen[p] - window
            first = chosen[p] - chunk_len + 1
            high = -np.inf
            for m in range(chunk_len):
                acc = np.float32(0.0)
                if stored:
                    for i in range(d):
                        acc += memory_states[entry, m, i] * query[d + i]
                else:
                    at = _wrap(first + m, window) * size + 2 + d
                    for i in range(d):
                        acc += env[at + i] * query[d + i]
                logits[m] = acc
                high = max(high, acc)
            norm = np.float32(0.0)
            for m in range(chunk_len):
                logits[m] = np.exp(logits[m] - high)
                norm += logits[m]
            share = weights[p] / (total * norm)
            for m in range(chunk_len):
                w = logits[m] * share
                if stored:
                    for i in range(d):
                        retrieved[b, i] += w * memory_states[entry, m, d + i]
                else:
                    at = _wrap(first + m, window) * size + 2 + 2 * d
                    for i in range(d):
                        retrieved[b, i] += w * env[at + i]
        # last: ``new`` may be ``state`` itself (the slot written is the oldest, read above)
        _write_step(env, new[b], n, proj[b], chunk_proj[b], b_proj, b_chunk, head, window,
                    chunk_len, size, heads)
    dense = np.dot(np.concatenate((x, retrieved), 1), w_out.T)  # (B, H) without bias
    for b in range(batch):
        for o in range(out.shape[1]):
            out[b, o] = max(dense[b, o] + b_out[o], np.float32(0.0))


@njit(cache=True, nogil=True, inline="always")
def _write_step(state: np.ndarray, new: np.ndarray, n: int, proj: np.ndarray,
                chunk_proj: np.ndarray, proj_bias: np.ndarray, chunk_bias: np.ndarray,
                head: int, window: int, chunk_len: int, size: int, heads: int) -> None:
    """One env's new state: this step's slot (step, valid, chunk key, state key, state
    value) over the oldest, the head moved onto it, the newest projections shifted (this
    step's in). The chunk key is the mean of the L newest chunk-key projections plus bias."""
    d = chunk_bias.shape[0]
    slot = _wrap(head + 1, window)
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


@njit(cache=True, nogil=True, inline="always")
def _wrap(index: int, window: int) -> int:
    """``index % window`` for ``-window <= index < 2 * window`` (a ring position one lap off
    at most), without the integer division a modulo costs on every state read."""
    if index < 0:
        return index + window
    if index >= window:
        return index - window
    return index


@njit(cache=True, nogil=True, inline="always")
def _weakest(weights: np.ndarray) -> int:
    """Index of the smallest of ``weights`` (the chosen chunk a better one replaces)."""
    low = 0
    for p in range(1, weights.shape[0]):
        if weights[p] < weights[low]:
            low = p
    return low
