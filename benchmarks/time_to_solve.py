"""Time to solve: our system against CleanRL-faithful PPO, side by side, command to target.

For every task and seed the script runs one command per system, each in its own process
group, one at a time, interleaved (task 1: ours s0, CleanRL s0, ours s1, CleanRL s1, ...) so
that drifts in machine load hit both:

* ours: ``explorer run CONFIG env.id=ID seed=S target_return=X total_env_steps=CAP
  log_interval_s=0.5 runs_dir=... name=... [--ours-overrides]`` with ``configs/cartpole.yaml``
  for CartPole and ``configs/quickstart.yaml`` for the MiniGrid tasks (``--ours-config``).
  The learner stops by itself at the target (``learner/worker.py``: ``_target_reached``,
  a full window of 100 episodes whose mean return >= X); at ``--budget-s`` the script sends
  SIGINT (the supervisor stops every process and checkpoints), then SIGKILL after a grace;
* CleanRL: ``python benchmarks/cleanrl_ppo_faithful.py --env-id ID --seed S --target-return X
  --budget-s B --total-timesteps CAP --max-env-steps CAP --num-envs 16 --torch-threads 1``
  (its own 100-episode window, its own budget; killed after budget + grace).

The clock of every figure is the wall clock of this script: 0 is the moment just before the
command is started (``Popen``), so interpreter start-up, imports, env creation, process spawns
and connections are all inside the time to target.

* **Wall time to target**: ours, the wall time of the first ``episode/return`` scalar in the
  run's TensorBoard events (``tb/``) that is >= X with ``episode/count`` >= 100; the learner
  writes that point at the very step it stops (its ``log()`` right after ``_target_reached``),
  so the TB wall time *is* the moment the target was reached, to a few ms. The command exits
  a few seconds later (final checkpoint, actor shutdown): reported separately as ``exit_s``.
  CleanRL: the moment the finished episode that lifted its window to X was counted
  (``time.time()`` in the script, put on this script's clock through its process start time).
* **Env steps to target**: ours, the step of that TB point (env steps the learner has trained
  on, counted like the actors count them: every ``env.step`` x envs, EnvPool's auto-reset
  steps included); CleanRL, its env steps at that moment, counted the same way.
* **Start-up (command to first env step)**: CleanRL records the time of its first
  ``env.step``. Our system has no such record, and its first TB scalar is no help: the learner
  writes its first scalars ``log_interval_s`` after it starts, before any actor exists. The
  most reliable signal is ``wire/received`` (rollouts the learner has received), logged at
  every ``log()``: the first rollout arrived after the last log showing 0 and by the first
  log showing > 0. The first env step came one rollout (T steps of E envs: a few tens of ms)
  before that arrival. The script runs ours with ``log_interval_s=0.5`` (default of
  ``--ours-log-interval-s``; the configs' 5 s would make the bracket 5 s wide) and reports the
  bracket's midpoint, +- half the interval (0.25 s), with the bracket itself in the JSON
  (``startup_bracket_s``). The progress lines are no better (off a TTY they print every
  10 s). The finer logging costs the learner one TB flush of ~25 scalars every half second
  (small, but not measured separately).

A run that does not reach the target within ``--budget-s`` (or whose command fails, or that
spends its step cap first) is a failure. Per task and system the script reports the median and
the spread (min-max over the solved seeds) of wall time to target, env steps to target and
start-up, and the failures; the median counts a failed seed as +infinity (so it reads "> budget"
when half the seeds or more fail). Ratio: ours / CleanRL of the median wall time to target,
next to the goals (<= 0.5x on DoorKey-8x8 and KeyCorridorS3R1, <= 1.0x on CartPole and
DoorKey-5x5). Writes ``<out>/time_to_solve.png`` (return, mean of the last <= 100 episodes,
against wall time since the command started; one panel per task, both systems, every seed;
vertical ticks: start-up) and ``<out>/time_to_solve.json`` (every figure and curve), prints a
table and, as its LAST stdout line, one JSON object with every figure (curves left out)::

    python benchmarks/time_to_solve.py --seeds 3 --out benchmarks/plots \\
        --runs-dir runs_time_to_solve

Both step caps are the same per task (``TASKS``; CleanRL anneals its learning rate over it,
as ``ppo.py`` does over ``--total-timesteps``). Where CUDA is present CleanRL uses it (``ppo.py``
defaults to ``--cuda``) and so does our learner (``learner.device: auto``);
``--cleanrl-args=--no-cuda`` keeps CleanRL on the CPU. Run the race on a machine doing nothing
else: on a loaded one the times (start-up above all) say little.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLEANRL = REPO / "benchmarks" / "cleanrl_ppo_faithful.py"
SYSTEMS = ("ours", "cleanrl")
RETURN_TAG, COUNT_TAG, RECEIVED_TAG = "episode/return", "episode/count", "wire/received"
WINDOW = 100  # episodes in the mean that must reach the target (both systems)
GRACE_S = 30.0  # after the budget: time to stop cleanly before SIGKILL


@dataclass(frozen=True)
class Task:
    env_id: str
    short: str
    target: float
    config: str  # our config (relative to the repository root)
    budget_s: float  # default per-run budget
    max_env_steps: int  # step cap of both systems (and CleanRL's annealing horizon)
    goal: float  # ours / CleanRL median wall time to target must be <= this


TASKS = {t.env_id: t for t in (
    Task("CartPole-v1", "CartPole", 475.0, "configs/cartpole.yaml", 300.0, 1_000_000, 1.0),
    Task("MiniGrid-DoorKey-5x5-v0", "DoorKey-5x5", 0.9, "configs/quickstart.yaml", 300.0,
         2_000_000, 1.0),
    Task("MiniGrid-DoorKey-8x8-v0", "DoorKey-8x8", 0.9, "configs/quickstart.yaml", 900.0,
         10_000_000, 0.5),
    Task("MiniGrid-KeyCorridorS3R1-v0", "KeyCorridorS3R1", 0.9, "configs/quickstart.yaml",
         600.0, 5_000_000, 0.5),
)}


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[time_to_solve] {text}", file=sys.stderr, flush=True)


def find_task(name: str) -> Task | None:
    """A task by env id or short name (case-insensitive)."""
    for task in TASKS.values():
        if name.lower() in (task.env_id.lower(), task.short.lower()):
            return task
    return None


# --------------------------------------------------------------------------- one run


@dataclass
class RunRecord:
    """One command of one system on one task and seed; times in s since the command started."""

    task: str
    system: str
    seed: int
    solved: bool = False
    wall_s_to_target: float | None = None
    env_steps_to_target: int | None = None
    startup_s: float | None = None  # command to first env step
    startup_bracket_s: tuple[float, float] | None = None  # ours: (lo, hi) of that estimate
    exit_s: float | None = None  # command start to exit
    exit_code: int | None = None
    env_steps: int | None = None  # at the end
    final_return: float | None = None
    note: str = ""
    run_dir: str = ""
    command: str = ""
    curve: list[tuple[float, int, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "curve"}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def fresh_dir(root: Path, name: str) -> Path:
    """``root/name`` (``name-2``, ... if taken), not created."""
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    return path


def run_command(cmd: list[str], stdout: Path, stderr: Path, budget_s: float,
                on_budget: int) -> tuple[float, int, float]:
    """Run ``cmd`` in its own process group; at ``budget_s`` send ``on_budget`` to it, after
    ``GRACE_S`` more SIGKILL the group. Returns (start epoch, exit code, seconds to exit)."""
    with open(stdout, "w") as out, open(stderr, "w") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=str(REPO),
                                start_new_session=True)
        try:
            try:
                proc.wait(timeout=budget_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, on_budget)
                try:
                    proc.wait(timeout=GRACE_S)
                except subprocess.TimeoutExpired:
                    log(f"pid {proc.pid} still running {GRACE_S:.0f}s after the budget: "
                        "SIGKILL")
                    proc.kill()
                    proc.wait()
            exit_s = time.time() - t0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
    return t0, proc.returncode, exit_s


def last_line(path: Path, limit: int | None = 200) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:limit] if lines else ""


def read_tb(run_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """Every scalar tag of the run's TensorBoard events -> [(wall time, step, value)], by time."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[float, int, float]]] = {}
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, int(e.step), float(e.value))
                                           for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in out.items()}


def ours_command(explorer: list[str], task: Task, seed: int, args: argparse.Namespace,
                 runs_root: Path, name: str) -> list[str]:
    return [*explorer, "run", args.ours_config.get(task.env_id, task.config),
            f"env.id={task.env_id}", f"seed={seed}", f"target_return={task.target}",
            f"total_env_steps={task.max_env_steps}",
            f"log_interval_s={args.ours_log_interval_s}", f"runs_dir={runs_root}",
            f"name={name}", *args.ours_overrides.get(None, []),
            *args.ours_overrides.get(task.env_id, [])]


def run_ours(explorer: list[str], task: Task, seed: int, budget_s: float,
             args: argparse.Namespace, runs_root: Path) -> RunRecord:
    """One ``explorer run``; figures from its TensorBoard events (see the module docstring)."""
    run_dir = fresh_dir(runs_root, f"{task.short}_ours_s{seed}")
    cmd = ours_command(explorer, task, seed, args, runs_root, run_dir.name)
    rec = RunRecord(task.env_id, "ours", seed, run_dir=str(run_dir), command=shlex.join(cmd))
    # explorer makes run_dir itself: its output goes beside it
    stdout, stderr = (runs_root / f"{run_dir.name}.{kind}.txt" for kind in ("stdout", "stderr"))
    t0, rec.exit_code, rec.exit_s = run_command(cmd, stdout, stderr, budget_s, signal.SIGINT)
    if not (run_dir / "tb").is_dir():
        rec.note = f"no run directory (exit code {rec.exit_code}): {last_line(stderr)}"
        return rec
    tb = read_tb(run_dir)
    returns, counts = tb.get(RETURN_TAG, []), tb.get(COUNT_TAG, [])
    count_at = {step: value for _, step, value in counts}
    rec.curve = [(wall - t0, step, value) for wall, step, value in returns]
    if returns:
        rec.env_steps, rec.final_return = returns[-1][1], returns[-1][2]
    # TensorBoard keeps float32: the learner stopped on a float64 mean >= target, whose
    # float32 is >= float32(target) but may be < target itself (0.9 -> 0.89999998)
    target32 = struct.unpack("f", struct.pack("f", task.target))[0]
    hit = next(((wall, step) for wall, step, value in returns
                if value >= target32 and count_at.get(step, 0) >= WINDOW), None)
    if hit is not None:
        rec.wall_s_to_target, rec.env_steps_to_target = hit[0] - t0, hit[1]
        rec.solved = rec.wall_s_to_target <= budget_s
    received = tb.get(RECEIVED_TAG, [])
    first = next((i for i, (_, _, value) in enumerate(received) if value > 0), None)
    if first is not None and first > 0:
        lo, hi = received[first - 1][0] - t0, received[first][0] - t0
        rec.startup_bracket_s = (round(lo, 3), round(hi, 3))
        rec.startup_s = (lo + hi) / 2
    elif first == 0:  # no log before the first rollout came: only an upper bound
        rec.startup_bracket_s = (0.0, round(received[0][0] - t0, 3))
        rec.note = "start-up: upper bound only (no TB log before the first rollout)"
    if not rec.solved:
        if hit is not None:
            why = "target reached after the budget"
        elif rec.exit_s < budget_s:  # it ended by itself
            why = (f"step cap {task.max_env_steps:,} spent" if rec.exit_code == 0
                   else f"exit code {rec.exit_code}: {last_line(stderr)}")
        else:
            why = "budget spent"
        rec.note = "; ".join(filter(None, [rec.note, why]))
    return rec


def run_cleanrl(task: Task, seed: int, budget_s: float, args: argparse.Namespace,
                runs_root: Path) -> RunRecord:
    """One ``cleanrl_ppo_faithful.py``; figures from its JSON line."""
    run_dir = fresh_dir(runs_root, f"{task.short}_cleanrl_s{seed}")
    run_dir.mkdir(parents=True)
    cmd = [sys.executable, str(CLEANRL), "--env-id", task.env_id, "--seed", str(seed),
           "--target-return", str(task.target), "--budget-s", str(budget_s),
           "--total-timesteps", str(task.max_env_steps),
           "--max-env-steps", str(task.max_env_steps), "--num-envs", str(args.cleanrl_num_envs),
           "--torch-threads", str(args.cleanrl_torch_threads), *shlex.split(args.cleanrl_args)]
    rec = RunRecord(task.env_id, "cleanrl", seed, run_dir=str(run_dir), command=shlex.join(cmd))
    t0, rec.exit_code, rec.exit_s = run_command(
        cmd, run_dir / "stdout.txt", run_dir / "stderr.txt", budget_s + GRACE_S,
        signal.SIGTERM)
    try:
        res = json.loads(last_line(run_dir / "stdout.txt", limit=None) or "null")
        if not isinstance(res, dict):
            raise ValueError("no JSON line")
    except ValueError:
        rec.note = (f"no result (exit code {rec.exit_code}): "
                    f"{last_line(run_dir / 'stderr.txt')}")
        return rec
    (run_dir / "result.json").write_text(json.dumps(res))
    offset = res["t0_epoch"] - t0  # its process start on our clock (a few ms)
    rec.curve = [(t + offset, steps, ret) for t, steps, ret in res["points"] if ret is not None]
    rec.env_steps, rec.final_return = res["env_steps"], res["final_mean100"]
    if res["startup_s"] is not None:
        rec.startup_s = res["startup_s"] + offset
    if res["solved"]:
        rec.wall_s_to_target = res["wall_s_to_target"] + offset
        rec.env_steps_to_target = res["env_steps_to_target"]
        rec.solved = rec.wall_s_to_target <= budget_s
    if not rec.solved:
        rec.note = {"budget": "budget spent", "max_env_steps": "step cap spent",
                    "total_timesteps": "step cap spent"}.get(res["reason"], res["reason"])
    return rec


# --------------------------------------------------------------------------- figures


def spread(values: list[float | None]) -> dict[str, float | None]:
    known = [v for v in values if v is not None]
    return {"min": min(known) if known else None, "max": max(known) if known else None}


def censored_median(values: list[float | None]) -> float | None:
    """Median with each failed run (None) counted as +infinity; None when that is infinite."""
    if not values:
        return None
    med = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(med) else med


def summarize(records: list[RunRecord]) -> dict[str, Any]:
    """Median / min-max of the figures of one (task, system)."""
    to_target = [r.wall_s_to_target if r.solved else None for r in records]
    steps = [r.env_steps_to_target if r.solved else None for r in records]
    startup = [r.startup_s for r in records if r.startup_s is not None]
    upper = [r.startup_bracket_s[1] for r in records
             if r.startup_s is None and r.startup_bracket_s is not None]
    exits = [r.exit_s for r in records if r.exit_s is not None]
    return {
        "runs": len(records), "failures": sum(not r.solved for r in records),
        "wall_s_to_target_median": censored_median(to_target),
        "wall_s_to_target_spread": spread(to_target),
        "env_steps_to_target_median": censored_median(steps),
        "env_steps_to_target_spread": spread(steps),
        "startup_s_median": statistics.median(startup) if startup else None,
        "startup_s_spread": spread(startup),
        # where no log came before the first rollout, only the bracket's upper end is known
        "startup_s_upper_median": statistics.median(upper) if upper else None,
        "exit_s_median": statistics.median(exits) if exits else None,
    }


def compare(ours: dict[str, Any], cleanrl: dict[str, Any], goal: float) -> dict[str, Any]:
    """Ratio ours / CleanRL of the median wall time to target, and whether it meets ``goal``."""
    a, b = ours["wall_s_to_target_median"], cleanrl["wall_s_to_target_median"]
    if a is not None and b is not None:
        return {"ratio": a / b, "goal": goal, "met": a / b <= goal, "note": ""}
    if a is not None:
        return {"ratio": None, "goal": goal, "met": True, "note": "CleanRL did not solve it"}
    if b is not None:
        return {"ratio": None, "goal": goal, "met": False, "note": "ours did not solve it"}
    return {"ratio": None, "goal": goal, "met": None, "note": "neither solved it"}


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def fmt_range(sp: dict[str, float | None], digits: int = 1) -> str:
    if sp["min"] is None:
        return ""
    return f" ({fmt(sp['min'], digits)}-{fmt(sp['max'], digits)})"


def print_table(summary: dict[str, dict[str, Any]], ratios: dict[str, dict[str, Any]],
                budgets: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Time to solve: median (min-max of solved seeds); time from command "
                        "start")
    for col in ("task", "system", "wall s to target", "env steps to target",
                "start-up s", "failures", "ours/CleanRL", "goal"):
        table.add_column(col, justify="left" if col in ("task", "system", "goal") else "right")
    for env_id, systems in summary.items():
        task = TASKS[env_id]
        for index, (system, s) in enumerate(systems.items()):
            wall = s["wall_s_to_target_median"]
            wall_text = (f"> {budgets[env_id]:g}" if wall is None else fmt(wall)) + fmt_range(
                s["wall_s_to_target_spread"])
            steps = s["env_steps_to_target_median"]
            steps_text = ("n/a" if steps is None else fmt(steps, 0)) + fmt_range(
                s["env_steps_to_target_spread"], 0)
            cmp = ratios.get(env_id) if index == 0 else None
            ratio_text = goal_text = ""
            if cmp is not None:
                ratio_text = fmt(cmp["ratio"], 2, "x") if cmp["ratio"] is not None else "n/a"
                verdict = {True: "met", False: "MISSED", None: "n/a"}[cmp["met"]]
                goal_text = f"<= {cmp['goal']:g}x  {verdict}" + (
                    f" ({cmp['note']})" if cmp["note"] else "")
            startup_text = fmt(s["startup_s_median"]) + fmt_range(s["startup_s_spread"])
            if s["startup_s_median"] is None and s["startup_s_upper_median"] is not None:
                startup_text = "<= " + fmt(s["startup_s_upper_median"])
            table.add_row(task.short if index == 0 else "", system, wall_text, steps_text,
                          startup_text,
                          f"{s['failures']}/{s['runs']}", ratio_text, goal_text)
    Console(width=170).print(table)


def plot(records: list[RunRecord], tasks: list[Task], path: Path) -> None:
    """Return against wall time since the command started; one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    colors = {"ours": "C0", "cleanrl": "C3"}
    for ax, task in zip(axes[0], tasks, strict=True):
        for system in SYSTEMS:
            runs = [r for r in records if r.task == task.env_id and r.system == system]
            for index, rec in enumerate(runs):
                label = f"{system} ({len(runs)} seeds)" if index == 0 else None
                if rec.curve:
                    t, _, ret = zip(*rec.curve, strict=True)
                    ax.plot(t, ret, color=colors[system], alpha=0.8, lw=1.2, label=label)
                    label = None
                if rec.solved:
                    ax.plot(rec.wall_s_to_target, task.target, "o", color=colors[system],
                            ms=4)
                if rec.startup_s is not None:
                    ax.axvline(rec.startup_s, ymax=0.06, color=colors[system], lw=1.5,
                               label=label)
        ax.axhline(task.target, color="gray", ls="--", lw=0.8)
        ax.set(title=task.short, xlabel="wall s since the command started",
               ylabel="mean return, last <= 100 episodes")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Time to solve (dots: target reached; ticks at the bottom: first env step)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def explorer_command(given: str | None) -> list[str]:
    """The ``explorer`` console script beside this Python, if it runs; else ``-m``."""
    if given:
        return shlex.split(given)
    script = Path(sys.executable).parent / "explorer"
    if script.exists():
        ok = subprocess.run([str(script), "--help"], capture_output=True, cwd=str(REPO),
                            check=False).returncode == 0
        if ok:
            return [str(script)]
        log(f"{script} does not run (a stale install? `pip install -e .` rewrites it): "
            "using `python -m explorer.app.cli`, the same entry point")
    return [sys.executable, "-m", "explorer.app.cli"]


def parse_overrides(items: list[str]) -> dict[str | None, list[str]]:
    """``KEY=VALUE`` (every task) or ``TASK:KEY=VALUE`` (that task only) -> by env id."""
    out: dict[str | None, list[str]] = {}
    for item in items:
        prefix, _, rest = item.partition(":")
        task = find_task(prefix) if rest and "=" not in prefix else None
        out.setdefault(task.env_id if task else None, []).append(rest if task else item)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS),
                        help="env ids or short names: " + ", ".join(
                            f"{t.short} (>= {t.target:g})" for t in TASKS.values()))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per system (0, 1, ...)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds per run, command start to target (default per task: "
                        + ", ".join(f"{t.short} {t.budget_s:g}" for t in TASKS.values()) + ")")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "plots"),
                        help="directory of time_to_solve.png and time_to_solve.json")
    parser.add_argument("--runs-dir", default=None,
                        help="keep every run directory here (default: a temporary one, "
                        "deleted at the end)")
    parser.add_argument("--explorer", default=None,
                        help="command that runs our CLI (default: the `explorer` script "
                        "beside this Python)")
    parser.add_argument("--ours-config", nargs="*", default=[], metavar="TASK=PATH",
                        help="our config of a task (default: configs/cartpole.yaml for "
                        "CartPole, configs/quickstart.yaml for MiniGrid)")
    parser.add_argument("--ours-overrides", nargs="*", default=[],
                        metavar="[TASK:]KEY=VALUE",
                        help="extra overrides of our runs, e.g. actors.num_procs=3 or "
                        "DoorKey-8x8:learner.lr=3e-4")
    parser.add_argument("--ours-log-interval-s", type=float, default=0.5,
                        help="our log_interval_s: the resolution of our start-up time")
    parser.add_argument("--cleanrl-num-envs", type=int, default=16)
    parser.add_argument("--cleanrl-torch-threads", type=int, default=1)
    parser.add_argument("--cleanrl-args", default="",
                        help='extra flags of cleanrl_ppo_faithful.py, as one string: '
                        '--cleanrl-args="--envpool-threads 2"')
    args = parser.parse_args(argv)
    tasks = []
    for name in args.tasks:
        task = find_task(name)
        if task is None:
            parser.error(f"--tasks: unknown task {name!r}; known: "
                         + ", ".join(t.short for t in TASKS.values()))
        tasks.append(task)
    args.tasks = tasks
    configs = {}
    for item in args.ours_config:
        name, _, path = item.partition("=")
        task = find_task(name)
        if task is None or not path:
            parser.error(f"--ours-config {item!r}: want TASK=PATH")
        configs[task.env_id] = path
    args.ours_config = configs
    args.ours_overrides = parse_overrides(args.ours_overrides)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_at_start = time.monotonic(), os.getloadavg()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    budgets = {t.env_id: args.budget_s or t.budget_s for t in args.tasks}
    explorer = explorer_command(args.explorer) if "ours" in args.systems else []
    keep = args.runs_dir is not None
    runs_root = Path(args.runs_dir or tempfile.mkdtemp(prefix="time-to-solve-")).resolve()
    runs_root.mkdir(parents=True, exist_ok=True)
    records: list[RunRecord] = []
    try:
        for task in args.tasks:
            for seed in seeds:
                for system in args.systems:
                    log(f"{task.short} {system} seed {seed} (budget {budgets[task.env_id]:g}s)")
                    rec = (run_ours(explorer, task, seed, budgets[task.env_id], args,
                                    runs_root) if system == "ours" else
                           run_cleanrl(task, seed, budgets[task.env_id], args, runs_root))
                    records.append(rec)
                    log(f"  {'solved' if rec.solved else 'FAILED'}: to target "
                        f"{fmt(rec.wall_s_to_target)} s, {fmt(rec.env_steps_to_target, 0)} "
                        f"env steps; start-up {fmt(rec.startup_s, 2)} s; exit "
                        f"{fmt(rec.exit_s)} s" + (f"; {rec.note}" if rec.note else ""))
    finally:
        if not keep:
            shutil.rmtree(runs_root, ignore_errors=True)

    summary = {t.env_id: {system: summarize([r for r in records if r.task == t.env_id
                                             and r.system == system])
                          for system in args.systems} for t in args.tasks}
    ratios = {env_id: compare(s["ours"], s["cleanrl"], TASKS[env_id].goal)
              for env_id, s in summary.items() if "ours" in s and "cleanrl" in s}
    out_dir = Path(args.out)
    png = out_dir / "time_to_solve.png"
    plot(records, args.tasks, png)
    res: dict[str, Any] = {
        "tasks": {t.env_id: {"target": t.target, "budget_s": budgets[t.env_id],
                             "max_env_steps": t.max_env_steps, "goal_ratio": t.goal,
                             "our_config": args.ours_config.get(t.env_id, t.config)}
                  for t in args.tasks},
        "seeds": seeds, "systems": args.systems,
        "ours": {"command": explorer, "log_interval_s": args.ours_log_interval_s,
                 "overrides": {k or "*": v for k, v in args.ours_overrides.items()}},
        "cleanrl": {"num_envs": args.cleanrl_num_envs,
                    "torch_threads": args.cleanrl_torch_threads, "args": args.cleanrl_args},
        "summary": summary, "ratios": ratios, "runs": [r.summary() for r in records],
        "plot": str(png), "runs_dir": str(runs_root) if keep else None,
        "cpu_count": os.cpu_count(), "load_avg_start": load_at_start,
        "load_avg_end": os.getloadavg(),
        "total_wall_s": time.monotonic() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "time_to_solve.json").write_text(json.dumps(
        {**res, "curves": [{"task": r.task, "system": r.system, "seed": r.seed,
                            "curve": r.curve} for r in records]}))
    print_table(summary, ratios, budgets)
    for rec in records:
        if rec.note:
            print(f"{TASKS[rec.task].short} {rec.system} seed {rec.seed}: {rec.note}")
    print(f"plot: {png}; every figure and curve: {out_dir / 'time_to_solve.json'}"
          + (f"; runs kept in {runs_root}" if keep else ""))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
