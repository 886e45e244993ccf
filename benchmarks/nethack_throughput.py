"""NetHack (NLE) env throughput: raw NLE against ``NetHackVecEnv`` and subprocess designs.

Random actions, each figure counted for ``--seconds`` after a ``--warmup`` (M = ``--envs``,
N = ``--num-procs``, K = ``--workers``):

a. raw NLE: one process stepping M NLE envs in a plain loop (``env.step``, ``env.reset`` on
   episode end; the same observation keys and action set as ours);
b. ours: one process stepping ``NetHackVecEnv`` with M envs (batched fixed-shape arrays, next-
   step auto-reset, seeding, crash guard, episode stats); ratio b/a;
c. subprocess workers: ``NetHackVecEnv`` split over K worker processes (M/K envs each),
   actions over pipes, observations written into shared memory; ratio c/b;
d. gymnasium ``AsyncVectorEnv``: M worker processes with one NLE env each (shared memory);
   ratio d/b;
e. N processes, each raw NLE with M envs (summed), and
f. N processes, each ``NetHackVecEnv`` with M envs (summed); ratio f/e;
g. end-to-end training with the NetHack model: the real ``Supervisor`` (learner + actor
   processes) on ``--train-config`` (default ``configs/nethack_score.yaml``: 2 actors x 16
   envs, full encoder + GRU 256, APPO, 1 epoch), learner on ``--device``; env steps trained
   per wall second from the learner's status reports (as row d of ``throughput.py``);
h. the same with ``--small-config`` (default ``configs/nethack_score_small.yaml``, the run of
   ``tests/test_nethack_learning.py``: crop + blstats torso, no GRU, 2 epochs x 2 minibatches).

Rows g and h use the task and action set of their configs (``--env``/``--actions`` are for
rows a-f).

Prints a table, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/nethack_throughput.py --env NetHackScore-v0 --envs 8 --seconds 10
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from bench_utils import CTX, ratio, run_parallel, timed_loop
from throughput import train_fps

from actors.envs import probe_env_spec
from actors.nethack import NetHackVecEnv
from actors.nethack_tasks import OBS_KEYS, make_nle_env
from explorer.core.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CONFIG = os.path.join(REPO, "configs", "nethack_score.yaml")
SMALL_CONFIG = os.path.join(REPO, "configs", "nethack_score_small.yaml")


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[nethack-throughput] {text}", file=sys.stderr, flush=True)



def action_table(num_envs: int, num_actions: int, seed: int) -> Callable[[], np.ndarray]:
    """A cycling source of pre-drawn random ``(num_envs,)`` action batches."""
    table = np.random.default_rng(seed).integers(0, num_actions, (256, num_envs))
    counter = iter(range(1 << 62))
    return lambda: table[next(counter) % len(table)]


# --------------------------------------------------------------------------- steppers


def raw_stepper(task: str, actions: str, num_envs: int, seed: int) -> Callable[[], None]:
    """a/e: M plain NLE envs stepped in a loop, reset when an episode ends."""
    envs = [make_nle_env(task, actions) for _ in range(num_envs)]
    for env in envs:
        env.reset()
    draw = action_table(num_envs, int(envs[0].action_space.n), seed)

    def step() -> None:
        for env, action in zip(envs, draw(), strict=True):
            _, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()

    return step


def ours_stepper(task: str, actions: str, num_envs: int, seed: int) -> Callable[[], None]:
    """b/f: ``NetHackVecEnv`` with M envs."""
    env = NetHackVecEnv(task, num_envs, seed, None, {"actions": actions})
    env.reset()
    draw = action_table(num_envs, env.spec.num_actions, seed)
    return lambda: env.step(draw())


class SharedObs:
    """Named shared-memory blocks holding one ``(B, *shape)`` array per observation key."""

    def __init__(self, spec: dict, num_envs: int, names: dict[str, str] | None = None) -> None:
        self.blocks: dict[str, shared_memory.SharedMemory] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for key, (shape, dtype) in spec.items():
            size = int(np.prod((num_envs, *shape))) * np.dtype(dtype).itemsize
            block = (shared_memory.SharedMemory(name=names[key]) if names
                     else shared_memory.SharedMemory(create=True, size=size))
            self.blocks[key] = block
            self.arrays[key] = np.ndarray((num_envs, *shape), dtype, buffer=block.buf)

    def names(self) -> dict[str, str]:
        return {key: block.name for key, block in self.blocks.items()}

    def close(self, unlink: bool) -> None:
        self.arrays.clear()
        for block in self.blocks.values():
            block.close()
            if unlink:
                block.unlink()


def subprocess_worker(conn: Any, task: str, actions: str, lo: int, hi: int, total: int,
                      seed: int, names: dict[str, str]) -> None:
    """c: one worker: steps envs ``lo:hi`` on each action message, writes their rows."""
    env = NetHackVecEnv(task, hi - lo, seed, None, {"actions": actions})
    shared = SharedObs(env.spec.obs_spec, total, names)
    env.reset()
    while (batch := conn.recv()) is not None:
        result = env.step(batch)
        for key in OBS_KEYS:
            shared.arrays[key][lo:hi] = result.obs[key]
        conn.send((result.rewards, result.terminated, result.truncated))
    shared.close(unlink=False)
    env.close()


def subprocess_stepper(task: str, actions: str, num_envs: int, workers: int,
                       seed: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """c: M envs split over K worker processes; returns ``(step, close)``.

    The workers write their rows of one shared ``(M, ...)`` array per key, which is what an
    actor would read (and copy into its rollout) after each step.
    """
    probe = NetHackVecEnv(task, 1, 0, None, {"actions": actions})
    spec, num_actions = probe.spec.obs_spec, probe.spec.num_actions
    probe.close()
    shared = SharedObs(spec, num_envs)
    bounds = [int(b) for b in np.linspace(0, num_envs, workers + 1)]
    pipes, procs = [], []
    for lo, hi in itertools.pairwise(bounds):
        parent, child = CTX.Pipe()
        proc = CTX.Process(target=subprocess_worker, daemon=True, args=(
            child, task, actions, lo, hi, num_envs, seed + lo, shared.names()))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    draw = action_table(num_envs, num_actions, seed)

    def step() -> None:
        batch = draw()
        for pipe, (lo, hi) in zip(pipes, itertools.pairwise(bounds), strict=True):
            pipe.send(batch[lo:hi])
        for pipe in pipes:
            pipe.recv()

    def close() -> None:
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(10)
        shared.close(unlink=True)

    return step, close


def async_vector_stepper(task: str, actions: str, num_envs: int,
                         seed: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """d: gymnasium ``AsyncVectorEnv`` (one process per env, shared memory)."""
    import functools

    import gymnasium as gym

    env = gym.vector.AsyncVectorEnv(
        [functools.partial(make_nle_env, task, actions) for _ in range(num_envs)],
        shared_memory=True, context="spawn")
    env.reset(seed=seed)
    draw = action_table(num_envs, int(env.single_action_space.n), seed)
    return (lambda: env.step(draw())), env.close


# --------------------------------------------------------------------------- runners


def parallel_worker(index: int, barrier: Any, results: Any, kind: str, task: str, actions: str,
                    num_envs: int, warmup: float, seconds: float) -> None:
    make = raw_stepper if kind == "raw" else ours_stepper
    step = make(task, actions, num_envs, seed=1000 * index)
    barrier.wait()
    results.put(timed_loop(step, num_envs, warmup, seconds))



def rate(step: Callable[[], None], num_envs: int, warmup: float, seconds: float) -> float:
    steps, elapsed = timed_loop(step, num_envs, warmup, seconds)
    return steps / elapsed


def training(args: argparse.Namespace, config: str) -> dict[str, Any]:
    """g/h: the real Supervisor on ``config`` (plus ``--set`` overrides)."""
    cfg = load_config(config, [f"learner.device={args.device}", *args.set])
    res = train_fps(cfg, probe_env_spec(cfg.env), args.train_warmup, args.train_seconds)
    res.update(config=os.path.relpath(config, REPO), env=cfg.env.id,
               actors=cfg.actors.num_procs, envs_per_actor=cfg.env.envs_per_actor,
               rollout_len=cfg.actors.rollout_len, batch_rollouts=cfg.learner.batch_rollouts,
               model=dataclasses.asdict(cfg.learner.model))
    return res



def print_table(res: dict[str, Any]) -> None:
    """A readable table of every figure."""
    m, n, k = res["envs"], res["num_procs"], res["workers"]
    rows = [] if "raw_one_proc" not in res else [
        ("a", f"raw NLE loop, 1 proc x {m} envs", res["raw_one_proc"], ""),
        ("b", f"NetHackVecEnv, 1 proc x {m} envs", res["ours_one_proc"],
         _x(res["ratios"]["ours_vs_raw"], "a")),
        ("c", f"NetHackVecEnv in {k} subprocess workers ({m} envs, shared memory)",
         res["subprocess_workers"], _x(res["ratios"]["subprocess_vs_ours"], "b")),
        ("d", f"gymnasium AsyncVectorEnv, {m} procs x 1 env", res["async_vector_env"],
         _x(res["ratios"]["async_vector_vs_ours"], "b")),
        ("e", f"raw NLE loop, {n} procs x {m} envs", res["raw_n_procs"], ""),
        ("f", f"NetHackVecEnv, {n} procs x {m} envs", res["ours_n_procs"],
         _x(res["ratios"]["ours_n_procs_vs_raw"], "e")),
    ]
    for tag, key in (("g", "train"), ("h", "train_small")):
        train = res.get(key)
        if train is not None:
            label = (f"training, {os.path.basename(train['config'])}: {train['actors']} actors x "
                     f"{train['envs_per_actor']} envs, learner {res['device']}")
            rows.append((tag, label, train["fps"], ""))
    title = (f"NetHack throughput: {res['env']}, actions={res['actions']}, random actions, "
             f"{res['seconds']:g}s per figure, {res['cpu_count']} CPUs")
    if "raw_one_proc" not in res:
        title = f"NetHack training throughput, {res['cpu_count']} CPUs"
    print(title)
    print(f"{'':2} {'measurement':66} {'env steps/s':>12} {'ratio':>10}")
    for tag, label, value, rel in rows:
        shown = f"{value:,.0f}" if value is not None else "n/a"
        print(f"{tag:2} {label:66} {shown:>12} {rel:>10}")


def _x(value: float | None, of: str) -> str:
    return "" if value is None else f"{value:.2f}x {of}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="NetHackScore-v0")
    parser.add_argument("--actions", default="extended", choices=("task", "extended", "full"))
    parser.add_argument("--envs", type=int, default=8, help="M: envs per process")
    parser.add_argument("--num-procs", type=int, default=2, help="N: processes for e and f")
    parser.add_argument("--workers", type=int, default=2, help="K: subprocess workers for c")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--skip-async", action="store_true", help="skip d (M processes)")
    parser.add_argument("--train-config", default=TRAIN_CONFIG, help="run config of g")
    parser.add_argument("--small-config", default=SMALL_CONFIG, help="run config of h")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="measured, g and h")
    parser.add_argument("--train-warmup", type=float, default=10.0,
                        help="after the first trained step, g and h")
    parser.add_argument("--device", default="cpu", help="learner device of g and h")
    parser.add_argument("--set", action="append", default=[],
                        help="extra key=value config override for g and h (repeatable)")
    parser.add_argument("--only-train", action="store_true", help="run g and h only")
    parser.add_argument("--skip-train", action="store_true", help="skip g and h")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task, actions, m, w, s = args.env, args.actions, args.envs, args.warmup, args.seconds
    res: dict[str, Any] = {"env": task, "actions": actions, "envs": m, "num_procs": args.num_procs,
                           "workers": args.workers, "seconds": s, "warmup": w,
                           "cpu_count": os.cpu_count(), "device": args.device}
    if not args.only_train:
        env_figures(args, res)
    res["train"] = res["train_small"] = None
    if not args.skip_train:
        log(f"g. training, {args.train_config}")
        res["train"] = training(args, args.train_config)
        log(f"h. training, {args.small_config}")
        res["train_small"] = training(args, args.small_config)
    print_table(res)
    print(json.dumps(res))
    return 0


def env_figures(args: argparse.Namespace, res: dict[str, Any]) -> None:
    """Rows a-f (random actions, no model) into ``res``."""
    task, actions, m, w, s = args.env, args.actions, args.envs, args.warmup, args.seconds
    log(f"a. raw NLE, 1 proc x {m}")
    res["raw_one_proc"] = rate(raw_stepper(task, actions, m, 0), m, w, s)
    log(f"b. NetHackVecEnv, 1 proc x {m}")
    res["ours_one_proc"] = rate(ours_stepper(task, actions, m, 0), m, w, s)
    log(f"c. {args.workers} subprocess workers")
    step, close = subprocess_stepper(task, actions, m, args.workers, 0)
    try:
        res["subprocess_workers"] = rate(step, m, w, s)
    finally:
        close()
    res["async_vector_env"] = None
    if not args.skip_async:
        log(f"d. gymnasium AsyncVectorEnv, {m} procs")
        step, close = async_vector_stepper(task, actions, m, 0)
        try:
            res["async_vector_env"] = rate(step, m, w, s)
        finally:
            close()
    log(f"e. raw NLE, {args.num_procs} procs x {m}")
    res["raw_n_procs"] = run_parallel(parallel_worker, args.num_procs, "raw", task, actions,
                                      m, w, s)
    log(f"f. NetHackVecEnv, {args.num_procs} procs x {m}")
    res["ours_n_procs"] = run_parallel(parallel_worker, args.num_procs, "ours", task, actions,
                                       m, w, s)
    res["ratios"] = {
        "ours_vs_raw": ratio(res["ours_one_proc"], res["raw_one_proc"]),
        "subprocess_vs_ours": ratio(res["subprocess_workers"], res["ours_one_proc"]),
        "async_vector_vs_ours": ratio(res["async_vector_env"], res["ours_one_proc"]),
        "ours_n_procs_vs_raw": ratio(res["ours_n_procs"], res["raw_n_procs"]),
        "ours_n_procs_vs_one": ratio(res["ours_n_procs"], res["ours_one_proc"]),
    }


if __name__ == "__main__":
    sys.exit(main())
