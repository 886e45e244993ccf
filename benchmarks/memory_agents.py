"""Feed-forward vs GRU vs retrieval on a task where memory matters, at equal env steps.

Runs ``configs/minigrid_ra.yaml`` (MiniGrid-MemoryS7, PPO, MLP torso) through the real system
(``explorer run``: supervisor, actor and learner processes) three ways, seeds interleaved:

* ``ff``: no core (``learner.model.retrieval.k=0``);
* ``gru``: a GRU core of 128 (``learner.model.core=gru``, retrieval off);
* ``retrieval``: the config as shipped (top 10 of 4-step chunks in a 16-chunk window);
* ``retrieval_wide``: the same with a 64-chunk window (256 steps, longer than MemoryS7's
  245-step episodes, so the cue never leaves it).

Each run stops at ``--steps`` env steps; ``--extend`` continues the runs already in
``--runs-dir`` to ``--steps`` (``explorer run --resume``: weights, optimiser and counters from
the newest checkpoint; envs and recurrent states start afresh). Reported per variant: the
mean return of the last 100 episodes at the end (median and range over seeds), the return
curve (TensorBoard ``episode/return`` at 10 equal env-step checkpoints, mean over seeds) and
training fps. Prints a table, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/memory_agents.py --steps 2000000 --seeds 1 2 3
    python benchmarks/memory_agents.py --steps 4000000 --seeds 1 2 3 --extend
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "minigrid_ra.yaml"
VARIANTS = {
    "ff": ["learner.model.retrieval.k=0"],
    "gru": ["learner.model.retrieval.k=0", "learner.model.core=gru",
            "learner.model.core_size=128"],
    "retrieval": [],
    "retrieval_wide": ["learner.model.retrieval.window_chunks=64"],
}


def read_returns(run_dir: Path) -> list[tuple[int, float]]:
    """(env step, 100-episode mean return) pairs from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "episode/return" in acc.Tags()["scalars"]:
            points += [(e.step, e.value) for e in acc.Scalars("episode/return")]
    return sorted(points)


def run(variant: str, seed: int, steps: int, root: Path, extend: bool = False
        ) -> dict[str, Any]:
    runs = root / f"{variant}-{seed}"
    already = 0  # env steps the run had before this call
    if extend:
        (previous,) = [p for p in runs.iterdir() if p.is_dir()]
        from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint

        already = checkpoint_env_steps(latest_checkpoint(previous / "checkpoints"))
        cmd = [sys.executable, "-m", "explorer.app.cli", "run", "--quiet", "--resume",
               str(previous), f"total_env_steps={steps}"]
    else:
        shutil.rmtree(runs, ignore_errors=True)
        cmd = [sys.executable, "-m", "explorer.app.cli", "run", "--quiet", str(CONFIG),
               f"seed={seed}", f"total_env_steps={steps}", f"runs_dir={runs}",
               f"name={variant}", *VARIANTS[variant]]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{variant} seed {seed} failed: {done.stderr[-2000:]}")
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    points = read_returns(run_dir)
    curve = []
    for i in range(1, 11):
        upto = [v for s, v in points if s <= steps * i / 10]
        curve.append(upto[-1] if upto else None)
    return {"variant": variant, "seed": seed, "final": points[-1][1] if points else None,
            "curve": curve, "fps": (steps - already) / wall, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/explorer-memory-agents"))
    parser.add_argument("--extend", action="store_true",
                        help="continue the runs in --runs-dir to --steps (--resume)")
    args = parser.parse_args()
    records = []
    for seed in args.seeds:
        for variant in args.variants:
            record = run(variant, seed, args.steps, args.runs_dir, args.extend)
            records.append(record)
            print(f"{variant:>9} seed {seed}: final {record['final']:.3f}  "
                  f"{record['fps']:,.0f} env steps/s", flush=True)
    print(f"\nMiniGrid-MemoryS7, {args.steps:,} env steps, seeds {args.seeds}")
    print(f"{'variant':>9} {'final median':>12} {'range':>15} {'fps':>7}   curve (mean "
          f"return at each 10% of the steps)")
    summary = {}
    for variant in args.variants:
        mine = [r for r in records if r["variant"] == variant]
        finals = [r["final"] for r in mine if r["final"] is not None]
        curve = [statistics.mean(c) if (c := [r["curve"][i] for r in mine
                                              if r["curve"][i] is not None]) else None
                 for i in range(10)]
        summary[variant] = {"final_median": statistics.median(finals), "final_min": min(finals),
                            "final_max": max(finals), "curve": curve,
                            "fps": statistics.median(r["fps"] for r in mine)}
        s = summary[variant]
        shown = " ".join("  -  " if v is None else f"{v:.2f}" for v in curve)
        print(f"{variant:>9} {s['final_median']:>12.3f} {s['final_min']:>6.3f}-"
              f"{s['final_max']:<8.3f} {s['fps']:>7,.0f}   {shown}")
    print(json.dumps({"steps": args.steps, "seeds": args.seeds, "summary": summary,
                      "runs": records}))


if __name__ == "__main__":
    main()
