"""The learning maths: APPO (V-trace) or PPO-clip updates of an actor-critic on a batch.

No sockets or processes here (``learner.worker`` does the plumbing), so this is testable
in-process. The advantage estimator is chosen once at construction, never branched on per step.

Rewards are organised in *streams*, each with its own value head and discount. Stream 0 holds
``ext_coef * clip(r_ext)`` plus every bonus that shares the main head; a bonus configured with
``separate_value_head`` gets its own stream (RND's two-stream advantage). Every stream's
rewards are fixed *before* advantages are computed, and the policy gradient uses
``sum_s coef_s * A_s``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import nn

from explorer.core.adam import LightAdam
from explorer.core.networks import make_actor_critic
from explorer.core.specs import EnvSpec
from learner.batch import Batch, take_transitions
from learner.bonuses import BonusSet
from learner.losses import (
    entropy_bonus,
    gae,
    normalize_advantages,
    policy_gradient_loss,
    value_loss,
    vtrace,
)
from learner.text_rewards import OniTextReward
from learner.value_norm import ValueNormalizer

__all__ = ["AppoTargets", "Learner", "PpoTargets", "Stream", "resolve_device"]

Targets = tuple[torch.Tensor, torch.Tensor]  # (advantages (T, B), value targets (T, B))

#: Cap on decoupled PPO's pi_learner / pi_actor weight: one transition whose action the
#: learner now favours far more than the actor did cannot dominate a minibatch.
PROXIMAL_WEIGHT_CLIP = 5.0


@dataclass
class Stream:
    """One reward stream: its rewards, episode cuts, discount, advantage weight, value head."""

    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) 0/1: no bootstrap after this step
    ended: torch.Tensor  # (T, B) 0/1: trace cut (episode ended)
    gamma: float
    coef: float
    head: int

    def select_envs(self, index: torch.Tensor) -> Stream:
        return Stream(self.rewards[:, index], self.terminated[:, index], self.ended[:, index],
                      self.gamma, self.coef, self.head)

    def select_samples(self, index: torch.Tensor) -> Stream:
        """Transitions ``index`` of the flattened (T*B) stream, as one step (1, n)."""
        steps = self.rewards.shape[0]
        return Stream(*(take_transitions(x, index, steps)
                        for x in (self.rewards, self.terminated, self.ended)),
                      self.gamma, self.coef, self.head)


class TargetEstimator(Protocol):
    """Advantages and value targets of one stream."""

    def precompute(self, stream: Stream, values: torch.Tensor) -> Targets | None: ...

    def targets(self, stream: Stream, behaviour_logp: torch.Tensor, target_logp: torch.Tensor,
                values: torch.Tensor, pre: Targets | None) -> Targets: ...


class AppoTargets:
    """V-trace targets from the *current* policy and values, corrected for policy lag."""

    def __init__(self, rho_bar: float, c_bar: float) -> None:
        self.rho_bar, self.c_bar = rho_bar, c_bar

    def precompute(self, stream: Stream, values: torch.Tensor) -> Targets | None:
        return None

    def targets(self, stream: Stream, behaviour_logp: torch.Tensor, target_logp: torch.Tensor,
                values: torch.Tensor, pre: Targets | None) -> Targets:
        out = vtrace(behaviour_logp, target_logp, stream.rewards, values,
                     stream.gamma * (1.0 - stream.terminated), stream.ended,
                     self.rho_bar, self.c_bar)
        return out.pg_advantages, out.vs


class PpoTargets:
    """GAE from the values at collection time, computed once per batch before the epochs."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def precompute(self, stream: Stream, values: torch.Tensor) -> Targets | None:
        out = gae(stream.rewards, values, stream.gamma * (1.0 - stream.terminated),
                  stream.ended, self.lam)
        return out.advantages, out.returns

    def targets(self, stream: Stream, behaviour_logp: torch.Tensor, target_logp: torch.Tensor,
                values: torch.Tensor, pre: Targets | None) -> Targets:
        assert pre is not None
        return pre


def _flag_last(items: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """``(item, is_last)`` pairs, one item ahead (a generator's length is unknown)."""
    previous, have = None, False
    for item in items:
        if have:
            yield previous, False
        previous, have = item, True
    if have:
        yield previous, True


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Learner:
    """Owns model, optimiser and bonuses; ``train(batch)`` does one update, bumps the version.

    Args:
        cfg: the root config (``cfg.learner`` hyper-parameters, ``cfg.intrinsic`` bonuses).
        env_spec: observation spec and action count.
        device: where the model trains.
    """

    def __init__(self, cfg: Any, env_spec: EnvSpec, device: torch.device) -> None:
        self.cfg = cfg.learner
        self.device = device
        self.model = make_actor_critic(cfg, env_spec).to(device)
        #: torch.optim.Adam's update without its ~0.85 s torch._dynamo import at start-up
        self.parameters = list(self.model.parameters())  # once: a module walk per call
        self.optimizer = LightAdam(self.parameters, lr=self.cfg.lr,
                                   eps=self.cfg.adam_eps)
        self.estimator: TargetEstimator = (
            AppoTargets(self.cfg.vtrace_rho_bar, self.cfg.vtrace_c_bar)
            if self.cfg.algo == "appo" else PpoTargets(self.cfg.gae_lambda)
        )
        self.bonuses = BonusSet(cfg.intrinsic, env_spec, cfg.seed, device)
        labeler = cfg.llm_labeler
        self.text_reward = (OniTextReward(labeler.coef, labeler.beta)
                            if labeler.labeler and cfg.text.source else None)
        self.value_norm = ValueNormalizer(self.model) if self.cfg.normalize_values else None
        #: PPO with a feed-forward model shuffles single transitions into minibatches (as
        #: CleanRL); V-trace and recurrent cores need whole env columns (sequences).
        # (the config refuses ``samples`` with APPO or a core: see its minibatch_split check)
        split = self.cfg.minibatch_split
        self.flat_minibatches = split == "samples" or (
            split == "auto" and self.cfg.algo == "ppo" and self.model.core is None)
        self.lag_correction = self.cfg.algo == "ppo" and self.cfg.ppo_lag_correction
        self.policy_version = 0
        self.updates = 0

    def set_lr_fraction(self, fraction: float) -> None:
        """Scale the learning rate (linear annealing passes 1 - progress)."""
        self.optimizer.lr = self.cfg.lr * max(fraction, 0.0)

    # -- rewards ---------------------------------------------------------------------------
    def streams(self, batch: Batch, observe: bool = True
                ) -> tuple[list[Stream], dict[str, float]]:
        """Every reward stream of ``batch``, bonuses included (computed, not yet trained).

        ``observe=False`` leaves reward normalisers untouched.
        """
        cfg = self.cfg
        extrinsic = batch.rewards
        if cfg.reward_clip is not None:
            extrinsic = extrinsic.clamp(-cfg.reward_clip, cfg.reward_clip)
        bonus_rewards, metrics = self.bonuses.rewards(batch, observe)
        main = cfg.ext_coef * extrinsic
        if self.text_reward is not None and batch.text_hash is not None:
            text_reward, text_metrics = self.text_reward.rewards(
                batch.text_hash, batch.text_count, batch.mask, batch.ended, batch.env_ids,
                observe)
            main = main + text_reward
            metrics.update(text_metrics)
        extra: list[Stream] = []
        never = torch.zeros_like(batch.terminated)
        for bonus_cfg, reward in zip(self.bonuses.configs, bonus_rewards, strict=True):
            if not bonus_cfg.separate_value_head:
                main = main + bonus_cfg.coef * reward
                continue
            cuts = (batch.terminated, batch.ended) if bonus_cfg.episodic_returns else (never, never)
            extra.append(Stream(reward, *cuts, bonus_cfg.gamma, bonus_cfg.coef, 1 + len(extra)))
        main_stream = Stream(main, batch.terminated, batch.ended, cfg.gamma, 1.0, 0)
        metrics["losses/reward_mean"] = float((main * batch.mask).sum() / batch.mask.sum())
        return [main_stream, *extra], metrics

    def advantages(self, batch: Batch) -> torch.Tensor:
        """The combined advantages (T, B) the policy loss would see for ``batch`` right now.

        For inspection and tests (changes no state); ``train`` computes the same quantity per
        minibatch.
        """
        batch = batch.to(self.device)
        streams, _ = self.streams(batch, observe=False)
        with torch.no_grad():
            batch, learner_values = self._correct_lag(batch)
            logits, values, _ = self.model.forward_all(batch.obs, batch.core_state,
                                                       batch.episode_start)
            target_logp = self._logp(logits[:-1], batch.actions)
            pre = self._precompute(batch, streams, learner_values)
            advantages, _ = self._combine(streams, batch.behaviour_logp, target_logp, values, pre)
        return advantages

    # -- updates ---------------------------------------------------------------------------
    @staticmethod
    def _logp(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def _correct_lag(self, batch: Batch) -> tuple[Batch, torch.Tensor | None]:
        """Decoupled PPO (``ppo_lag_correction``): the batch with the learner's log-probs as
        the proximal policy and the learner's main values in place of the actors'; also
        every value head ``(T+1, B, V)``. Unchanged (and ``None``) otherwise.

        Why: the actors act on weights at least one update old, so textbook PPO would clip
        around a policy the learner has already left and bootstrap from a stale critic; a
        CleanRL-faithful PPO fed one-update-old rollouts needed 1.43x the env steps on
        DoorKey-5x5, and 1.1x with this correction (benchmarks/RESULTS.md).
        """
        if not self.lag_correction:
            return batch, None
        with torch.no_grad():
            logits, values, _ = self.model.forward_all(batch.obs, batch.core_state,
                                                       batch.episode_start)
        proximal = self._logp(logits[:-1], batch.actions)  # (T, B)
        return replace(batch, behaviour_values=values[..., 0], proximal_logp=proximal), values

    def _precompute(self, batch: Batch, streams: list[Stream],
                    values: torch.Tensor | None = None) -> list[Targets | None]:
        """PPO: GAE per stream once per batch (main head: ``batch.behaviour_values``; the
        others from ``values`` (T+1, B, V), computed here when not given)."""
        if isinstance(self.estimator, AppoTargets):
            return [None] * len(streams)
        if values is None and len(streams) > 1:
            with torch.no_grad():
                _, values, _ = self.model.forward_all(batch.obs, batch.core_state,
                                                      batch.episode_start)
        return [self.estimator.precompute(
                    s, batch.behaviour_values if s.head == 0 else values[..., s.head])
                for s in streams]

    def _combine(self, streams: list[Stream], behaviour_logp: torch.Tensor,
                 target_logp: torch.Tensor, values: torch.Tensor, pre: list[Targets | None]
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        advantages = torch.zeros_like(behaviour_logp)
        value_targets = []
        for stream, stream_pre in zip(streams, pre, strict=True):
            adv, target = self.estimator.targets(stream, behaviour_logp, target_logp,
                                                 values[..., stream.head].detach(), stream_pre)
            advantages = advantages + stream.coef * adv
            value_targets.append(target)
        return advantages, value_targets

    def _minibatch_loss(self, mb: Batch, streams: list[Stream], pre: list[Targets | None],
                        report: bool = True) -> tuple[torch.Tensor, dict, list[torch.Tensor]]:
        """The loss of one minibatch, its value targets and (``report``) its metrics."""
        cfg = self.cfg
        logits, values, _ = self.model.forward_all(mb.obs, mb.core_state, mb.episode_start)
        steps = mb.actions.shape[0]  # obs hold T+1 steps (T for a one-step sample batch)
        logits = logits[:steps]  # (T, B, A); values stay (T+1, B, V)
        target_logp = self._logp(logits, mb.actions)  # (T, B)
        advantages, value_targets = self._combine(streams, mb.behaviour_logp,
                                                  target_logp.detach(), values, pre)
        if cfg.normalize_advantages:
            advantages = normalize_advantages(advantages, mb.mask)
        centre, weights = mb.behaviour_logp, None
        if mb.proximal_logp is not None:  # decoupled PPO: clip around the learner's policy
            centre = mb.proximal_logp
            weights = (centre - mb.behaviour_logp).exp().clamp(max=PROXIMAL_WEIGHT_CLIP)
        pg_loss = policy_gradient_loss(target_logp, centre, advantages, mb.mask,
                                       cfg.clip_coef, weights)
        scale = self.model.value_std  # (V,): errors on the normalised scale the heads learn
        v_loss = sum(
            value_loss(values[:steps, :, s.head] / scale[s.head], target / scale[s.head],
                       mb.mask,
                       old_values=mb.behaviour_values[:steps] / scale[0] if s.head == 0 else None,
                       clip_coef=cfg.value_clip_coef if s.head == 0 else None)
            for s, target in zip(streams, value_targets, strict=True)
        )
        entropy = entropy_bonus(logits, mb.mask)
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        if not report:
            return loss, {}, value_targets
        with torch.no_grad():
            log_ratio = target_logp - centre
            denom = mb.mask.sum().clamp(min=1.0)
            approx_kl = (((log_ratio.exp() - 1) - log_ratio) * mb.mask).sum() / denom
            clipfrac = (((log_ratio.exp() - 1).abs() > cfg.clip_coef).float() * mb.mask).sum()
        metrics = {
            "losses/policy": pg_loss.item(), "losses/value": v_loss.item(),
            "losses/entropy": entropy.item(), "losses/approx_kl": approx_kl.item(),
            "losses/clipfrac": (clipfrac / denom).item(),
            "losses/value_target_mean": float((value_targets[0] * mb.mask).sum() / denom),
        }
        if weights is not None:
            metrics["losses/lag_weight_mean"] = float((weights * mb.mask).sum() / denom)
        return loss, metrics, value_targets

    def _minibatches(self, batch: Batch, streams: list[Stream], pre: list[Targets | None]
                     ) -> Iterator[tuple[Batch, list[Stream], list[Targets | None]]]:
        """One epoch's minibatches in a fresh random order: shuffled transitions (one-step
        batches) when ``flat_minibatches``, else shuffled whole env columns."""
        steps, envs = batch.actions.shape
        if self.flat_minibatches:
            order = torch.randperm(steps * envs, device=self.device)
            for index in order.chunk(min(self.cfg.minibatches, steps * envs)):
                yield (batch.select_samples(index), [s.select_samples(index) for s in streams],
                       [None if p is None else (take_transitions(p[0], index, steps),
                                                take_transitions(p[1], index, steps))
                        for p in pre])
            return
        order = torch.randperm(envs, device=self.device)
        for index in order.chunk(min(self.cfg.minibatches, envs)):
            yield (batch.select_envs(index), [s.select_envs(index) for s in streams],
                   [None if p is None else (p[0][:, index], p[1][:, index]) for p in pre])

    def train(self, batch: Batch) -> dict[str, float]:
        """One update (``epochs`` x ``minibatches`` SGD steps) on ``batch``; returns metrics."""
        cfg = self.cfg
        batch = batch.to(self.device)
        streams, reward_metrics = self.streams(batch)
        batch, learner_values = self._correct_lag(batch)
        pre = self._precompute(batch, streams, learner_values)
        metrics: dict[str, float] = {}
        last_epoch = cfg.epochs - 1
        for epoch in range(cfg.epochs):
            for (mb, mb_streams, mb_pre), last in _flag_last(
                    self._minibatches(batch, streams, pre)):
                # the loss metrics of the update's last minibatch are the ones logged: the
                # others would cost a dozen small ops and syncs each for nothing
                report = epoch == last_epoch and last
                loss, mb_metrics, value_targets = self._minibatch_loss(mb, mb_streams, mb_pre,
                                                                       report)
                self.optimizer.zero_grad()
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                self.optimizer.step()
                if report:
                    metrics = mb_metrics
                    metrics["losses/grad_norm"] = float(grad_norm)
                if self.value_norm is not None:
                    for stream, target in zip(mb_streams, value_targets, strict=True):
                        self.value_norm.update(stream.head, target, mb.mask)
        metrics.update(reward_metrics)
        metrics.update(self.bonuses.update(batch))
        core = self.model.core
        if getattr(core, "memory_chunks", 0):  # the retrieval core's run memory
            self.model.remember(batch.obs, batch.episode_start, batch.mask,
                                cfg.model.retrieval.memory_inserts)
            metrics["memory/retrieval_chunks"] = float(core.memory_size())
        metrics["losses/lr"] = self.optimizer.lr
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
            "bonuses": self.bonuses.state_dict(),
            "text_reward": self.text_reward.state_dict() if self.text_reward else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_version = int(state["policy_version"])
        self.updates = int(state["updates"])
        if self.value_norm is not None and state.get("value_norm"):
            self.value_norm.load_state_dict(state["value_norm"])
        self.bonuses.load_state_dict(state["bonuses"])
        if self.text_reward is not None and state.get("text_reward"):
            self.text_reward.load_state_dict(state["text_reward"])
