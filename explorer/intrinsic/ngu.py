"""Never Give Up's episodic novelty (Badia et al. 2020, arXiv:2002.06038), without the lifelong
modulator.

A controllable-state embedding ``f`` is trained by inverse dynamics (``dynamics``). Each env id
keeps an episodic memory of the embeddings of its current episode (the first observation
included). The bonus of a new observation ``x`` with k nearest stored neighbours at squared
distances ``d_i^2`` is (Algorithm 1 of the paper)

    d_n = max(d_i^2 / d_m^2 - xi, 0),   K_i = eps / (d_n + eps),   s = sqrt(sum_i K_i) + c,
    r = 1 / s if s <= s_m else 0,

where ``d_m^2`` is a running mean of the neighbours' squared distances (updated before it is
used); then ``f(x)`` joins the memory. Small memories are searched with batched torch; one that
outgrows ``faiss_threshold`` vectors moves to a flat FAISS ``EmbeddingMemory`` (FIFO beyond
``memory_capacity``). A batch's ``obs[0]`` continues its env id's episode unless
``episode_start[0]`` is set.

Shapes: T = time steps, B = envs, k = neighbours, E = ``embed_dim``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from explorer.core.networks import ObsSpec
from explorer.core.running_stats import HorizonMean
from explorer.core.seeding import seeded_init
from explorer.intrinsic.base import TransitionBatch, register_intrinsic
from explorer.intrinsic.dynamics import InverseDynamicsEmbedding, train_inverse_dynamics
from explorer.memory import EmbeddingMemory

__all__ = ["NGUBonus", "kernel_bonus"]

_TINY = 1e-12


def kernel_bonus(d2: Tensor, dist_mean: float, *, epsilon: float, cluster_distance: float,
                 c: float, max_similarity: float) -> Tensor:
    """NGU's inverse-kernel pseudo-count bonus from neighbour distances.

    Args:
        d2: ``(N, k)`` squared distances to the nearest stored embeddings; ``inf`` marks a
            missing neighbour (it adds nothing).
        dist_mean: ``d_m^2``, the running mean squared neighbour distance.
        epsilon: Kernel epsilon.
        cluster_distance: xi, normalised distances below it count as 0.
        c: Pseudo-count constant.
        max_similarity: s_m, the bonus is 0 where ``sqrt(sum K) + c > s_m``.

    Returns:
        ``(N,)`` bonuses.
    """
    finite = torch.isfinite(d2)
    normalized = torch.where(finite, d2, torch.zeros_like(d2)) / max(dist_mean, _TINY)
    normalized = (normalized - cluster_distance).clamp(min=0.0)
    kernel = torch.where(finite, epsilon / (normalized + epsilon), torch.zeros_like(d2))
    similarity = kernel.sum(dim=-1).sqrt() + c  # (N,)
    return torch.where(similarity > max_similarity, torch.zeros_like(similarity),
                       1.0 / similarity)


class _Memories:
    """The episodic memories of one batch's B env columns, while a batch is processed.

    Column ``b`` is either small (``buf[b, :lens[b]]``) or big (``big[b]``, FAISS).
    """

    def __init__(self, owner: NGUBonus, envs: int) -> None:
        self.owner = owner
        size, dim = owner.faiss_threshold, owner.embed_dim
        self.buf = torch.zeros(envs, size, dim, device=owner.device)  # (B, S, E)
        self.lens = torch.zeros(envs, dtype=torch.long, device=owner.device)  # (B,)
        self.big: list[EmbeddingMemory | None] = [None] * envs

    def load(self, b: int, stored: Tensor | EmbeddingMemory | None) -> None:
        """Puts a stored memory (``(n, E)`` tensor, FAISS memory or none) in column ``b``."""
        if isinstance(stored, EmbeddingMemory):
            self.big[b] = stored
        elif stored is not None:
            self.buf[b, :len(stored)] = stored
            self.lens[b] = len(stored)

    def export(self, b: int) -> Tensor | EmbeddingMemory:
        """Column ``b``'s memory to keep between batches: ``(n, E)`` tensor or FAISS memory."""
        big = self.big[b]
        return big if big is not None else self.buf[b, :int(self.lens[b])].clone()

    def reset(self, rows: Tensor) -> None:
        """Empties the memories of ``rows`` ``(B,)`` bool."""
        self.lens[rows] = 0
        for b in rows.nonzero().flatten().tolist():
            self.big[b] = None

    def knn(self, x: Tensor, rows: Tensor, k: int) -> Tensor:
        """Squared distances ``(B, k)`` from ``x`` ``(B, E)`` to each row's nearest stored
        embeddings (``inf`` where missing or not in ``rows``)."""
        d2 = torch.full((len(x), k), float("inf"), device=x.device)
        size = self.buf.shape[1]
        if size > 0:
            dist = (self.buf - x.unsqueeze(1)).square().sum(dim=-1)  # (B, S)
            empty = torch.arange(size, device=x.device) >= self.lens.unsqueeze(1)
            near = dist.masked_fill(empty, float("inf")).topk(min(k, size), largest=False)
            d2[:, :near.values.shape[1]] = near.values
        for b in rows.nonzero().flatten().tolist():
            big = self.big[b]
            if big is not None:
                distances, _ = big.search(x[b:b + 1], k)
                d2[b] = torch.from_numpy(distances[0]).to(x.device)
        return torch.where(rows.unsqueeze(1), d2, torch.full_like(d2, float("inf")))

    def add(self, x: Tensor, rows: Tensor) -> None:
        """Stores ``x[b]`` ``(B, E)`` in the memory of each row in ``rows`` ``(B,)`` bool."""
        size = self.buf.shape[1]
        is_big = torch.tensor([m is not None for m in self.big], device=x.device)
        small = rows & ~is_big & (self.lens < size)
        index = small.nonzero().flatten()
        self.buf[index, self.lens[index]] = x[index]
        self.lens[index] += 1
        for b in (rows & ~small).nonzero().flatten().tolist():
            big = self.big[b]
            if big is None:  # a full small memory moves to FAISS
                big = self.big[b] = EmbeddingMemory(self.owner.embed_dim, kind="flat",
                                                    use_gpu=self.owner.memory_gpu)
                big.add(self.buf[b, :int(self.lens[b])])
                self.lens[b] = 0
            new_id = int(big.add(x[b:b + 1])[0])
            if len(big) > self.owner.memory_capacity:  # ids are consecutive: drop the oldest
                big.remove([new_id - self.owner.memory_capacity])


@register_intrinsic("ngu")
class NGUBonus:
    """NGU episodic k-NN bonus; episodic.

    Attributes:
        model: Inverse-dynamics embedding ``f`` and its inverse model.
        memories: Env id -> that env's episodic memory: a ``(n, E)`` tensor while small, an
            ``EmbeddingMemory`` beyond ``faiss_threshold`` vectors.
        distances: ``d_m^2``, running mean squared distance to the k nearest neighbours.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 5e-4,
        embed_dim: int = 32,
        encoder: str = "auto",
        hidden_size: int = 128,
        k: int = 10,
        kernel_epsilon: float = 1e-3,
        cluster_distance: float = 8e-3,
        pseudo_count: float = 1e-3,
        max_similarity: float = 8.0,
        dist_horizon: int = 1000,
        memory_capacity: int = 30_000,
        faiss_threshold: int = 256,
        memory_gpu: bool | str = False,
        epochs: int = 1,
    ) -> None:
        """Builds the embedding with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: A, number of discrete actions.
            seed: Seeds the network init.
            device: Where networks and small memories live.
            lr: Adam learning rate of embedding and inverse model.
            embed_dim: E (paper: 32).
            encoder: Encoder kind for ``explorer.core.networks.build_encoder``.
            hidden_size: Encoder output / inverse-model hidden width.
            k: Neighbours (paper: 10).
            kernel_epsilon: Kernel epsilon.
            cluster_distance: xi (paper: 0.008).
            pseudo_count: c (paper: 0.001).
            max_similarity: s_m (paper: 8).
            dist_horizon: ``d_m^2`` is the mean of all steps' mean squared neighbour distance
                until this many steps, then an exponential average with weight 1/horizon.
            memory_capacity: Most embeddings kept per episode (oldest dropped first).
            faiss_threshold: Memories with more vectors than this use FAISS.
            memory_gpu: ``use_gpu`` of the FAISS memories.
            epochs: Gradient steps per ``update``.
        """
        if memory_capacity <= faiss_threshold:
            raise ValueError(f"memory_capacity ({memory_capacity}) must exceed faiss_threshold "
                             f"({faiss_threshold})")
        self.device = torch.device(device)
        self.embed_dim, self.k, self.epochs = embed_dim, k, epochs
        self.kernel = {"epsilon": kernel_epsilon, "cluster_distance": cluster_distance,
                       "c": pseudo_count, "max_similarity": max_similarity}
        self.memory_capacity, self.faiss_threshold = memory_capacity, faiss_threshold
        self.memory_gpu = memory_gpu
        with seeded_init(seed):
            self.model = InverseDynamicsEmbedding(obs_spec, num_actions, embed_dim, encoder,
                                                  hidden_size)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.memories: dict[int, Tensor | EmbeddingMemory] = {}
        self.distances = HorizonMean(dist_horizon)

    def embed(self, obs: dict[str, Tensor]) -> Tensor:
        """``f`` of time-major observations ``(T', B, *shape)`` -> ``(T', B, E)``, no grad."""
        with torch.no_grad():
            return self.model.embed_steps(obs)

    def _observe_distances(self, d2: Tensor) -> None:
        """Folds the mean of one step's finite squared neighbour distances into ``d_m^2``."""
        finite = d2[torch.isfinite(d2)]
        if finite.numel() == 0:
            return
        self.distances.update(float(finite.mean()))

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Episodic bonus of each ``obs[t+1]``; adds the observations to the memories.

        Args:
            batch: Transitions (``episode_start`` (T+1, B), ``env_ids`` (B,)).

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0``.
        """
        phi = self.embed(batch.obs)  # (T+1, B, E)
        steps, envs = batch.mask.shape
        ids = [int(i) for i in batch.env_ids.tolist()]
        start = batch.episode_start.to(self.device).bool()  # (T+1, B)
        valid = batch.mask.to(self.device) > 0  # (T, B)
        memories = _Memories(self, envs)
        for b, env_id in enumerate(ids):
            if not start[0, b]:
                memories.load(b, self.memories.get(env_id))
        unknown = torch.tensor([i not in self.memories for i in ids], device=self.device)
        memories.add(phi[0], start[0] | unknown)  # an episode's first observation
        bonus = torch.zeros(steps, envs, device=self.device)
        for t in range(steps):
            begins = start[t + 1]  # (B,)
            query = valid[t] & ~begins
            if query.any():
                d2 = memories.knn(phi[t + 1], query, self.k)  # (B, k)
                self._observe_distances(d2[query])
                value = kernel_bonus(d2, self.distances.mean, **self.kernel)  # (B,)
                bonus[t] = torch.where(query, value, torch.zeros_like(value))
            memories.reset(begins)
            memories.add(phi[t + 1], valid[t] | begins)
        for b, env_id in enumerate(ids):
            self.memories[env_id] = memories.export(b)
        return bonus.to(batch.mask.device)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Trains embedding and inverse model on the batch's valid transitions.

        Returns:
            ``{"loss", "inverse_accuracy", "dist_mean"}``.
        """
        metrics = train_inverse_dynamics(self.model, self.optimizer, batch, self.epochs)
        return {**metrics, "dist_mean": self.distances.mean}

    def state_dict(self) -> dict[str, Any]:
        memories = {k: m.state_dict() if isinstance(m, EmbeddingMemory) else m.cpu().clone()
                    for k, m in self.memories.items()}
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "memories": memories,
            "dist_mean": self.distances.mean,
            "dist_count": self.distances.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        # deep copy: torch would otherwise share state tensors with the source optimiser
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.memories = {}
        for key, saved in state["memories"].items():
            if isinstance(saved, dict):
                memory = EmbeddingMemory(self.embed_dim, kind="flat", use_gpu=self.memory_gpu)
                memory.load_state_dict(saved)
                self.memories[int(key)] = memory
            else:
                self.memories[int(key)] = saved.to(self.device).clone()
        self.distances.load_state_dict({"mean": state["dist_mean"],
                                        "count": state["dist_count"]})
