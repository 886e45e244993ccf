"""Tests for explorer.memory.episodic against NumPy brute force."""

from __future__ import annotations

import numpy as np
import torch

from explorer.memory import EpisodicMemories


def brute_knn(rows: list[list[np.ndarray]], x: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(rows), k), np.inf)
    for b, stored in enumerate(rows):
        if stored:
            d2 = np.sort(((np.stack(stored) - x[b]) ** 2).sum(-1))[:k]
            out[b, :len(d2)] = d2
    return out


def test_matches_brute_force_through_growth_fifo_and_resets() -> None:
    gen = torch.Generator().manual_seed(0)
    memories = EpisodicMemories(3, 4, capacity=6, initial_slots=2)
    reference: list[list[np.ndarray]] = [[], [], []]
    for step in range(20):
        x = torch.randn(3, 4, generator=gen)
        rows = torch.tensor([True, step % 2 == 0, step > 4])
        got = memories.knn(x, rows, 3).numpy()
        want = brute_knn(reference, x.numpy(), 3)
        want[~rows.numpy()] = np.inf
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        if step == 9:
            memories.reset(torch.tensor([False, False, True]))
            reference[2] = []
        memories.add(x, rows)
        for b in np.flatnonzero(rows.numpy()):
            reference[b] = (reference[b] + [x[b].numpy()])[-6:]  # FIFO of 6
    assert memories.buf.shape[2] == 6  # grew 2 -> 4 -> 6 (capped)
    assert memories.lens.tolist() == [6, 6, 6]


def test_export_load_round_trip() -> None:
    memories = EpisodicMemories(2, 4, capacity=5, initial_slots=2)
    for _ in range(7):
        memories.add(torch.randn(2, 4), torch.tensor([True, False]))
    vectors, count = memories.export(0)
    assert vectors.shape == (5, 4) and count == 7
    other = EpisodicMemories(1, 4, capacity=5)
    other.load(0, vectors, count)
    x = torch.randn(1, 4)
    torch.testing.assert_close(other.knn(x, torch.tensor([True]), 3),
                               memories.knn(torch.cat([x, x]), torch.tensor([True, True]),
                                            3)[:1])
    other.add(x, torch.tensor([True]))  # overwrites slot 7 % 5 = 2, the oldest
    assert torch.equal(other.export(0)[0][2], x[0])
