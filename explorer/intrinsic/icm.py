"""Intrinsic Curiosity Module (Pathak et al. 2017, arXiv:1705.05363).

A feature encoder ``phi`` is trained only through an inverse model ``g(phi(s), phi(s')) -> a``
(cross entropy), so it keeps what the agent can affect. A forward model
``f(phi(s), onehot(a)) -> phi(s')`` is trained on detached features (its loss does not reach
``phi``). Joint loss ``(1 - beta) * L_inv + beta * L_fwd`` with
``L_fwd = 1/2 ||f(phi(s), a) - phi(s')||^2``; the bonus is the forward model's surprise
``eta / 2 * ||f(phi(s), a) - phi(s')||^2`` (sum over features).

Shapes: T = time steps, B = envs, N = transitions, E = ``embed_dim``, A = actions.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explorer.core.networks import ObsSpec, mlp_layers
from explorer.core.seeding import seeded_init
from explorer.intrinsic.base import TransitionBatch, register_intrinsic
from explorer.intrinsic.dynamics import InverseDynamicsEmbedding

__all__ = ["ICMBonus"]


@register_intrinsic("icm")
class ICMBonus:
    """ICM forward-model surprise; non-episodic.

    Attributes:
        model: phi and the inverse model (``dynamics.InverseDynamicsEmbedding``).
        features: phi, obs -> ``(N, E)`` (``model.embed``).
        inverse_model: ``(N, 2E)`` -> ``(N, A)`` action logits (``model.inverse``).
        forward_model: ``(N, E + A)`` -> ``(N, E)`` predicted next features.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 1e-3,
        embed_dim: int = 256,
        encoder: str = "auto",
        hidden_size: int = 256,
        beta: float = 0.2,
        eta: float = 1.0,
        epochs: int = 1,
        feature_norm: bool = True,
    ) -> None:
        """Builds the three networks with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: A, number of discrete actions.
            seed: Seeds the network init.
            device: Where the networks live.
            lr: Adam learning rate (paper: 1e-3).
            embed_dim: E, feature width.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder`` ("auto": by spec).
            hidden_size: Encoder output width and hidden width of both models.
            beta: Weight of the forward loss against the inverse loss (paper: 0.2).
            eta: Bonus scale.
            epochs: Gradient steps per ``update``.
            feature_norm: End phi with a LayerNorm without affine parameters, so that
                ``||phi||^2 = E``. Not in the paper: without it the inverse loss keeps inflating
                the feature scale and the surprise grows with training instead of with novelty.
        """
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1]; got {beta}")
        self.device = torch.device(device)
        self.num_actions = num_actions
        self.beta = beta
        self.eta = eta
        self.epochs = epochs
        with seeded_init(seed):
            self.model = InverseDynamicsEmbedding(obs_spec, num_actions, embed_dim, encoder,
                                                  hidden_size, layer_norm=feature_norm)
            self.forward_model = nn.Sequential(
                *mlp_layers(embed_dim + num_actions, hidden_size, embed_dim))
        self.features, self.inverse_model = self.model.embed, self.model.inverse
        self.in_keys: tuple[str, ...] = self.model.in_keys
        # the names checkpoints hold
        self.networks = nn.ModuleDict({"features": self.features,
                                       "inverse_model": self.inverse_model,
                                       "forward_model": self.forward_model}).to(self.device)
        self.optimizer = torch.optim.Adam(self.networks.parameters(), lr=lr)

    def _forward_error(self, phi: Tensor, actions: Tensor, phi_next: Tensor) -> Tensor:
        """``1/2 ||f(phi, a) - phi_next||^2`` per transition: ``(..., E)`` -> ``(...)``."""
        onehot = F.one_hot(actions.to(self.device).long(), self.num_actions).float()
        predicted = self.forward_model(torch.cat([phi, onehot], dim=-1))
        return 0.5 * (predicted - phi_next).square().sum(dim=-1)

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Bonus ``eta / 2 * ||f(phi(s_t), a_t) - phi(s_{t+1})||^2``.

        Args:
            batch: Transitions (``obs`` (T+1, B, ...), ``actions``, ``mask`` (T, B)).

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device, 0 where ``mask == 0``.
        """
        mask = batch.mask
        valid = mask > 0
        actions = torch.where(valid, batch.actions, torch.zeros_like(batch.actions))
        with torch.no_grad():
            phi = self.model.embed_steps(batch.obs)  # (T+1, B, E)
            bonus = self.eta * self._forward_error(phi[:-1], actions, phi[1:])
        bonus = bonus.to(mask.device)
        return torch.where(valid, bonus, torch.zeros_like(bonus))

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Trains encoder + inverse model (inverse loss) and forward model (forward loss).

        Args:
            batch: Transitions; only those with ``mask > 0`` are used.

        Returns:
            ``loss``, ``inverse_loss``, ``forward_loss`` and ``inverse_accuracy`` of the last
            step (all 0 if the batch has no valid transition).
        """
        valid = batch.mask.to(self.device) > 0  # (T, B)
        metrics = {"loss": 0.0, "inverse_loss": 0.0, "forward_loss": 0.0,
                   "inverse_accuracy": 0.0}
        if not bool(valid.any()):
            return metrics
        actions = batch.actions.to(self.device)[valid].long()  # (N,)
        for _ in range(self.epochs):
            phi = self.model.embed_steps(batch.obs)  # (T+1, B, E)
            phi_now, phi_next = phi[:-1][valid], phi[1:][valid]  # (N, E) each
            inverse_loss, accuracy = self.inverse_model.loss(phi_now, phi_next, actions)
            forward_loss = self._forward_error(
                phi_now.detach(), actions, phi_next.detach()).mean()
            loss = (1.0 - self.beta) * inverse_loss + self.beta * forward_loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            metrics = {"loss": loss.item(), "inverse_loss": inverse_loss.item(),
                       "forward_loss": forward_loss.item(), "inverse_accuracy": accuracy}
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"networks": self.networks.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.networks.load_state_dict(state["networks"])
        # deep copy: torch would otherwise share state tensors with the source optimiser
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
