"""The learning maths: APPO (V-trace) or PPO-clip updates of an actor-critic on a batch.

No sockets or processes here (``learner.worker`` does the plumbing), so this is testable
in-process. The advantage estimator is chosen once at construction, never branched on per step.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from explorer.specs import EnvSpec
from learner.batch import Batch
from learner.losses import (
    entropy_bonus,
    gae,
    normalize_advantages,
    policy_gradient_loss,
    value_loss,
    vtrace,
)
from learner.models import ActorCritic
from learner.value_norm import ValueNormalizer

__all__ = ["AppoTargets", "Learner", "PpoTargets", "resolve_device"]

Targets = tuple[torch.Tensor, torch.Tensor]  # (advantages (T, B), value targets (T, B))


class TargetEstimator(Protocol):
    """Turns a (mini)batch and the current policy's outputs into advantages and value targets."""

    def precompute(self, batch: Batch) -> Targets | None: ...

    def targets(self, mb: Batch, target_logp: torch.Tensor, values: torch.Tensor,
                pre: Targets | None) -> Targets: ...


class AppoTargets:
    """V-trace targets from the *current* policy and values, corrected for policy lag."""

    def __init__(self, gamma: float, rho_bar: float, c_bar: float) -> None:
        self.gamma, self.rho_bar, self.c_bar = gamma, rho_bar, c_bar

    def precompute(self, batch: Batch) -> Targets | None:
        return None

    def targets(self, mb: Batch, target_logp: torch.Tensor, values: torch.Tensor,
                pre: Targets | None) -> Targets:
        out = vtrace(mb.behaviour_logp, target_logp, mb.rewards, values,
                     self.gamma * (1.0 - mb.terminated), mb.ended, self.rho_bar, self.c_bar)
        return out.pg_advantages, out.vs


class PpoTargets:
    """GAE from the behaviour values, computed once per batch before the epochs."""

    def __init__(self, gamma: float, lam: float) -> None:
        self.gamma, self.lam = gamma, lam

    def precompute(self, batch: Batch) -> Targets | None:
        out = gae(batch.rewards, batch.behaviour_values, self.gamma * (1.0 - batch.terminated),
                  batch.ended, self.lam)
        return out.advantages, out.returns

    def targets(self, mb: Batch, target_logp: torch.Tensor, values: torch.Tensor,
                pre: Targets | None) -> Targets:
        assert pre is not None
        return pre


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Learner:
    """Owns the model and optimiser; ``train(batch)`` does one update and bumps the version."""

    def __init__(self, cfg: Any, env_spec: EnvSpec, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.model = ActorCritic(env_spec.obs_spec, env_spec.num_actions, cfg.model).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.estimator: TargetEstimator = (
            AppoTargets(cfg.gamma, cfg.vtrace_rho_bar, cfg.vtrace_c_bar) if cfg.algo == "appo"
            else PpoTargets(cfg.gamma, cfg.gae_lambda)
        )
        self.value_norm = ValueNormalizer(self.model) if cfg.normalize_values else None
        self.policy_version = 0
        self.updates = 0

    def set_lr_fraction(self, fraction: float) -> None:
        """Scale the learning rate (linear annealing passes 1 - progress)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * max(fraction, 0.0)

    def _minibatch_loss(self, mb: Batch, pre: Targets | None
                        ) -> tuple[torch.Tensor, dict, torch.Tensor]:
        cfg = self.cfg
        logits, values, _ = self.model(mb.obs, mb.core_state, mb.episode_start)  # (T+1, B, A)
        logits = logits[:-1]  # (T, B, A)
        logp_all = torch.log_softmax(logits, dim=-1)
        target_logp = logp_all.gather(-1, mb.actions.unsqueeze(-1)).squeeze(-1)  # (T, B)
        advantages, value_targets = self.estimator.targets(
            mb, target_logp.detach(), values.detach(), pre)
        if cfg.normalize_advantages:
            advantages = normalize_advantages(advantages, mb.mask)
        pg_loss = policy_gradient_loss(target_logp, mb.behaviour_logp, advantages, mb.mask,
                                       cfg.clip_coef)
        scale = self.model.value_std  # errors on the normalised scale the head learns
        v_loss = value_loss(values[:-1] / scale, value_targets / scale, mb.mask,
                            old_values=mb.behaviour_values[:-1] / scale,
                            clip_coef=cfg.value_clip_coef)
        entropy = entropy_bonus(logits, mb.mask)
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        with torch.no_grad():
            log_ratio = target_logp - mb.behaviour_logp
            denom = mb.mask.sum().clamp(min=1.0)
            approx_kl = (((log_ratio.exp() - 1) - log_ratio) * mb.mask).sum() / denom
            clipfrac = (((log_ratio.exp() - 1).abs() > cfg.clip_coef).float() * mb.mask).sum()
        metrics = {
            "losses/policy": pg_loss.item(), "losses/value": v_loss.item(),
            "losses/entropy": entropy.item(), "losses/approx_kl": approx_kl.item(),
            "losses/clipfrac": (clipfrac / denom).item(),
            "losses/value_target_mean": (value_targets * mb.mask).sum().item() / denom.item(),
        }
        return loss, metrics, value_targets

    def train(self, batch: Batch) -> dict[str, float]:
        """One update (``epochs`` x ``minibatches`` SGD steps) on ``batch``; returns metrics."""
        cfg = self.cfg
        batch = batch.to(self.device)
        pre = self.estimator.precompute(batch)
        num_envs = batch.actions.shape[1]
        metrics: dict[str, float] = {}
        for _ in range(cfg.epochs):
            order = torch.randperm(num_envs, device=self.device)
            for index in order.chunk(min(cfg.minibatches, num_envs)):
                mb_pre = None if pre is None else (pre[0][:, index], pre[1][:, index])
                mb = batch.select_envs(index)
                loss, metrics, value_targets = self._minibatch_loss(mb, mb_pre)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                metrics["losses/grad_norm"] = float(grad_norm)
                if self.value_norm is not None:
                    self.value_norm.update(value_targets, mb.mask)
        metrics["losses/lr"] = self.optimizer.param_groups[0]["lr"]
        self.updates += 1
        self.policy_version += 1
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy_version": self.policy_version,
            "updates": self.updates,
            "value_norm": self.value_norm.state_dict() if self.value_norm else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_version = int(state["policy_version"])
        self.updates = int(state["updates"])
        if self.value_norm is not None and state.get("value_norm"):
            self.value_norm.load_state_dict(state["value_norm"])
