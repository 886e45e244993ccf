"""Decoupled PPO (``learner.ppo_lag_correction``): on fresh data it is textbook PPO; on stale
data it clips around the learner's policy and weights transitions by pi_learner / pi_actor."""

from __future__ import annotations

from dataclasses import replace

import torch
from minigrid_batches import minigrid_batch, minigrid_learner

from learner.algo import PROXIMAL_WEIGHT_CLIP, Learner
from learner.batch import Batch
from learner.losses import policy_gradient_loss

PPO = ("learner.algo=ppo", "learner.model.kind=mlp", "learner.epochs=2", "learner.minibatches=3")


def _as_if_collected_by(learner: Learner, batch: Batch) -> Batch:
    """``batch`` with the log-probs and values ``learner``'s current model gives it (fresh)."""
    with torch.no_grad():
        logits, values, _ = learner.model.forward_all(batch.obs, batch.core_state,
                                                      batch.episode_start)
    return replace(batch, behaviour_logp=learner._logp(logits[:-1], batch.actions),
                   behaviour_values=values[..., 0])


def _trained_params(learner: Learner, batch: Batch) -> list[torch.Tensor]:
    torch.manual_seed(7)  # the same minibatch order for every learner
    learner.train(batch)
    return [p.detach().clone() for p in learner.model.parameters()]


def test_fresh_data_gives_textbook_ppo() -> None:
    corrected = minigrid_learner(*PPO)
    textbook = minigrid_learner(*PPO, "learner.ppo_lag_correction=false")
    assert corrected.lag_correction and not textbook.lag_correction
    batch = _as_if_collected_by(corrected, minigrid_batch())
    for a, b in zip(_trained_params(corrected, batch), _trained_params(textbook, batch),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stale_data_is_centred_on_the_learner() -> None:
    """Data from an older policy: the corrected update starts at ratio 1 (nothing clipped),
    the textbook one starts already clipping against the actors' policy."""
    stale_source = minigrid_learner(*PPO, "learner.lr=0.01")
    batch = minigrid_batch()
    for _ in range(3):  # move the source policy away from its initial weights
        stale_source.train(_as_if_collected_by(stale_source, batch))
    stale = _as_if_collected_by(stale_source, batch)

    corrected = minigrid_learner(*PPO, "learner.minibatches=1")
    textbook = minigrid_learner(*PPO, "learner.minibatches=1", "learner.ppo_lag_correction=false")
    fixed, values = corrected._correct_lag(stale)
    fresh = _as_if_collected_by(corrected, stale)
    torch.testing.assert_close(fixed.proximal_logp, fresh.behaviour_logp)
    torch.testing.assert_close(fixed.behaviour_values, fresh.behaviour_values)
    assert values.shape == (*stale.behaviour_values.shape, 1)
    assert torch.equal(fixed.behaviour_logp, stale.behaviour_logp)  # the actors' stay

    streams, _ = corrected.streams(fixed, observe=False)
    _, metrics, _ = corrected._minibatch_loss(fixed, streams,
                                              corrected._precompute(fixed, streams, values))
    assert metrics["losses/clipfrac"] == 0.0 and abs(metrics["losses/approx_kl"]) < 1e-6
    weights = (fresh.behaviour_logp - stale.behaviour_logp).exp()
    expected = float((weights * stale.mask).sum() / stale.mask.sum())
    assert abs(metrics["losses/lag_weight_mean"] - expected) < 1e-4
    assert abs(expected - 1.0) > 1e-3  # the data really is off the learner's policy

    streams, _ = textbook.streams(stale, observe=False)
    same, none = textbook._correct_lag(stale)
    assert same is stale and none is None
    _, metrics, _ = textbook._minibatch_loss(stale, streams, textbook._precompute(stale, streams))
    assert metrics["losses/clipfrac"] > 0.0
    assert "losses/lag_weight_mean" not in metrics


def test_appo_is_left_alone() -> None:
    learner = minigrid_learner("learner.algo=appo")
    batch = minigrid_batch()
    assert not learner.lag_correction and learner._correct_lag(batch)[0] is batch


def test_weights_scale_each_step_of_the_policy_loss() -> None:
    torch.manual_seed(0)
    target = torch.randn(4, 3, requires_grad=True)
    behaviour, adv = torch.randn(4, 3), torch.randn(4, 3)
    mask = torch.ones(4, 3)
    mask[0, 0] = 0.0
    weights = torch.rand(4, 3) * PROXIMAL_WEIGHT_CLIP
    ratio = (target - behaviour).exp()
    per_step = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv) * weights
    expected = (per_step * mask).sum() / mask.sum()
    loss = policy_gradient_loss(target, behaviour, adv, mask, 0.2, weights)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert target.grad is not None and target.grad[0, 0] == 0.0
