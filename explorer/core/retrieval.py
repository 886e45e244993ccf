"""Retrieval-augmented core (RA-RL, Goyal et al. 2022, arXiv:2206.05314) over the env's past.

The core sits where the GRU would: between the encoder and the policy / value heads. Its memory
is the env's own recent past (the window), cut into chunks of ``chunk_len`` steps aligned at
each episode's first step. Source ``episode`` retrieves chunks of the current episode only;
source ``run`` (``cross_episode``) also chunks of the env's earlier episodes still inside the
window (a chunk never straddles two episodes). At each step the encoder's features ``x_t``
query the memory:

1. keys: a chunk's summary is the mean of its states' features, projected to ``key_dim``;
   the query is ``x_t`` projected; scores are scaled dot products;
2. retrieval: the top ``k`` completed chunks inside the window (the last
   ``window_chunks * chunk_len`` steps) of the same episode (or of any, for ``run``) --
   fewer, or none, early on;
3. attention across the retrieved chunks (softmax of their scores), then across the states
   inside each chunk (softmax of ``x_t``'s query against each state's key), giving a
   ``key_dim`` summary of what was retrieved (zeros when nothing was);
4. output: ``relu(Linear([x_t, retrieved]))``, the heads' input.

State and refresh policy. The recurrent state that actors send with each rollout (as they do a
GRU's) is the window: ``W = window_chunks * chunk_len`` slots of (episode step, valid, chunk
key, state key, state value), kept as a ring, then the ring's head (the slot of the newest
step) and the chunk-key projections (``chunk_key`` without its bias) of the L - 1 newest steps:
the members, besides the next step, of the next chunk, whose key is the projection of their
mean, i.e. the mean of their projections plus the bias. A step's projections enter the window
as the network computed them at that step, and leave it W steps later: nothing is re-encoded,
so an actor step projects one new state, not the window. An actor step (T = 1) works on the
ring as it lies: it scores the stored keys of the chunks it can use, gathers the
picked chunks' slots, and writes its one new slot over the oldest (into a copy of the state:
one memcpy, no re-layout of the window). A sequence (the learner's T > 1) unrolls the ring
into time order once, and writes its result back as the ring a step-by-step run would have
left: both give the same state. Within a training sequence the learner recomputes every
step's features and projections with its current weights (gradients flow through keys,
queries, retrieved states and the encoder); the window the sequence starts from is the
behaviour policy's stored state, as a GRU's stored state in R2D2 -- at most
``max_policy_lag`` versions old, and gone after W steps. With equal weights the actor's
step-by-step retrieval and the learner's sequence retrieval see the same inputs and give the
same log-probs (tested).

The run memory (``source: run`` with ``memory_chunks`` N > 0): one memory of N chunks shared
by every env of every actor, candidates beside the window's chunks. It is a set of model
buffers (each entry: a chunk key, and its L states' keys and values), so it needs no service
and no new wire field: the weights broadcast carries it to the actors and the checkpoint saves
it, and an actor's step and the learner's recomputation of it see the same memory when they
see the same weights. The learner writes it: after each update, ``memory_inserts`` chunks drawn
from the batch (L valid steps of one episode each), encoded with the weights just trained, go
in first-in first-out. Refresh policy: an entry is never re-encoded; it is as fresh as the
update that wrote it and leaves after N / ``memory_inserts`` updates, so the memory's
staleness is bounded by that count. Gradients do not reach stored entries (they are
constants, like a frozen dataset of the past): they train the queries, the attention and the
encoder through the window's chunks and the query side.

Shapes: T = steps, B = envs, F = features, W = window slots, S = W + T, L = ``chunk_len``,
M = ``window_chunks``, k = ``k``, d = ``key_dim``, H = output width, P = slot width,
N' = filled run-memory entries.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["RetrievalCore"]


@functools.cache
def _kernel() -> Callable[..., None]:
    """The compiled actor step, imported on first use: numba loads in actors only (the
    learner's sequences run in torch, with autograd)."""
    from explorer.core.retrieval_kernel import core_step

    return core_step


class RetrievalCore(nn.Module):
    """Top-k chunk retrieval from the episode's recent past, two-level attention.

    Attributes:
        window: W, steps of the past kept in the state.
        slot_size: P = 2 + 3d, one window slot: episode step, valid, and the projections
            made when the step entered (chunk key, state key, state value).
        state_size: Width of the flat recurrent state, ``W * P + 1 + (L - 1) * d``: the ring
            of W slots, the head (index of the newest step's slot), then the chunk-key
            projections of the L - 1 newest steps, oldest first.
        out_size: H.
    """

    def __init__(self, features: int, *, k: int, chunk_len: int, window_chunks: int,
                 key_dim: int = 32, out_size: int | None = None,
                 cross_episode: bool = False, memory_chunks: int = 0) -> None:
        """Builds the projections.

        Args:
            features: F, the encoder's output width.
            k: Chunks retrieved per step (>= 1).
            chunk_len: L, steps per chunk (>= 1).
            window_chunks: Chunks the window holds (>= 1).
            key_dim: d, width of keys, queries and values.
            out_size: H (default F).
            cross_episode: Chunks of the env's earlier episodes inside the window are
                retrievable too (``source: run``); else only the current episode's.
            memory_chunks: N, chunks of the run memory shared by every env (0: none).

        Raises:
            ValueError: A size below 1 (below 0 for ``memory_chunks``).
        """
        super().__init__()
        if min(features, k, chunk_len, window_chunks, key_dim) < 1:
            raise ValueError(f"retrieval sizes must be >= 1; got features={features}, k={k}, "
                             f"chunk_len={chunk_len}, window_chunks={window_chunks}, "
                             f"key_dim={key_dim}")
        self.features, self.k, self.chunk_len, self.key_dim = features, k, chunk_len, key_dim
        self.cross_episode = cross_episode
        self.window = window_chunks * chunk_len
        self.slot_size = 2 + 3 * key_dim
        self.state_size = self.window * self.slot_size + 1 + (chunk_len - 1) * key_dim
        self.out_size = out_size or features
        # the four projections of a step's features, one layer: chunk query, state query,
        # state key, state value (d outputs each)
        self.project = nn.Linear(features, 4 * key_dim)
        self.chunk_key = nn.Linear(features, key_dim)  # of a chunk's mean features
        self.out = nn.Linear(features + key_dim, self.out_size)
        if memory_chunks < 0:
            raise ValueError(f"memory_chunks must be >= 0; got {memory_chunks}")
        self.memory_chunks = memory_chunks
        if memory_chunks:
            # the run memory: buffers, so the weights broadcast and the checkpoint carry it
            self.register_buffer("memory_keys", torch.zeros(memory_chunks, key_dim))
            self.register_buffer("memory_states",
                                 torch.zeros(memory_chunks, chunk_len, 2 * key_dim))
            self.register_buffer("memory_count", torch.zeros(1, dtype=torch.long))

    def memory_size(self) -> int:
        """Chunks in the run memory now (at most ``memory_chunks``)."""
        return min(int(self.memory_count[0]), self.memory_chunks) if self.memory_chunks else 0

    @torch.no_grad()
    def remember(self, x: Tensor, episode_start: Tensor, valid: Tensor, count: int) -> int:
        """Writes up to ``count`` chunks of a sequence into the run memory (FIFO).

        A chunk is L consecutive valid steps of one episode, at steps ``jL .. jL + L - 1`` of
        the sequence; which of them go in is drawn at random (torch's generator). An entry is
        the chunk's key and its states' keys and values as the current weights compute them,
        the same quantities a window slot holds; entries are never re-encoded, they leave
        after ``memory_chunks`` newer ones (see the module's docstring on refresh).

        Args:
            x: ``(T, B, F)`` features.
            episode_start: ``(T, B)`` bool.
            valid: ``(T, B)`` bool, steps that belong to an episode (not auto-reset padding).
            count: Chunks to write at most.

        Returns:
            Chunks written.
        """
        length, d = self.chunk_len, self.key_dim
        if not self.memory_chunks or count < 1 or x.shape[0] < length:
            return 0
        valid_chunk = valid.bool().unfold(0, length, length).all(-1)  # (C, B)
        begins = episode_start.bool().unfold(0, length, length)[..., 1:].any(-1)  # (C, B)
        where = (valid_chunk & ~begins).nonzero()  # (n, 2): chunk, env
        take = min(count, len(where), self.memory_chunks)
        if take == 0:
            return 0
        where = where[torch.randperm(len(where), device=where.device)[:take]]
        steps = x.unfold(0, length, length)[where[:, 0], where[:, 1]].transpose(1, 2)  # (n,L,F)
        keys = self.chunk_key(steps.mean(1))  # (n, d): the mean's projection, as in a window
        states = self.project(steps)[..., 2 * d:]  # (n, L, 2d): state keys, state values
        total = int(self.memory_count[0])
        slots = (total + torch.arange(take, device=x.device)) % self.memory_chunks
        self.memory_keys[slots] = keys.to(self.memory_keys.dtype)
        self.memory_states[slots] = states.to(self.memory_states.dtype)
        self.memory_count += take
        return take

    def _split(self, slots: Tensor) -> list[Tensor]:
        """Slots ``(..., P)`` -> episode step, valid, chunk key ``d`` (set where a chunk ends),
        state key ``d``, state value ``d`` (views)."""
        d = self.key_dim
        return [slots[..., 0], slots[..., 1] > 0.5, slots[..., 2:2 + d],
                slots[..., 2 + d:2 + 2 * d], slots[..., 2 + 2 * d:]]

    def _parts(self, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Flat state ``(B, state_size)`` -> ring ``(B, W, P)``, head ``(B,)`` and the L - 1
        newest chunk-key projections ``(L - 1, B, d)``, oldest first (views but the head)."""
        batch, ring_size = len(state), self.window * self.slot_size
        ring = state[:, :ring_size].view(batch, self.window, self.slot_size)
        recent = state[:, ring_size + 1:].view(batch, self.chunk_len - 1, self.key_dim)
        return ring, state[:, ring_size].long(), recent.transpose(0, 1)

    def _chunks(self, per_step: Tensor) -> Tensor:
        """``(S, B, C)`` -> ``(S, B, L, C)``: the L steps ending at each position."""
        pad = per_step.new_zeros((self.chunk_len - 1, *per_step.shape[1:]))
        return torch.cat([pad, per_step]).unfold(0, self.chunk_len, 1).transpose(2, 3)

    def forward(self, x: Tensor, state: Tensor, episode_start: Tensor,
                in_place: bool = False) -> tuple[Tensor, Tensor]:
        """Runs T steps for B envs.

        Args:
            x: ``(T, B, F)`` encoder features.
            state: ``(B, state_size)`` window before step 0 (zeros: empty).
            episode_start: ``(T, B)`` bool; step t begins an episode.
            in_place: An actor's step (T = 1, no autograd, CPU float32) may write the new
                window into ``state``'s memory and return ``state``: it then touches one
                slot per env, not a copy of the whole window. The caller must not need the
                old window afterwards. Ignored on every other path.

        Returns:
            ``(T, B, H)`` outputs and the window after step T-1 ``(B, state_size)``.
        """
        if x.shape[0] == 1 and self.runs_compiled(x, state):  # an actor's step
            return self._step(x.numpy()[0], state, episode_start.numpy()[0].astype(bool),
                              in_place)
        steps, batch, _ = x.shape
        window, length = self.window, self.chunk_len
        ring, head, p_recent = self._parts(state)
        order = (head[:, None] + 1 + torch.arange(window, device=x.device)) % window  # (B, W)
        ordered = ring.gather(1, order[..., None].expand(-1, -1, self.slot_size))  # (B, W, P)
        # the window in time order, oldest first: each (W, B, ...)
        p_step, p_valid, p_ckey, p_skey, p_sval = self._split(ordered.transpose(0, 1))
        start = episode_start.bool()
        # steps since the episode began: since the last start at or before t, else since
        # the window's newest step (one cummax, not a loop over t)
        at_t = torch.arange(steps, device=x.device)[:, None]  # (T, 1)
        last_start = torch.where(start, at_t, -1).cummax(0).values  # (T, B)
        n_step = torch.where(last_start >= 0, at_t - last_start,
                             p_step[-1] + 1 + at_t).to(p_step.dtype)
        step = torch.cat([p_step, n_step])  # (S, B)
        valid = torch.cat([p_valid, torch.ones_like(start)])  # (S, B)
        seq = step.shape[0]
        episode = ((step == 0) & valid).long().cumsum(0)  # (S, B) episode index
        first_valid = torch.cat([valid.new_zeros((length - 1, batch)), valid])[:seq]
        ends = valid & first_valid & (step >= length - 1) & ((step + 1) % length == 0)

        # projections of the new steps only; the window's were stored when they entered it
        # chunk keys by linearity: the mean of the chunk's projections, plus the bias
        recent = torch.cat([p_recent.to(x.dtype), nn.functional.linear(
            x, self.chunk_key.weight)])  # (L-1+T, B, d)
        chunk_keys = recent.unfold(0, length, 1).mean(-1) + self.chunk_key.bias  # (T, B, d)
        query, state_query, state_key, state_value = self.project(x).split(
            self.key_dim, dim=-1)  # each (T, B, d)
        keys = torch.cat([p_ckey, chunk_keys])  # (S, B, d)
        state_keys = torch.cat([p_skey, state_key])  # (S, B, d)
        state_values = torch.cat([p_sval, state_value])  # (S, B, d)

        # chunk-level scores of every query step against every chunk end: (T, B, S)
        scores = torch.einsum("tbd,sbd->tbs", query, keys) / math.sqrt(self.key_dim)
        pos = torch.arange(seq, device=x.device)
        at = window + torch.arange(steps, device=x.device)  # (T,) query positions
        in_window = (pos[None] < at[:, None]) & (pos[None] - length + 1 >= at[:, None] - window)
        usable = in_window[:, None, :] & ends.T.unsqueeze(0)  # (T, B, S)
        if not self.cross_episode:  # the query's own episode only
            usable = usable & (episode[window:].unsqueeze(-1) == episode.T.unsqueeze(0))
        scores = scores.masked_fill(~usable, float("-inf"))
        # the run memory's chunks are candidates too, after the window's S positions
        memory = self.memory_size()
        if memory:
            scores = torch.cat([scores, torch.einsum(
                "tbd,nd->tbn", query, self.memory_keys[:memory]) / math.sqrt(self.key_dim)], -1)
        top, index = scores.topk(min(self.k, seq + memory), dim=-1)  # (T, B, k')
        found = torch.isfinite(top)
        chunk_weight = torch.softmax(top, dim=-1).nan_to_num(0.0) * found  # (T, B, k')

        # state-level attention inside each retrieved chunk. The window's chunks, densely:
        # every position's L-state softmax (as if a chunk ended there), weighted by the chunk
        # weight of the chunk that does end there (0 unless picked), then one product with
        # the states' values -- a few large ops, where gathering the picked chunks' states
        # costs thousands of tiny ones and a scatter in the backward pass
        scale = 1.0 / math.sqrt(self.key_dim)
        weight = torch.zeros(steps, batch, seq + 1, dtype=x.dtype, device=x.device).scatter(
            -1, index.clamp(max=seq), chunk_weight)[..., :seq]  # (T, B, S); memory: column S
        state_logits = torch.einsum("tbd,sbd->bts", state_query, state_keys) * scale
        # the L states ending at each position s, oldest first, as (B, T, L, S) and
        # (B, L, S, d): the softmax then runs over a middle dimension, which torch does
        # ~10x faster than over a last dimension of L
        logits = torch.cat([state_logits.new_zeros((batch, steps, length - 1)), state_logits],
                           -1)  # (B, T, L - 1 + S)
        attend = torch.softmax(torch.stack([logits[..., m:m + seq] for m in range(length)], 2),
                               2) * weight.permute(1, 0, 2)[:, :, None]  # (B, T, L, S)
        values = torch.cat([state_values.new_zeros((length - 1, batch, self.key_dim)),
                            state_values])  # (L - 1 + S, B, d)
        values = torch.stack([values[m:m + seq] for m in range(length)], 1)  # (S, L, B, d)
        values = values.permute(2, 1, 0, 3).reshape(batch, length * seq, self.key_dim)
        retrieved = torch.bmm(attend.reshape(batch, steps, length * seq), values).transpose(
            0, 1)  # (T, B, d)
        if memory:  # the run memory's picked entries (constants: no gradient reaches them)
            picks = (index - seq).clamp(min=0).reshape(-1)  # (T*B*k',)
            stored = self.memory_states[:memory].to(x.dtype).transpose(0, 1).index_select(
                1, picks).view(length, steps, batch, -1, 2 * self.key_dim)  # (L, T, B, k', 2d)
            stored_keys, stored_values = stored.split(self.key_dim, -1)
            stored_attend = torch.softmax((state_query[:, :, None] * stored_keys).sum(-1)
                                          * scale, 0)  # (L, T, B, k'), L first: see above
            from_memory = chunk_weight * (index >= seq)  # (T, B, k')
            retrieved = retrieved + ((stored_attend * from_memory)[..., None]
                                     * stored_values).sum((0, 3))
        out = torch.relu(self.out(torch.cat([x, retrieved], dim=-1)))  # (T, B, H)

        keep = slice(seq - window, seq)
        new = torch.cat([step[keep, :, None], valid[keep, :, None].to(keys.dtype), keys[keep],
                         state_keys[keep], state_values[keep]], dim=-1)  # (W, B, P)
        # back into the ring as T single steps would leave it: newest at head + T
        head = (head + steps) % window  # (B,)
        order = (torch.arange(window, device=x.device) - head[:, None] - 1) % window  # (B, W)
        ring = new.detach().transpose(0, 1).gather(1, order[..., None].expand(
            -1, -1, self.slot_size))  # (B, W, P)
        return out, torch.cat([ring.reshape(batch, -1), head[:, None].to(ring.dtype),
                               recent[steps:].detach().transpose(0, 1).reshape(batch, -1)], 1)

    @staticmethod
    def runs_compiled(x: Tensor, state: Tensor) -> bool:
        """Whether a step on features ``x`` and window ``state`` can take the compiled path
        (``_step``, ``actor_step``): inference (no autograd), float32 on the CPU, the state
        contiguous. Callers check that it is one step (T = 1)."""
        return (not torch.is_grad_enabled() and x.is_cpu
                and x.dtype is state.dtype is torch.float32 and state.is_contiguous())

    def _step(self, x: np.ndarray, state: Tensor, start: np.ndarray,
              in_place: bool) -> tuple[Tensor, Tensor]:
        """One step (T = 1), on the ring as it lies; equals ``forward`` with T = 1.

        For inference only (no autograd, float32, on the CPU; ``forward`` runs any other step
        as a sequence of one).

        Args:
            x: ``(B, F)`` features.
            state: ``(B, state_size)``.
            start: ``(B,)`` bool, this step begins an episode.
            in_place: Write the new state into ``state``; else into a copy.

        Returns:
            ``(1, B, H)`` output and the new state (``state`` itself when ``in_place``).
        """
        if in_place:
            return self.actor_step(x, state, start).clone()[None], state
        new = state.clone()
        out = np.empty((len(x), self.out_size), np.float32)
        _kernel()(state.numpy(), new.numpy(), start, x, *self._numpy_weights(), self.window,
                  self.chunk_len, self.k, self.cross_episode, out)
        return torch.from_numpy(out)[None], new

    def actor_step(self, x: np.ndarray, state: Tensor, start: np.ndarray) -> Tensor:
        """An actor's step: moves the window in ``state`` on by one step, in place, and
        returns the ``(B, H)`` output (equal to ``forward``'s with T = 1).

        The whole step is one compiled call (``retrieval_kernel.core_step``) and this wrapper
        is kept to a few attribute reads: in an actor's loop, where every call starts with
        cold caches, the Python around the call cost as much as half the call. For that the
        output is a buffer that the next call overwrites: use it before stepping again.

        Args:
            x: ``(B, F)`` float32 features.
            state: ``(B, state_size)`` float32 CPU tensor, contiguous; written in place.
            start: ``(B,)`` bool, this step begins an episode.
        """
        out = self.__dict__.get("_actor_out")  # a plain attribute: no Module lookup
        if out is None or len(out) != len(x):
            out = self.__dict__["_actor_out"] = torch.empty(len(x), self.out_size)
        flat = state.numpy()
        _kernel()(flat, flat, start, x, *self._numpy_weights(), self.window, self.chunk_len,
                  self.k, self.cross_episode, out.numpy())
        return out

    def _numpy_weights(self) -> tuple[np.ndarray, ...]:
        """NumPy views of the weights and biases of ``project``, ``chunk_key`` and ``out``,
        then of the run memory's keys ``(N, d)``, states ``(N, L, 2d)`` and count ``(1,)``
        (empty, and 0, without a memory).

        Views, not copies: actors write new weights into the parameters' memory in place (no
        version bump), and a view sees them. Rebuilt only when a parameter's storage moved.
        The parameters are read from the layers' dicts: ``nn.Module.__getattr__`` would cost
        the actor's step a few microseconds each.
        """
        project, chunk_key, out = (self._modules[name]._parameters
                                   for name in ("project", "chunk_key", "out"))
        params = (project["weight"], project["bias"], chunk_key["weight"], chunk_key["bias"],
                  out["weight"], out["bias"])
        if self.memory_chunks:
            params += (self._buffers["memory_keys"], self._buffers["memory_states"],
                       self._buffers["memory_count"])
        key = [p.data_ptr() for p in params]
        if self.__dict__.get("_numpy_key") != key:
            views = tuple(p.detach().numpy() for p in params)
            if not self.memory_chunks:
                d = self.key_dim
                views += (np.zeros((0, d), np.float32),
                          np.zeros((0, self.chunk_len, 2 * d), np.float32),
                          np.zeros(1, np.int64))
            self._numpy_views = views
            self._numpy_key = key
        return self._numpy_views

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        """Loads weights saved before the four projections became one layer (``project``),
        and ones saved without a run memory (it starts empty)."""
        if self.memory_chunks and f"{prefix}memory_keys" not in state_dict:
            for name in ("memory_keys", "memory_states", "memory_count"):
                state_dict[f"{prefix}{name}"] = torch.zeros_like(self._buffers[name])
        old = ["chunk_query", "state_query", "state_key", "state_value"]
        if f"{prefix}chunk_query.weight" in state_dict:
            for part in ("weight", "bias"):
                state_dict[f"{prefix}project.{part}"] = torch.cat(
                    [state_dict.pop(f"{prefix}{name}.{part}") for name in old])
        super()._load_from_state_dict(state_dict, prefix, *args)
