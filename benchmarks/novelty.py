"""Novelty-search benchmark: our archive and search vs pyribs (``ribs``), and worker scaling.

    .venv/bin/python benchmarks/novelty.py --budget 5000 --workers 2

1. Archive insert+query throughput with 20,000 elites: per round, a batch of 2-D descriptors
   is scored (k = 15 novelty) and the novel ones inserted. Ours: ``NoveltyArchive``
   (incremental k-NN: cKDTree + brute-force tail); pyribs: ``ProximityArchive.add`` (KD-tree
   query, then a KD-tree rebuilt over the whole archive on every add).
2. HardMaze, equal budgets and seed: coverage of a 100x100 grid of final positions and whether
   the goal was reached, for our NS, our SERENE and pyribs NS (``ProximityArchive`` +
   ``GaussianEmitter`` + ``Scheduler``), all evaluated by the same worker processes.
3. Evaluation throughput (genomes/s) with 1 vs N worker processes.

Prints a table, then one JSON line with every figure (last line).
"""

from __future__ import annotations

import argparse
import json
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
                       threshold: float = 0.01, seed: int = 0) -> dict[str, float]:
    """Rounds per second of (score a batch, insert the novel ones) for ours and pyribs'."""
    from ribs.archives import ProximityArchive

    rng = np.random.default_rng(seed)
    start = rng.random((elites, 2))
    batches = [rng.random((batch, 2)) for _ in range(rounds)]
    sol = np.zeros((batch, 4))
    ours = NoveltyArchive(solution_dim=4, descriptor_dim=2, k_neighbors=K,
                          insertion="threshold", novelty_threshold=threshold, knn_backend="kdtree")
    ours.add_all(np.zeros((elites, 4)), start, np.zeros(elites))
    t = time.perf_counter()
    for desc in batches:
        ours.add(sol, desc, np.zeros(batch), ours.novelty(desc))
    ours_s = time.perf_counter() - t
    ribs = ProximityArchive(solution_dim=4, measure_dim=2, k_neighbors=K,
                            novelty_threshold=threshold, initial_capacity=elites * 2, seed=seed)
    ribs.add(np.zeros((elites, 4)), np.zeros(elites), start)  # empty archive: all novel
    assert len(ribs) == elites, len(ribs)
    t = time.perf_counter()
    for desc in batches:
        ribs.add(sol, np.zeros(batch), desc)
    ribs_s = time.perf_counter() - t
    return {"ours_rounds_per_s": rounds / ours_s, "ribs_rounds_per_s": rounds / ribs_s,
            "speedup": ribs_s / ours_s, "ours_size": len(ours), "ribs_size": len(ribs)}


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


def eval_throughput(workers: int, genomes: int = 400, seed: int = 0) -> dict[str, float]:
    out = {}
    batch = np.random.default_rng(seed).uniform(-5, 5, (genomes, 68))
    for n in sorted({1, workers}):
        cfg = _config("ns", genomes, n, seed)
        pool = EvaluationPool(cfg, 68, frames=False, on_event=lambda _: None)
        try:
            pool.start()
            pool.evaluate(batch[:2 * n])  # workers up
            t = time.perf_counter()
            pool.evaluate(batch)
            out[f"workers_{n}_evals_per_s"] = genomes / (time.perf_counter() - t)
        finally:
            pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-maze", action="store_true")
    args = parser.parse_args()
    figures: dict = {}
    for batch in (11, 200):  # a reward emitter's batch, a novelty-search generation
        a = archive_throughput(batch=batch, seed=args.seed)
        figures[f"archive_batch_{batch}"] = a
        print(f"archive insert+query @20k elites (batch {batch}, k=15): ours "
              f"{a['ours_rounds_per_s']:.0f} rounds/s, pyribs {a['ribs_rounds_per_s']:.1f} "
              f"rounds/s -> {a['speedup']:.1f}x")
    figures["throughput"] = eval_throughput(args.workers, seed=args.seed)
    for key, value in figures["throughput"].items():
        print(f"{key:<24} {value:8.1f}")
    if not args.skip_maze:
        figures["hardmaze"] = hardmaze(args.budget, args.workers, args.seed)
        print(f"{'HardMaze':<10} {'evals':>7} {'coverage %':>11} {'goal evals':>11} "
              f"{'first goal':>11} {'best reward':>12} {'wall s':>8}")
        for name, row in figures["hardmaze"].items():
            print(f"{name:<10} {row['evaluations']:>7} {row['coverage_pct']:>11.2f} "
                  f"{row['goal_evals']:>11} {row['first_goal_eval'] or '-':>11} "
                  f"{row['best_reward']:>12.3f} {row['wall_s']:>8.0f}")
    figures["args"] = vars(args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
