"""Tests for explorer.intrinsic.ngu."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import explorer.intrinsic.ngu  # noqa: F401  (registers "ngu")
from explorer.intrinsic.base import IntrinsicReward, make_intrinsic
from explorer.intrinsic.ngu import NGUBonus, kernel_bonus
from explorer.memory import EmbeddingMemory
from explorer.memory.index import _digest

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = {"obs": ((4,), "float32")}
SMALL = {"hidden_size": 32, "embed_dim": 8, "lr": 1e-3}
KERNEL = {"epsilon": 1e-3, "cluster_distance": 8e-3, "c": 1e-3, "max_similarity": 8.0}
MOVES = 0.2 * torch.tensor([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]])


def walk(batch_of, seed: int, steps: int = 16, envs: int = 8):
    """Action a moves the state by ``MOVES[a]``, from uniform starts in ``[0, 1)^4``."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(envs, 4, generator=generator)
    actions = torch.randint(0, len(MOVES), (steps, envs), generator=generator)
    obs = start + torch.cat([torch.zeros(1, envs, 4), MOVES[actions].cumsum(0)])
    return batch_of({"obs": obs}, actions=actions)


def one_env(batch_of, *codes: int, start: bool = True, env_id: int = 0):
    """One env's batch through fixed states: equal codes, equal observations."""
    table = torch.randn(10, 4, generator=torch.Generator().manual_seed(7))
    batch = batch_of({"obs": table[list(codes)].unsqueeze(1)}, env_ids=torch.tensor([env_id]))
    batch.episode_start[0] = start
    return batch


def numpy_ngu(phi: np.ndarray, k: int, horizon: int = 1000, capacity: int = 10**9
              ) -> np.ndarray:
    """Algorithm 1 of NGU for one episode ``phi`` (T+1, E) -> (T,) bonuses; the memory keeps
    the newest ``capacity`` embeddings."""
    memory, dist_mean, count, out = [phi[0]], 0.0, 0, []
    for x in phi[1:]:
        d2 = np.sort(((np.stack(memory[-capacity:]) - x) ** 2).sum(axis=1))[:k]
        count = min(count + 1, horizon)
        dist_mean += (d2.mean() - dist_mean) / count
        normalized = np.maximum(d2 / dist_mean - 8e-3, 0.0)
        similarity = math.sqrt((1e-3 / (normalized + 1e-3)).sum()) + 1e-3
        out.append(0.0 if similarity > 8.0 else 1.0 / similarity)
        memory.append(x)
    return np.array(out)


def test_kernel_hand_case() -> None:
    d2 = torch.tensor([[0.0, 0.5, 2.0, float("inf")], [0.0] * 4, [0.004, 0.0, 0.0, 0.0]])
    out = kernel_bonus(d2, 0.5, **KERNEL)
    # row 0: normalised distances 0, 1, 4 (minus xi 0.008, floored at 0); inf adds nothing
    kernel = 1e-3 / (np.array([0.0, 1 - 8e-3, 4 - 8e-3]) + 1e-3)
    expected0 = 1 / (math.sqrt(kernel.sum()) + 1e-3)
    # row 1: four identical neighbours, sqrt(4) + c = 2.001 <= 8
    # row 2: 0.004 / 0.5 = 0.008 is within the cluster distance: also 4 kernels of 1
    expected = torch.tensor([expected0, 1 / 2.001, 1 / 2.001])
    torch.testing.assert_close(out, expected.float())
    crowded = kernel_bonus(torch.zeros(1, 100), 1.0, **KERNEL)  # sqrt(100) > s_m = 8
    assert crowded.item() == 0.0


def test_protocol_and_seeding(batch_of) -> None:
    before = torch.get_rng_state()
    bonus = make_intrinsic("ngu", obs_spec=SPEC, num_actions=4, seed=3, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert isinstance(bonus, NGUBonus) and isinstance(bonus, IntrinsicReward)
    batch = walk(batch_of, seed=0)
    out = bonus.compute(batch)
    assert out.shape == (16, 8) and out.dtype == torch.float32 and bool((out > 0).all())
    assert torch.equal(out, NGUBonus(SPEC, 4, seed=3, **SMALL).compute(batch))
    assert not torch.equal(out, NGUBonus(SPEC, 4, seed=4, **SMALL).compute(batch))


@pytest.mark.parametrize(("initial_slots", "capacity"), [(1000, 1000), (2, 1000), (2, 5)])
def test_matches_numpy_algorithm(batch_of, initial_slots: int, capacity: int) -> None:
    """Growing the ring (2 slots doubling) and capping it (FIFO of 5) keep NGU's algorithm."""
    batch = walk(batch_of, seed=1, steps=12, envs=1)
    bonus = NGUBonus(SPEC, 4, k=3, initial_slots=initial_slots, memory_capacity=capacity,
                     **SMALL)
    out = bonus.compute(batch)[:, 0].numpy()
    phi = bonus.embed(batch.obs)[:, 0].double().numpy()
    np.testing.assert_allclose(out, numpy_ngu(phi, k=3, capacity=capacity), rtol=1e-4)
    vectors, count = bonus.memories[0]
    assert count == 13 and len(vectors) == min(13, capacity)


def test_revisits_lower_the_bonus_and_episode_start_restores_it(batch_of) -> None:
    bonus = NGUBonus(SPEC, 4, k=2, **SMALL)
    out = bonus.compute(one_env(batch_of, 1, 2, 1, 2, 1, 3))[:, 0]  # states A B A B A C
    assert out[2] < 0.5 * out[0] and out[3] < 0.5 * out[0]  # revisits of A, B
    assert out[4] > 2 * out[3]  # C is new
    continued = bonus.compute(one_env(batch_of, 3, 2, 3, start=False))[:, 0]
    assert continued.max() < 0.5 * out[0]  # C and B are already in this episode's memory
    fresh = bonus.compute(one_env(batch_of, 3, 2, 3, start=True))[:, 0]
    assert fresh[0] > 2 * continued[0]


def test_grown_memories_match_and_stay_bounded(batch_of) -> None:
    batch = walk(batch_of, seed=2, steps=40, envs=3)
    batch.mask[20, 1] = 0.0  # obs[21] of env 1 starts an episode
    batch.episode_start[21, 1] = True
    wide = NGUBonus(SPEC, 4, initial_slots=1000, **SMALL)
    grown = NGUBonus(SPEC, 4, initial_slots=4, **SMALL)
    torch.testing.assert_close(grown.compute(batch), wide.compute(batch), rtol=1e-4, atol=1e-6)
    assert [len(v) for v, _ in grown.memories.values()] == [41, 20, 41]
    capped = NGUBonus(SPEC, 4, initial_slots=4, memory_capacity=10, **SMALL)
    capped.compute(batch)
    assert [(len(v), n) for v, n in capped.memories.values()] == [(10, 41), (10, 20), (10, 41)]


def test_loads_checkpoints_of_the_faiss_memories(batch_of) -> None:
    """A checkpoint from before the ring (a flat FAISS memory per env, consecutive ids)
    resumes with the same vectors, oldest first."""
    vectors = torch.randn(6, 8)
    old = EmbeddingMemory(8, use_gpu=False)
    old.add(vectors.numpy())
    old.remove([0])  # the capped FIFO dropped the oldest
    bonus = NGUBonus(SPEC, 4, **SMALL)
    state = bonus.state_dict()
    state["memories"] = {0: old.state_dict(), 1: vectors[:2].clone()}
    assert state["memories"][0]["sha256"] == _digest(state["memories"][0]["index"])
    bonus.load_state_dict(state)
    got, count = bonus.memories[0]
    assert torch.equal(got, vectors[1:]) and count == 5
    assert torch.equal(bonus.memories[1][0], vectors[:2]) and bonus.memories[1][1] == 2


def test_batches_continue_per_env_id(batch_of) -> None:
    whole = walk(batch_of, seed=3, steps=20, envs=4)
    whole.mask[7, 1] = 0.0
    whole.episode_start[8, 1] = True
    expected = NGUBonus(SPEC, 4, initial_slots=6, **SMALL).compute(whole)
    assert expected[7, 1] == 0.0
    bonus = NGUBonus(SPEC, 4, initial_slots=6, **SMALL)
    first = dataclasses.replace(whole, obs={"obs": whole.obs["obs"][:11]},
                                actions=whole.actions[:10], mask=whole.mask[:10],
                                episode_start=whole.episode_start[:11])
    order = torch.tensor([2, 0, 3, 1])
    second = dataclasses.replace(whole, obs={"obs": whole.obs["obs"][10:, order]},
                                 actions=whole.actions[10:, order], mask=whole.mask[10:, order],
                                 episode_start=whole.episode_start[10:, order].clone(),
                                 env_ids=whole.env_ids[order])
    second.episode_start[0] = False
    # distances as |v|^2 - 2 v.x + |x|^2: rounding depends on the ring's allocated size
    torch.testing.assert_close(bonus.compute(first), expected[:10], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bonus.compute(second), expected[10:, order], rtol=1e-5,
                               atol=1e-6)


def test_masked_steps_get_zero(batch_of) -> None:
    batch = walk(batch_of, seed=4)
    batch.mask[::3, 1::2] = 0.0
    batch.actions[batch.mask == 0] = -1  # EnvPool ignores actions on auto-reset steps
    bonus = NGUBonus(SPEC, 4, **SMALL)
    out = bonus.compute(batch)
    assert bool((out[batch.mask == 0] == 0).all()) and bool((out[batch.mask > 0] > 0).all())
    assert bonus.update(batch)["loss"] > 0  # masked steps are not trained on


def test_update_trains_the_inverse_model(batch_of) -> None:
    train = walk(batch_of, seed=0)
    bonus = NGUBonus(SPEC, 4, **SMALL)
    first = bonus.update(train)
    for _ in range(150):
        metrics = bonus.update(train)
    assert set(metrics) == {"loss", "inverse_accuracy", "dist_mean"}
    assert metrics["loss"] < 0.3 * first["loss"] and metrics["inverse_accuracy"] > 0.9


def test_minigrid_observations(minigrid, minigrid_spec) -> None:
    rollout = minigrid(steps=16, num_envs=4)
    bonus = NGUBonus(minigrid_spec, 7, **SMALL)
    out = bonus.compute(rollout)
    assert out.shape == (16, 4) and bool((out[rollout.mask == 0] == 0).all())
    assert bool((out[rollout.mask > 0] >= 0).all())
    assert bonus.update(rollout)["loss"] > 0


def test_state_dict_round_trip(batch_of) -> None:
    first, second = walk(batch_of, seed=0), walk(batch_of, seed=1)
    first.episode_start[0, :4] = False  # envs 0..3 continue; envs 4..7 start
    second.episode_start[0] = False
    bonus = NGUBonus(SPEC, 4, seed=0, initial_slots=8, **SMALL)
    bonus.compute(walk(batch_of, seed=2, steps=4))  # envs 0..7 hold 5 embeddings
    bonus.compute(first)  # envs 0..3 now have 21 (grown past 8 slots), envs 4..7 have 17
    bonus.update(first)
    other = NGUBonus(SPEC, 4, seed=1, initial_slots=8, **SMALL)
    other.load_state_dict(bonus.state_dict())
    assert [len(v) for v, _ in other.memories.values()] == [21] * 4 + [17] * 4
    assert torch.equal(other.compute(second), bonus.compute(second))
    assert other.update(second) == bonus.update(second)
    assert torch.equal(other.compute(second), bonus.compute(second))
    tiny = NGUBonus(SPEC, 4, seed=0, **SMALL)
    tiny.compute(first)
    copy = NGUBonus(SPEC, 4, seed=0, **SMALL)
    copy.load_state_dict(tiny.state_dict())
    assert torch.equal(copy.compute(second), tiny.compute(second))
