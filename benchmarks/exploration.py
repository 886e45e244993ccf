"""Exploration benchmark: PPO/APPO alone vs + each intrinsic bonus, on sparse MiniGrid tasks.

Every arm is one real run of the system (``Supervisor``: learner + actor processes over
ZeroMQ), one run at a time, at equal env steps and seeds. Returns and intrinsic-reward scalars
are read back from each run's TensorBoard events (``episode/return``: mean return of the last
100 episodes; ``intrinsic/0_<name>/reward_mean``: the normalised bonus per step, before its
coefficient). After training, the final checkpoint's policy is evaluated (actions sampled, as the
actors do) for task success (an episode with a positive return reached the goal: MiniGrid pays
``1 - 0.9 * steps / max_steps`` on success, 0 otherwise).

Noisy-TV variant: the same on ``env.noisy_tv=true`` (``actors/noisy_tv.py``: one extra action
that shows fresh noise in part of the image), reporting the fraction of steps the final policy
spends on that action, and its task success.

Writes ``<plots>/exploration_<env>.png`` (return and intrinsic reward vs env steps, mean over
seeds, min-max band) and ``<plots>/exploration_noisy_tv_<env>.png``, prints a table and, as its
LAST stdout line, one JSON object with every figure::

    python benchmarks/exploration.py --envs MiniGrid-KeyCorridorS3R3-v0 \
        MiniGrid-ObstructedMaze-1Dl-v0 --bonuses none rnd noveld e3b byol_explore \
        --seeds 0 1 2 --steps 250000 --noisy-tv-env MiniGrid-Empty-8x8-v0 \
        --noisy-tv-bonuses none rnd icm byol_hindsight --noisy-tv-seeds 0 1 \
        --noisy-tv-steps 200000

(these are the defaults: about 55 minutes on this project's 2-core machine under load).

Runs kept with ``--runs-dir`` (e.g. seeds trained by separate invocations, or on separate
machines) are combined into one table and one plot per env, training nothing, by
``--report RUN_DIR ...``; their final checkpoints are evaluated again with the same seeds.

Settings not given on the command line come from ``--config`` (``configs/exploration_minigrid
.yaml``) and ``--set KEY=VALUE``; the bonus coefficients and arguments are in ``BONUSES``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.envs import probe_env_spec
from explorer.app.evaluate import evaluate_policy
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint
from explorer.core.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENVS = ("MiniGrid-KeyCorridorS3R3-v0", "MiniGrid-ObstructedMaze-1Dl-v0")
DEFAULT_BONUSES = ("none", "rnd", "noveld", "e3b", "byol_explore")
NOISY_TV_BONUSES = ("none", "rnd", "icm", "byol_hindsight")
RETURN_TAG = "episode/return"
COUNT_TAG = "episode/count"
#: Returns are kept once this many episodes have finished, so that ``episode/return`` is the
#: mean of a full window and not of one lucky early episode.
MIN_EPISODES = 100
#: A seed counts as having solved a task when its final policy succeeds this often.
SOLVED_SUCCESS = 0.8
#: A run "takes off" at the first env step where its 100-episode mean return exceeds this.
TAKEOFF_RETURN = 0.1
#: Points on the common env-step grid that curves of different seeds are interpolated onto.
GRID_POINTS = 60

#: Intrinsic-config entry of each bonus (``None``: the plain PPO/APPO baseline). Every bonus is
#: normalised by the running std of its discounted return, so one coefficient fits all. Their
#: networks are as wide as the policy's (64) instead of their 256 defaults: on this 2-core CPU
#: that makes the learner 5-10x faster per batch (BYOL-Explore: 1.0 s -> 0.17 s per 1024 steps),
#: which is what lets every arm run the same step budget in the time there is.
BONUSES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "counts": {"name": "counts", "coef": 0.1},
    "rnd": {"name": "rnd", "coef": 0.1, "kwargs": {"hidden_size": 64, "embed_dim": 64}},
    "noveld": {"name": "noveld", "coef": 0.1, "kwargs": {"hidden_size": 64, "embed_dim": 64}},
    "e3b": {"name": "e3b", "coef": 0.1, "kwargs": {"hidden_size": 64, "embed_dim": 32}},
    "icm": {"name": "icm", "coef": 0.1, "kwargs": {"hidden_size": 64, "embed_dim": 64}},
    "ngu": {"name": "ngu", "coef": 0.1, "kwargs": {"hidden_size": 64}},
    "byol_explore": {"name": "byol_explore", "coef": 0.1,
                     "kwargs": {"hidden_size": 64, "embed_dim": 64, "core_size": 64}},
    "byol_hindsight": {"name": "byol_hindsight", "coef": 0.1,
                       "kwargs": {"hidden_size": 64, "embed_dim": 64}},
}
#: Two-stream variant of every bonus (``<name>_2s``), as RND trains: the bonus gets its own
#: value head and its returns are not cut at episode ends, so a bonus that stays high does not
#: pay the agent to keep an episode going instead of finishing the task.
BONUSES.update({f"{name}_2s": {**entry, "separate_value_head": True}
                for name, entry in list(BONUSES.items()) if entry is not None})


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[exploration] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one run


@dataclass
class RunFigures:
    """What one (env, bonus, seed) run produced."""

    env: str
    bonus: str
    seed: int
    noisy_tv: bool
    env_steps: int
    wall_s: float
    final_return: float  # mean return of the last 100 training episodes, at the end
    max_return: float  # best logged value of that mean during training
    takeoff_step: int | None  # first env step with that mean > TAKEOFF_RETURN (None: never)
    eval_success: float  # fraction of evaluation episodes that reached the goal
    eval_return: float
    eval_tv_fraction: float | None  # noisy TV only: fraction of eval steps on the TV action
    curves: dict[str, tuple[list[int], list[float]]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "curves"}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def intrinsic_override(bonus: str) -> str:
    """The ``intrinsic=[...]`` config override of a named bonus (``none``: no bonus)."""
    entry = BONUSES[bonus]
    return "intrinsic=" + json.dumps([] if entry is None else [entry])


def make_config(args: argparse.Namespace, env_id: str, bonus: str, seed: int, steps: int,
                noisy_tv: bool, runs_dir: Path) -> Config:
    """The resolved config of one arm: base config, ``--set``, then this arm's keys."""
    name = f"{env_id.removeprefix('MiniGrid-')}_{bonus}_s{seed}" + ("_tv" if noisy_tv else "")
    return load_config(args.config, [
        *args.set, f"name={name}", f"runs_dir={runs_dir}", f"env.id={env_id}",
        f"seed={seed}", f"total_env_steps={steps}", f"env.noisy_tv={str(noisy_tv).lower()}",
        intrinsic_override(bonus),
    ])


def read_scalars(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar tag of the run's TensorBoard events -> (env steps, values), step-sorted."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, tuple[list[int], list[float]]] = {}
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            steps, values = out.setdefault(tag, ([], []))
            for event in acc.Scalars(tag):
                steps.append(int(event.step))
                values.append(float(event.value))
    for tag, (steps, values) in out.items():
        order = np.argsort(steps, kind="stable")
        out[tag] = ([steps[i] for i in order], [values[i] for i in order])
    return out


def full_window_returns(curves: dict[str, tuple[list[int], list[float]]]
                        ) -> tuple[list[int], list[float]]:
    """The ``episode/return`` points logged after ``MIN_EPISODES`` episodes had finished."""
    steps, values = curves.get(RETURN_TAG, ([], []))
    count_at = dict(zip(*curves.get(COUNT_TAG, ([], [])), strict=True))
    kept = [(s, v) for s, v in zip(steps, values, strict=True)
            if count_at.get(s, 0) >= MIN_EPISODES]
    return [s for s, _ in kept], [v for _, v in kept]


def evaluate(cfg: Config, checkpoint: Path, episodes: int, seed: int) -> dict[str, float]:
    """Run the checkpoint's policy (sampled actions) for ``episodes`` episodes.

    Returns:
        ``success`` (fraction of episodes with return > 0), mean ``return``, and
        ``tv_fraction``: fraction of real steps (auto-reset steps excluded) that took the
        noisy-TV action (0 when the env has none; it is the last action when there is one).
    """
    result = evaluate_policy(cfg, checkpoint, episodes, seed, num_envs=32)
    tv_steps = result.action_counts[-1] if cfg.env.noisy_tv else 0
    return {"success": float(np.mean(result.returns > 0)),
            "return": float(result.returns.mean()),
            "tv_fraction": float(tv_steps / max(result.action_counts.sum(), 1))}


def run_arm(args: argparse.Namespace, env_id: str, bonus: str, seed: int, steps: int,
            noisy_tv: bool, runs_dir: Path) -> RunFigures:
    """Train one arm through the real system, then read its events and evaluate it."""
    cfg = make_config(args, env_id, bonus, seed, steps, noisy_tv, runs_dir)
    run_dir = create_run_dir(cfg, ["benchmarks/exploration.py", *sys.argv[1:]])
    start = time.monotonic()
    result = Supervisor(cfg, probe_env_spec(cfg.env), run_dir).run()
    wall = time.monotonic() - start
    if result.reason != "done" or result.checkpoint is None:
        raise RuntimeError(f"{run_dir.name}: run ended with {result.reason!r}")
    return figures_of_run(args, cfg, run_dir, bonus, result.checkpoint, result.env_steps, wall)


def figures_of_run(args: argparse.Namespace, cfg: Config, run_dir: Path, bonus: str,
                   checkpoint: Path, env_steps: int, wall: float) -> RunFigures:
    """Read a finished run's events and evaluate its final checkpoint (seeded: repeatable)."""
    curves = read_scalars(run_dir)
    curves[RETURN_TAG] = full_window_returns(curves)
    returns = curves[RETURN_TAG][1]
    ev = evaluate(cfg, checkpoint, args.eval_episodes, seed=10_000 + cfg.seed)
    noisy_tv = cfg.env.noisy_tv
    figures = RunFigures(
        env=cfg.env.id, bonus=bonus, seed=cfg.seed, noisy_tv=noisy_tv, env_steps=env_steps,
        wall_s=wall, final_return=returns[-1] if returns else math.nan,
        max_return=max(returns) if returns else math.nan,
        takeoff_step=next((step for step, value in zip(*curves[RETURN_TAG], strict=True)
                           if value > TAKEOFF_RETURN), None),
        eval_success=ev["success"],
        eval_return=ev["return"], eval_tv_fraction=ev["tv_fraction"] if noisy_tv else None,
        curves={tag: curve for tag, curve in curves.items()
                if tag == RETURN_TAG or tag.endswith("/reward_mean")},
    )
    tv = f", TV {figures.eval_tv_fraction:.1%}" if noisy_tv else ""
    log(f"{run_dir.name}: {env_steps:,} steps in {wall:.0f}s, return "
        f"{figures.final_return:.3f} (max {figures.max_return:.3f}), eval success "
        f"{figures.eval_success:.0%}{tv}")
    return figures


# --------------------------------------------------------------------------- report mode


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Run directories among ``paths``: each path is one (has ``config.yaml``) or holds some."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / "config.yaml").is_file():
            found.append(path)
            continue
        inside = sorted(d for d in path.glob("*") if (d / "config.yaml").is_file())
        if not inside:
            raise SystemExit(f"--report {raw}: not a run directory and holds none")
        found += inside
    return found


def bonus_of(known: dict[str, Any], cfg: Config) -> str:
    """The ``BONUSES`` name whose intrinsic config the run used (``custom`` if none matches)."""
    for name, intrinsic in known.items():
        if intrinsic == cfg.intrinsic:
            return name
    return "custom:" + "+".join(entry.name for entry in cfg.intrinsic)


def events_wall_seconds(run_dir: Path) -> float:
    """Seconds between the run's first and last TensorBoard event (its training wall time)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    times = [event.wall_time for events in (run_dir / "tb").glob("events.out.tfevents.*")
             for event in EventFileLoader(str(events)).Load()]
    return max(times) - min(times) if times else math.nan


def report_runs(args: argparse.Namespace) -> list[RunFigures]:
    """Figures of runs trained earlier (maybe by several invocations), without training."""
    known = {name: load_config(args.config, [intrinsic_override(name)]).intrinsic
             for name in BONUSES}
    runs = []
    for run_dir in find_run_dirs(args.report):
        cfg = load_config(run_dir / "config.yaml")
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if checkpoint is None:
            raise SystemExit(f"--report {run_dir}: no checkpoint (did the run finish?)")
        runs.append(figures_of_run(args, cfg, run_dir, bonus_of(known, cfg), checkpoint,
                                   checkpoint_env_steps(checkpoint), events_wall_seconds(run_dir)))
    return runs


# --------------------------------------------------------------------------- report


def intrinsic_curve(run: RunFigures) -> tuple[list[int], list[float]] | None:
    """The run's normalised bonus per step (``intrinsic/0_*/reward_mean``), if it has one."""
    for tag, curve in run.curves.items():
        if tag.startswith("intrinsic/") and tag.endswith("/reward_mean"):
            return curve
    return None


def _on_grid(curves: list[tuple[list[int], list[float]]], steps: int) -> tuple[np.ndarray, ...]:
    """Interpolate each curve on a common env-step grid; return grid, mean, min, max."""
    grid = np.linspace(0, steps, GRID_POINTS)
    rows = np.stack([np.interp(grid, s, v, left=np.nan) for s, v in curves])  # (seeds, G)
    with warnings.catch_warnings():  # grid points before any seed's first log are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return grid, np.nanmean(rows, 0), np.nanmin(rows, 0), np.nanmax(rows, 0)


def plot_env(runs: list[RunFigures], env_id: str, steps: int, path: Path, title: str) -> None:
    """Return and intrinsic reward vs env steps, one line per bonus (mean, min-max band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ret, ax_int) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, bonus in enumerate(dict.fromkeys(r.bonus for r in runs)):
        color = f"C{index}"  # one colour per bonus in both panels
        mine = [r for r in runs if r.bonus == bonus and r.env == env_id]
        returns = [r.curves.get(RETURN_TAG) for r in mine]
        for ax, found in ((ax_ret, returns), (ax_int, [intrinsic_curve(r) for r in mine])):
            curves = [c for c in found if c is not None and c[0]]
            if not curves:
                continue
            grid, mean, low, high = _on_grid(curves, steps)
            ax.plot(grid, mean, color=color, label=f"{bonus} ({len(curves)} seeds)")
            ax.fill_between(grid, low, high, color=color, alpha=0.2)
    ax_ret.set(xlabel="env steps", ylabel="mean return, last 100 episodes",
               title=f"{title}: return")
    ax_int.set(xlabel="env steps", ylabel="normalised bonus per step (before coef)",
               title=f"{title}: intrinsic reward", yscale="log")
    for ax in (ax_ret, ax_int):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def aggregate(runs: list[RunFigures]) -> list[dict[str, Any]]:
    """One row per (env, noisy_tv, bonus): means over seeds and the number of solving seeds."""
    rows = []
    keys = dict.fromkeys((r.env, r.noisy_tv, r.bonus) for r in runs)
    for env_id, noisy_tv, bonus in keys:
        mine = [r for r in runs if (r.env, r.noisy_tv, r.bonus) == (env_id, noisy_tv, bonus)]
        final = [r.final_return for r in mine]
        tv = [r.eval_tv_fraction for r in mine if r.eval_tv_fraction is not None]
        rows.append({
            "env": env_id, "noisy_tv": noisy_tv, "bonus": bonus, "seeds": len(mine),
            "env_steps": int(np.mean([r.env_steps for r in mine])),
            "final_return_mean": float(np.mean(final)), "final_return_std": float(np.std(final)),
            "max_return_mean": float(np.mean([r.max_return for r in mine])),
            "takeoff_steps": [r.takeoff_step for r in mine],
            "eval_success_mean": float(np.mean([r.eval_success for r in mine])),
            "solved_seeds": sum(r.eval_success >= SOLVED_SUCCESS for r in mine),
            "tv_fraction_mean": float(np.mean(tv)) if tv else None,
            "wall_s_mean": float(np.mean([r.wall_s for r in mine])),
        })
    return rows


def _takeoffs(steps: list[int | None]) -> str:
    """Per-seed take-off points in millions of env steps (``-``: never took off)."""
    return ", ".join("-" if step is None else f"{step / 1e6:.1f}M" for step in steps)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("| env | noisy TV | bonus | seeds | env steps | final return (mean ± std) | "
              f"best return | return > {TAKEOFF_RETURN} from (per seed) | eval success | "
              "solved seeds | TV-action share | wall s/run |")
    print(header)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tv = "" if r["tv_fraction_mean"] is None else f"{r['tv_fraction_mean']:.1%}"
        print(f"| {r['env'].removeprefix('MiniGrid-')} | {'yes' if r['noisy_tv'] else 'no'} | "
              f"{r['bonus']} | {r['seeds']} | {r['env_steps']:,} | "
              f"{r['final_return_mean']:.3f} ± {r['final_return_std']:.3f} | "
              f"{r['max_return_mean']:.3f} | {_takeoffs(r['takeoff_steps'])} | "
              f"{r['eval_success_mean']:.0%} | {r['solved_seeds']}/{r['seeds']} | {tv} | "
              f"{r['wall_s_mean']:.0f} |")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(DEFAULT_ENVS),
                        help="EnvPool MiniGrid ids (none: skip the main comparison)")
    parser.add_argument("--bonuses", nargs="+", default=list(DEFAULT_BONUSES),
                        choices=sorted(BONUSES), help="'none' is the baseline")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=250_000, help="env steps per run")
    parser.add_argument("--noisy-tv-env", default="MiniGrid-Empty-8x8-v0",
                        help="env of the noisy-TV variant ('' skips it)")
    parser.add_argument("--noisy-tv-bonuses", nargs="*", default=list(NOISY_TV_BONUSES),
                        choices=sorted(BONUSES))
    parser.add_argument("--noisy-tv-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--noisy-tv-steps", type=int, default=200_000)
    parser.add_argument("--eval-episodes", type=int, default=64,
                        help="episodes of the final policy per run")
    parser.add_argument("--config", default=str(REPO / "configs" / "exploration_minigrid.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, e.g. learner.lr=3e-4")
    parser.add_argument("--plots", default=str(REPO / "benchmarks" / "plots"))
    parser.add_argument("--runs-dir", default=None,
                        help="keep the runs here (default: a temp dir, deleted at the end)")
    parser.add_argument("--report", nargs="+", metavar="RUN_DIR", default=None,
                        help="train nothing: table and plots of runs kept earlier with "
                             "--runs-dir (run directories, or directories holding them)")
    return parser.parse_args(argv)


def train_arms(args: argparse.Namespace) -> list[RunFigures]:
    """Train every (env, bonus, seed) arm the arguments ask for, one at a time."""
    arms = [(env_id, bonus, seed, args.steps, False)
            for env_id in args.envs for bonus in args.bonuses for seed in args.seeds]
    if args.noisy_tv_env:
        arms += [(args.noisy_tv_env, bonus, seed, args.noisy_tv_steps, True)
                 for bonus in args.noisy_tv_bonuses for seed in args.noisy_tv_seeds]
    runs: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="exploration-") as tmp:
        runs_dir = Path(args.runs_dir or tmp)
        for i, (env_id, bonus, seed, steps, noisy_tv) in enumerate(arms):
            log(f"run {i + 1}/{len(arms)}: {env_id} {bonus} seed {seed}"
                + (" noisy TV" if noisy_tv else ""))
            runs.append(run_arm(args, env_id, bonus, seed, steps, noisy_tv, runs_dir))
    return runs


def plot_runs(runs: list[RunFigures], plots_dir: Path) -> list[str]:
    """One plot per env (and per noisy-TV env), over as many env steps as its longest run."""
    paths = []
    for noisy_tv in (False, True):
        mine = [r for r in runs if r.noisy_tv == noisy_tv]
        for env_id in dict.fromkeys(r.env for r in mine):
            name = env_id.removeprefix("MiniGrid-")
            steps = max(r.env_steps for r in mine if r.env == env_id)
            prefix, title = ("exploration_noisy_tv_", f"{name} + noisy TV") if noisy_tv \
                else ("exploration_", name)
            path = plots_dir / f"{prefix}{name}.png"
            plot_env(mine, env_id, steps, path, title)
            paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    runs = report_runs(args) if args.report else train_arms(args)
    plots = plot_runs(runs, Path(args.plots))
    rows = aggregate(runs)
    print_table(rows)
    settings = {"report": args.report} if args.report else {
        "steps": args.steps, "seeds": args.seeds, "noisy_tv_steps": args.noisy_tv_steps,
        "noisy_tv_seeds": args.noisy_tv_seeds}
    print(json.dumps({
        "config": args.config, "set": args.set, **settings, "bonuses": BONUSES,
        "total_wall_s": round(time.monotonic() - started, 1), "plots": plots,
        "rows": rows, "runs": [r.summary() for r in runs],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
