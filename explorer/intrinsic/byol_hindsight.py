"""BYOL-Hindsight (Jarrett et al. 2023, "Curiosity in Hindsight", arXiv:2211.10515).

Prediction-error curiosity is fooled by noise (a "noisy TV" stays unpredictable forever). Here
the world model also sees a hindsight latent ``z_t = q(f(s_t), a_t, f_target(s_{t+1}))`` from a
generator that looks at the outcome, and predicts ``f_target(s_{t+1})`` from
``(f(s_t), a_t, z_t)``. So that ``z`` cannot simply copy the outcome, it must be independent of
``(s_t, a_t)``: then it may carry only the stochastic part of the transition. A contrastive
critic ``C(s, a, z) = u(f(s), a) . v(z)`` measures the dependence with InfoNCE over the batch
(other transitions' ``z`` as negatives); ``I = log n - CE`` lower-bounds the mutual information.

Two optimisers play the min-max game, alternating each update:

* critic: minimise ``CE`` (maximise ``I``) on detached inputs;
* encoder + generator + world model: minimise ``mean BYOL loss + lambda * max(I, 0)``.

The target encoder is an EMA of the online one. The bonus is the z-conditioned world model's
BYOL loss ``|| g/|g| - sg(f_target(s_{t+1}))/|...| ||^2``: noise explained by ``z`` earns none.

Shapes: T = time steps, B = envs, N = transitions, E = ``embed_dim``, Z = ``latent_dim``,
A = actions.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explorer.core.networks import ObsSpec, build_embedding_net, mlp_layers
from explorer.core.seeding import seeded_generator, seeded_init
from explorer.core.shapes import flatten_obs, flatten_time_batch, unflatten_time_batch
from explorer.intrinsic.base import TransitionBatch, register_intrinsic
from explorer.intrinsic.byol_explore import byol_loss, ema_update

__all__ = ["BYOLHindsightBonus"]


def _mlp(in_size: int, hidden: int, out_size: int) -> nn.Sequential:
    """``(N, in_size)`` -> ``(N, out_size)`` through two ReLU layers of width ``hidden``."""
    return nn.Sequential(*mlp_layers(in_size, hidden, out_size, hidden_layers=2))


class _Critic(nn.Module):
    """Separable critic: scores ``(n, n)`` = ``u(f(s), a) v(z)^T``."""

    def __init__(self, context_size: int, latent_dim: int, hidden: int, critic_dim: int) -> None:
        super().__init__()
        self.context = _mlp(context_size, hidden, critic_dim)
        self.latent = _mlp(latent_dim, hidden, critic_dim)

    def info_nce(self, context: Tensor, z: Tensor) -> Tensor:
        """Cross entropy of picking each row's own ``z`` among the ``n`` in the batch.

        Args:
            context: ``(n, E + A)`` ``[f(s), onehot(a)]``.
            z: ``(n, Z)`` latents, row i from the same transition as ``context[i]``.

        Returns:
            Scalar ``CE``; ``log n - CE`` is the InfoNCE bound on ``I((s, a); z)``.
        """
        scores = self.context(context) @ self.latent(z).T  # (n, n)
        return F.cross_entropy(scores, torch.arange(len(z), device=z.device))


@register_intrinsic("byol_hindsight")
class BYOLHindsightBonus:
    """Hindsight-conditioned latent prediction error; non-episodic.

    Attributes:
        online: Online encoder, obs -> ``(N, E)``.
        target: EMA of ``online``.
        generator: ``(N, 2E + A)`` -> ``(N, Z)`` hindsight latent (tanh-bounded).
        world_model: ``(N, E + A + Z)`` -> ``(N, E)`` predicted target embedding.
        critic: Contrastive critic of ``z``'s dependence on ``(s, a)``.
        optimizer: Adam over online encoder, generator and world model.
        critic_optimizer: Adam over the critic.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 3e-4,
        critic_lr: float = 3e-4,
        embed_dim: int = 64,
        encoder: str = "auto",
        hidden_size: int = 256,
        latent_dim: int = 16,
        critic_dim: int = 64,
        adversarial_weight: float = 1.0,
        nce_batch: int = 256,
        target_decay: float = 0.99,
        use_hindsight: bool = True,
        epochs: int = 1,
    ) -> None:
        """Builds the networks with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: A, number of discrete actions.
            seed: Seeds the network init and the InfoNCE subsampling.
            device: Where networks live.
            lr: Adam learning rate of encoder, generator and world model.
            critic_lr: Adam learning rate of the critic.
            embed_dim: E.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder``.
            hidden_size: Encoder output and MLP hidden width.
            latent_dim: Z, width of the hindsight latent.
            critic_dim: Width of the critic's two embeddings.
            adversarial_weight: lambda, weight of the critic's bound in the model loss.
            nce_batch: Transitions per InfoNCE batch (a random subset of the valid ones).
            target_decay: tau, EMA decay of the target encoder.
            use_hindsight: ``False`` gives the ablation ``z = 0`` (plain one-step BYOL
                prediction error; the critic is not trained).
            epochs: Alternating critic / model steps per ``update``.
        """
        self.device = torch.device(device)
        self.num_actions, self.latent_dim = num_actions, latent_dim
        self.adversarial_weight, self.nce_batch = adversarial_weight, nce_batch
        self.target_decay, self.use_hindsight, self.epochs = target_decay, use_hindsight, epochs
        context = embed_dim + num_actions
        with seeded_init(seed):
            self.online = build_embedding_net(obs_spec, encoder, hidden_size, embed_dim)
            self.generator = _mlp(context + embed_dim, hidden_size, latent_dim)
            self.world_model = _mlp(context + latent_dim, hidden_size, embed_dim)
            self.critic = _Critic(context, latent_dim, hidden_size, critic_dim)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        for module in (self.online, self.target, self.generator, self.world_model, self.critic):
            module.to(self.device)
        self.in_keys: tuple[str, ...] = self.online.in_keys
        model_params = [*self.online.parameters(), *self.generator.parameters(),
                        *self.world_model.parameters()]
        self.optimizer = torch.optim.Adam(model_params, lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr)
        self.rng = seeded_generator(seed, self.device)

    def _forward(self, batch: TransitionBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Embeds every transition and predicts its outcome.

        Returns:
            ``(T, B)`` BYOL losses (with grad), ``(T, B, E + A)`` contexts
            ``[f(s_t), onehot(a_t)]`` and ``(T, B, Z)`` latents.
        """
        steps, envs = batch.mask.shape
        obs = flatten_obs(batch.obs, self.in_keys, self.device)
        with torch.no_grad():
            targets = unflatten_time_batch(self.target(obs), steps + 1, envs)[1:]  # (T, B, E)
        first = {k: v[:steps * envs] for k, v in obs.items()}
        embeddings = unflatten_time_batch(self.online(first), steps, envs)  # (T, B, E)
        real = batch.mask.to(self.device) > 0  # (T, B)
        # actions of masked (auto-reset) steps may be anything, even -1: use 0 there
        actions = torch.where(real, batch.actions.to(self.device), 0)
        actions = F.one_hot(actions, self.num_actions).float()  # (T, B, A)
        context = torch.cat([embeddings, actions], dim=-1)  # (T, B, E + A)
        if self.use_hindsight:
            # the generator only shapes z; it does not train the encoder
            z = torch.tanh(self.generator(torch.cat([context.detach(), targets], dim=-1)))
        else:
            z = context.new_zeros(steps, envs, self.latent_dim)
        prediction = self.world_model(torch.cat([context, z], dim=-1))  # (T, B, E)
        return byol_loss(prediction, targets), context, z

    def _nce_rows(self, valid: Tensor) -> Tensor:
        """Flat indices of a random subset (at most ``nce_batch``) of the valid transitions."""
        rows = flatten_time_batch(valid).nonzero().flatten()
        order = torch.randperm(len(rows), generator=self.rng, device=self.device)
        return rows[order[:self.nce_batch]]

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Hindsight-conditioned prediction error of each transition.

        Args:
            batch: Transitions.

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0``.
        """
        with torch.no_grad():
            losses, _, _ = self._forward(batch)
        bonus = losses * (batch.mask.to(self.device) > 0)
        return bonus.to(batch.mask.device)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Alternates a critic step and an encoder + generator + world-model step.

        Returns:
            ``{"loss", "prediction_loss", "critic_loss", "mutual_information"}`` of the last
            epoch (``mutual_information``: the critic's InfoNCE bound, nats).
        """
        valid = batch.mask.to(self.device) > 0  # (T, B)
        metrics = {"loss": 0.0, "prediction_loss": 0.0, "critic_loss": 0.0,
                   "mutual_information": 0.0}
        if not bool(valid.any()):
            return metrics
        for _ in range(self.epochs):
            losses, context, z = self._forward(batch)
            prediction_loss = losses[valid].mean()
            loss = prediction_loss
            if self.use_hindsight:
                rows = self._nce_rows(valid)
                context_n = flatten_time_batch(context)[rows].detach()  # (n, E + A)
                z_n = flatten_time_batch(z)[rows]  # (n, Z)
                log_n = math.log(len(rows))
                # critic step: maximise the InfoNCE bound on fixed inputs
                critic_loss = self.critic.info_nce(context_n, z_n.detach())
                self.critic_optimizer.zero_grad(set_to_none=True)
                critic_loss.backward()
                self.critic_optimizer.step()
                # model step: make z uninformative about (s, a) for the updated critic
                self.critic.requires_grad_(False)
                bound = log_n - self.critic.info_nce(context_n, z_n)
                self.critic.requires_grad_(True)
                loss = loss + self.adversarial_weight * bound.clamp(min=0.0)
                metrics["critic_loss"] = float(critic_loss.detach())
                metrics["mutual_information"] = float(bound.detach())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            ema_update(self.target, self.online, self.target_decay)
            metrics["loss"] = float(loss.detach())
            metrics["prediction_loss"] = float(prediction_loss.detach())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "generator": self.generator.state_dict(),
            "world_model": self.world_model.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("online", "target", "generator", "world_model", "critic"):
            getattr(self, name).load_state_dict(state[name])
        # deep copies: torch would otherwise share state tensors with the source optimisers
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.critic_optimizer.load_state_dict(copy.deepcopy(state["critic_optimizer"]))
        self.rng.set_state(state["rng"])
