"""ONI evidence on NetHack, within what a CPU learner can do (issue 15, part 2).

``configs/nethack_oni.yaml`` (small model, embedded MiniLM labeler on the sentences of
NetHack's message line) trained through the real system, one run at a time, at equal env
steps and seeds, in three arms:

- ``extrinsic``: the score reward alone (no text, no labeler);
- ``oni_classification``: + ONI's count-normalised reward, classifier distilled from labels;
- ``oni_only``: the ONI reward alone (``learner.ext_coef=0``): what the labeler's judgement
  teaches without the score.

Per arm (mean ± std over seeds of each run's last logged 100-episode means): in-game score,
dungeon depth reached, gold, distinct messages per episode (``nethack/unique_messages``) and
the share of steps that showed a sentence the labeler rewarded (``labeler/steps_rewarded_frac``;
no labeler in the extrinsic arm). Writes ``<plots>/oni_nethack.png`` (score and distinct
messages vs env steps, mean over seeds, min-max band), prints a table and, as its LAST stdout
line, one JSON object with every figure::

    python benchmarks/oni_nethack.py --seeds 0 1 --steps 1000000 --runs-dir runs/oni_nethack

(~11 min per 1M-step run on a quiet 2-core machine: 6 runs about 70 min). ONI itself trains
for billions of steps with a GPU learner and the full model (``configs/nethack_oni_full.yaml``);
1M steps of a small model can show whether the reward moves behaviour (messages seen, steps
rewarded), not the long-horizon play it is for. ``--report RUN_DIR ...`` re-reads kept runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling: exploration.py

from exploration import _on_grid, events_wall_seconds, find_run_dirs, read_scalars

from actors.envs import probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]

ARMS: dict[str, list[str]] = {
    "extrinsic": ["llm_labeler.labeler=null", "text.source=null"],
    "oni_classification": ["llm_labeler.reward_model=classification"],
    "oni_only": ["llm_labeler.reward_model=classification", "learner.ext_coef=0"],
}

#: figure name -> TensorBoard tag (100-episode means, logged by the learner)
FIGURES = {
    "score": "nethack/score",
    "depth": "nethack/depth",
    "gold": "nethack/gold",
    "distinct_messages": "nethack/unique_messages",
    "steps_rewarded_frac": "labeler/steps_rewarded_frac",
}
#: the last points averaged for a run's final figure (a smoother end value than one point)
TAIL_POINTS = 5


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[oni-nethack] {text}", file=sys.stderr, flush=True)


@dataclass
class NetHackRun:
    """What one (arm, seed) run produced."""

    arm: str
    seed: int
    env_steps: int
    wall_s: float
    final: dict[str, float | None]  # figure -> mean of its last TAIL_POINTS logged values
    curves: dict[str, tuple[list[int], list[float]]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"arm": self.arm, "seed": self.seed, "env_steps": self.env_steps,
                "wall_s": round(self.wall_s, 1),
                "final": {k: None if v is None else round(v, 4) for k, v in self.final.items()}}


def arm_of(cfg: Config) -> str:
    if cfg.llm_labeler.labeler is None:
        return "extrinsic"
    return "oni_only" if cfg.learner.ext_coef == 0 else f"oni_{cfg.llm_labeler.reward_model}"


def make_config(args: argparse.Namespace, arm: str, seed: int, runs_dir: Path) -> Config:
    return load_config(args.config, [
        *args.set, *ARMS[arm], f"name=nethack_{arm}_s{seed}", f"runs_dir={runs_dir}",
        f"seed={seed}", f"total_env_steps={args.steps}",
    ])


def figures_of_run(cfg: Config, run_dir: Path, env_steps: int, wall: float) -> NetHackRun:
    curves = read_scalars(run_dir)
    final: dict[str, float | None] = {}
    for name, tag in FIGURES.items():
        values = curves.get(tag, ([], []))[1]
        final[name] = float(np.mean(values[-TAIL_POINTS:])) if values else None
    run = NetHackRun(arm=arm_of(cfg), seed=cfg.seed, env_steps=env_steps, wall_s=wall,
                     final=final, curves={tag: curves[tag] for tag in FIGURES.values()
                                          if tag in curves})
    log(f"{run_dir.name}: {env_steps:,} steps, " + ", ".join(
        f"{k} {v:.3g}" for k, v in final.items() if v is not None))
    return run


def train_arms(args: argparse.Namespace) -> list[NetHackRun]:
    runs: list[NetHackRun] = []
    plan = [(arm, seed) for seed in args.seeds for arm in args.arms]  # seeds interleaved
    with tempfile.TemporaryDirectory(prefix="oni-nethack-") as tmp:
        runs_dir = Path(args.runs_dir or tmp)
        for i, (arm, seed) in enumerate(plan):
            log(f"run {i + 1}/{len(plan)}: {arm} seed {seed}")
            cfg = make_config(args, arm, seed, runs_dir)
            run_dir = create_run_dir(cfg, ["benchmarks/oni_nethack.py", *sys.argv[1:]])
            start = time.monotonic()
            result = Supervisor(cfg, probe_env_spec(cfg.env), run_dir).run()
            if result.reason != "done":
                raise RuntimeError(f"{run_dir.name}: run ended with {result.reason!r}")
            runs.append(figures_of_run(cfg, run_dir, result.env_steps,
                                       time.monotonic() - start))
    return runs


def report_runs(args: argparse.Namespace) -> list[NetHackRun]:
    runs = []
    for run_dir in find_run_dirs(args.report):
        cfg = load_config(run_dir / "config.yaml")
        curves = read_scalars(run_dir)
        steps = max((s[-1] for s, _ in curves.values() if s), default=0)
        if steps < 0.95 * cfg.total_env_steps:
            log(f"{run_dir}: {steps:,} of {cfg.total_env_steps:,} env steps (unfinished), "
                "left out")
            continue
        runs.append(figures_of_run(cfg, run_dir, steps, events_wall_seconds(run_dir)))
    return runs


def aggregate(runs: list[NetHackRun]) -> list[dict[str, Any]]:
    rows = []
    for arm in dict.fromkeys(r.arm for r in runs):
        mine = sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed)
        row: dict[str, Any] = {"arm": arm, "seeds": [r.seed for r in mine],
                               "env_steps": int(np.mean([r.env_steps for r in mine])),
                               "wall_s_mean": float(np.mean([r.wall_s for r in mine]))}
        for name in FIGURES:
            values = [r.final[name] for r in mine if r.final[name] is not None]
            row[name] = ({"mean": float(np.mean(values)), "std": float(np.std(values)),
                          "per_seed": values} if values else None)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| arm | seeds | env steps | " + " | ".join(FIGURES) + " | wall s/run |")
    print("|---|---:|---:|" + "---:|" * len(FIGURES) + "---:|")
    for r in rows:
        cells = ["n/a" if r[name] is None else f"{r[name]['mean']:.3g} ± {r[name]['std']:.2g}"
                 for name in FIGURES]
        print(f"| {r['arm']} | {len(r['seeds'])} | {r['env_steps']:,} | " + " | ".join(cells)
              + f" | {r['wall_s_mean']:.0f} |")


def plot(runs: list[NetHackRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = max(r.env_steps for r in runs)
    shown = ("score", "distinct_messages", "steps_rewarded_frac")
    fig, axes = plt.subplots(1, len(shown), figsize=(15, 4.2))
    for index, arm in enumerate(ARMS):
        for ax, name in zip(axes, shown, strict=True):
            curves = [r.curves[FIGURES[name]] for r in runs
                      if r.arm == arm and r.curves.get(FIGURES[name], ([], []))[0]]
            if not curves:
                continue
            grid, mean, low, high = _on_grid(curves, steps)
            ax.plot(grid, mean, color=f"C{index}", label=f"{arm} ({len(curves)} seeds)")
            ax.fill_between(grid, low, high, color=f"C{index}", alpha=0.2)
    for ax, name in zip(axes, shown, strict=True):
        ax.set(xlabel="env steps", title=f"NetHackScore-v0: {name} (100-episode mean)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--config", default=str(REPO / "configs" / "nethack_oni.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, e.g. llm_labeler.coef=0.2")
    parser.add_argument("--plots", default=str(REPO / "benchmarks" / "plots"))
    parser.add_argument("--runs-dir", default=None,
                        help="keep the runs here (default: a temp dir, deleted at the end)")
    parser.add_argument("--report", nargs="+", metavar="RUN_DIR", default=None,
                        help="train nothing: table and plot of runs kept with --runs-dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    runs = report_runs(args) if args.report else train_arms(args)
    path = Path(args.plots) / "oni_nethack.png"
    plot(runs, path)
    rows = aggregate(runs)
    print_table(rows)
    settings = {"report": args.report} if args.report else {
        "arms": args.arms, "seeds": args.seeds, "steps": args.steps}
    print(json.dumps({"config": args.config, "set": args.set, **settings,
                      "arms_overrides": ARMS, "total_wall_s": round(time.monotonic() - started, 1),
                      "plot": str(path), "rows": rows, "runs": [r.summary() for r in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
