"""Novelty-search benchmark: our archive and search vs pyribs (``ribs``), and worker scaling.

    .venv/bin/python benchmarks/novelty.py --budget 5000 --workers 2
    .venv/bin/python benchmarks/novelty.py --parts archive        # archive only (~1 min)
    .venv/bin/python benchmarks/novelty.py --parts workers        # 1 vs N workers only

1. Archive insert+query throughput with 20,000 elites: per round, a batch of 2-D descriptors
   is scored (k = 15 novelty) and the novel ones inserted. Ours: ``NoveltyArchive``
   (incremental k-NN: a cKDTree rebuilt at 8% growth, plus a grid of cells as wide as the
   largest k-th distance over the batch and the newest points); pyribs:
   ``ProximityArchive.add`` (KD-tree query, then a KD-tree rebuilt over the whole archive on
   every add). Ours vs pyribs alternately, best of 3 each; the ratio is by CPU time (steady
   on a shared machine), wall time beside it.
2. HardMaze, equal budgets and seed: coverage of a 100x100 grid of final positions and whether
   the goal was reached, for our NS, our SERENE and pyribs NS (``ProximityArchive`` +
   ``GaussianEmitter`` + ``Scheduler``), all evaluated by the same worker processes.
3. Evaluation throughput (genomes/s) with 1 vs N worker processes, measured in turn.

Prints a table, then one JSON line with every figure (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from actors.hardmaze import normalise_position
from explorer.app.search_pool import EvaluationPool
from explorer.core.config import load_config
from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.build import build_scheduler
from explorer.novelty.config import SearchConfig
from explorer.novelty.coverage import CoverageGrid

K = 15


def archive_throughput(elites: int = 20_000, batch: int = 200, rounds: int = 200,
                       threshold: float = 0.01, seed: int = 0, repeats: int = 3
                       ) -> dict[str, float]:
    """Rounds per second of (score a batch, insert the novel ones) for ours and pyribs'.

    The two run alternately ``repeats`` times from the same start; each side's best run
    counts. Rates are given by wall time and by CPU time of this process (both sides are
    single-threaded): on a machine shared with other work the CPU-time ratio is the steadier
    one, and ``speedup`` is that ratio.
    """
    from ribs.archives import ProximityArchive

    rng = np.random.default_rng(seed)
    start = rng.random((elites, 2))
    batches = [rng.random((batch, 2)) for _ in range(rounds)]
    sol = np.zeros((batch, 4))

    def ours() -> tuple[float, float, int]:
        archive = NoveltyArchive(solution_dim=4, descriptor_dim=2, k_neighbors=K,
                                 insertion="threshold", novelty_threshold=threshold,
                                 knn_backend="kdtree")
        archive.add_all(np.zeros((elites, 4)), start, np.zeros(elites))
        wall, cpu = time.perf_counter(), time.process_time()
        for desc in batches:
            archive.add(sol, desc, np.zeros(batch), archive.novelty(desc))
        return time.perf_counter() - wall, time.process_time() - cpu, len(archive)

    def ribs() -> tuple[float, float, int]:
        archive = ProximityArchive(solution_dim=4, measure_dim=2, k_neighbors=K,
                                   novelty_threshold=threshold, initial_capacity=elites * 2,
                                   seed=seed)
        archive.add(np.zeros((elites, 4)), np.zeros(elites), start)  # empty: all novel
        assert len(archive) == elites, len(archive)
        wall, cpu = time.perf_counter(), time.process_time()
        for desc in batches:
            archive.add(sol, np.zeros(batch), desc)
        return time.perf_counter() - wall, time.process_time() - cpu, len(archive)

    runs: dict[str, list[tuple[float, float, int]]] = {"ours": [], "ribs": []}
    for _ in range(repeats):
        runs["ours"].append(ours())
        runs["ribs"].append(ribs())
    out: dict[str, float] = {}
    for name, got in runs.items():
        out[f"{name}_rounds_per_s"] = rounds / min(r[0] for r in got)
        out[f"{name}_cpu_rounds_per_s"] = rounds / min(r[1] for r in got)
        out[f"{name}_size"] = got[0][2]
    out["speedup_wall"] = out["ours_rounds_per_s"] / out["ribs_rounds_per_s"]
    out["speedup"] = out["ours_cpu_rounds_per_s"] / out["ribs_cpu_rounds_per_s"]
    return out


def _config(algorithm: str, budget: int, workers: int, seed: int) -> SearchConfig:
    return load_config("configs/hardmaze_serene.yaml",
                       [f"algorithm={algorithm}", f"budget={budget}", f"seed={seed}",
                        f"workers.num_procs={workers}"], schema=SearchConfig)


def _run(cfg: SearchConfig, ask_tell, genome_size: int) -> dict[str, float]:
    """Runs an ask/tell pair on the real worker pool until the budget is spent."""
    ask, tell = ask_tell
    grid, evals, reached, best, t = CoverageGrid(100), 0, 0, 0.0, time.perf_counter()
    first = None
    pool = EvaluationPool(cfg, genome_size, frames=False, on_event=lambda _: None)
    try:
        pool.start()
        while evals < cfg.budget:
            genomes = ask()
            batch = pool.evaluate(genomes)
            positions = np.stack([normalise_position(p) for p in batch.positions])
            tell(batch.fitness, positions)
            grid.update(positions)
            if batch.reached.any() and first is None:
                first = evals + int(np.argmax(batch.reached)) + 1
            evals += len(genomes)
            reached += int(batch.reached.sum())
            best = max(best, float(batch.fitness.max()))
    finally:
        pool.close()
    return {"evaluations": evals, "coverage_pct": 100 * grid.coverage, "goal_evals": reached,
            "first_goal_eval": first, "best_reward": best,
            "wall_s": time.perf_counter() - t}


def hardmaze(budget: int, workers: int, seed: int) -> dict[str, dict[str, float]]:
    out = {}
    for algorithm in ("ns", "serene"):
        cfg = _config(algorithm, budget, workers, seed)
        scheduler = build_scheduler(cfg, 68, 2)
        out[f"ours_{algorithm}"] = _run(cfg, (scheduler.ask, scheduler.tell), 68)
    from ribs.archives import ProximityArchive
    from ribs.emitters import GaussianEmitter
    from ribs.schedulers import Scheduler

    cfg = _config("ns", budget, workers, seed)
    archive = ProximityArchive(solution_dim=68, measure_dim=2, k_neighbors=K,
                               novelty_threshold=0.02, seed=seed)
    init = np.random.default_rng(seed).uniform(-5, 5, (200, 68))
    emitter = GaussianEmitter(archive, sigma=cfg.novelty.sigma, initial_solutions=init,
                              bounds=[(-5, 5)] * 68, batch_size=200, seed=seed)
    scheduler = Scheduler(archive, [emitter])
    out["ribs_ns"] = _run(cfg, (scheduler.ask, scheduler.tell), 68)
    out["ribs_ns"]["archive_size"] = len(archive)
    return out


def eval_throughput(workers: int, genomes: int = 400, seed: int = 0, repeats: int = 2
                    ) -> dict[str, float]:
    """Genomes evaluated per second by an ``EvaluationPool`` (what ``explorer search`` uses)
    of 1 and of ``workers`` processes: both pools up at once, batches given to them in turn
    ``repeats`` times, best of each; ``speedup`` = N-worker rate / 1-worker rate."""
    batch = np.random.default_rng(seed).uniform(-5, 5, (genomes, 68))
    pools = {n: EvaluationPool(_config("ns", genomes, n, seed), 68, frames=False,
                               on_event=lambda _: None) for n in sorted({1, workers})}
    best = dict.fromkeys(pools, 0.0)
    try:
        for n, pool in pools.items():
            pool.start()
            pool.evaluate(batch[:2 * n])  # workers up
        for _ in range(repeats):
            for n, pool in pools.items():
                t = time.perf_counter()
                pool.evaluate(batch)
                best[n] = max(best[n], genomes / (time.perf_counter() - t))
    finally:
        for pool in pools.values():
            pool.close()
    out = {f"workers_{n}_evals_per_s": rate for n, rate in best.items()}
    out["speedup"] = best[max(best)] / best[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="archive,workers,maze",
                        help="comma-separated subset of archive, workers, maze")
    parser.add_argument("--skip-maze", action="store_true", help="same as leaving out maze")
    args = parser.parse_args()
    parts = set(args.parts.split(",")) - ({"maze"} if args.skip_maze else set())
    figures: dict = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    # a reward emitter's batch (SERENE's CMA-ES lambda), a novelty-search generation
    for batch in (11, 200) if "archive" in parts else ():
        a = archive_throughput(batch=batch, seed=args.seed)
        figures[f"archive_batch_{batch}"] = a
        print(f"archive insert+query @20k elites (batch {batch}, k=15), rounds/s by CPU "
              f"time: ours {a['ours_cpu_rounds_per_s']:.0f}, pyribs "
              f"{a['ribs_cpu_rounds_per_s']:.1f} -> {a['speedup']:.1f}x (wall "
              f"{a['ours_rounds_per_s']:.0f} vs {a['ribs_rounds_per_s']:.1f}: "
              f"{a['speedup_wall']:.1f}x)")
    if "workers" in parts:
        figures["throughput"] = eval_throughput(args.workers, seed=args.seed)
        for key, value in figures["throughput"].items():
            print(f"{key:<24} {value:8.2f}")
    if "maze" in parts:
        figures["hardmaze"] = hardmaze(args.budget, args.workers, args.seed)
        print(f"{'HardMaze':<10} {'evals':>7} {'coverage %':>11} {'goal evals':>11} "
              f"{'first goal':>11} {'best reward':>12} {'wall s':>8}")
        for name, row in figures["hardmaze"].items():
            print(f"{name:<10} {row['evaluations']:>7} {row['coverage_pct']:>11.2f} "
                  f"{row['goal_evals']:>11} {row['first_goal_eval'] or '-':>11} "
                  f"{row['best_reward']:>12.3f} {row['wall_s']:>8.0f}")
    figures["loadavg_end"] = os.getloadavg()
    figures["args"] = vars(args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
