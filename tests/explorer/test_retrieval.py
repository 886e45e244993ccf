"""Tests for explorer.core.retrieval and the retrieval core inside ActorCritic."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from explorer.core.networks import ActorCritic
from explorer.core.retrieval import RetrievalCore

F, L, M = 6, 3, 4  # features, chunk_len, window_chunks: W = 12
SPEC = {"obs": ((5,), "float32")}


@dataclass
class Retrieval:
    k: int = 2
    chunk_len: int = L
    window_chunks: int = M
    key_dim: int = 8
    source: str = "episode"
    memory_chunks: int = 0


@dataclass
class Cfg:
    kind: str = "mlp"
    hidden_size: int = 16
    core: str = "none"
    core_size: int = 8
    retrieval: Retrieval = field(default_factory=Retrieval)


def core(k: int = 2, seed: int = 0) -> RetrievalCore:
    torch.manual_seed(seed)
    return RetrievalCore(F, k=k, chunk_len=L, window_chunks=M, key_dim=8)


def starts(steps: int, batch: int, *at: tuple[int, int]) -> torch.Tensor:
    start = torch.zeros(steps, batch, dtype=torch.bool)
    start[0] = True
    for t, b in at:
        start[t, b] = True
    return start


def test_empty_memory_gives_the_no_retrieval_output() -> None:
    """At an episode's first L steps nothing is retrievable: retrieved = 0, a defined output."""
    net = core()
    x = torch.randn(L, 2, F)
    out, state = net(x, torch.zeros(2, net.state_size), starts(L, 2))
    want = torch.relu(net.out(torch.cat([x, torch.zeros(L, 2, 8)], -1)))
    torch.testing.assert_close(out, want)
    assert state.shape == (2, net.state_size) and torch.isfinite(out).all()


def test_full_memory_retrieves_k_chunks_and_changes_the_output() -> None:
    net = core(k=2)
    steps = 3 * net.window
    x = torch.randn(steps, 2, F)
    out, _ = net(x, torch.zeros(2, net.state_size), starts(steps, 2))
    no_memory = torch.relu(net.out(torch.cat([x, torch.zeros(steps, 2, 8)], -1)))
    assert not torch.allclose(out[-1], no_memory[-1])  # the window is full: chunks retrieved
    torch.testing.assert_close(out[:L], no_memory[:L])  # the first chunk is not complete yet


def test_retrieval_finds_the_matching_chunk() -> None:
    """With identity projections the chunk whose summary equals the query wins; a later
    episode start empties the memory."""
    net = RetrievalCore(2, k=1, chunk_len=2, window_chunks=4, key_dim=2)
    with torch.no_grad():
        # all four projections of x (and the chunk key) are 10 x identity
        net.project.weight.copy_(10 * torch.eye(2).repeat(4, 1))
        net.chunk_key.weight.copy_(10 * torch.eye(2))
        for layer in (net.project, net.chunk_key):
            layer.bias.zero_()
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    x = torch.stack([a, a, b, b, b, b]).unsqueeze(1)  # (6, 1, 2): chunks [a a], [b b], ...
    start = torch.zeros(6, 1, dtype=torch.bool)
    start[0] = True
    net.out = torch.nn.Identity()  # expose [x, retrieved]
    out, _ = net(x, torch.zeros(1, net.state_size), start)
    # step 4 (query b) sees chunks [a a] and [b b]: it retrieves [b b], whose values are 10 b
    torch.testing.assert_close(out[4, 0, 2:], 10 * b, atol=1e-3, rtol=0)
    start[4] = True
    out, _ = net(x, torch.zeros(1, net.state_size), start)
    torch.testing.assert_close(out[4:, 0, 2:], torch.zeros(2, 2))
    # source ``run``: the new episode still retrieves the earlier episode's [b b] (steps 2-3)
    net.cross_episode = True
    out, _ = net(x, torch.zeros(1, net.state_size), start)
    torch.testing.assert_close(out[4, 0, 2:], 10 * b, atol=1e-3, rtol=0)


def test_run_source_keeps_chunks_across_episodes_until_they_leave_the_window() -> None:
    """One 9-step episode (whole chunks: steps 0-2, 3-5, 6-8), then 1-step episodes (too short
    for a chunk). ``episode`` retrieves nothing in them; ``run`` retrieves the first episode's
    chunks while the newest one's first step (6) is inside the window of W = 12 steps (query
    steps 9-18), then nothing; the actor's step-by-step path agrees."""
    steps = 24
    x = torch.randn(steps, 1, F, generator=torch.Generator().manual_seed(1))
    start = torch.zeros(steps, 1, dtype=torch.bool)
    start[0] = True
    start[9:] = True
    outs = {}
    for cross in (False, True):
        net = core()
        net.cross_episode = cross
        with torch.no_grad():
            outs[cross], _ = net(x, torch.zeros(1, net.state_size), start)
            if cross:
                state, stepped = torch.zeros(1, net.state_size), []
                for t in range(steps):
                    out_t, state = net(x[t:t + 1], state, start[t:t + 1])
                    stepped.append(out_t)
                torch.testing.assert_close(torch.cat(stepped), outs[True], atol=1e-5, rtol=0)
            no_memory = torch.relu(net.out(torch.cat([x, torch.zeros(steps, 1, 8)], -1)))
    torch.testing.assert_close(outs[False][9:], no_memory[9:])
    for t in range(9, steps):
        assert torch.allclose(outs[True][t], no_memory[t]) == (t > 18), t


@pytest.mark.parametrize(("source", "memory"), [("episode", 0), ("run", 0), ("run", 6)])
@pytest.mark.parametrize("k", [2, 20])  # 20 > W: every usable chunk
def test_step_by_step_equals_one_sequence(k: int, source: str, memory: int) -> None:
    """The actor's per-step forward (one slot written into the ring) equals the learner's
    sequence forward (the ring unrolled): equal inputs, equal log-probs, equal states, after
    the ring has wrapped around three times; also with chunks in the run memory."""
    torch.manual_seed(0)
    model = ActorCritic(SPEC, 4, Cfg(retrieval=Retrieval(k=k, source=source,
                                                         memory_chunks=memory)))
    steps, batch = 40, 3
    obs = {"obs": torch.randn(steps, batch, 5)}
    start = starts(steps, batch, (9, 0), (17, 1), (30, 2), (31, 2))
    if memory:  # 4 chunks of another sequence: a memory that is not full
        seen = {"obs": torch.randn(12, 2, 5)}
        assert model.remember(seen, starts(12, 2), torch.ones(12, 2), 4) == 4
        assert model.core.memory_size() == 4
    state0 = model.initial_state(batch)
    with torch.no_grad():
        logits, _, final = model(obs, state0, start)
        state, step_logits = state0, []
        for t in range(steps):
            lo, _, state = model({"obs": obs["obs"][t:t + 1]}, state, start[t:t + 1])
            step_logits.append(lo)
        # a sequence split at an arbitrary step, resumed from the carried window
        first, _, mid = model({"obs": obs["obs"][:23]}, state0, start[:23])
        second, _, end = model({"obs": obs["obs"][23:]}, mid, start[23:])
        # an actor's loop: the window written in place, the core's output a reused buffer
        mine, place_logits = state0.clone(), []
        for t in range(steps):
            lo, _, returned = model({"obs": obs["obs"][t:t + 1]}, mine, start[t:t + 1],
                                    in_place=True)
            assert returned is mine
            place_logits.append(lo)
    torch.testing.assert_close(torch.cat(place_logits), torch.cat(step_logits), atol=0, rtol=0)
    torch.testing.assert_close(mine, state, atol=0, rtol=0)
    torch.testing.assert_close(torch.cat(step_logits), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([first, second]), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(state, final)
    torch.testing.assert_close(end, final)
    # the ring (W = 12 slots of step, valid, 3 x d), the head, L - 1 = 2 projections of d = 8
    assert model.core_size == model.core.state_size == 12 * (2 + 3 * 8) + 1 + 2 * 8


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = ActorCritic(SPEC, 4, Cfg())
    steps = 30
    logits, values, _ = model({"obs": torch.randn(steps, 2, 5)}, model.initial_state(2),
                              starts(steps, 2))
    (logits.logsumexp(-1).sum() + values.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_configs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="needs core 'none', not 'gru'"):
        ActorCritic(SPEC, 4, Cfg(core="gru"))
    with pytest.raises(ValueError, match="retrieval sizes must be >= 1"):
        RetrievalCore(4, k=0, chunk_len=2, window_chunks=2)


@pytest.mark.parametrize(("cross_episode", "memory"), [(False, 0), (True, 0), (True, 5)])
@pytest.mark.parametrize(("chunk_len", "k"), [(L, 2), (1, 3), (2, 9)])
def test_actor_step_equals_a_sequence_of_one(chunk_len: int, k: int, cross_episode: bool,
                                             memory: int) -> None:
    """A step without autograd (the actor's compiled path) equals the same step with autograd
    on (the sequence path, T = 1), mid-episode with a full window and at an episode start;
    also with one-step chunks, with k above the window's chunks and with a run memory that
    has wrapped around (5 entries, 7 written)."""
    torch.manual_seed(0)
    net = RetrievalCore(F, k=k, chunk_len=chunk_len, window_chunks=M, key_dim=8,
                        cross_episode=cross_episode, memory_chunks=memory)
    steps = 2 * net.window + 1
    x = torch.randn(steps, 3, F)
    if memory:
        for count in (4, 3):
            seen = torch.randn(4 * chunk_len, 2, F)
            net.remember(seen, starts(4 * chunk_len, 2), torch.ones(4 * chunk_len, 2), count)
        assert int(net.memory_count[0]) == 7 and net.memory_size() == 5
    with torch.no_grad():
        _, state = net(x[:-1], torch.zeros(3, net.state_size),
                       starts(steps - 1, 3, (steps // 2, 1)))
        start = torch.tensor([[False, True, False]])
        fast, fast_state = net(x[-1:], state, start)
    slow, slow_state = net(x[-1:], state, start)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_state, slow_state, atol=1e-5, rtol=0)
    # in place (an actor's step loop): the same step, written over the state it was given;
    # the copying path above left that state as it was
    assert not torch.equal(fast_state, state)
    mine = state.clone()
    with torch.no_grad():
        in_place, returned = net(x[-1:], mine, start, in_place=True)
    assert returned is mine
    torch.testing.assert_close(in_place, fast, atol=0, rtol=0)
    torch.testing.assert_close(mine, fast_state, atol=0, rtol=0)


def test_loads_weights_saved_with_four_projection_layers() -> None:
    """Checkpoints from before ``project`` (one Linear per projection) still load."""
    net = core()
    saved = {k: v for k, v in net.state_dict().items() if not k.startswith("project.")}
    for i, name in enumerate(["chunk_query", "state_query", "state_key", "state_value"]):
        rows = slice(8 * i, 8 * (i + 1))
        saved[f"{name}.weight"] = net.project.weight.detach()[rows].clone()
        saved[f"{name}.bias"] = net.project.bias.detach()[rows].clone()
    other = core(seed=1)
    other.load_state_dict(saved)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value)


def test_actor_step_sees_new_weights_written_in_place() -> None:
    """Actors write each weight broadcast into the parameters' memory with NumPy (no torch
    version bump): the compiled step must use the new values, not ones cached earlier."""
    net = core(k=2)
    steps = 2 * net.window
    x = torch.randn(steps + 1, 3, F)
    start = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        _, state = net(x[:-1], torch.zeros(3, net.state_size), starts(steps, 3))
        before, _ = net(x[-1:], state, start)
        for param in net.parameters():  # as Actor._apply_weights does
            np.copyto(param.detach().numpy(), np.random.default_rng(1).normal(
                size=param.shape).astype(np.float32))
        fast, fast_state = net(x[-1:], state, start)
    slow, slow_state = net(x[-1:], state, start)
    assert not torch.allclose(fast, before)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(fast_state, slow_state, atol=1e-4, rtol=0)


def test_run_memory_is_fifo_and_holds_whole_chunks_of_one_episode() -> None:
    """``remember`` writes chunks of L valid steps of one episode, encoded as a window would
    hold them (chunk key of the mean, state keys and values), oldest out first."""
    torch.manual_seed(0)
    net = RetrievalCore(F, k=2, chunk_len=2, window_chunks=M, key_dim=8, memory_chunks=3)
    x = torch.randn(6, 2, F)  # chunks: steps 0-1, 2-3, 4-5 of each env
    start = starts(6, 2, (3, 0))  # env 0's chunk 2-3 spans an episode start
    valid = torch.ones(6, 2)
    valid[5, 1] = 0  # env 1's chunk 4-5 has an invalid step
    assert net.remember(x, start, valid, 10) == 3  # 4 whole chunks, capacity 3
    _, _, state_key, state_value = net.project(x).split(8, -1)
    whole = {(0, 0): (0, 0), (2, 1): (2, 1), (0, 1): (0, 1), (4, 0): (4, 0)}  # (t0, env)
    stored = set()
    for entry in range(3):
        matches = [(t0, b) for (t0, b) in whole if torch.allclose(
            net.memory_keys[entry], net.chunk_key(x[t0:t0 + 2, b].mean(0)), atol=1e-6)]
        assert len(matches) == 1, entry
        t0, b = matches[0]
        torch.testing.assert_close(net.memory_states[entry], torch.cat(
            [state_key[t0:t0 + 2, b], state_value[t0:t0 + 2, b]], -1))
        stored.add(matches[0])
    # two more: they overwrite entries 0 and 1 (FIFO), entry 2 stays
    kept = net.memory_keys[2].clone()
    assert net.remember(torch.randn(2, 2, F), starts(2, 2), torch.ones(2, 2), 2) == 2
    assert int(net.memory_count[0]) == 5 and net.memory_size() == 3
    torch.testing.assert_close(net.memory_keys[2], kept)
    assert not any(torch.allclose(net.memory_keys[i], net.chunk_key(x[t0:t0 + 2, b].mean(0)))
                   for i in (0, 1) for (t0, b) in stored)


def test_run_memory_is_retrieved_by_every_env_and_travels_in_the_state_dict() -> None:
    """A chunk remembered from one env is what another env's query retrieves, before its own
    episode has any chunk; a model loaded from the state dict retrieves the same."""
    net = RetrievalCore(2, k=1, chunk_len=2, window_chunks=4, key_dim=2, memory_chunks=4)
    with torch.no_grad():
        net.project.weight.copy_(10 * torch.eye(2).repeat(4, 1))
        net.chunk_key.weight.copy_(10 * torch.eye(2))
        for layer in (net.project, net.chunk_key):
            layer.bias.zero_()
    net.out = torch.nn.Identity()  # expose [x, retrieved]
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    seen = torch.stack([a, a, b, b]).unsqueeze(1)  # chunks [a a], [b b] of one env
    assert net.remember(seen, starts(4, 1), torch.ones(4, 1), 2) == 2
    query = torch.stack([b, a]).unsqueeze(0)  # (1, 2, 2): two new envs at their first step
    first = torch.ones(1, 2, dtype=torch.bool)
    out, _ = net(query, torch.zeros(2, net.state_size), first)  # the sequence path
    torch.testing.assert_close(out[0, :, 2:], 10 * torch.stack([b, a]), atol=1e-3, rtol=0)
    other = RetrievalCore(2, k=1, chunk_len=2, window_chunks=4, key_dim=2, memory_chunks=4)
    other.out = torch.nn.Identity()
    other.load_state_dict(net.state_dict())
    again, _ = other(query, torch.zeros(2, net.state_size), first)
    torch.testing.assert_close(again, out)


def test_weights_saved_without_a_run_memory_load_with_an_empty_one() -> None:
    """A checkpoint of ``source: episode`` (or of a run from before the run memory) resumes
    into a model with one: the weights load, the memory starts empty."""
    plain = core()
    with_memory = RetrievalCore(F, k=2, chunk_len=L, window_chunks=M, key_dim=8,
                                memory_chunks=4)
    with_memory.remember(torch.randn(6, 1, F), starts(6, 1), torch.ones(6, 1), 2)
    with_memory.load_state_dict(plain.state_dict())
    assert with_memory.memory_size() == 0 and not with_memory.memory_keys.any()
    torch.testing.assert_close(with_memory.project.weight, plain.project.weight)


def test_a_copied_model_steps_into_its_own_output() -> None:
    """``actor_step`` reuses an output buffer; a deep copy of a model that has stepped (as
    evaluation or a snapshot may make) must step into its own, with its own result."""
    import copy

    net = core()
    x = torch.randn(2, 3, F)
    state = torch.zeros(3, net.state_size)
    start = np.ones(3, bool)
    with torch.no_grad():
        first = net.actor_step(x[0].numpy(), state.clone(), start)
        kept = first.clone()
        twin = copy.deepcopy(net)
        second = twin.actor_step(x[1].numpy(), state.clone(), start)
        expected, _ = net(x[1:], state.clone(), torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(second, expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(first, kept)  # the original's buffer was not written
