"""Novelty search vs random search on a toy behaviour space; ask/tell contract; resume."""

import numpy as np
import pytest

from explorer.novelty import NoveltyArchive, NoveltySearchEmitter, RandomEmitter, Scheduler

GENOME = 20


def toy_descriptor(genomes: np.ndarray) -> np.ndarray:
    """A squashing 2-D map: uniform genomes land in the middle, the edges need search."""
    blocks = genomes.reshape(len(genomes), 2, GENOME // 2).mean(-1)  # (B, 2)
    return 0.5 + 0.5 * np.tanh(0.15 * blocks)


def cells(descriptors: np.ndarray, bins: int = 20) -> int:
    idx = np.clip((descriptors * bins).astype(int), 0, bins - 1)
    return len({tuple(row) for row in idx})


def run(emitter_cls, seed, evaluations=6100, **kwargs):
    archive = NoveltyArchive(solution_dim=GENOME, descriptor_dim=2, k_neighbors=15, seed=seed)
    emitter = emitter_cls(archive, solution_dim=GENOME, seed=seed, **kwargs)
    scheduler = Scheduler(archive, [emitter])
    seen = []
    while scheduler.evaluations < evaluations:
        genomes = scheduler.ask()
        desc = toy_descriptor(genomes)
        scheduler.tell(np.zeros(len(genomes)), desc)
        seen.append(desc)
    return cells(np.concatenate(seen)), scheduler


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_novelty_search_covers_more_than_random_search(seed):
    ns_cells, ns = run(NoveltySearchEmitter, seed, pop_size=100, sigma=1.0)
    random_cells, rs = run(RandomEmitter, seed, batch_size=100)
    assert ns.evaluations == rs.evaluations == 6100  # 100 + 30 generations of 200
    assert ns_cells >= 1.5 * random_cells, (ns_cells, random_cells)  # measured 1.7-1.9x


def test_ask_tell_order_and_lengths():
    archive = NoveltyArchive(solution_dim=GENOME, descriptor_dim=2)
    scheduler = Scheduler(archive, [NoveltySearchEmitter(archive, solution_dim=GENOME,
                                                         pop_size=10, seed=0)])
    with pytest.raises(RuntimeError, match="before ask"):
        scheduler.tell(np.zeros(10), np.zeros((10, 2)))
    genomes = scheduler.ask()
    assert genomes.shape == (10, GENOME) and np.abs(genomes).max() <= 5
    with pytest.raises(RuntimeError, match="ask\\(\\) called twice"):
        scheduler.ask()
    with pytest.raises(ValueError, match=r"fitness must have shape \(10,\)"):
        scheduler.tell(np.zeros(9), np.zeros((10, 2)))
    scheduler.tell(np.zeros(10), toy_descriptor(genomes))
    assert scheduler.ask().shape == (20, GENOME)  # 2 offspring per parent


def test_restored_scheduler_asks_the_same_genomes():
    _, first = run(NoveltySearchEmitter, 5, evaluations=1000, pop_size=20)
    state = first.state_dict()
    archive = NoveltyArchive(solution_dim=GENOME, descriptor_dim=2, k_neighbors=15, seed=123)
    second = Scheduler(archive, [NoveltySearchEmitter(archive, solution_dim=GENOME,
                                                      pop_size=20, seed=456)])
    second.load_state_dict(state)
    for _ in range(3):
        a, b = first.ask(), second.ask()
        np.testing.assert_array_equal(a, b)
        first.tell(np.zeros(len(a)), toy_descriptor(a))
        second.tell(np.zeros(len(b)), toy_descriptor(b))
    np.testing.assert_array_equal(first.archive.descriptors, second.archive.descriptors)
