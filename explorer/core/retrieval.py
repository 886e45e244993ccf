"""Retrieval-augmented core (RA-RL, Goyal et al. 2022, arXiv:2206.05314), episodic source.

The core sits where the GRU would: between the encoder and the policy / value heads. Its memory
is the env's own current episode, cut into chunks of ``chunk_len`` steps aligned at the
episode's first step. At each step the encoder's features ``x_t`` query the memory:

1. keys: a chunk's summary is the mean of its states' features, projected to ``key_dim``;
   the query is ``x_t`` projected; scores are scaled dot products;
2. retrieval: the top ``k`` completed chunks of the same episode inside the window (the last
   ``window_chunks * chunk_len`` steps) -- fewer, or none, early in an episode;
3. attention across the retrieved chunks (softmax of their scores), then across the states
   inside each chunk (softmax of ``x_t``'s query against each state's key), giving a
   ``key_dim`` summary of what was retrieved (zeros when nothing was);
4. output: ``relu(Linear([x_t, retrieved]))``, the heads' input.

State and refresh policy. The recurrent state that actors send with each rollout (as they do a
GRU's) is the window: ``W = window_chunks * chunk_len`` slots of (features, episode step,
valid, chunk key, state key, state value), kept as a ring, plus the ring's head (the slot of
the newest step). A step's features and projections enter the window as the network computed
them at that step, and leave it W steps later: nothing is re-encoded, so an actor step
projects one new state, not the window. An actor step (T = 1) works on the ring as it lies:
it scores the stored chunk keys, gathers the picked chunks' slots, and writes its one new slot
over the oldest (into a copy of the state: one memcpy, no re-layout of the window). A sequence
(the learner's T > 1) unrolls the ring into time order once, and writes its result back as the
ring a step-by-step run would have left: both give the same state. Within a training
sequence the learner recomputes every step's features and projections with its current weights
(gradients flow through keys, queries, retrieved states and the encoder); the window the
sequence starts from is the behaviour policy's stored state, as a GRU's stored state in R2D2 --
at most ``max_policy_lag`` versions old, and gone after W steps. With equal weights the
actor's step-by-step retrieval and the learner's sequence retrieval see the same inputs and
give the same log-probs (tested).

Shapes: T = steps, B = envs, F = features, W = window slots, S = W + T, L = ``chunk_len``,
k = ``k``, d = ``key_dim``, H = output width, P = slot width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RetrievalCore"]


class RetrievalCore(nn.Module):
    """Top-k chunk retrieval from the episode's recent past, two-level attention.

    Attributes:
        window: W, steps of the past kept in the state.
        slot_size: P = F + 2 + 3d, one window slot: features, episode step, valid, and the
            projections made when the step entered (chunk key, state key, state value).
        state_size: Width of the flat recurrent state, ``(W + 1) * P``: the ring of W slots,
            then a header slot whose first value is the head (index of the newest step's
            slot). Whole slots keep every env's slots on one ``(B * (W + 1), P)`` grid, so the
            actor's step gathers and writes slots by row index.
        out_size: H.
    """

    def __init__(self, features: int, *, k: int, chunk_len: int, window_chunks: int,
                 key_dim: int = 32, out_size: int | None = None) -> None:
        """Builds the projections.

        Args:
            features: F, the encoder's output width.
            k: Chunks retrieved per step (>= 1).
            chunk_len: L, steps per chunk (>= 1).
            window_chunks: Chunks the window holds (>= 1).
            key_dim: d, width of keys, queries and values.
            out_size: H (default F).

        Raises:
            ValueError: A size below 1.
        """
        super().__init__()
        if min(features, k, chunk_len, window_chunks, key_dim) < 1:
            raise ValueError(f"retrieval sizes must be >= 1; got features={features}, k={k}, "
                             f"chunk_len={chunk_len}, window_chunks={window_chunks}, "
                             f"key_dim={key_dim}")
        self.features, self.k, self.chunk_len, self.key_dim = features, k, chunk_len, key_dim
        self.window = window_chunks * chunk_len
        self.slot_size = features + 2 + 3 * key_dim
        self.state_size = (self.window + 1) * self.slot_size
        self.out_size = out_size or features
        self.chunk_query = nn.Linear(features, key_dim)
        self.chunk_key = nn.Linear(features, key_dim)
        self.state_query = nn.Linear(features, key_dim)
        self.state_key = nn.Linear(features, key_dim)
        self.state_value = nn.Linear(features, key_dim)
        self.out = nn.Linear(features + key_dim, self.out_size)
        # index helpers of the actor's step, made once (not saved with the weights)
        self.register_buffer("_slot_ids", torch.arange(self.window), persistent=False)
        self.register_buffer("_chunk_offsets", torch.arange(1 - chunk_len, 1), persistent=False)

    def _split(self, slots: Tensor) -> list[Tensor]:
        """Slots ``(..., P)`` -> features ``F``, episode step, valid, chunk key ``d`` (set where
        a chunk ends), state key ``d``, state value ``d`` (views)."""
        f, d = self.features, self.key_dim
        return [slots[..., :f], slots[..., f], slots[..., f + 1] > 0.5,
                slots[..., f + 2:f + 2 + d], slots[..., f + 2 + d:f + 2 + 2 * d],
                slots[..., f + 2 + 2 * d:]]

    def _ring(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """Flat state ``(B, state_size)`` -> ring ``(B, W, P)`` (a view) and head ``(B,)``."""
        slots = state.view(len(state), self.window + 1, self.slot_size)
        return slots[:, :-1], slots[:, -1, 0].long()

    def _slots(self, state: Tensor) -> list[Tensor]:
        """The window in time order, oldest first: per-slot parts, each ``(W, B, ...)``."""
        ring, head = self._ring(state)
        order = (head[:, None] + 1 + torch.arange(self.window, device=state.device)) % self.window
        slots = ring.gather(1, order[..., None].expand(-1, -1, self.slot_size))  # (B, W, P)
        return self._split(slots.transpose(0, 1))

    def _chunks(self, per_step: Tensor) -> Tensor:
        """``(S, B, C)`` -> ``(S, B, L, C)``: the L steps ending at each position."""
        pad = per_step.new_zeros((self.chunk_len - 1, *per_step.shape[1:]))
        return torch.cat([pad, per_step]).unfold(0, self.chunk_len, 1).transpose(2, 3)

    def forward(self, x: Tensor, state: Tensor, episode_start: Tensor) -> tuple[Tensor, Tensor]:
        """Runs T steps for B envs.

        Args:
            x: ``(T, B, F)`` encoder features.
            state: ``(B, state_size)`` window before step 0 (zeros: empty).
            episode_start: ``(T, B)`` bool; step t begins an episode.

        Returns:
            ``(T, B, H)`` outputs and the window after step T-1 ``(B, state_size)``.
        """
        if x.shape[0] == 1:
            return self._step(x[0], state, episode_start[0])
        steps, batch, _ = x.shape
        window, length = self.window, self.chunk_len
        p_feat, p_step, p_valid, p_ckey, p_skey, p_sval = self._slots(state)
        start = episode_start.bool()
        n_step = []  # each (B,): steps since the episode began
        prev = p_step[-1]
        for t in range(steps):
            prev = torch.where(start[t], torch.zeros_like(prev), prev + 1)
            n_step.append(prev)
        feat = torch.cat([p_feat.to(x.dtype), x])  # (S, B, F)
        step = torch.cat([p_step, torch.stack(n_step)])  # (S, B)
        valid = torch.cat([p_valid, torch.ones_like(start)])  # (S, B)
        seq = feat.shape[0]
        episode = ((step == 0) & valid).long().cumsum(0)  # (S, B) episode index
        first_valid = torch.cat([valid.new_zeros((length - 1, batch)), valid])[:seq]
        ends = valid & first_valid & (step >= length - 1) & ((step + 1) % length == 0)

        # projections of the new steps only; the window's were stored when they entered it
        recent = feat[-(steps + length - 1):]  # (T+L-1, B, F); W >= L
        chunk_mean = recent.unfold(0, length, 1).mean(-1)  # (T, B, F) chunk ending at t
        keys = torch.cat([p_ckey, self.chunk_key(chunk_mean)])  # (S, B, d)
        state_keys = torch.cat([p_skey, self.state_key(x)])  # (S, B, d)
        state_values = torch.cat([p_sval, self.state_value(x)])  # (S, B, d)

        # chunk-level scores of every query step against every chunk end: (T, B, S)
        query = self.chunk_query(x)  # (T, B, d)
        scores = torch.einsum("tbd,sbd->tbs", query, keys) / math.sqrt(self.key_dim)
        pos = torch.arange(seq, device=x.device)
        at = window + torch.arange(steps, device=x.device)  # (T,) query positions
        in_window = (pos[None] < at[:, None]) & (pos[None] - length + 1 >= at[:, None] - window)
        same = episode[window:].unsqueeze(-1) == episode.T.unsqueeze(0)  # (T, B, S)
        usable = in_window[:, None, :] & same & ends.T.unsqueeze(0)  # (T, B, S)
        scores = scores.masked_fill(~usable, float("-inf"))
        top, index = scores.topk(min(self.k, seq), dim=-1)  # (T, B, k')
        found = torch.isfinite(top)
        chunk_weight = torch.softmax(top, dim=-1).nan_to_num(0.0) * found  # (T, B, k')

        # state-level attention inside each retrieved chunk
        rows = torch.arange(batch, device=x.device)[:, None, None]  # (B, 1, 1)
        pick = index.permute(1, 0, 2)  # (B, T, k')
        picked_keys = self._chunks(state_keys).transpose(0, 1)[rows, pick]  # (B, T, k', L, d)
        picked_values = self._chunks(state_values).transpose(0, 1)[rows, pick]
        state_query = self.state_query(x).transpose(0, 1)  # (B, T, d)
        logits = torch.einsum("btd,btjld->btjl", state_query, picked_keys)
        attend = torch.softmax(logits / math.sqrt(self.key_dim), dim=-1)  # (B, T, k', L)
        per_chunk = torch.einsum("btjl,btjld->btjd", attend, picked_values)  # (B, T, k', d)
        retrieved = torch.einsum("tbj,btjd->tbd", chunk_weight, per_chunk)  # (T, B, d)
        out = torch.relu(self.out(torch.cat([x, retrieved], dim=-1)))  # (T, B, H)

        keep = slice(seq - window, seq)
        new = torch.cat([feat[keep], step[keep, :, None], valid[keep, :, None].to(feat.dtype),
                         keys[keep], state_keys[keep], state_values[keep]], dim=-1)
        # back into the ring as T single steps would leave it: newest at head + T
        head = (self._ring(state)[1] + steps) % window  # (B,)
        order = (torch.arange(window, device=x.device) - head[:, None] - 1) % window  # (B, W)
        ring = new.detach().transpose(0, 1).gather(1, order[..., None].expand(
            -1, -1, self.slot_size))  # (B, W, P)
        header = ring.new_zeros(batch, 1, self.slot_size)
        header[:, 0, 0] = head.to(ring.dtype)
        return out, torch.cat([ring, header], dim=1).reshape(batch, self.state_size)

    def _step(self, x: Tensor, state: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
        """One step (the actor's), on the ring as it lies; equals ``forward`` with T = 1.

        Written for few torch ops per step (the actor's cost is their count, not their size):
        the four projections of ``x`` are one matrix product, the picked chunks' slots one
        gather, products are ``bmm``.

        Args:
            x: ``(B, F)`` features.
            state: ``(B, state_size)``.
            start: ``(B,)`` bool, this step begins an episode.

        Returns:
            ``(1, B, H)`` output and the new state (a copy with one slot and the head written).
        """
        batch, d, f = x.shape[0], self.key_dim, self.features
        window, length, size = self.window, self.chunk_len, self.slot_size
        ring, head = self._ring(state)  # (B, W, P), (B,)
        grid = state.view(batch * (window + 1), size)  # every env's slots, by row
        first = torch.arange(batch, device=x.device)[:, None] * (window + 1)  # (B, 1) row 0
        _, step, valid, ckey, _, _ = self._split(ring)  # each (B, W, ...)
        # the four projections of x in one product: chunk query, state query, key, value
        weight = torch.cat([self.chunk_query.weight, self.state_query.weight,
                            self.state_key.weight, self.state_value.weight])  # (4d, F)
        bias = torch.cat([self.chunk_query.bias, self.state_query.bias, self.state_key.bias,
                          self.state_value.bias])
        proj = torch.addmm(bias, x, weight.T)  # (B, 4d)
        n = torch.where(start.bool(), 0, step.gather(1, head[:, None])[:, 0].long() + 1)  # (B,)
        age = (head[:, None] - self._slot_ids) % window + 1  # (B, W): 1 = the previous step
        # a usable chunk ends in a slot of this episode (age <= n) whose chunk lies in the
        # window (age <= W - L + 1) at a chunk boundary of its episode
        limit = torch.clamp(n, max=window - length + 1)[:, None]  # (B, 1)
        usable = valid & (age <= limit) & ((step.long() + 1) % length == 0) & (step >= length - 1)
        scores = torch.bmm(ckey, proj[:, :d, None])[..., 0] / math.sqrt(d)  # (B, W)
        top, index = scores.masked_fill(~usable, float("-inf")).topk(min(self.k, window))
        found = torch.isfinite(top)  # (B, k')
        chunk_weight = torch.softmax(top, dim=-1).nan_to_num(0.0) * found  # (B, k')
        members = (index[..., None] + self._chunk_offsets) % window  # (B, k', L), oldest first
        k_ = members.shape[1]
        picked = grid.index_select(0, (first + members.view(batch, -1)).view(-1))
        picked = picked.view(batch, k_ * length, size)  # (B, k'L, P)
        logits = torch.bmm(picked[..., f + 2 + d:f + 2 + 2 * d], proj[:, d:2 * d, None])
        attend = torch.softmax(logits.view(batch, k_, length) / math.sqrt(d), dim=-1)
        # (B, 1, k'L) @ (B, k'L, d): chunk weight x state weight, summed over chunks and states
        weights = (chunk_weight[..., None] * attend).view(batch, 1, k_ * length)
        retrieved = torch.bmm(weights, picked[..., f + 2 + 2 * d:])[:, 0]  # (B, d)
        out = torch.relu(self.out(torch.cat([x, retrieved], dim=-1)))  # (B, H)

        # the new slot goes over the oldest; its chunk is the L - 1 newest slots and x
        new_head = (head + 1) % window
        recent = (new_head[:, None] + self._chunk_offsets[:-1]) % window  # (B, L-1)
        recent = grid.index_select(0, (first + recent).view(-1))[:, :f]  # (B(L-1), F)
        chunk = torch.cat([recent.view(batch, length - 1, f).to(x.dtype), x[:, None]], dim=1)
        slot = torch.cat([x, n[:, None].to(x.dtype), torch.ones_like(x[:, :1]),
                          self.chunk_key(chunk.mean(1)), proj[:, 2 * d:]], dim=-1)  # (B, P)
        new = state.clone()
        new_grid = new.view(batch * (window + 1), size)
        new_grid[first[:, 0] + new_head] = slot.detach()
        new_grid[first[:, 0] + window, 0] = new_head.to(new.dtype)
        return out[None], new
