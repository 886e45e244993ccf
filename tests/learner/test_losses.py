"""Tests for learner.losses: V-trace, GAE and the loss terms."""

from __future__ import annotations

import math

import pytest
import torch

from learner.losses import (
    entropy_bonus,
    gae,
    normalize_advantages,
    policy_gradient_loss,
    value_loss,
    vtrace,
)

GAMMA = 0.9
# Shared tiny case, T=3, B=1: rewards r_0..r_2 and values V(s_0)..V(s_3).
REWARDS = [1.0, 2.0, 3.0]
VALUES = [0.5, 1.0, 1.5, 2.0]


def col(xs: list[float]) -> torch.Tensor:
    """Turns a list of per-step floats into a (len, 1) float64 tensor."""
    return torch.tensor(xs, dtype=torch.float64).unsqueeze(1)


def random_episode_flags(
    gen: torch.Generator, t: int, b: int, p_end: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (terminated, truncated, trace_cuts) float64 tensors of shape (T, B)."""
    ends = torch.rand(t, b, generator=gen, dtype=torch.float64) < p_end
    is_term = torch.rand(t, b, generator=gen, dtype=torch.float64) < 0.5
    terminated = (ends & is_term).double()
    truncated = (ends & ~is_term).double()
    return terminated, truncated, ends.double()


def reference_vtrace(
    mu_logp: torch.Tensor,
    pi_logp: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    discounts: torch.Tensor,
    cuts: torch.Tensor,
    rho_bar: float,
    c_bar: float,
) -> tuple[list[list[float]], list[list[float]]]:
    """IMPALA eq. (1) written as an explicit sum, with plain Python floats.

    vs_s = V(x_s) + sum_{t>=s} (prod_{i=s}^{t-1} disc_i (1 - cut_i) c_i) delta_t, where
    delta_t = rho_t (r_t + disc_t V(x_{t+1}) - V(x_t)).
    """
    n_t, n_b = rewards.shape
    vs = [[0.0] * n_b for _ in range(n_t)]  # indexed [t][b]
    adv = [[0.0] * n_b for _ in range(n_t)]
    for b in range(n_b):
        ratio = [math.exp(pi_logp[t, b].item() - mu_logp[t, b].item()) for t in range(n_t)]
        rho = [min(rho_bar, x) for x in ratio]
        c = [min(c_bar, x) for x in ratio]
        r = [rewards[t, b].item() for t in range(n_t)]
        v = [values[t, b].item() for t in range(n_t + 1)]
        d = [discounts[t, b].item() for t in range(n_t)]
        k = [cuts[t, b].item() for t in range(n_t)]
        delta = [rho[t] * (r[t] + d[t] * v[t + 1] - v[t]) for t in range(n_t)]
        for s in range(n_t):
            total, weight = 0.0, 1.0
            for t in range(s, n_t):
                total += weight * delta[t]
                weight *= d[t] * (1.0 - k[t]) * c[t]
            vs[s][b] = v[s] + total
        for s in range(n_t):
            nxt = v[s + 1] if (k[s] > 0 or s == n_t - 1) else vs[s + 1][b]
            adv[s][b] = rho[s] * (r[s] + d[s] * nxt - v[s])
    return vs, adv


def reference_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    discounts: torch.Tensor,
    cuts: torch.Tensor,
    lam: float,
) -> list[list[float]]:
    """GAE as the explicit sum A_s = sum_{t>=s} (prod_{i<t} disc_i (1 - cut_i) lam) delta_t."""
    n_t, n_b = rewards.shape
    out = [[0.0] * n_b for _ in range(n_t)]
    for b in range(n_b):
        for s in range(n_t):
            total, weight = 0.0, 1.0
            for t in range(s, n_t):
                r, d = rewards[t, b].item(), discounts[t, b].item()
                delta = r + d * values[t + 1, b].item() - values[t, b].item()
                total += weight * delta
                weight *= d * (1.0 - cuts[t, b].item()) * lam
            out[s][b] = total
    return out


# --------------------------------------------------------------------------- V-trace


def test_vtrace_on_policy_equals_n_step_returns() -> None:
    logp = col([-0.3, -1.2, -0.7])
    zeros = col([0.0, 0.0, 0.0])
    out = vtrace(logp, logp, col(REWARDS), col(VALUES), col([GAMMA] * 3), zeros)
    # vs_2 = 3 + 0.9 * 2.0  = 4.8
    # vs_1 = 2 + 0.9 * 4.8  = 6.32
    # vs_0 = 1 + 0.9 * 6.32 = 6.688
    torch.testing.assert_close(out.vs, col([6.688, 6.32, 4.8]))
    # pg_adv_t = r_t + 0.9 * vs_{t+1} - V(s_t) = vs_t - V(s_t) on-policy.
    torch.testing.assert_close(out.pg_advantages, col([6.188, 5.32, 3.3]))


def test_vtrace_off_policy_clipped_hand_computed() -> None:
    # ratios pi/mu = [2.0, 0.5, 1.5]; with rho_bar = c_bar = 1: rho = c = [1, 0.5, 1].
    mu = col([0.0, 0.0, 0.0])
    pi = col([math.log(2.0), math.log(0.5), math.log(1.5)])
    out = vtrace(mu, pi, col(REWARDS), col(VALUES), col([GAMMA] * 3), col([0.0] * 3))
    # delta_0 = 1.0 * (1 + 0.9 * 1.0 - 0.5) = 1.4
    # delta_1 = 0.5 * (2 + 0.9 * 1.5 - 1.0) = 1.175
    # delta_2 = 1.0 * (3 + 0.9 * 2.0 - 1.5) = 3.3
    # vs_2 = 1.5 + 3.3                                   = 4.8
    # vs_1 = 1.0 + 1.175 + 0.9 * 0.5 * 3.3 = 1.0 + 2.66  = 3.66
    # vs_0 = 0.5 + 1.4 + 0.9 * 1.0 * 2.66 = 0.5 + 3.794 = 4.294
    torch.testing.assert_close(out.vs, col([4.294, 3.66, 4.8]))
    # pg_0 = 1.0 * (1 + 0.9 * 3.66 - 0.5) = 3.794
    # pg_1 = 0.5 * (2 + 0.9 * 4.8 - 1.0)  = 2.66
    # pg_2 = 1.0 * (3 + 0.9 * 2.0 - 1.5)  = 3.3
    torch.testing.assert_close(out.pg_advantages, col([3.794, 2.66, 3.3]))


@pytest.mark.parametrize(("rho_bar", "c_bar"), [(1.0, 1.0), (1.5, 0.7), (0.8, 1.2)])
def test_vtrace_matches_reference_loop(rho_bar: float, c_bar: float) -> None:
    gen = torch.Generator().manual_seed(0)
    n_t, n_b = 3, 5
    mu = -torch.rand(n_t, n_b, generator=gen, dtype=torch.float64)
    # Log-ratios in [-1.5, 1.5] so that ratios fall both above and below the clips.
    pi = mu + 3.0 * (torch.rand(n_t, n_b, generator=gen, dtype=torch.float64) - 0.5)
    ratios = torch.exp(pi - mu)
    assert (ratios > max(rho_bar, c_bar)).any() and (ratios < min(rho_bar, c_bar)).any()
    rewards = torch.randn(n_t, n_b, generator=gen, dtype=torch.float64)
    values = torch.randn(n_t + 1, n_b, generator=gen, dtype=torch.float64)
    discounts = torch.full((n_t, n_b), GAMMA, dtype=torch.float64)
    cuts = torch.zeros(n_t, n_b, dtype=torch.float64)

    out = vtrace(mu, pi, rewards, values, discounts, cuts, rho_bar=rho_bar, c_bar=c_bar)
    ref_vs, ref_adv = reference_vtrace(mu, pi, rewards, values, discounts, cuts, rho_bar, c_bar)
    torch.testing.assert_close(out.vs, torch.tensor(ref_vs, dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor(ref_adv, dtype=torch.float64))


def test_vtrace_matches_reference_loop_with_episode_ends() -> None:
    gen = torch.Generator().manual_seed(1)
    n_t, n_b = 16, 4
    mu = -torch.rand(n_t, n_b, generator=gen, dtype=torch.float64)
    pi = mu + 2.0 * (torch.rand(n_t, n_b, generator=gen, dtype=torch.float64) - 0.5)
    rewards = torch.randn(n_t, n_b, generator=gen, dtype=torch.float64)
    values = torch.randn(n_t + 1, n_b, generator=gen, dtype=torch.float64)
    terminated, truncated, cuts = random_episode_flags(gen, n_t, n_b)
    assert terminated.any() and truncated.any()
    discounts = GAMMA * (1.0 - terminated)

    out = vtrace(mu, pi, rewards, values, discounts, cuts, rho_bar=1.0, c_bar=0.9)
    ref_vs, ref_adv = reference_vtrace(mu, pi, rewards, values, discounts, cuts, 1.0, 0.9)
    torch.testing.assert_close(out.vs, torch.tensor(ref_vs, dtype=torch.float64))
    torch.testing.assert_close(out.pg_advantages, torch.tensor(ref_adv, dtype=torch.float64))


def _vtrace_tiny(rewards: list[float], values: list[float], discounts: list[float]):
    """On-policy V-trace on the tiny case with the episode ending at t = 1."""
    logp = col([-0.5, -0.5, -0.5])
    cuts = col([0.0, 1.0, 0.0])
    return vtrace(logp, logp, col(rewards), col(values), col(discounts), cuts)


def test_vtrace_terminated_blocks_next_episode() -> None:
    discounts = [GAMMA, 0.0, GAMMA]  # terminated at t = 1
    out = _vtrace_tiny(REWARDS, VALUES, discounts)
    # vs_1 = r_1 = 2 (no bootstrap); vs_0 = 1 + 0.9 * 2 = 2.8
    torch.testing.assert_close(out.vs[:2], col([2.8, 2.0]))
    torch.testing.assert_close(out.pg_advantages[1], col([2.0 - 1.0])[0])
    # Everything after the termination may change without affecting t <= 1.
    other = _vtrace_tiny([1.0, 2.0, -50.0], [0.5, 1.0, 99.0, -7.0], discounts)
    torch.testing.assert_close(other.vs[:2], out.vs[:2])
    torch.testing.assert_close(other.pg_advantages[:2], out.pg_advantages[:2])


def test_vtrace_truncated_bootstraps_from_next_value_only() -> None:
    discounts = [GAMMA, GAMMA, GAMMA]  # truncated at t = 1: still discounts V(s_2)
    out = _vtrace_tiny(REWARDS, VALUES, discounts)
    # vs_1 = 2 + 0.9 * V(s_2) = 2 + 0.9 * 1.5 = 3.35; vs_0 = 1 + 0.9 * 3.35 = 4.015
    torch.testing.assert_close(out.vs[:2], col([4.015, 3.35]))
    # pg_1 = 2 + 0.9 * 1.5 - 1.0 = 2.35
    torch.testing.assert_close(out.pg_advantages[:2], col([4.015 - 0.5, 2.35]))
    # Later rewards and values do not leak back ...
    other = _vtrace_tiny([1.0, 2.0, -50.0], [0.5, 1.0, 1.5, -7.0], discounts)
    torch.testing.assert_close(other.vs[:2], out.vs[:2])
    torch.testing.assert_close(other.pg_advantages[:2], out.pg_advantages[:2])
    # ... but the final observation's value V(s_2) does.
    moved = _vtrace_tiny(REWARDS, [0.5, 1.0, 2.5, 2.0], discounts)
    torch.testing.assert_close(moved.vs[1], col([2.0 + 0.9 * 2.5])[0])


def test_vtrace_is_detached() -> None:
    logp = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    values = torch.ones(4, 2, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(3, 2, dtype=torch.float64)
    out = vtrace(logp, logp * 1.0, zeros, values, zeros + GAMMA, zeros)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


def test_vtrace_rejects_bad_shapes() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="behaviour_logp"):
        vtrace(x, x, x, torch.zeros(3, 2), x, x)  # values must have T + 1 rows
    with pytest.raises(ValueError, match="values"):
        vtrace(x, x, x, torch.zeros(4), x, x)
    with pytest.raises(ValueError, match="rewards"):
        vtrace(x, x, torch.zeros(3, 1), torch.zeros(4, 2), x, x)


# --------------------------------------------------------------------------- GAE


@pytest.mark.parametrize(
    ("cuts", "expected_adv"),
    [
        # delta = [1 + 0.9*1.0 - 0.5, 2 + 0.9*1.5 - 1.0, 3 + 0.9*2.0 - 1.5] = [1.4, 2.35, 3.3]
        # gamma * lam = 0.45
        # A_2 = 3.3; A_1 = 2.35 + 0.45 * 3.3 = 3.835; A_0 = 1.4 + 0.45 * 3.835 = 3.12575
        ([0.0, 0.0, 0.0], [3.12575, 3.835, 3.3]),
        # truncated at t = 1: A_1 = delta_1 = 2.35; A_0 = 1.4 + 0.45 * 2.35 = 2.4575
        ([0.0, 1.0, 0.0], [2.4575, 2.35, 3.3]),
    ],
)
def test_gae_hand_computed(cuts: list[float], expected_adv: list[float]) -> None:
    out = gae(col(REWARDS), col(VALUES), col([GAMMA] * 3), col(cuts), lam=0.5)
    torch.testing.assert_close(out.advantages, col(expected_adv))
    torch.testing.assert_close(out.returns, col(expected_adv) + col(VALUES[:3]))


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_reference_loop(lam: float) -> None:
    gen = torch.Generator().manual_seed(2)
    n_t, n_b = 16, 4
    rewards = torch.randn(n_t, n_b, generator=gen, dtype=torch.float64)
    values = torch.randn(n_t + 1, n_b, generator=gen, dtype=torch.float64)
    terminated, truncated, cuts = random_episode_flags(gen, n_t, n_b)
    assert terminated.any() and truncated.any()
    discounts = 0.99 * (1.0 - terminated)

    out = gae(rewards, values, discounts, cuts, lam=lam)
    expected = torch.tensor(reference_gae(rewards, values, discounts, cuts, lam))
    torch.testing.assert_close(out.advantages, expected.double())
    torch.testing.assert_close(out.returns, expected.double() + values[:-1])


def test_gae_lambda_one_equals_on_policy_vtrace() -> None:
    gen = torch.Generator().manual_seed(3)
    n_t, n_b = 20, 6
    rewards = torch.randn(n_t, n_b, generator=gen, dtype=torch.float64)
    values = torch.randn(n_t + 1, n_b, generator=gen, dtype=torch.float64)
    logp = -torch.rand(n_t, n_b, generator=gen, dtype=torch.float64)
    terminated, truncated, cuts = random_episode_flags(gen, n_t, n_b, p_end=0.3)
    assert terminated.any() and truncated.any()
    discounts = 0.97 * (1.0 - terminated)

    g = gae(rewards, values, discounts, cuts, lam=1.0)
    # On-policy the ratios are 1, so any clip >= 1 gives the same result.
    v = vtrace(logp, logp, rewards, values, discounts, cuts, rho_bar=1e9, c_bar=1e9)
    torch.testing.assert_close(v.vs, g.returns)
    torch.testing.assert_close(v.pg_advantages, g.advantages)


def test_gae_is_detached() -> None:
    values = torch.ones(4, 2, requires_grad=True)
    zeros = torch.zeros(3, 2)
    out = gae(zeros, values, zeros + GAMMA, zeros, lam=0.95)
    assert not out.advantages.requires_grad and not out.returns.requires_grad


# --------------------------------------------------------------------------- policy loss


def test_ppo_clip_zero_gradient_outside_trust_region() -> None:
    eps = 0.2
    # log-ratios: 0.5 (ratio 1.65 > 1.2), -0.5 (0.61 < 0.8), 0.1 (1.105 inside),
    # 0.5 with a negative advantage (unclipped term is the minimum -> gradient flows).
    log_ratio = torch.tensor([[0.5, -0.5, 0.1, 0.5]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, 2.0, -3.0]], dtype=torch.float64)
    behaviour = torch.full_like(log_ratio, -1.0)
    target = (behaviour + log_ratio).requires_grad_(True)
    mask = torch.ones_like(adv)

    loss = policy_gradient_loss(target, behaviour, adv, mask, clip_coef=eps)
    loss.backward()
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1 - eps, 1 + eps)
    expected_loss = -torch.min(ratio * adv, clipped * adv).mean()
    torch.testing.assert_close(loss.detach(), expected_loss)
    grad = target.grad[0]
    assert grad[0].item() == 0.0 and grad[1].item() == 0.0
    # d/dlogp of -(ratio * A) / N = -ratio * A / N
    torch.testing.assert_close(grad[2], -ratio[0, 2] * 2.0 / 4)
    torch.testing.assert_close(grad[3], -ratio[0, 3] * -3.0 / 4)


def test_plain_policy_gradient() -> None:
    target = torch.tensor([[-0.2, -1.0], [-0.5, -2.0]], requires_grad=True)
    behaviour = torch.zeros(2, 2)
    adv = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = policy_gradient_loss(target, behaviour, adv, mask, clip_coef=None)
    # -(1 * -0.2 + -2 * -1.0 + 3 * -0.5) / 3 = -(-0.2 + 2.0 - 1.5) / 3 = -0.1
    torch.testing.assert_close(loss, torch.tensor(-0.1))
    loss.backward()
    torch.testing.assert_close(target.grad, torch.tensor([[-1 / 3, 2 / 3], [-1.0, 0.0]]))


@pytest.mark.parametrize("clip_coef", [0.2, None])
def test_policy_loss_ignores_masked_elements(clip_coef: float | None) -> None:
    gen = torch.Generator().manual_seed(4)
    target = -torch.rand(5, 3, generator=gen)
    behaviour = -torch.rand(5, 3, generator=gen)
    adv = torch.randn(5, 3, generator=gen)
    mask = (torch.rand(5, 3, generator=gen) < 0.6).float()
    assert 0 < mask.sum() < mask.numel()
    base = policy_gradient_loss(target, behaviour, adv, mask, clip_coef)

    pad = mask == 0
    wild = [1e6, -1e6, float("nan")]
    for value in wild:
        t2 = target.masked_fill(pad, value)
        b2 = behaviour.masked_fill(pad, -value)
        a2 = adv.masked_fill(pad, value)
        other = policy_gradient_loss(t2, b2, a2, mask, clip_coef)
        torch.testing.assert_close(other, base)


def test_policy_loss_all_masked_is_zero() -> None:
    x = torch.randn(4, 2, requires_grad=True)
    loss = policy_gradient_loss(x, x.detach(), torch.ones(4, 2), torch.zeros(4, 2), 0.2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_policy_loss_does_not_backprop_into_advantages_or_behaviour() -> None:
    target = torch.zeros(2, 2, requires_grad=True)
    behaviour = torch.zeros(2, 2, requires_grad=True)
    adv = torch.ones(2, 2, requires_grad=True)
    policy_gradient_loss(target, behaviour, adv, torch.ones(2, 2), 0.2).backward()
    assert target.grad is not None
    assert behaviour.grad is None and adv.grad is None


# --------------------------------------------------------------------------- value loss


def test_value_loss_unclipped() -> None:
    values = torch.tensor([[1.0, 2.0], [0.0, 5.0]])
    targets = torch.tensor([[2.0, 0.0], [0.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # 0.5 * (1 + 4 + 0) / 3 = 5 / 6
    torch.testing.assert_close(value_loss(values, targets, mask), torch.tensor(5.0 / 6.0))


def test_value_loss_clipping() -> None:
    values = torch.tensor([[2.0, 2.0, 1.1]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0]])
    targets = torch.tensor([[3.0, 1.0, 2.0]])
    loss = value_loss(values, targets, torch.ones(1, 3), old_values=old, clip_coef=0.2)
    # elem 0: unclipped (2 - 3)^2 = 1, clipped (1.2 - 3)^2 = 3.24  -> 3.24
    # elem 1: unclipped (2 - 1)^2 = 1, clipped (1.2 - 1)^2 = 0.04  -> 1
    # elem 2: inside the clip range, both (1.1 - 2)^2 = 0.81      -> 0.81
    # 0.5 * (3.24 + 1 + 0.81) / 3 = 0.841666...
    torch.testing.assert_close(loss, torch.tensor(0.5 * (3.24 + 1.0 + 0.81) / 3))
    loss.backward()
    # elem 0 uses the clipped (saturated, constant) prediction: no gradient.
    assert values.grad[0, 0].item() == 0.0
    torch.testing.assert_close(values.grad[0, 1], torch.tensor((2.0 - 1.0) / 3))
    torch.testing.assert_close(values.grad[0, 2], torch.tensor((1.1 - 2.0) / 3))
    unclipped = value_loss(values, targets, torch.ones(1, 3))
    torch.testing.assert_close(unclipped, torch.tensor(0.5 * (1.0 + 1.0 + 0.81) / 3))


def test_value_loss_clip_requires_old_values() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="old_values"):
        value_loss(x, x, torch.ones(2, 2), clip_coef=0.2)


# --------------------------------------------------------------------------- entropy


@pytest.mark.parametrize("num_actions", [2, 6, 18])
def test_entropy_of_uniform_logits_is_log_a(num_actions: int) -> None:
    logits = torch.full((4, 3, num_actions), 0.7)
    logits[1] = -3.0  # any constant row is uniform
    mask = torch.ones(4, 3)
    torch.testing.assert_close(entropy_bonus(logits, mask), torch.tensor(math.log(num_actions)))


def test_entropy_known_distribution_and_mask() -> None:
    p = torch.tensor([0.25, 0.75])
    logits = torch.stack([p.log(), torch.zeros(2)]).unsqueeze(1)  # (T=2, B=1, A=2)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    mask = torch.tensor([[1.0], [0.0]])
    torch.testing.assert_close(entropy_bonus(logits, mask), torch.tensor(expected))


def test_entropy_with_disallowed_actions_is_finite() -> None:
    logits = torch.tensor([[[0.0, float("-inf"), float("-inf")]]], requires_grad=True)
    ent = entropy_bonus(logits, torch.ones(1, 1))
    assert ent.item() == 0.0
    ent.backward()
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- normalisation


def test_normalize_advantages_uses_only_valid_entries() -> None:
    gen = torch.Generator().manual_seed(5)
    adv = 3.0 + 5.0 * torch.randn(8, 4, generator=gen, dtype=torch.float64)
    mask = (torch.rand(8, 4, generator=gen) < 0.7).double()
    out = normalize_advantages(adv, mask)
    valid = out[mask > 0]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(valid.std(unbiased=False), torch.tensor(1.0, dtype=torch.float64))
    assert (out[mask == 0] == 0).all()
    wild = normalize_advantages(adv.masked_fill(mask == 0, 1e9), mask)
    torch.testing.assert_close(wild, out)


def test_normalize_constant_advantages_is_finite() -> None:
    out = normalize_advantages(torch.full((3, 2), 4.0), torch.ones(3, 2))
    torch.testing.assert_close(out, torch.zeros(3, 2))
