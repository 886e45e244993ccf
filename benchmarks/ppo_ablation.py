"""Where do our extra env steps come from? CleanRL-faithful PPO with one of our system's
differences switched on at a time, on the same seeds, env steps to the target.

Each variant is ``benchmarks/cleanrl_ppo_faithful.py`` (in this process, one run at a time)
with its ablation flags: ``shared_torso`` (one torso under both heads), ``scalar_direction``
(MiniGrid's direction as one float), ``policy_lag=1`` (the envs are stepped by weights one
update old, as our asynchronous actors) and ``lag_correction`` (decoupled PPO, our learner's
answer to that lag). Env steps to a target do not depend on the machine's load, so this can
run beside other work; the wall times printed do.

    python benchmarks/ppo_ablation.py --env-id MiniGrid-DoorKey-5x5-v0 --target 0.9 --seeds 5

Prints a table (median, min-max, ratio of medians to ``faithful``) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cleanrl_ppo_faithful import Args, train

#: name -> the Args fields it changes (faithful: CleanRL's ppo.py)
VARIANTS: dict[str, dict[str, Any]] = {
    "faithful": {},
    "shared_torso": {"shared_torso": True},
    "scalar_direction": {"scalar_direction": True},
    "lag1": {"policy_lag": 1},
    "lag1_corrected": {"policy_lag": 1, "lag_correction": True},
    "all_three": {"shared_torso": True, "scalar_direction": True, "policy_lag": 1},
}


def run(env_id: str, target: float, seed: int, cap: int, changes: dict[str, Any]
        ) -> dict[str, Any]:
    args = Args(env_id=env_id, seed=seed, target_return=target, total_timesteps=1_000_000,
                max_env_steps=cap, quiet=True, **changes)
    return train(args, t0=time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="MiniGrid-DoorKey-5x5-v0")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--max-env-steps", type=int, default=3_000_000,
                        help="step cap of each run (a run that hits it counts as failed)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    steps: dict[str, list[int | None]] = {v: [] for v in args.variants}
    for seed in seeds:  # interleaved, so load drifts hit every variant
        for name in args.variants:
            res = run(args.env_id, args.target, seed, args.max_env_steps, VARIANTS[name])
            steps[name].append(res["env_steps_to_target"])
            print(f"[ablation] {name} seed {seed}: {res['env_steps_to_target']} env steps, "
                  f"{res['wall_s']:.1f} s", file=sys.stderr, flush=True)

    def median(values: list[int | None]) -> float:  # a failure counts as infinitely slow
        return statistics.median([float("inf") if v is None else v for v in values])

    base = median(steps["faithful"]) if "faithful" in steps else None
    print(f"{args.env_id}, mean-100 return >= {args.target}, seeds {list(seeds)}")
    print(f"{'variant':<18} {'median env steps':>17} {'min-max':>21} {'failed':>7} "
          f"{'vs faithful':>12}")
    summary = {}
    for name, values in steps.items():
        solved = [v for v in values if v is not None]
        med = median(values)
        ratio = None if base in (None, 0) or med == float("inf") else med / base
        span = f"{min(solved):,}-{max(solved):,}" if solved else "-"
        print(f"{name:<18} {med:>17,.0f} {span:>21} {len(values) - len(solved):>7} "
              f"{'-' if ratio is None else f'{ratio:.2f}x':>12}")
        summary[name] = {"env_steps": values, "median": None if med == float("inf") else med,
                         "vs_faithful": None if ratio is None else round(ratio, 3)}
    print(json.dumps({"benchmark": "ppo_ablation", "env_id": args.env_id,
                      "target": args.target, "seeds": list(seeds), "variants": summary}))


if __name__ == "__main__":
    main()
