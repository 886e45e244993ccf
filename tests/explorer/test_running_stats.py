"""Tests for explorer.core.running_stats: every running mean / std of the project."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.core.running_stats import EmaMeanStd, HorizonMean, RunningMeanStd


# ---------------------------------------------------------------------------- RunningMeanStd
def test_running_stats_merge_equals_full_batch_statistics() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 2, 3))
    stats = RunningMeanStd((2, 3), epsilon=0.0)
    for chunk in np.array_split(data, [1, 7, 300, 301, 650]):  # includes a 1-sample chunk
        stats.update(torch.from_numpy(chunk).float())
    stats.update(torch.zeros(0, 2, 3))  # empty batch: no-op
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var.numpy(), data.var(0), rtol=1e-4)


def test_running_stats_prior_normalize_and_round_trip() -> None:
    stats = RunningMeanStd((2,))
    x = torch.tensor([[1.0, -20.0]])
    torch.testing.assert_close(stats.normalize(x), x)  # untouched: mean 0, var 1
    stats.update(torch.tensor([[10, 0], [12, 0], [14, 0]], dtype=torch.uint8))  # integer input
    out = stats.normalize(torch.tensor([[12.0, 3.0], [100.0, 0.0]]), clip=5.0)
    assert out.dtype == torch.float32
    assert abs(out[0, 0].item()) < 1e-3  # the mean maps to 0
    assert out[1, 0].item() == 5.0 and out[0, 1].item() == 5.0  # far values are clipped
    with pytest.raises(ValueError):
        stats.update(torch.zeros(4, 3))
    copy = RunningMeanStd((2,))
    copy.load_state_dict(stats.state_dict())
    assert copy.count == stats.count
    assert torch.equal(copy.mean, stats.mean) and torch.equal(copy.var, stats.var)


# ---------------------------------------------------------------------------- EmaMeanStd
def test_ema_starts_neutral_and_one_update_gives_the_batch_statistics() -> None:
    stats = EmaMeanStd(0.9)
    assert (stats.mean, stats.var, stats.std) == (0.0, 1.0, 1.0)
    stats.update(torch.zeros(0))  # empty: ignored
    stats.update(torch.ones(3), torch.zeros(3))  # no weight: ignored
    assert stats.weight == 0.0
    x = torch.tensor([1.0, 2.0, 4.0, 9.0])
    stats.update(x)
    assert stats.mean == pytest.approx(4.0)
    assert stats.std == pytest.approx(float(x.std(correction=0)))


def test_ema_weights_select_samples_and_old_batches_fade() -> None:
    decay = 0.5
    masked, plain = EmaMeanStd(decay), EmaMeanStd(decay)
    batches = [torch.tensor([[1.0, 5.0], [3.0, -2.0]]), torch.tensor([[10.0, 0.0], [20.0, 7.0]])]
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    for x in batches:
        masked.update(x, mask)
        plain.update(x[mask > 0])
    assert masked.state_dict() == pytest.approx(plain.state_dict())
    # debiased: weights 1/3 and 2/3 on the two batch means (decay 0.5, 2 updates)
    means = [float(x[mask > 0].mean()) for x in batches]
    assert masked.weight == pytest.approx(1 - decay**2)
    assert masked.mean == pytest.approx(means[0] / 3 + 2 * means[1] / 3)
    copy = EmaMeanStd(decay)
    copy.load_state_dict(masked.state_dict())
    assert (copy.mean, copy.std) == (masked.mean, masked.std)


# ---------------------------------------------------------------------------- HorizonMean
def test_horizon_mean_is_exact_then_exponential() -> None:
    stats = HorizonMean(3)
    for value in (3.0, 6.0, 9.0):
        stats.update(value)
    assert stats.mean == pytest.approx(6.0) and stats.count == 3
    stats.update(12.0)  # from now on: weight 1/3
    assert stats.mean == pytest.approx(6.0 + (12.0 - 6.0) / 3) and stats.count == 3
    copy = HorizonMean(3)
    copy.load_state_dict(stats.state_dict())
    assert (copy.mean, copy.count) == (stats.mean, stats.count)
    with pytest.raises(ValueError):
        HorizonMean(0)
