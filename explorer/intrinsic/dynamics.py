"""Inverse dynamics: learn an embedding by predicting the action between two observations.

ICM, E3B and NGU all want features of what the agent controls: an embedding ``phi`` trained only
through ``g(phi(s), phi(s')) -> a`` (cross entropy) keeps the controllable part of an
observation and drops what changes on its own (noise, distractors). The three share this model.

Shapes: T = time steps, B = envs, N = transitions, E = embedding width, A = actions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explorer.core.networks import ObsSpec, build_embedding_net, mlp_layers
from explorer.core.shapes import flatten_obs, unflatten_time_batch
from explorer.intrinsic.base import TransitionBatch

__all__ = ["InverseDynamics", "InverseDynamicsEmbedding", "train_inverse_dynamics"]


class InverseDynamics(nn.Sequential):
    """``(N, 2E)`` ``[phi(s), phi(s')]`` -> ``(N, A)`` logits of the action between them.

    A ``Sequential`` (hidden ReLU layer, small-gain output) so that its parameters keep the
    names ``0.*`` / ``2.*`` that saved checkpoints hold.
    """

    def __init__(self, embed_dim: int, hidden_size: int, num_actions: int) -> None:
        """Builds the layers (the caller seeds the init)."""
        super().__init__(*mlp_layers(2 * embed_dim, hidden_size, num_actions, gain=0.01))

    def loss(self, phi: Tensor, phi_next: Tensor, actions: Tensor) -> tuple[Tensor, float]:
        """Cross entropy of the taken actions, and the accuracy of the predicted ones.

        Args:
            phi: ``(N, E)`` embeddings of ``s``.
            phi_next: ``(N, E)`` embeddings of ``s'``.
            actions: ``(N,)`` int64 actions taken from ``s`` to ``s'``; N >= 1.

        Returns:
            Scalar loss (with grad) and the accuracy (measured before any step).
        """
        logits = self(torch.cat([phi, phi_next], dim=-1))  # (N, A)
        accuracy = float((logits.argmax(dim=-1) == actions).float().mean())
        return F.cross_entropy(logits, actions), accuracy


class InverseDynamicsEmbedding(nn.Module):
    """Observation embedding trained by predicting the action between two observations.

    Attributes:
        embed: obs -> ``(N, E)`` (``explorer.core.networks.build_embedding_net``).
        inverse: ``[phi(s), phi(s')]`` -> ``(N, A)`` action logits.
        in_keys: Observation keys the encoder reads.
    """

    def __init__(self, obs_spec: ObsSpec, num_actions: int, embed_dim: int, encoder: str,
                 hidden_size: int, *, layer_norm: bool = False) -> None:
        """Builds the networks (the caller seeds the init).

        Args:
            obs_spec: Observation spec.
            num_actions: A.
            embed_dim: E.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder``.
            hidden_size: Encoder output and inverse-model hidden width.
            layer_norm: End ``embed`` with a LayerNorm without affine parameters.
        """
        super().__init__()
        self.embed = build_embedding_net(obs_spec, encoder, hidden_size, embed_dim,
                                         layer_norm=layer_norm)
        self.in_keys: tuple[str, ...] = self.embed.in_keys
        self.inverse = InverseDynamics(embed_dim, hidden_size, num_actions)

    def embed_steps(self, obs: dict[str, Tensor]) -> Tensor:
        """Embeds time-major observations.

        Args:
            obs: Key -> ``(T', B, *shape)``.

        Returns:
            ``(T', B, E)`` embeddings on the module's device.
        """
        lead = obs[self.in_keys[0]].shape[:2]
        device = next(self.parameters()).device
        return unflatten_time_batch(self.embed(flatten_obs(obs, self.in_keys, device)), *lead)

    def loss(self, batch: TransitionBatch) -> tuple[Tensor, float]:
        """Inverse-dynamics cross entropy over the valid transitions of ``batch``.

        Args:
            batch: Transitions (``obs`` (T+1, B, ...), ``actions`` / ``mask`` (T, B)).

        Returns:
            Scalar loss (0 with no valid transition) and the action accuracy.
        """
        phi = self.embed_steps(batch.obs)  # (T+1, B, E)
        device = phi.device
        valid = batch.mask.to(device) > 0  # (T, B)
        actions = batch.actions.to(device)[valid]  # (N,)
        if actions.numel() == 0:
            return phi.sum() * 0.0, 0.0
        return self.inverse.loss(phi[:-1][valid], phi[1:][valid], actions)


def train_inverse_dynamics(model: InverseDynamicsEmbedding, optimizer: torch.optim.Optimizer,
                           batch: TransitionBatch, epochs: int) -> dict[str, float]:
    """``epochs`` gradient steps of the inverse-dynamics loss on ``batch``.

    Returns:
        ``{"loss", "inverse_accuracy"}`` of the last step (measured before it).
    """
    loss, accuracy = torch.zeros(()), 0.0
    for _ in range(epochs):
        loss, accuracy = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"loss": float(loss.detach()), "inverse_accuracy": accuracy}
