"""Exploration via Elliptical Episodic Bonuses, E3B (Henaff et al. 2022, arXiv:2210.05805).

An embedding ``phi`` is trained only through an inverse-dynamics model
``g(phi(s), phi(s')) -> a`` (cross entropy), so it keeps what the agent controls. Within an
episode of env ``e`` the bonus of a new observation is its elliptical novelty

    b(s') = phi(s')^T C^{-1} phi(s'),   C = lambda I + sum_{s in episode so far} phi(s) phi(s)^T,

after which ``phi(s')`` joins ``C``. ``C^{-1}`` is kept per env id (float64) and updated with the
Sherman-Morrison rank-one formula; it restarts at ``I / lambda`` with the first observation of
each episode. A batch's ``obs[0]`` continues the previous batch of its env id (it was that
batch's last observation and is already in ``C``) unless ``episode_start[0]`` is set.

Shapes: T = time steps, B = envs, N = transitions, E = ``embed_dim``, A = actions.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from explorer.core.networks import ObsSpec
from explorer.core.seeding import seeded_init
from explorer.intrinsic.base import TransitionBatch, register_intrinsic
from explorer.intrinsic.dynamics import InverseDynamicsEmbedding, train_inverse_dynamics

__all__ = ["E3BBonus", "sherman_morrison"]


def sherman_morrison(cov_inv: Tensor, x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Adds ``x x^T`` to the covariances of ``rows``; returns the new inverses and the bonus.

    Args:
        cov_inv: ``(B, E, E)`` symmetric inverses ``C^{-1}``.
        x: ``(B, E)`` vectors.
        rows: ``(B,)`` bool, which rows get ``x x^T`` added.

    Returns:
        ``(B, E, E)`` updated inverses and ``(B,)`` ``x^T C^{-1} x`` before the update.
    """
    v = torch.bmm(cov_inv, x.unsqueeze(-1)).squeeze(-1)  # (B, E) = C^{-1} x
    q = (x * v).sum(dim=-1)  # (B,)
    delta = v.unsqueeze(-1) * v.unsqueeze(-2) / (1.0 + q).view(-1, 1, 1)  # (B, E, E)
    return cov_inv - delta * rows.view(-1, 1, 1).to(delta.dtype), q


@register_intrinsic("e3b")
class E3BBonus:
    """E3B elliptical episodic bonus; episodic.

    Attributes:
        model: Inverse-dynamics embedding ``phi`` and its inverse model.
        cov_inv: Env id -> ``(E, E)`` float64 ``C^{-1}`` of that env's current episode.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 3e-4,
        embed_dim: int = 64,
        encoder: str = "auto",
        hidden_size: int = 256,
        ridge: float = 0.1,
        epochs: int = 1,
    ) -> None:
        """Builds the embedding with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: A, number of discrete actions.
            seed: Seeds the network init.
            device: Where networks and covariances live.
            lr: Adam learning rate of embedding and inverse model.
            embed_dim: E.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder``.
            hidden_size: Encoder output / inverse-model hidden width.
            ridge: lambda, ``C_0 = lambda I`` (paper: 0.1).
            epochs: Gradient steps per ``update``.
        """
        if ridge <= 0:
            raise ValueError(f"ridge must be positive; got {ridge}")
        self.device = torch.device(device)
        self.ridge = float(ridge)
        self.epochs = epochs
        with seeded_init(seed):
            self.model = InverseDynamicsEmbedding(obs_spec, num_actions, embed_dim, encoder,
                                                  hidden_size)
        self.model.to(self.device)
        self.embed_dim = embed_dim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.cov_inv: dict[int, Tensor] = {}

    def embed(self, obs: dict[str, Tensor]) -> Tensor:
        """``phi`` of time-major observations ``(T', B, *shape)`` -> ``(T', B, E)``, no grad."""
        with torch.no_grad():
            return self.model.embed_steps(obs)

    def _initial(self, count: int) -> Tensor:
        """``(count, E, E)`` float64 ``I / lambda``."""
        eye = torch.eye(self.embed_dim, dtype=torch.float64, device=self.device)
        return (eye / self.ridge).expand(count, -1, -1).clone()

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Elliptical bonus of each ``obs[t+1]``; advances the per-env covariances.

        Args:
            batch: Transitions (``episode_start`` (T+1, B), ``env_ids`` (B,)).

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0``.
        """
        phi = self.embed(batch.obs).double()  # (T+1, B, E)
        steps, envs = batch.mask.shape
        ids = [int(i) for i in batch.env_ids.tolist()]
        start = batch.episode_start.to(self.device).bool()  # (T+1, B)
        valid = batch.mask.to(self.device) > 0  # (T, B)
        known = torch.tensor([i in self.cov_inv for i in ids], device=self.device)
        fresh = start[0] | ~known  # (B,)
        cov_inv = self._initial(envs)
        for b, env_id in enumerate(ids):
            if not fresh[b]:
                cov_inv[b] = self.cov_inv[env_id]
        cov_inv, _ = sherman_morrison(cov_inv, phi[0], fresh)
        reset = self._initial(envs)
        bonus = torch.zeros(steps, envs, dtype=torch.float64, device=self.device)
        for t in range(steps):
            begins = start[t + 1]  # (B,) obs[t+1] opens an episode: restart its covariance
            cov_inv = torch.where(begins.view(-1, 1, 1), reset, cov_inv)
            # a masked step that opens no episode carries no real observation: skip it
            cov_inv, q = sherman_morrison(cov_inv, phi[t + 1], valid[t] | begins)
            bonus[t] = torch.where(valid[t] & ~begins, q, torch.zeros_like(q))
        for b, env_id in enumerate(ids):
            self.cov_inv[env_id] = cov_inv[b].clone()
        return bonus.float().to(batch.mask.device)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Trains embedding and inverse model on the batch's valid transitions.

        Returns:
            ``{"loss": inverse cross entropy, "inverse_accuracy": action accuracy}``.
        """
        return train_inverse_dynamics(self.model, self.optimizer, batch, self.epochs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "cov_inv": {k: v.cpu().clone() for k, v in self.cov_inv.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        # deep copy: torch would otherwise share state tensors with the source optimiser
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.cov_inv = {int(k): v.to(self.device, torch.float64).clone()
                        for k, v in state["cov_inv"].items()}
