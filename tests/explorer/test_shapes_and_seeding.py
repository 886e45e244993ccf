"""Tests for explorer.core.shapes and explorer.core.seeding."""

from __future__ import annotations

import torch
from torch import nn

from explorer.core.seeding import seeded_generator, seeded_init
from explorer.core.shapes import flatten_obs, flatten_time_batch, unflatten_time_batch


def test_time_batch_round_trip_puts_step_t_of_env_b_at_row_t_times_b() -> None:
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # (T, B, 4)
    flat = flatten_time_batch(x)
    assert flat.shape == (6, 4) and torch.equal(flat[1 * 3 + 2], x[1, 2])
    assert torch.equal(unflatten_time_batch(flat, 2, 3), x)
    assert flatten_time_batch(torch.zeros(2, 3)).shape == (6,)  # (T, B) -> (N,)


def test_flatten_obs_keeps_only_the_named_keys() -> None:
    obs = {"image": torch.zeros(2, 3, 7, 7), "direction": torch.zeros(2, 3), "x": torch.ones(1)}
    flat = flatten_obs(obs, ("direction", "image"), "cpu")
    assert set(flat) == {"direction", "image"}
    assert flat["image"].shape == (6, 7, 7) and flat["direction"].shape == (6,)


def test_seeded_init_repeats_weights_and_leaves_the_global_rng_alone() -> None:
    before = torch.get_rng_state()
    with seeded_init(3):
        a = nn.Linear(4, 5)
    with seeded_init(3):
        b = nn.Linear(4, 5)
    with seeded_init(4):
        c = nn.Linear(4, 5)
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)


def test_seeded_generator_is_private_and_repeatable() -> None:
    before = torch.get_rng_state()
    draws = [torch.rand(3, generator=seeded_generator(5)) for _ in range(2)]
    assert torch.equal(*draws) and torch.equal(before, torch.get_rng_state())
