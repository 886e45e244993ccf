"""Retrieval-memory costs: FAISS indexes, the episodic kNN bonus, and a memory service's wire.

One invocation measures, on the CPU with ``--threads`` FAISS / torch threads (default 1: what
one actor or the learner's bonus gets):

a. indexes: for each size N (``--sizes``, default 10k / 100k / 1M) and kind (Flat, IVF with
   nlist ~ sqrt(N) and nprobe 16, HNSW with M 32 / efConstruction 40 / efSearch 64), on seeded
   clustered 128-d vectors (1000 centres, noise 0.7): add throughput (vectors/s, IVF training
   included), search latency of one query and of a batch of 32 (one query per env, 32 envs),
   batched queries/s, recall@10 of the batch against the flat index, and footprint (bytes of
   the serialised index);
b. episodic bonus: NGU's ``compute`` on a T x B batch (``--rollout-len`` x 32 envs) whose 32
   episodic memories hold ``--episodic-total`` (1M) embeddings in all, against one learner
   ``train`` step on the same number of MiniGrid transitions (default APPO config, MiniGrid
   CNN): the bonus as a share of the step (goal <= 10%); and the same T*B queries as one
   batched search of a shared 1M x 128 index of each kind;
c. episodic memories: NGU's per-env memories as a loop of flat FAISS searches (one per env)
   vs ``EpisodicMemories`` (one batched product), B=32 envs, E=32, per step;
d. memory service: ZeroMQ REQ/REP round trip over ipc carrying a 32 x 128 float32 query batch
   and a 32 x 10 reply (ids + distances), to set against (a)'s in-process search times;
e. retrieval in the actor: env steps/s of one actor's loop (16 MiniGrid-MemoryS7 envs, policy
   forward with its state, Gumbel-max sample, step) with ``configs/minigrid_ra.yaml``'s
   retrieval core vs the same model without it (goal >= 0.7), in turn, best of 3 each; also
   with ``source: run`` and a full run memory of 1,024 chunks;
f. one learner update (PPO, one 64 x 16 MemoryS7 rollout, 4 epochs x 4 minibatches) without
   retrieval, with the window (``episode``) and with the window and a full run memory.

Prints tables, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/memory.py --sizes 10000 100000 1000000
    python benchmarks/memory.py --sections b --device cuda   # the bonus goal on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss
import numpy as np
import torch
import zmq

from explorer.memory import EmbeddingMemory, EpisodicMemories

DIM = 128
K = 10
BATCH = 32
RA_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "minigrid_ra.yaml"
#: the retrieval config with the run memory (``memory_chunks`` default 1,024)
RUN_MEMORY = ["learner.model.retrieval.source=run"]


def clustered(count: int, seed: int, dim: int = DIM, centres: int = 1000) -> np.ndarray:
    """Seeded vectors around fixed centres: embeddings are clustered, not uniform noise."""
    centre = np.random.default_rng(12345).standard_normal((centres, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, 100_000):  # bounded temporaries at 1M
        n = min(100_000, count - start)
        out[start:start + n] = centre[rng.integers(0, centres, n)] + \
            0.7 * rng.standard_normal((n, dim), dtype=np.float32)
    return out


def timed(fn, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def index_options(kind: str, size: int) -> dict[str, Any]:
    if kind == "ivf":
        nlist = max(16, 2 ** round(math.log2(math.sqrt(size))))
        return {"nlist": nlist, "nprobe": 16, "ivf_train_size": 39 * nlist}
    if kind == "hnsw":
        return {"hnsw_m": 32, "hnsw_ef_construction": 40, "hnsw_ef_search": 64}
    return {}


def build(kind: str, data: np.ndarray) -> tuple[EmbeddingMemory, float]:
    memory = EmbeddingMemory(DIM, kind=kind, use_gpu=False, **index_options(kind, len(data)))
    start = time.perf_counter()
    for chunk in range(0, len(data), 50_000):
        memory.add(data[chunk:chunk + 50_000])
    return memory, time.perf_counter() - start


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def bench_indexes(sizes: list[int], kinds: list[str], skip: set[str]) -> tuple[list[dict],
                                                                              dict]:
    rows, big = [], {}
    queries = clustered(BATCH, 1)
    for size in sizes:
        data = clustered(size, 0)
        truth = None
        for kind in kinds:
            if f"{kind}:{size}" in skip:
                rows.append({"kind": kind, "size": size, "skipped": True})
                continue
            memory, seconds = build(kind, data)
            if kind == "flat":
                truth = memory.search(queries, K)[1]
            reps_single = 20 if size >= 1_000_000 else 100
            single = timed(lambda m=memory: m.search(queries[:1], K), reps_single)
            batched = timed(lambda m=memory: m.search(queries, K), max(5, reps_single // 4))
            found = memory.search(queries, K)[1]
            row = {"kind": kind, "size": size, "add_per_s": size / seconds,
                   "single_ms": single * 1e3, "batch32_ms": batched * 1e3,
                   "batch32_qps": BATCH / batched,
                   "recall10": None if truth is None else recall(found, truth),
                   "bytes": int(faiss.serialize_index(memory.index).nbytes)}
            rows.append(row)
            print(_index_line(row), flush=True)
            if size == max(sizes):
                big[kind] = memory
            else:
                del memory
        del data
    return rows, big


def _index_line(row: dict) -> str:
    if row.get("skipped"):
        return f"{row['kind']:>5} {row['size']:>9,}   skipped (--skip)"
    rec = "  exact" if row["recall10"] is None or row["kind"] == "flat" else \
        f"{row['recall10']:7.3f}"
    return (f"{row['kind']:>5} {row['size']:>9,} {row['add_per_s']:>11,.0f} "
            f"{row['single_ms']:>9.3f} {row['batch32_ms']:>10.3f} {row['batch32_qps']:>10,.0f} "
            f"{rec} {row['bytes'] / 2**20:>9.1f}")


def minigrid_learner_and_batch(steps: int, envs: int, config: Path | None = None,
                               overrides: tuple[str, ...] = (), device: str = "cpu"
                               ) -> tuple[Any, Any, Any]:
    """A learner on ``device`` (default: the default config, APPO with the MiniGrid CNN, on
    MiniGrid-DoorKey-8x8), a random-policy batch T x B of its env (on the CPU, as batches
    arrive from the wire), and the env spec."""
    from actors.envs import make_vec_env
    from actors.rollout import RolloutStorage
    from explorer.core.config import load_config
    from explorer.core.wire import KIND_ROLLOUT, Message
    from learner.algo import Learner
    from learner.batch import stack_rollouts

    if config is None:
        overrides = ("env.id=MiniGrid-DoorKey-8x8-v0", *overrides)
    cfg = load_config(config, [f"learner.device={device}", *overrides])
    env = make_vec_env(cfg.env, envs, seed=0)
    torch.manual_seed(0)
    learner = Learner(cfg, env.spec, torch.device(device))
    storage = RolloutStorage(env.spec, steps, envs, core_size=learner.model.core_size)
    rng = np.random.default_rng(0)
    obs = env.reset()
    for t in range(steps):
        for key, value in obs.items():
            storage.obs[key][t] = value
        storage.actions[t] = rng.integers(0, env.spec.num_actions, envs)
        result = env.step(storage.actions[t])
        storage.valid[t] = True
        storage.rewards[t] = result.rewards
        obs = result.obs
    for key, value in obs.items():
        storage.obs[key][steps] = value
    storage.episode_start[0] = True
    storage.logp[:] = -np.log(env.spec.num_actions)
    msg = Message(kind=KIND_ROLLOUT, arrays=storage.arrays(np.zeros(0, np.float32),
                                                           np.zeros(0, np.int32)))
    batch = stack_rollouts([msg], reward_clip=None)
    env.close()
    return learner, batch, env.spec


def bench_bonus_share(steps: int, envs: int, total: int, big: dict, device: str = "cpu"
                      ) -> dict:
    """NGU's bonus with ``total`` stored embeddings vs one learner step, same transitions,
    both on ``device`` (each call ends with its result on the CPU, so the times are whole)."""
    import dataclasses

    from explorer.intrinsic.ngu import NGUBonus

    learner, batch, spec = minigrid_learner_and_batch(steps, envs, device=device)
    step_s = timed(lambda: learner.train(batch), 5)
    per_env = total // envs
    ngu = NGUBonus(spec.obs_spec, spec.num_actions, memory_capacity=per_env + steps + 1,
                   device=device)
    stored = torch.randn(envs, per_env, ngu.embed_dim, device=device)
    # every env continues an episode that already holds per_env embeddings
    # (on the learner's device, where the learner computes bonuses)
    on_device = batch.to(torch.device(device))
    continuing = dataclasses.replace(on_device,
                                     episode_start=torch.zeros_like(on_device.episode_start))

    def bonus() -> None:
        ngu.memories = {b: (stored[b], per_env) for b in range(envs)}
        ngu.compute(continuing).cpu()  # waits for the device

    bonus_s = timed(bonus, 3)
    out = {"device": device, "learner_step_ms": step_s * 1e3, "transitions": steps * envs,
           "ngu_total_entries": per_env * envs, "ngu_bonus_ms": bonus_s * 1e3,
           "ngu_share": bonus_s / step_s}
    queries = clustered(steps * envs, 2)
    for kind, memory in big.items():
        seconds = timed(lambda m=memory: m.search(queries, K), 2)
        out[f"shared_{kind}_ms"] = seconds * 1e3
        out[f"shared_{kind}_share"] = seconds / step_s
    return out


def bench_episodic(per_env: list[int], envs: int = 32, dim: int = 32) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for n in per_env:
        data = rng.standard_normal((envs, n, dim), dtype=np.float32)
        flat = [EmbeddingMemory(dim, use_gpu=False) for _ in range(envs)]
        ring = EpisodicMemories(envs, dim, n)
        for b in range(envs):
            flat[b].add(data[b])
            ring.load(b, torch.from_numpy(data[b]), n)
        query = rng.standard_normal((envs, dim), dtype=np.float32)
        tquery, rows_mask = torch.from_numpy(query), torch.ones(envs, dtype=torch.bool)
        reps = 20 if n <= 10_000 else 5
        loop = timed(lambda f=flat, q=query: [f[b].search(q[b:b + 1], K) for b in range(envs)],
                     reps)
        batched = timed(lambda r=ring, q=tquery, m=rows_mask: r.knn(q, m, K), reps)
        rows.append({"per_env": n, "faiss_loop_ms": loop * 1e3, "ring_ms": batched * 1e3,
                     "speedup": loop / batched})
    return rows


def bench_service(reps: int = 2000) -> dict:
    """REQ/REP round trip over ipc with a memory query's payload, served by a thread."""
    ctx = zmq.Context()
    address = f"ipc:///tmp/explorer-memory-bench-{id(ctx)}"
    reply = [np.zeros((BATCH, K), np.int64).tobytes(), np.zeros((BATCH, K), np.float32).tobytes()]

    def serve() -> None:
        rep = ctx.socket(zmq.REP)
        rep.bind(address)
        for _ in range(reps + 50):
            rep.recv_multipart(copy=False)
            rep.send_multipart(reply, copy=False)
        rep.close(0)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    req = ctx.socket(zmq.REQ)
    req.connect(address)
    query = clustered(BATCH, 3).tobytes()
    times = []
    for i in range(reps + 50):
        start = time.perf_counter()
        req.send_multipart([b"search", query], copy=False)
        frames = req.recv_multipart()
        np.frombuffer(frames[0], np.int64), np.frombuffer(frames[1], np.float32)
        if i >= 50:
            times.append(time.perf_counter() - start)
    server.join()
    req.close(0)
    ctx.term()
    return {"rtt_median_us": statistics.median(times) * 1e6,
            "rtt_p99_us": float(np.percentile(times, 99)) * 1e6}


def _actor_fps(cfg: Any, seconds: float) -> dict[str, float]:
    """The actor's inner loop (forward with state, Gumbel-max sample, step) for ``seconds``
    after a warm-up: env steps/s by wall time and by this process's CPU time (envpool's
    threads included), and the policy forward per step by wall time and by the main thread's
    CPU time (on a shared machine the steadiest of these figures)."""
    from actors.envs import make_vec_env
    from explorer.core.networks import make_actor_critic, obs_to_torch

    envs = cfg.env.envs_per_actor
    env = make_vec_env(cfg.env, envs, seed=0)
    torch.manual_seed(0)
    model = make_actor_critic(cfg, env.spec).eval()
    _fill_run_memory(model)
    obs, state = env.reset(), model.initial_state(envs)
    start = torch.ones(1, envs, dtype=torch.bool)
    count, begin, cpu, forward, forward_cpu = 0, None, 0.0, 0.0, 0.0
    while begin is None or time.perf_counter() - begin < seconds:
        t, t_cpu = time.perf_counter(), time.thread_time()
        with torch.inference_mode():
            tobs = {k: v.unsqueeze(0) for k, v in obs_to_torch(obs, "cpu").items()}
            logits, _, state = model(tobs, state, start, in_place=True)  # as actors do
            gumbel = -torch.empty_like(logits[0]).exponential_().log()
            actions = (torch.log_softmax(logits[0], -1) + gumbel).argmax(-1).numpy()
        forward += time.perf_counter() - t
        forward_cpu += time.thread_time() - t_cpu
        result = env.step(actions)
        obs = result.obs
        start = torch.from_numpy(result.terminated | result.truncated).unsqueeze(0)
        count += envs
        if begin is None and count >= 50 * envs:  # warmed up
            count, begin, cpu = 0, time.perf_counter(), time.process_time()
            forward, forward_cpu = 0.0, 0.0
    wall = time.perf_counter() - begin
    cpu = time.process_time() - cpu
    env.close()
    return {"fps": count / wall, "cpu_fps": count / cpu,
            "forward_ms_per_step": 1e3 * forward / (count / envs),
            "forward_cpu_ms_per_step": 1e3 * forward_cpu / (count / envs)}


def bench_actor_fps(seconds: float, repeats: int = 3) -> dict:
    """One actor's env + inference loop, retrieval on vs off (k=0), on one torch thread:
    off and on run in turn ``repeats`` times (``seconds`` each), best of each counts; the
    ratio by wall time and by CPU time (steadier on a shared machine). Threads limited as an
    actor process limits them (one torch, one BLAS thread)."""
    from actors.actor import limit_threads
    from explorer.core.config import load_config

    limit_threads()

    cfgs = {"off": load_config(RA_CONFIG, ["learner.model.retrieval.k=0"]),
            "on": load_config(RA_CONFIG), "run": load_config(RA_CONFIG, RUN_MEMORY)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cfgs}
    for _ in range(repeats):
        for name, cfg in cfgs.items():
            runs[name].append(_actor_fps(cfg, seconds))
    out: dict[str, float] = {}
    for name, got in runs.items():
        out[f"fps_{name}"] = max(r["fps"] for r in got)
        out[f"cpu_fps_{name}"] = max(r["cpu_fps"] for r in got)
        out[f"forward_ms_{name}"] = min(r["forward_ms_per_step"] for r in got)
        out[f"forward_cpu_ms_{name}"] = min(r["forward_cpu_ms_per_step"] for r in got)
    out["ratio"] = out["fps_on"] / out["fps_off"]
    out["ratio_cpu"] = out["cpu_fps_on"] / out["cpu_fps_off"]
    out["ratio_run"] = out["fps_run"] / out["fps_off"]
    out["ratio_run_cpu"] = out["cpu_fps_run"] / out["cpu_fps_off"]
    return out


def _fill_run_memory(model: Any) -> None:
    """A full run memory of random entries (the learner fills it with real chunks)."""
    core = model.core
    if getattr(core, "memory_chunks", 0):
        with torch.no_grad():
            core.memory_keys.normal_()
            core.memory_states.normal_()
            core.memory_count.fill_(core.memory_chunks)


def bench_retrieval_update(repeats: int = 5) -> dict:
    """One PPO update of the MemoryS7 retrieval config (one 64 x 16 rollout, 4 epochs x 4
    minibatches) without retrieval, with the window only and with a full run memory."""
    out: dict[str, float] = {}
    for name, overrides in (("off", ["learner.model.retrieval.k=0"]), ("episode", []),
                            ("run", RUN_MEMORY)):
        learner, batch, _ = minigrid_learner_and_batch(64, 16, RA_CONFIG, tuple(overrides))
        _fill_run_memory(learner.model)
        out[f"update_ms_{name}"] = timed(lambda lr=learner, b=batch: lr.train(b), repeats) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    parser.add_argument("--skip", nargs="*", default=[], help="kind:size pairs to leave out")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rollout-len", type=int, default=32)
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--episodic-total", type=int, default=1_000_000)
    parser.add_argument("--episodic-sizes", type=int, nargs="+", default=[256, 1000, 10_000,
                                                                          30_000])
    parser.add_argument("--actor-seconds", type=float, default=10.0)
    parser.add_argument("--sections", default="abcdef", help="which of a-f to run")
    parser.add_argument("--device", default="cpu",
                        help="section b: where the learner and NGU's memories run (cuda: "
                             "the GPU measurement of the <= 10%% goal)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    figures: dict[str, Any] = {"threads": args.threads, "dim": DIM, "k": K}

    big: dict = {}
    if "a" in args.sections:
        print(f"a. indexes (128-d clustered, k={K}, {args.threads} thread(s))")
        print(f"{'kind':>5} {'N':>9} {'add/s':>11} {'1q ms':>9} {'32q ms':>10} "
              f"{'32q q/s':>10} {'rec@10':>7} {'MiB':>9}")
        figures["indexes"], big = bench_indexes(args.sizes, args.kinds, set(args.skip))

    if "b" in args.sections:
        print(f"\nb. episodic kNN bonus vs one learner step ({args.rollout_len} x {args.envs} "
              f"transitions, on {args.device})")
        share = bench_bonus_share(args.rollout_len, args.envs, args.episodic_total, big,
                                  args.device)
        figures["bonus"] = share
        print(f"learner step {share['learner_step_ms']:.1f} ms; NGU bonus with "
              f"{share['ngu_total_entries']:,} stored embeddings {share['ngu_bonus_ms']:.1f} ms "
              f"= {share['ngu_share']:.0%} of a step (goal <= 10%)")
        for kind in big:
            print(f"  one batched search of {args.rollout_len * args.envs} queries, shared "
                  f"{max(args.sizes):,} x {DIM} {kind}: {share[f'shared_{kind}_ms']:.1f} ms = "
                  f"{share[f'shared_{kind}_share']:.0%} of a step")
    big.clear()

    if "c" in args.sections:
        print("\nc. episodic memories, 32 envs x E=32, one query per env (ms per step)")
        print(f"{'per env':>8} {'FAISS loop':>11} {'torch ring':>11} {'speedup':>8}")
        figures["episodic"] = bench_episodic(args.episodic_sizes)
        for row in figures["episodic"]:
            print(f"{row['per_env']:>8,} {row['faiss_loop_ms']:>11.2f} {row['ring_ms']:>11.2f} "
                  f"{row['speedup']:>7.2f}x")

    if "d" in args.sections:
        print("\nd. memory service wire: REQ/REP over ipc, 32 x 128 float32 query, 32 x 10 "
              "reply")
        figures["service"] = bench_service()
        print(f"round trip median {figures['service']['rtt_median_us']:.0f} us, p99 "
              f"{figures['service']['rtt_p99_us']:.0f} us")

    if "e" in args.sections:
        print("\ne. actor loop, MiniGrid-MemoryS7 x 16 envs, retrieval on vs off")
        figures["actor"] = bench_actor_fps(args.actor_seconds)
        actor = figures["actor"]
        print(f"off {actor['fps_off']:,.0f} env steps/s, on {actor['fps_on']:,.0f}: ratio "
              f"{actor['ratio']:.2f} (goal >= 0.7); by CPU time {actor['cpu_fps_off']:,.0f} vs "
              f"{actor['cpu_fps_on']:,.0f}: {actor['ratio_cpu']:.2f}; policy forward "
              f"{actor['forward_ms_off']:.2f} vs {actor['forward_ms_on']:.2f} ms per step "
              f"(main-thread CPU {actor['forward_cpu_ms_off']:.2f} vs "
              f"{actor['forward_cpu_ms_on']:.2f} ms)")
        print(f"source run with a full run memory of 1,024 chunks: {actor['fps_run']:,.0f} "
              f"env steps/s, ratio {actor['ratio_run']:.2f} (by CPU time "
              f"{actor['ratio_run_cpu']:.2f}); policy forward {actor['forward_ms_run']:.2f} ms "
              f"per step")

    if "f" in args.sections:
        print("\nf. one learner update (PPO, 64 x 16, 4 x 4 minibatches), MemoryS7")
        figures["update"] = update = bench_retrieval_update()
        print(f"no retrieval {update['update_ms_off']:.0f} ms, window (episode) "
              f"{update['update_ms_episode']:.0f} ms, window + full run memory of 1,024 "
              f"chunks {update['update_ms_run']:.0f} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
