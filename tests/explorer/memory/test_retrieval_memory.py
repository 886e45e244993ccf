"""Tests for explorer.memory.store: payloads, block eviction, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.core.checkpoint import load_checkpoint, save_checkpoint
from explorer.memory import CorruptMemoryError, RetrievalMemory

DIM = 8
PAYLOADS = {"episode": ((), "int64"), "chunk": ((3, 2), "float32")}


def keys(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)


def payloads(start: int, count: int) -> dict[str, np.ndarray]:
    """Entry i carries episode i and a chunk filled with i: payloads name their entry."""
    ids = np.arange(start, start + count)
    return {"episode": ids, "chunk": np.broadcast_to(ids[:, None, None], (count, 3, 2))
            .astype(np.float32)}


def test_search_returns_each_neighbours_payload() -> None:
    memory = RetrievalMemory(DIM, 100, PAYLOADS, use_gpu=False)
    data = keys(50, 0)
    memory.add(data, payloads(0, 50))
    found = memory.search(data[[7, 30]], 4)
    assert found.valid.all() and found.slots.shape == (2, 4)
    assert found.payloads["episode"][:, 0].tolist() == [7, 30]  # a key is its own nearest
    assert found.payloads["chunk"].shape == (2, 4, 3, 2)
    assert np.array_equal(found.payloads["chunk"][..., 0, 0], found.payloads["episode"])


def test_empty_memory_and_k_beyond_size_are_invalid_neighbours() -> None:
    memory = RetrievalMemory(DIM, 10, PAYLOADS, use_gpu=False)
    empty = memory.search(keys(3, 0), 5)
    assert not empty.valid.any() and (empty.slots == -1).all()
    assert (empty.payloads["chunk"] == 0).all() and np.isposinf(empty.distances).all()
    memory.add(keys(2, 1), {"episode": [5, 6], "chunk": np.ones((2, 3, 2))})
    some = memory.search(keys(1, 2), 5)
    assert some.valid.sum() == 2 and (some.payloads["episode"][~some.valid] == 0).all()


def test_fifo_evicts_the_oldest_in_blocks_and_keeps_capacity() -> None:
    memory = RetrievalMemory(DIM, 64, PAYLOADS, eviction="fifo", evict_block=16,
                             use_gpu=False)
    removals = []
    remove = memory.index.remove
    memory.index.remove = lambda ids: removals.append(len(ids)) or remove(ids)
    for step in range(20):  # 200 entries, 10 at a time
        memory.add(keys(10, step), payloads(10 * step, 10))
        assert len(memory) <= 64
    assert all(n == 16 for n in removals) and len(removals) == (200 - 64 + 15) // 16
    stored = np.sort(memory.payloads["episode"][memory.stored_slots()])
    assert np.array_equal(stored, np.arange(200 - len(memory), 200))  # the newest survive
    assert np.array_equal(memory.payloads["episode"][memory.stored_slots()], stored)  # by age
    everything = memory.search(keys(1, 99), 64)
    assert set(everything.payloads["episode"][everything.valid]) == set(stored.tolist())


def test_reservoir_keeps_a_uniform_sample_of_the_stream() -> None:
    memory = RetrievalMemory(DIM, 500, {"t": ((), "int64")}, eviction="reservoir",
                             evict_block=25, seed=0, use_gpu=False)
    for start in range(0, 20_000, 100):
        memory.add(keys(100, start), {"t": np.arange(start, start + 100)})
        assert len(memory) <= 500
    assert memory.seen == 20_000 and len(memory) >= 475
    kept = memory.payloads["t"][memory.stored_slots()]
    # uniform over [0, 20000): mean 10000, std of the mean 5774 / sqrt(n) ~ 260
    assert abs(kept.mean() - 10_000) < 1_000
    assert (kept < 5_000).sum() > 60 and (kept >= 15_000).sum() > 60  # old entries survive


def test_more_than_capacity_in_one_add_keeps_the_last() -> None:
    memory = RetrievalMemory(DIM, 10, {"t": ((), "int64")}, use_gpu=False)
    slots = memory.add(keys(25, 0), {"t": np.arange(25)})
    assert (slots[:15] == -1).all() and (slots[15:] >= 0).all() and len(memory) == 10
    assert sorted(memory.payloads["t"][memory.stored_slots()]) == list(range(15, 25))


def test_remove_and_replace_keys() -> None:
    memory = RetrievalMemory(DIM, 20, {"t": ((), "int64")}, use_gpu=False)
    data = keys(10, 0)
    slots = memory.add(data, {"t": np.arange(10)})
    assert memory.remove([slots[3], slots[3], 999, -1]) == 1 and len(memory) == 9
    assert 3 not in memory.search(data[3:4], 9).payloads["t"]
    far = np.full((1, DIM), 100.0, np.float32)
    memory.replace_keys(slots[[5]], far)  # the refresh after an encoder change
    assert memory.search(far, 1).payloads["t"][0, 0] == 5
    assert memory.search(data[5:6], 1).payloads["t"][0, 0] != 5
    with pytest.raises(ValueError, match="distinct stored slots"):
        memory.replace_keys(slots[[3]], far)  # removed
    new = memory.add(keys(2, 1), {"t": [100, 101]})
    assert slots[3] in new and len(memory) == 11  # the freed slot is reused


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize("eviction", ["fifo", "reservoir"])
def test_checkpoint_round_trip_is_exact(tmp_path, kind: str, eviction: str) -> None:
    def build() -> RetrievalMemory:
        return RetrievalMemory(DIM, 300, PAYLOADS, eviction=eviction, evict_block=20,
                               kind=kind, nlist=4, seed=3, use_gpu=False)

    memory = build()
    for step in range(5):
        memory.add(keys(100, step), payloads(100 * step, 100))
    path = save_checkpoint(tmp_path, 1, {"memory": memory.state_dict()})  # weights_only load
    restored = build()
    restored.load_state_dict(load_checkpoint(path)["memory"])
    queries = keys(20, 50)
    a, b = memory.search(queries, 7), restored.search(queries, 7)
    for x, y in [(a.distances, b.distances), (a.slots, b.slots),
                 *((a.payloads[n], b.payloads[n]) for n in PAYLOADS)]:
        assert np.array_equal(x, y)
    # the same future: slots, evictions and reservoir draws continue identically
    assert np.array_equal(memory.add(keys(100, 9), payloads(500, 100)),
                          restored.add(keys(100, 9), payloads(500, 100)))
    assert np.array_equal(memory.stored_slots(), restored.stored_slots())


def test_load_refuses_other_shapes_and_corrupt_bytes() -> None:
    memory = RetrievalMemory(DIM, 50, PAYLOADS, use_gpu=False)
    memory.add(keys(10, 0), payloads(0, 10))
    state = memory.state_dict()
    with pytest.raises(ValueError, match=r"differs in \['capacity'\]"):
        RetrievalMemory(DIM, 60, PAYLOADS, use_gpu=False).load_state_dict(state)
    broken = dict(state, index=dict(state["index"], index=state["index"]["index"][:-8]))
    with pytest.raises(CorruptMemoryError, match="checksum"):
        RetrievalMemory(DIM, 50, PAYLOADS, use_gpu=False).load_state_dict(broken)


def test_bad_input_names_the_problem() -> None:
    memory = RetrievalMemory(DIM, 10, PAYLOADS, use_gpu=False)
    with pytest.raises(ValueError, match=r"keys must have shape \(N, 8\); got \(2, 3\)"):
        memory.add(np.zeros((2, 3)), payloads(0, 2))
    with pytest.raises(ValueError, match=r"payloads must be exactly \['chunk', 'episode'\]"):
        memory.add(keys(2, 0), {"episode": [1, 2]})
    with pytest.raises(ValueError, match=r"payload 'chunk' must have shape \(2, 3, 2\)"):
        memory.add(keys(2, 0), {"episode": [1, 2], "chunk": np.zeros((2, 3))})
    bad = keys(2, 0)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        memory.add(bad, payloads(0, 2))
    with pytest.raises(ValueError, match="queries hold NaN or inf"):
        memory.search(bad, 1)
    assert len(memory) == 0
    with pytest.raises(ValueError, match="unknown eviction 'lru'"):
        RetrievalMemory(DIM, 10, eviction="lru")
    with pytest.raises(ValueError, match="evict_block must be in"):
        RetrievalMemory(DIM, 10, evict_block=11)
    with pytest.raises(ValueError, match="memory index options"):
        RetrievalMemory(DIM, 10, nlists=4)
    torch_keys = torch.from_numpy(keys(2, 0))
    assert (memory.add(torch_keys, payloads(0, 2)) >= 0).all()  # tensors are fine
