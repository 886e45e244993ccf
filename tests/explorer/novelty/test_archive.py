"""The novelty archive and its k-NN index against brute-force NumPy."""

import numpy as np
import pytest
import torch

from explorer.novelty import AddStatus, IncrementalKNN, NoveltyArchive, brute_force_knn
from explorer.novelty.state import from_checkpoint, to_checkpoint


@pytest.mark.parametrize("backend,dim", [("kdtree", 2), ("faiss", 2), ("faiss", 10),
                                         ("kdtree", 5)])
def test_incremental_knn_matches_brute_force(backend, dim):
    rng = np.random.default_rng(0)
    knn = IncrementalKNN(dim, backend=backend)
    stored = np.zeros((0, dim))
    for batch in (3, 700, 50, 1500, 20):  # crosses several kd-tree rebuilds
        points = rng.random((batch, dim))
        knn.add(points)
        stored = np.concatenate([stored, points])
        queries = rng.random((64, dim))
        dist, ids = knn.search(queries, 15)
        want_d, want_i = brute_force_knn(queries, stored, 15)
        np.testing.assert_allclose(dist, want_d, rtol=1e-4, atol=1e-5)
        with np.errstate(invalid="ignore"):  # inf - inf where fewer than k are stored
            exact = want_d[:, 1:] - want_d[:, :-1] > 1e-6  # ties may swap ids
        assert (ids[:, :-1] == want_i[:, :-1])[exact].mean() > 0.999
    assert len(knn) == len(stored)


def test_knn_with_fewer_points_than_k():
    knn = IncrementalKNN(2, backend="kdtree")
    knn.add(np.array([[0.0, 0.0], [1.0, 0.0]]))
    dist, ids = knn.search(np.array([[0.0, 1.0]]), 4)
    np.testing.assert_allclose(dist[0, :2], [1.0, np.sqrt(2)])
    assert np.isinf(dist[0, 2:]).all() and (ids[0, 2:] == -1).all()


def _brute_novelty(queries, others, archive, k):
    reference = np.concatenate([queries, others, archive])
    out = []
    for i, q in enumerate(queries):
        d = np.sqrt(((reference - q) ** 2).sum(1))
        d = np.delete(d, i)  # itself, once
        out.append(np.sort(d)[:k].mean() if len(d) else 0.0)
    return np.array(out)


@pytest.mark.parametrize("backend", ["kdtree", "faiss"])
def test_novelty_equals_brute_force(backend):
    rng = np.random.default_rng(1)
    archive = NoveltyArchive(solution_dim=3, descriptor_dim=2, k_neighbors=15,
                             insertion="threshold", novelty_threshold=0.0, knn_backend=backend)
    stored = rng.random((2000, 2))
    archive.add_all(rng.random((2000, 3)), stored, np.zeros(2000))
    queries, others = rng.random((300, 2)), rng.random((40, 2))
    queries[5] = queries[6]  # an identical twin counts as distance 0
    got = archive.novelty(queries, others)
    np.testing.assert_allclose(got, _brute_novelty(queries, others, stored, 15), rtol=1e-5)
    assert got[5] == got[6]
    # an empty archive: population only
    empty = NoveltyArchive(solution_dim=3, descriptor_dim=2, k_neighbors=15)
    few = rng.random((8, 2))
    np.testing.assert_allclose(empty.novelty(few), _brute_novelty(few, np.zeros((0, 2)),
                                                                  np.zeros((0, 2)), 15))
    assert empty.novelty(few[:1]).tolist() == [0.0]


@pytest.mark.parametrize("backend", ["kdtree", "faiss"])
def test_novelty_equals_brute_force_as_the_archive_grows(backend):
    """Batches offered one after another (the tree's tail grows, the tree is rebuilt), with
    and without ``others``, twins beyond k + 1, a batch smaller than k."""
    rng = np.random.default_rng(4)
    archive = NoveltyArchive(solution_dim=1, descriptor_dim=2, k_neighbors=15,
                             insertion="threshold", novelty_threshold=0.0, knn_backend=backend)
    stored = np.zeros((0, 2))
    for size in (5, 40, 300, 200, 700, 200, 3000, 60):
        queries = rng.random((size, 2))
        others = rng.random((size // 4, 2)) if size % 20 == 0 else np.zeros((0, 2))
        if size >= 200:
            queries[:20] = queries[0]  # 20 identical descriptors: more than k + 1 at distance 0
        got = archive.novelty(queries, others if len(others) else None)
        want = _brute_novelty(queries, others, stored, 15)
        if backend == "faiss":  # float32 inside FAISS
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12)
        if size >= 200:
            assert (got[:20] == 0).all()
        archive.add(np.zeros((size, 1)), queries, np.zeros(size), got)
        stored = np.concatenate([stored, queries])
        assert len(archive) == len(stored)
    assert archive.novelty(np.zeros((0, 2))).shape == (0,)


@pytest.mark.parametrize("dim,scale,offset", [(2, 1.0, 0.0), (1, 1.0, 0.0), (3, 1e-7, 0.0),
                                              (2, 1.0, 1e6), (5, 1e5, 0.0), (8, 1.0, 0.0)])
def test_novelty_grid_equals_the_small_tree_bit_for_bit(monkeypatch, dim, scale, offset):
    """novelty_distances finds the batch's, ``others``' and the tail's points with a grid; the
    small tree it replaces (the grid declined) must give the very same floats: twins, grid
    ties, large offsets, tiny and large scales, a batch smaller than k."""
    from explorer.novelty import knn

    def run() -> list[np.ndarray]:
        rng = np.random.default_rng(dim)
        index = IncrementalKNN(dim, backend="kdtree")
        index.add(rng.random((3000, dim)) * scale + offset)
        out = []
        for size in (200, 11, 300, 1, 60):
            queries = rng.random((size, dim)) * scale + offset
            if size >= 60:
                queries[1:20] = queries[0]  # more than k + 1 identical descriptors
                ties = np.round((queries[20:40] - offset) / scale * 8) / 8  # on a 1/8 lattice
                queries[20:40] = ties * scale + offset
            others = rng.random((size // 4, dim)) * scale + offset
            out.append(index.novelty_distances(queries, others, 15))
            index.add(queries[::3])  # the tail grows
        return out

    calls = {"grid": 0}
    real = knn._grid_near

    def counted(*args):
        got = real(*args)
        calls["grid"] += got is not None
        return got

    monkeypatch.setattr(knn, "_grid_near", counted)
    fast = run()
    if dim <= 2:  # wider descriptors may leave some batches to the tree (many candidates)
        assert calls["grid"] == 5
    monkeypatch.setattr(knn, "_grid_near", lambda *args: None)
    for got, want in zip(fast, run(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_insertion_policies():
    rng = np.random.default_rng(2)
    sols, desc = rng.random((50, 4)), rng.random((50, 2))
    random_archive = NoveltyArchive(solution_dim=4, descriptor_dim=2, insertion="random",
                                    add_per_generation=5, seed=0)
    status = random_archive.add(sols, desc, np.zeros(50), random_archive.novelty(desc))
    assert (status == AddStatus.NEW).sum() == 5 and len(random_archive) == 5
    np.testing.assert_array_equal(random_archive.solutions, sols[status == AddStatus.NEW])
    threshold = NoveltyArchive(solution_dim=4, descriptor_dim=2, insertion="threshold",
                               novelty_threshold=0.2)
    novelty = threshold.novelty(desc)
    status = threshold.add(sols, desc, np.zeros(50), novelty)
    np.testing.assert_array_equal(status == AddStatus.NEW, novelty >= 0.2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="insertion policy 'knn'"):
        NoveltyArchive(solution_dim=2, descriptor_dim=2, insertion="knn")
    with pytest.raises(ValueError, match="novelty_threshold"):
        NoveltyArchive(solution_dim=2, descriptor_dim=2, insertion="threshold")
    archive = NoveltyArchive(solution_dim=2, descriptor_dim=2)
    with pytest.raises(ValueError, match=r"descriptors must have shape \(3, 2\)"):
        archive.add(np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(3), np.zeros(3))


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    rng = np.random.default_rng(3)
    archive = NoveltyArchive(solution_dim=4, descriptor_dim=2, seed=7)
    for _ in range(3):
        desc = rng.random((20, 2))
        archive.add(rng.random((20, 4)), desc, rng.random(20), archive.novelty(desc))
    torch.save(to_checkpoint(archive.state_dict()), tmp_path / "a.pt")
    restored = NoveltyArchive(solution_dim=4, descriptor_dim=2, seed=99)
    restored.load_state_dict(from_checkpoint(torch.load(tmp_path / "a.pt", weights_only=True)))
    np.testing.assert_array_equal(restored.descriptors, archive.descriptors)
    np.testing.assert_array_equal(restored.solutions, archive.solutions)
    desc = rng.random((20, 2))
    np.testing.assert_array_equal(restored.add(np.zeros((20, 4)), desc, np.zeros(20),
                                               np.zeros(20)),
                                  archive.add(np.zeros((20, 4)), desc, np.zeros(20),
                                              np.zeros(20)))
