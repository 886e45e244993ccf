"""Minibatches of shuffled transitions (PPO with a feed-forward model, as CleanRL) against
minibatches of whole env columns: the same data, so one minibatch per epoch must give the
same update; and the choice is made once, at construction, from the config."""

from __future__ import annotations

import pytest
import torch
from minigrid_batches import minigrid_batch, minigrid_learner

from explorer.core.config import ConfigError
from learner.algo import Learner


def _params(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


def test_select_samples_picks_the_flattened_transitions() -> None:
    batch = minigrid_batch()
    steps, envs = batch.actions.shape
    index = torch.tensor([0, 5, envs * 3 + 2, steps * envs - 1])
    mb = batch.select_samples(index)
    assert mb.actions.shape == (1, 4) and mb.obs["image"].shape[:2] == (1, 4)
    for j, flat in enumerate(index.tolist()):
        t, b = divmod(flat, envs)
        assert mb.actions[0, j] == batch.actions[t, b]
        assert torch.equal(mb.obs["image"][0, j], batch.obs["image"][t, b])
        assert mb.behaviour_values[0, j] == batch.behaviour_values[t, b]
        assert mb.mask[0, j] == batch.mask[t, b] and mb.env_ids[j] == batch.env_ids[b]


def test_one_minibatch_of_samples_equals_one_of_env_columns() -> None:
    batch = minigrid_batch()
    common = ("learner.algo=ppo", "learner.epochs=1", "learner.minibatches=1",
              "learner.model.kind=mlp")
    flat = minigrid_learner(*common, "learner.minibatch_split=samples")
    cols = minigrid_learner(*common, "learner.minibatch_split=envs")
    assert flat.flat_minibatches and not cols.flat_minibatches
    for a, b in zip(_params(flat), _params(cols), strict=True):
        assert torch.equal(a, b)  # same init
    flat.train(batch)
    cols.train(batch)
    for a, b in zip(_params(flat), _params(cols), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_auto_split_follows_the_algorithm_and_core() -> None:
    assert minigrid_learner("learner.algo=ppo").flat_minibatches
    assert not minigrid_learner("learner.algo=appo").flat_minibatches
    assert not minigrid_learner("learner.algo=ppo", "learner.model.core=gru").flat_minibatches
    for conflict in ("learner.algo=appo", "learner.model.core=gru"):
        with pytest.raises(ConfigError, match=r"^learner\.minibatch_split: 'samples' needs "
                                              r"learner\.algo=ppo and learner\.model\.core="):
            minigrid_learner(conflict, "learner.minibatch_split=samples")


def test_sample_minibatches_train_every_transition_each_epoch() -> None:
    learner = minigrid_learner("learner.algo=ppo", "learner.minibatches=4")
    batch = minigrid_batch()
    streams, _ = learner.streams(batch, observe=False)
    pre = learner._precompute(batch, streams)
    sizes = [mb.actions.shape for mb, _, _ in learner._minibatches(batch, streams, pre)]
    steps, envs = batch.actions.shape
    assert len(sizes) == 4 and sum(s[1] for s in sizes) == steps * envs
    assert all(s[0] == 1 for s in sizes)
    metrics = learner.train(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
