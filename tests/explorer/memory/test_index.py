"""Tests for explorer.memory.index against NumPy brute-force search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from explorer.memory import EmbeddingMemory

DIM = 16


def random_data(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)


def brute_force(data: np.ndarray, queries: np.ndarray, k: int,
                metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours: distances (Q, k) and row indices (Q, k), nearest first."""
    if metric == "l2":
        scores = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(-1)  # (Q, N)
        order = np.argsort(scores, axis=1)[:, :k]
    else:
        scores = queries @ data.T
        order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                            strict=True)]))


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_search_is_exact(metric: str) -> None:
    data, queries = random_data(500, 0), random_data(20, 1)
    memory = EmbeddingMemory(DIM, kind="flat", metric=metric, use_gpu=False)
    ids = memory.add(data)
    assert np.array_equal(ids, np.arange(500)) and len(memory) == 500
    distances, found = memory.search(queries, 10)
    want_distances, want_ids = brute_force(data, queries, 10, metric)
    assert distances.shape == found.shape == (20, 10)
    assert distances.dtype == np.float32 and found.dtype == np.int64
    assert np.array_equal(found, want_ids)
    np.testing.assert_allclose(distances, want_distances, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_fewer_stored_than_k_pads_with_missing(kind: str) -> None:
    memory = EmbeddingMemory(DIM, kind=kind, use_gpu=False)
    empty_d, empty_i = memory.search(random_data(2, 1), 4)
    assert np.isinf(empty_d).all() and (empty_i == -1).all()
    data = random_data(3, 0)
    memory.add(data)
    distances, ids = memory.search(data, 5)
    assert np.array_equal(ids[:, 0], [0, 1, 2])
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-5)
    assert (ids[:, 3:] == -1).all() and np.isposinf(distances[:, 3:]).all()
    assert np.isfinite(distances[:, :3]).all()


def test_hnsw_recall() -> None:
    data, queries = random_data(3000, 0, dim=32), random_data(100, 1, dim=32)
    memory = EmbeddingMemory(32, kind="hnsw", use_gpu=False)
    memory.add(data)
    _, found = memory.search(queries, 10)
    assert recall(found, brute_force(data, queries, 10)[1]) >= 0.9


def test_ivf_is_exact_until_trained_then_approximate() -> None:
    data, queries = random_data(1200, 0), random_data(50, 1)
    memory = EmbeddingMemory(DIM, kind="ivf", nlist=8, nprobe=4, use_gpu=False)
    assert memory.ivf_train_size == 39 * 8
    memory.add(data[:300])
    _, found = memory.search(queries, 10)
    assert np.array_equal(found, brute_force(data[:300], queries, 10)[1])  # flat buffer
    memory.add(data[300:])
    assert isinstance(memory.index, faiss.IndexIVFFlat)
    assert len(memory) == 1200
    _, found = memory.search(queries, 10)
    assert recall(found, brute_force(data, queries, 10)[1]) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_remove(kind: str) -> None:
    data, queries = random_data(800, 0), random_data(30, 1)
    memory = EmbeddingMemory(DIM, kind=kind, nlist=4, use_gpu=False)
    memory.add(data)
    _, nearest = memory.search(queries, 1)
    gone = np.unique(nearest[:, 0])
    assert memory.remove(np.concatenate([gone, [10_000]])) == len(gone)  # unknown id ignored
    assert len(memory) == 800 - len(gone)
    assert not np.isin(gone, memory.ids()).any()
    _, found = memory.search(queries, 5)
    assert not np.isin(found, gone).any()
    keep = np.setdiff1d(np.arange(800), gone)
    want = keep[brute_force(data[keep], queries, 5)[1]]
    if kind == "flat":
        assert np.array_equal(found, want)
    else:
        assert recall(found, want) >= 0.9


def test_payload_ids_and_torch_inputs() -> None:
    data = random_data(4, 0)
    memory = EmbeddingMemory(DIM, use_gpu=False)
    ids = memory.add(torch.from_numpy(data), payload_ids=torch.tensor([70, 10, 30, 20]))
    assert np.array_equal(ids, [70, 10, 30, 20])
    _, found = memory.search(torch.from_numpy(data), 1)
    assert np.array_equal(found[:, 0], [70, 10, 30, 20])
    assert np.array_equal(memory.add(data[:2]), [71, 72])  # after the largest id
    with pytest.raises(ValueError):
        memory.add(data[:, :3])
    with pytest.raises(ValueError):
        memory.add(data, payload_ids=[1, 2])
    with pytest.raises(ValueError):
        memory.search(data, 0)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind: str) -> None:
    data, queries = random_data(600, 0), random_data(20, 1)
    memory = EmbeddingMemory(DIM, kind=kind, metric="l2", nlist=4, use_gpu=False)
    memory.add(data, payload_ids=np.arange(600) * 3)
    memory.remove([0, 3, 6])
    path = tmp_path / "memory.bin"
    memory.save(path)
    loaded = EmbeddingMemory.load(path, use_gpu=False)
    assert (loaded.kind, loaded.metric, loaded.dim, len(loaded)) == (kind, "l2", DIM, 597)
    for a, b in zip(memory.search(queries, 7), loaded.search(queries, 7), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(loaded.add(data[:1]), memory.add(data[:1]))  # id counter restored
    restored = EmbeddingMemory(DIM, kind=kind, nlist=4, use_gpu=False)
    restored.load_state_dict(memory.state_dict())
    for a, b in zip(memory.search(queries, 7), restored.search(queries, 7), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        EmbeddingMemory(DIM + 1, kind=kind).load_state_dict(memory.state_dict())


def test_reset_forgets_everything() -> None:
    memory = EmbeddingMemory(DIM, kind="ivf", nlist=2, use_gpu=False)
    memory.add(random_data(200, 0))
    memory.reset()
    assert len(memory) == 0 and memory.ids().size == 0
    assert np.array_equal(memory.add(random_data(2, 1)), [0, 1])
    assert memory.search(random_data(1, 2), 3)[1].tolist() == [[0, 1, -1]]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        EmbeddingMemory(DIM, kind="lsh")
    with pytest.raises(ValueError):
        EmbeddingMemory(DIM, metric="cosine")
    with pytest.raises(ValueError):
        EmbeddingMemory(DIM, kind="hnsw", use_gpu=True)


@pytest.mark.skipif(getattr(faiss, "get_num_gpus", lambda: 0)() == 0, reason="no FAISS GPU")
def test_gpu_replica_matches_cpu() -> None:
    data, queries = random_data(500, 0), random_data(20, 1)
    gpu = EmbeddingMemory(DIM, use_gpu=True)
    cpu = EmbeddingMemory(DIM, use_gpu=False)
    for memory in (gpu, cpu):
        memory.add(data)
        memory.remove([1, 2, 3])
        memory.add(data[:5])
    assert gpu.use_gpu
    d_gpu, i_gpu = gpu.search(queries, 5)
    d_cpu, i_cpu = cpu.search(queries, 5)
    assert np.array_equal(i_gpu, i_cpu)
    np.testing.assert_allclose(d_gpu, d_cpu, rtol=1e-4, atol=1e-4)


def clustered_data(count: int, seed: int, dim: int = 32, sigma: float = 0.7) -> np.ndarray:
    """Points around 200 fixed Gaussian centres (unit scale) with noise ``sigma``: embeddings
    have such structure, which is what IVF's coarse clustering relies on."""
    centres = random_data(200, 123, dim)
    rng = np.random.default_rng(seed)
    noise = sigma * rng.standard_normal((count, dim))
    return (centres[rng.integers(0, 200, count)] + noise).astype(np.float32)


@pytest.mark.parametrize(("kind", "options", "make"), [
    # IVF on clustered data (sigma 0.7, 200 centres): recall 0.986 at nprobe=8. On structureless
    # N(0, I) data, IVF's worst case, nlist=64 / nprobe=16 reaches only 0.77.
    ("ivf", {"nlist": 64, "nprobe": 8}, clustered_data),
    # HNSW holds even on structureless N(0, I) data: 0.972
    ("hnsw", {"hnsw_m": 32, "hnsw_ef_construction": 40, "hnsw_ef_search": 64}, random_data),
])
def test_recall_at_10_against_exact(kind: str, options: dict, make) -> None:
    """Recall@10 >= 0.95 against exact search: 20k seeded 32-d vectors, 200 queries, l2; IVF
    trained once on all 20k (``ivf_train_size``)."""
    data, queries = make(20_000, 0, dim=32), make(200, 1, dim=32)
    memory = EmbeddingMemory(32, kind=kind, use_gpu=False, ivf_train_size=20_000, **options)
    memory.add(data)
    if kind == "ivf":
        assert isinstance(memory.index, faiss.IndexIVFFlat)
    exact = EmbeddingMemory(32, kind="flat", use_gpu=False)
    exact.add(data)
    _, truth = exact.search(queries, 10)
    _, found = memory.search(queries, 10)
    assert recall(found, truth) >= 0.95


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_and_queries_are_refused(bad: float) -> None:
    memory = EmbeddingMemory(DIM, use_gpu=False)
    data = random_data(5, 0)
    data[3, 2] = bad
    with pytest.raises(ValueError, match=r"NaN or inf in 1 of 5 rows \(first: \[3\]\)"):
        memory.add(data)
    assert len(memory) == 0  # nothing half-added
    memory.add(random_data(5, 1))
    with pytest.raises(ValueError, match="queries hold NaN or inf"):
        memory.search(data, 2)


def test_wrong_dimension_and_bad_k_name_the_problem() -> None:
    memory = EmbeddingMemory(DIM, use_gpu=False)
    with pytest.raises(ValueError, match=rf"vectors must have shape \(N, {DIM}\); got \(4, 3\)"):
        memory.add(random_data(4, 0, dim=3))
    memory.add(random_data(4, 0))
    with pytest.raises(ValueError, match=r"queries must have shape"):
        memory.search(random_data(4, 0)[0], 2)  # (D,), not (1, D)
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            memory.search(random_data(1, 0), k)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_k_larger_than_the_memory_is_defined(kind: str) -> None:
    memory = EmbeddingMemory(DIM, kind=kind, nlist=4, use_gpu=False)
    data = random_data(300, 0)
    memory.add(data)
    distances, ids = memory.search(data[:3], 1000)
    assert ids.shape == (3, 1000) and (ids[:, 300:] == -1).all()
    assert np.isposinf(distances[:, 300:]).all()
    if kind == "flat":
        assert (np.sort(ids[:, :300], axis=1) == np.arange(300)).all()


def test_corrupt_saved_memory_is_a_clear_error(tmp_path) -> None:
    from explorer.memory import CorruptMemoryError

    memory = EmbeddingMemory(DIM, kind="ivf", nlist=4, use_gpu=False)
    memory.add(random_data(400, 0))
    state = memory.state_dict()
    flipped = bytearray(state["index"])
    flipped[len(flipped) // 2] ^= 0xFF
    with pytest.raises(CorruptMemoryError, match="checksum"):
        EmbeddingMemory(DIM, kind="ivf").load_state_dict({**state, "index": bytes(flipped)})
    # no checksum (an old state): FAISS's parse error becomes ours
    with pytest.raises(CorruptMemoryError, match="does not parse"):
        EmbeddingMemory(DIM, kind="ivf").load_state_dict(
            {**state, "index": state["index"][:40], "sha256": None})
    path = tmp_path / "memory.npz"
    memory.save(path)
    path.write_bytes(path.read_bytes()[:-100])  # truncated file
    with pytest.raises(CorruptMemoryError, match=r"memory\.npz"):
        EmbeddingMemory.load(path, use_gpu=False)
    path.write_bytes(b"not a memory")
    with pytest.raises(CorruptMemoryError):
        EmbeddingMemory.load(path, use_gpu=False)
