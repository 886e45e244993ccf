"""SERENE on a toy sparse-reward problem: found by exploring, improved by emitters."""

import numpy as np
import pytest
import torch

from explorer.novelty import NoveltyArchive, NoveltySearchEmitter, Scheduler
from explorer.novelty.reward_emitters import make_reward_emitter
from explorer.novelty.serene import SereneScheduler
from explorer.novelty.state import from_checkpoint, to_checkpoint

G = 20
TARGET = np.linspace(2.0, 5.0, G)  # a genome inside the rewarded region


def descriptor(x):
    blocks = x.reshape(len(x), 2, G // 2).mean(-1)
    return 0.5 + 0.5 * np.tanh(0.15 * blocks)


def fitness(x):
    """0 unless the behaviour's x > 0.7 (sparse); inside, closer to TARGET is better."""
    inside = descriptor(x)[:, 0] > 0.7
    return np.where(inside, 1.0 + 1.0 / (1.0 + ((x - TARGET) ** 2).mean(1)), 0.0)


def make(kind, seed, serene=True):
    archive = NoveltyArchive(solution_dim=G, descriptor_dim=2, seed=seed)
    ns = NoveltySearchEmitter(archive, solution_dim=G, pop_size=50, sigma=1.0, seed=seed)
    if not serene:
        return Scheduler(archive, [ns])
    return SereneScheduler(archive, ns, emitter=kind, chunk_size=500, emitter_pop_size=10,
                           emitter_sigma=0.5, bootstrap_evals=30, stagnation_window=30,
                           seed=seed)


def search(scheduler, budget=8000):
    best, first_reward = 0.0, None
    while scheduler.evaluations < budget:
        x = scheduler.ask()
        f = fitness(x)
        scheduler.tell(f, descriptor(x))
        if first_reward is None and (f > 0).any():
            first_reward = float(f.max())
        best = max(best, float(f.max()))
    return best, first_reward


@pytest.mark.parametrize("kind", ["cma", "fit"])
@pytest.mark.parametrize("seed", [0, 1])
def test_emitters_improve_the_reward_novelty_search_found(kind, seed):
    serene = make(kind, seed)
    best, first = search(serene)
    ns_best, _ = search(make(kind, seed, serene=False))
    assert first is not None, "exploration never reached the rewarded region"
    assert serene.counts["created"] > 0 and serene.emitter_stats()["reward_archive"] > 0
    assert best > first + 0.1, (best, first)  # emitters climbed the reward
    assert best > ns_best + 0.05, (best, ns_best)  # beyond what exploring alone reaches


def test_serene_state_round_trip_asks_the_same_genomes(tmp_path):
    first = make("cma", 3)
    search(first, budget=2500)  # into exploitation, with CMA-ES emitters alive
    assert first.pool or first.bootstrapping
    torch.save(to_checkpoint(first.state_dict()), tmp_path / "s.pt")
    second = make("cma", 99)
    second.load_state_dict(from_checkpoint(torch.load(tmp_path / "s.pt", weights_only=True)))
    for _ in range(20):
        a, b = first.ask(), second.ask()
        np.testing.assert_array_equal(a, b)
        first.tell(fitness(a), descriptor(a))
        second.tell(fitness(b), descriptor(b))
    assert first.emitter_stats() == second.emitter_stats()


def test_stagnation_terminates_an_emitter():
    emitter = make_reward_emitter("fit", x0=np.zeros(4), parent_fitness=1.0, sigma=0.1,
                                  pop_size=4, bounds=(-5, 5), stagnation_window=10, seed=0)
    for _ in range(9):
        emitter.tell(emitter.ask(), np.ones(4), np.zeros((4, 2)))
        assert not emitter.stagnated()
    emitter.tell(emitter.ask(), np.ones(4), np.zeros((4, 2)))
    assert emitter.stagnated() and emitter.improvement == 0.0
