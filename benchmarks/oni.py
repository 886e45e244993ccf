"""ONI evidence: does the labeler's reward change what the agent learns? (issue 15)

Part 1, MiniGrid. The agent's steps are captioned (``text.source: minigrid_events``: "You
picked up a yellow key.", "Nothing happens.", ...); the embedded MiniLM labeler decides which
captions are progress from a task-agnostic gridworld description (``anchors: gridworld``) and
the learner adds ONI's count-normalised reward. Arms, at equal env steps and seeds, one real
run of the system at a time (``Supervisor``: labeler + learner + actor processes):

- ``extrinsic``: APPO alone (no text, no labeler);
- ``oni_classification``: + ONI reward, classifier distilled from the labels;
- ``oni_retrieval``: + ONI reward, the label itself (0 until a caption is labelled);
- ``uniform_labels``, the control: every caption labelled 1 (a rule matching anything), so the
  reward has ONI's size and count normalisation but none of the labeler's judgement.

Per run: success of the final policy against uniform-random play (what ``explorer eval RUN
--random-baseline --episodes 64 --seed 10000+SEED`` prints), env steps to take-off (first
point where the 100-episode mean return exceeds 0.1), final and best 100-episode mean return,
and which captions the labeler rewarded (read from the run's ``labels.sqlite``; colour words
folded into ``<colour>`` so the kinds of event read at a glance). Writes
``<plots>/oni_<env>.png`` (return and ONI reward per step vs env steps, mean over seeds,
min-max band), prints a table, the rewarded captions and, as its LAST stdout line, one JSON
object with every figure::

    python benchmarks/oni.py --envs MiniGrid-KeyCorridorS3R3-v0 \
        MiniGrid-ObstructedMaze-1Dl-v0 --arms extrinsic oni_classification oni_retrieval \
        --seeds 0 1 2 --steps 10000000 --runs-dir runs/oni

(the defaults; 10-20 min per 10M-step run on this project's loaded 2-core machine: 18 runs
about 4-6 h). Runs kept with ``--runs-dir`` are combined, training nothing, by ``--report
RUN_DIR ...`` (a directory holding run directories is read whole).

Part 2, NetHack, is ``benchmarks/oni_nethack.py``; this script runs it too when its first
argument is ``nethack`` (the rest are that script's arguments)::

    python benchmarks/oni.py nethack --seeds 0 1 --steps 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling: exploration.py

from exploration import (
    RETURN_TAG,
    SOLVED_SUCCESS,
    TAKEOFF_RETURN,
    _on_grid,
    _takeoffs,
    events_wall_seconds,
    find_run_dirs,
    full_window_returns,
    read_scalars,
)

from actors.envs import probe_env_spec
from explorer.app.evaluate import evaluate_policy
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint
from explorer.core.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENVS = ("MiniGrid-KeyCorridorS3R3-v0", "MiniGrid-ObstructedMaze-1Dl-v0")
ONI_TAG = "labeler/intrinsic_reward_mean"
EVAL_SEED = 10_000

#: Config overrides of each part-1 arm on top of ``configs/keycorridor_oni.yaml``.
ARMS: dict[str, list[str]] = {
    "extrinsic": ["text.source=null", "llm_labeler.labeler=null"],
    "oni_classification": ["llm_labeler.reward_model=classification"],
    "oni_retrieval": ["llm_labeler.reward_model=retrieval"],
    # the control: every caption labelled 1 (a rule matching anything), so the reward is the
    # same size but says nothing about progress: an event-novelty bonus on the captions
    "uniform_labels": ["llm_labeler.reward_model=classification", "llm_labeler.labeler=rules",
                       'llm_labeler.backend={positive: ["."], split: false, '
                       'prompts_are_negative: false}'],
}

_COLOURS = re.compile(r"\b(?:red|green|blue|purple|yellow|grey)\b")


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[oni] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one run


@dataclass
class OniRun:
    """What one (env, arm, seed) run produced."""

    env: str
    arm: str
    seed: int
    env_steps: int
    wall_s: float
    final_return: float  # mean return of the last 100 training episodes, at the end
    max_return: float  # best logged value of that mean during training
    takeoff_step: int | None  # first env step with that mean > TAKEOFF_RETURN (None: never)
    eval_success: float  # final policy: fraction of eval episodes that reached the goal
    eval_return: float
    random_success: float  # uniform-random actions on the same envs and seed
    labels: dict[str, Any] = field(default_factory=dict)  # what the labeler rewarded
    curves: dict[str, tuple[list[int], list[float]]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "curves"}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def arm_of(cfg: Config) -> str:
    """The part-1 arm a run's config belongs to (``custom`` when none fits)."""
    if cfg.llm_labeler.labeler is None:
        return "extrinsic"
    if cfg.llm_labeler.labeler == "rules":
        return "uniform_labels"
    name = f"oni_{cfg.llm_labeler.reward_model}"
    return name if name in ARMS else "custom"


def make_config(args: argparse.Namespace, env_id: str, arm: str, seed: int,
                runs_dir: Path) -> Config:
    """The resolved config of one arm: base config, ``--set``, then this arm's keys."""
    name = f"{env_id.removeprefix('MiniGrid-').removesuffix('-v0')}_{arm}_s{seed}"
    return load_config(args.config, [
        *args.set, *ARMS[arm], f"name={name}", f"runs_dir={runs_dir}", f"env.id={env_id}",
        f"seed={seed}", f"total_env_steps={args.steps}",
    ])


def rewarded_captions(run_dir: Path) -> dict[str, Any]:
    """What the run's labeler said: positive and negative caption kinds, from labels.sqlite.

    Returns:
        ``labelled`` and ``positive`` counts, and ``positive_kinds``/``negative_kinds``:
        {caption with colours folded to ``<colour>``: how many labelled captions}, most
        frequent first. Empty for a run without a labeler.
    """
    path = run_dir / "labels.sqlite"
    if not path.is_file():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT text, label FROM labels").fetchall()
    kinds: dict[int, Counter[str]] = {0: Counter(), 1: Counter()}
    for text, label in rows:
        kinds[int(label)][_COLOURS.sub("<colour>", text)] += 1
    return {"labelled": len(rows), "positive": sum(kinds[1].values()),
            "positive_kinds": dict(kinds[1].most_common()),
            "negative_kinds": dict(kinds[0].most_common())}


def figures_of_run(args: argparse.Namespace, cfg: Config, run_dir: Path, checkpoint: Path,
                   env_steps: int, wall: float) -> OniRun:
    """Read a finished run's events and labels; evaluate its final checkpoint and random play
    with the seeds ``explorer eval --random-baseline`` would get (repeatable)."""
    curves = read_scalars(run_dir)
    curves[RETURN_TAG] = full_window_returns(curves)
    returns = curves[RETURN_TAG][1]
    seed = EVAL_SEED + cfg.seed
    policy = evaluate_policy(cfg, checkpoint, args.eval_episodes, seed)
    random = evaluate_policy(cfg, None, args.eval_episodes, seed)
    run = OniRun(
        env=cfg.env.id, arm=arm_of(cfg), seed=cfg.seed, env_steps=env_steps, wall_s=wall,
        final_return=returns[-1] if returns else math.nan,
        max_return=max(returns) if returns else math.nan,
        takeoff_step=next((step for step, value in zip(*curves[RETURN_TAG], strict=True)
                           if value > TAKEOFF_RETURN), None),
        eval_success=float(np.mean(policy.returns > 0)),
        eval_return=float(policy.returns.mean()),
        random_success=float(np.mean(random.returns > 0)),
        labels=rewarded_captions(run_dir),
        curves={tag: curve for tag, curve in curves.items() if tag in (RETURN_TAG, ONI_TAG)},
    )
    log(f"{run_dir.name}: {env_steps:,} steps, return {run.final_return:.3f} (max "
        f"{run.max_return:.3f}), eval success {run.eval_success:.0%} (random "
        f"{run.random_success:.0%}), {run.labels.get('positive', 0)} of "
        f"{run.labels.get('labelled', 0)} captions rewarded")
    return run


def run_arm(args: argparse.Namespace, env_id: str, arm: str, seed: int,
            runs_dir: Path) -> OniRun:
    """Train one arm through the real system, then read it back and evaluate it."""
    cfg = make_config(args, env_id, arm, seed, runs_dir)
    run_dir = create_run_dir(cfg, ["benchmarks/oni.py", *sys.argv[1:]])
    start = time.monotonic()
    result = Supervisor(cfg, probe_env_spec(cfg.env), run_dir).run()
    wall = time.monotonic() - start
    if result.reason != "done" or result.checkpoint is None:
        raise RuntimeError(f"{run_dir.name}: run ended with {result.reason!r}")
    return figures_of_run(args, cfg, run_dir, result.checkpoint, result.env_steps, wall)


def report_runs(args: argparse.Namespace) -> list[OniRun]:
    """Figures of runs kept earlier (maybe by several invocations), without training."""
    runs = []
    for run_dir in find_run_dirs(args.report):
        cfg = load_config(run_dir / "config.yaml")
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if checkpoint is None:
            log(f"{run_dir}: no checkpoint (unfinished?), left out")
            continue
        runs.append(figures_of_run(args, cfg, run_dir, checkpoint,
                                   checkpoint_env_steps(checkpoint),
                                   events_wall_seconds(run_dir)))
    return runs


def train_arms(args: argparse.Namespace) -> list[OniRun]:
    """Train every (env, arm, seed) the arguments ask for, one at a time."""
    arms = [(env_id, arm, seed) for env_id in args.envs for arm in args.arms
            for seed in args.seeds]
    runs: list[OniRun] = []
    with tempfile.TemporaryDirectory(prefix="oni-") as tmp:
        runs_dir = Path(args.runs_dir or tmp)
        for i, (env_id, arm, seed) in enumerate(arms):
            log(f"run {i + 1}/{len(arms)}: {env_id} {arm} seed {seed}")
            runs.append(run_arm(args, env_id, arm, seed, runs_dir))
    return runs


# --------------------------------------------------------------------------- report


def aggregate(runs: list[OniRun]) -> list[dict[str, Any]]:
    """One row per (env, arm): means over seeds, per-seed take-offs, solving seeds."""
    rows = []
    for env_id, arm in dict.fromkeys((r.env, r.arm) for r in runs):
        mine = sorted((r for r in runs if (r.env, r.arm) == (env_id, arm)),
                      key=lambda r: r.seed)
        final = [r.final_return for r in mine]
        rows.append({
            "env": env_id, "arm": arm, "seeds": [r.seed for r in mine],
            "env_steps": int(np.mean([r.env_steps for r in mine])),
            "final_return_mean": float(np.mean(final)), "final_return_std": float(np.std(final)),
            "max_return_mean": float(np.mean([r.max_return for r in mine])),
            "takeoff_steps": [r.takeoff_step for r in mine],
            "eval_success": [r.eval_success for r in mine],
            "eval_success_mean": float(np.mean([r.eval_success for r in mine])),
            "random_success_mean": float(np.mean([r.random_success for r in mine])),
            "solved_seeds": sum(r.eval_success >= SOLVED_SUCCESS for r in mine),
            "wall_s_mean": float(np.mean([r.wall_s for r in mine])),
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| env | arm | seeds | env steps | final return (mean ± std) | best return | "
          f"return > {TAKEOFF_RETURN} from (per seed) | eval success (per seed) | random | "
          "solved seeds | wall s/run |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per_seed = ", ".join(f"{s:.0%}" for s in r["eval_success"])
        print(f"| {r['env'].removeprefix('MiniGrid-')} | {r['arm']} | {len(r['seeds'])} | "
              f"{r['env_steps']:,} | {r['final_return_mean']:.3f} ± "
              f"{r['final_return_std']:.3f} | {r['max_return_mean']:.3f} | "
              f"{_takeoffs(r['takeoff_steps'])} | {r['eval_success_mean']:.0%} ({per_seed}) | "
              f"{r['random_success_mean']:.0%} | {r['solved_seeds']}/{len(r['seeds'])} | "
              f"{r['wall_s_mean']:.0f} |")


def print_labels(runs: list[OniRun], top: int = 12) -> None:
    """The caption kinds each env's labeler rewarded (and the most frequent it did not)."""
    for env_id in dict.fromkeys(r.env for r in runs):
        pos: Counter[str] = Counter()
        neg: Counter[str] = Counter()
        for r in runs:
            if r.env == env_id and r.labels:
                pos.update(r.labels["positive_kinds"])
                neg.update(r.labels["negative_kinds"])
        if not pos and not neg:
            continue
        print(f"\n{env_id}: captions labelled 1 (count over runs): "
              + "; ".join(f"{k} ({n})" for k, n in pos.most_common(top)))
        print(f"{env_id}: most frequent labelled 0: "
              + "; ".join(f"{k} ({n})" for k, n in neg.most_common(top)))


def plot_env(runs: list[OniRun], env_id: str, path: Path) -> None:
    """Return and ONI reward per step vs env steps, one line per arm (mean, min-max band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = max(r.env_steps for r in runs if r.env == env_id)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, arm in enumerate(ARMS):
        mine = [r for r in runs if r.arm == arm and r.env == env_id]
        for ax, tag in zip(axes, (RETURN_TAG, ONI_TAG), strict=True):
            curves = [r.curves[tag] for r in mine if r.curves.get(tag, ([], []))[0]]
            if not curves:
                continue
            grid, mean, low, high = _on_grid(curves, steps)
            ax.plot(grid, mean, color=f"C{index}", label=f"{arm} ({len(curves)} seeds)")
            ax.fill_between(grid, low, high, color=f"C{index}", alpha=0.2)
    name = env_id.removeprefix("MiniGrid-")
    axes[0].set(xlabel="env steps", ylabel="mean return, last 100 episodes",
                title=f"{name}: return")
    axes[1].set(xlabel="env steps", ylabel="ONI reward per step (after coef)",
                title=f"{name}: labeler reward")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=10_000_000, help="env steps per run")
    parser.add_argument("--eval-episodes", type=int, default=64,
                        help="episodes of the final policy (and of random play) per run")
    parser.add_argument("--config", default=str(REPO / "configs" / "keycorridor_oni.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, e.g. llm_labeler.coef=0.2")
    parser.add_argument("--plots", default=str(REPO / "benchmarks" / "plots"))
    parser.add_argument("--runs-dir", default=None,
                        help="keep the runs here (default: a temp dir, deleted at the end)")
    parser.add_argument("--report", nargs="+", metavar="RUN_DIR", default=None,
                        help="train nothing: table and plots of runs kept earlier with "
                             "--runs-dir (run directories, or directories holding them)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    runs = report_runs(args) if args.report else train_arms(args)
    plots = []
    for env_id in dict.fromkeys(r.env for r in runs):
        path = Path(args.plots) / f"oni_{env_id.removeprefix('MiniGrid-')}.png"
        plot_env(runs, env_id, path)
        plots.append(str(path))
    rows = aggregate(runs)
    print_table(rows)
    print_labels(runs)
    settings = {"report": args.report} if args.report else {
        "envs": args.envs, "arms": args.arms, "seeds": args.seeds, "steps": args.steps}
    print(json.dumps({
        "config": args.config, "set": args.set, **settings, "arms_overrides": ARMS,
        "total_wall_s": round(time.monotonic() - started, 1), "plots": plots,
        "rows": rows, "runs": [r.summary() for r in runs],
    }))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["nethack"]:  # part 2: the NetHack study, its own arguments
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from oni_nethack import main as nethack_main

        sys.exit(nethack_main(sys.argv[2:]))
    sys.exit(main())
