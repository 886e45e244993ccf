"""Return estimators and loss terms for the APPO/PPO learner.

Every function is stateless and works on time-major tensors: ``T`` is the
rollout length and ``B`` the number of environments in the batch.

Episode boundaries are described by two (T, B) tensors:

* ``discounts[t] = gamma * (1 - terminated[t])`` multiplies the bootstrap value
  ``V(s_{t+1})`` in the TD error of step ``t``.
* ``trace_cuts[t]`` is 1.0 where the episode ended at ``t`` (terminated or
  truncated) and 0.0 otherwise. It stops the backward recursion so that nothing
  from the next episode leaks into step ``t``, while a truncated step still
  bootstraps from ``V(s_{t+1})`` through ``discounts``.

``values`` has shape (T + 1, B): ``values[t]`` is ``V(s_t)`` and the last row is
the bootstrap value of the state after the rollout. At a step ``t`` that ended
an episode, ``values[t + 1]`` must be the value of that episode's final
observation (EnvPool returns the reset observation on the following, separate
step, whose transition the caller masks out).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "GaeReturns",
    "VTraceReturns",
    "entropy_bonus",
    "gae",
    "normalize_advantages",
    "policy_gradient_loss",
    "value_loss",
    "vtrace",
]


class VTraceReturns(NamedTuple):
    """Output of :func:`vtrace`; both fields are detached, shape (T, B).

    Attributes:
        vs: V-trace value targets ``v_s``.
        pg_advantages: Importance-weighted advantages for the policy gradient.
    """

    vs: Tensor
    pg_advantages: Tensor


class GaeReturns(NamedTuple):
    """Output of :func:`gae`; both fields are detached, shape (T, B).

    Attributes:
        advantages: GAE(lambda) advantages ``A_t``.
        returns: Value targets ``A_t + V(s_t)``.
    """

    advantages: Tensor
    returns: Tensor


def _check_shapes(values: Tensor, **steps: Tensor) -> None:
    """Checks that ``values`` is (T + 1, B) and every tensor in ``steps`` is (T, B)."""
    if values.dim() != 2 or values.shape[0] < 2:
        raise ValueError(
            f"values must have shape (T + 1, B) with T >= 1, got {tuple(values.shape)}"
        )
    expected = (values.shape[0] - 1, values.shape[1])
    for name, tensor in steps.items():
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")


def _backward_scan(deltas: Tensor, factors: Tensor) -> Tensor:
    """Computes ``out[t] = deltas[t] + factors[t] * out[t + 1]`` with ``out[T] = 0``.

    Args:
        deltas: Per-step terms, shape (T, B).
        factors: Per-step recursion factors, shape (T, B).

    Returns:
        The accumulated sums, shape (T, B).
    """
    out = torch.empty_like(deltas)
    acc = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        acc = deltas[t] + factors[t] * acc
        out[t] = acc
    return out


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over entries where ``mask > 0``; 0 when nothing is valid.

    Masked-out entries are selected away (not multiplied by zero), so NaN or inf
    padding in ``x`` does not reach the result.

    Args:
        x: Values, shape (T, B).
        mask: Validity mask, shape (T, B); 1 = valid transition.

    Returns:
        Scalar tensor.
    """
    if x.shape != mask.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {tuple(x.shape)}")
    valid = mask > 0
    total = torch.where(valid, x, torch.zeros_like(x)).sum()
    return total / valid.sum().clamp(min=1).to(x.dtype)


@torch.no_grad()
def vtrace(
    behaviour_logp: Tensor,
    target_logp: Tensor,
    rewards: Tensor,
    values: Tensor,
    discounts: Tensor,
    trace_cuts: Tensor,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> VTraceReturns:
    """V-trace targets and policy-gradient advantages (Espeholt et al., 2018).

    With ``rho_t = min(rho_bar, pi/mu)`` and ``c_t = min(c_bar, pi/mu)``::

        delta_t = rho_t * (r_t + discounts_t * V(s_{t+1}) - V(s_t))
        vs_t - V(s_t) = delta_t
                        + discounts_t * (1 - cut_t) * c_t * (vs_{t+1} - V(s_{t+1}))
        pg_adv_t = rho_t * (r_t + discounts_t * vs'_{t+1} - V(s_t))

    where ``vs_T = V(s_T)`` and ``vs'_{t+1}`` is ``V(s_{t+1})`` if ``cut_t``
    else ``vs_{t+1}``.

    Args:
        behaviour_logp: Log-probabilities of the taken actions under the actor
            policy ``mu``, shape (T, B).
        target_logp: Log-probabilities of the same actions under the learner
            policy ``pi``, shape (T, B).
        rewards: Rewards ``r_t``, shape (T, B).
        values: Learner values ``V(s_t)`` plus the bootstrap row, shape (T + 1, B).
        discounts: ``gamma * (1 - terminated)``, shape (T, B).
        trace_cuts: 1.0 where the episode ended at ``t``, shape (T, B).
        rho_bar: Clip for the importance weights in the TD error and advantages.
        c_bar: Clip for the trace coefficients.

    Returns:
        Detached ``VTraceReturns(vs, pg_advantages)``, each of shape (T, B).
    """
    _check_shapes(
        values,
        behaviour_logp=behaviour_logp,
        target_logp=target_logp,
        rewards=rewards,
        discounts=discounts,
        trace_cuts=trace_cuts,
    )
    trace_cuts = trace_cuts.to(values.dtype)
    ratios = torch.exp(target_logp - behaviour_logp)
    rhos = torch.clamp(ratios, max=rho_bar)
    cs = torch.clamp(ratios, max=c_bar)

    v_t, v_tp1 = values[:-1], values[1:]
    deltas = rhos * (rewards + discounts * v_tp1 - v_t)
    vs = v_t + _backward_scan(deltas, discounts * (1.0 - trace_cuts) * cs)

    vs_tp1 = torch.cat([vs[1:], values[-1:]], dim=0)
    next_target = torch.where(trace_cuts > 0, v_tp1, vs_tp1)
    pg_advantages = rhos * (rewards + discounts * next_target - v_t)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


@torch.no_grad()
def gae(
    rewards: Tensor,
    values: Tensor,
    discounts: Tensor,
    trace_cuts: Tensor,
    lam: float,
) -> GaeReturns:
    """Generalised advantage estimation (Schulman et al., 2016).

    ::

        delta_t = r_t + discounts_t * V(s_{t+1}) - V(s_t)
        A_t = delta_t + discounts_t * (1 - cut_t) * lam * A_{t+1}

    Args:
        rewards: Rewards ``r_t``, shape (T, B).
        values: Values ``V(s_t)`` plus the bootstrap row, shape (T + 1, B).
        discounts: ``gamma * (1 - terminated)``, shape (T, B).
        trace_cuts: 1.0 where the episode ended at ``t``, shape (T, B).
        lam: GAE lambda in [0, 1].

    Returns:
        Detached ``GaeReturns(advantages, returns)``, each of shape (T, B).
    """
    _check_shapes(values, rewards=rewards, discounts=discounts, trace_cuts=trace_cuts)
    trace_cuts = trace_cuts.to(values.dtype)
    v_t = values[:-1]
    deltas = rewards + discounts * values[1:] - v_t
    advantages = _backward_scan(deltas, discounts * (1.0 - trace_cuts) * lam)
    return GaeReturns(advantages=advantages, returns=advantages + v_t)


def policy_gradient_loss(
    target_logp: Tensor,
    behaviour_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_coef: float | None,
    weights: Tensor | None = None,
) -> Tensor:
    """Policy loss to minimise: PPO clipped surrogate or plain policy gradient.

    With ``clip_coef`` set, ``ratio = exp(target_logp - behaviour_logp)`` and the
    per-step loss is ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)``.
    Without it, the per-step loss is ``-A * target_logp``. Gradients flow only
    into ``target_logp``. ``weights`` multiply the per-step losses (decoupled PPO passes
    ``pi_proximal / pi_behaviour`` there and the proximal log-probs as ``behaviour_logp``).

    Args:
        target_logp: Log-probabilities of the taken actions under the learner
            policy, shape (T, B).
        behaviour_logp: Log-probabilities under the policy that collected the
            data (the PPO "old" policy), shape (T, B).
        advantages: Advantage estimates, shape (T, B).
        mask: 1.0 for valid transitions, 0.0 for padding, shape (T, B).
        clip_coef: PPO clip epsilon, or None for the unclipped loss.
        weights: Per-step weights (T, B), or None for 1.

    Returns:
        Scalar masked-mean loss.
    """
    advantages = advantages.detach()
    if clip_coef is None:
        per_step = -advantages * target_logp
    else:
        ratio = torch.exp(target_logp - behaviour_logp.detach())
        clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
        per_step = -torch.min(ratio * advantages, clipped * advantages)
    if weights is not None:
        per_step = per_step * weights.detach()
    return _masked_mean(per_step, mask)


def value_loss(
    values: Tensor,
    targets: Tensor,
    mask: Tensor,
    old_values: Tensor | None = None,
    clip_coef: float | None = None,
) -> Tensor:
    """Half mean squared error of the value head, optionally PPO-clipped.

    With ``clip_coef`` set, the prediction is also clipped to
    ``old_values +- clip_coef`` and the larger of the two squared errors is used.

    Args:
        values: Predicted values ``V(s_t)``, shape (T, B).
        targets: Value targets (e.g. V-trace ``vs`` or GAE returns), shape (T, B).
        mask: 1.0 for valid transitions, 0.0 for padding, shape (T, B).
        old_values: Values predicted when the data was collected, shape (T, B);
            required when ``clip_coef`` is set.
        clip_coef: Value clip range, or None for the unclipped loss.

    Returns:
        Scalar masked-mean loss.

    Raises:
        ValueError: If ``clip_coef`` is set but ``old_values`` is None.
    """
    targets = targets.detach()
    per_step = (values - targets).square()
    if clip_coef is not None:
        if old_values is None:
            raise ValueError("value clipping needs old_values")
        old_values = old_values.detach()
        clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
        per_step = torch.max(per_step, (clipped - targets).square())
    return 0.5 * _masked_mean(per_step, mask)


def entropy_bonus(logits: Tensor, mask: Tensor) -> Tensor:
    """Masked mean entropy of categorical policies (add ``-coef * bonus`` to the loss).

    Logits of ``-inf`` (disallowed actions) are supported.

    Args:
        logits: Unnormalised action logits, shape (T, B, A).
        mask: 1.0 for valid transitions, 0.0 for padding, shape (T, B).

    Returns:
        Scalar mean entropy in nats.
    """
    log_probs = torch.log_softmax(logits, dim=-1)
    # Clamp so that 0 * log(0) is 0 * finite instead of NaN for -inf logits.
    log_probs = torch.clamp(log_probs, min=torch.finfo(log_probs.dtype).min)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return _masked_mean(entropy, mask)


def normalize_advantages(adv: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalises advantages to zero mean and unit std over the valid entries.

    Statistics use only entries with ``mask > 0`` (population std); masked-out
    entries of the result are set to 0.

    Args:
        adv: Advantages, shape (T, B).
        mask: 1.0 for valid transitions, 0.0 for padding, shape (T, B).
        eps: Added to the std to avoid division by zero.

    Returns:
        Normalised advantages, shape (T, B).
    """
    mean = _masked_mean(adv, mask)
    std = _masked_mean((adv - mean).square(), mask).sqrt()
    normalised = (adv - mean) / (std + eps)
    return torch.where(mask > 0, normalised, torch.zeros_like(normalised))
