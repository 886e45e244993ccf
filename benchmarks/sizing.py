"""Sizing: how many actor processes one learner feeds, from the CPU each spends per env step.

Runs the real system (``explorer run CONFIG``, local launcher) and, after a warm-up, reads the
CPU time (utime + stime, ``/proc/PID/stat``) of the learner and of every actor process at the
start and the end of a window, together with the env steps the learner trained by then (its
TensorBoard scalars, logged every 0.5 s). A process waiting on a socket spends no CPU, so
CPU seconds per env step are each role's own cost whichever side is the bottleneck, and stay
meaningful on a loaded machine (wall-clock fps would not)::

    actor processes one learner core feeds = actor CPU per env step / learner CPU per env step

on machines where every process has a core of its own (a cluster's actor nodes). With a GPU
learner (``learner.device``), run it there: its CPU per env step then counts only what the
GPU leaves to the CPU. Also reported: the bytes each actor sends per env step and the weights
bytes per second each actor receives (``wire/received_bytes``, ``wire/published_bytes``), for
the network. A table, then as its LAST stdout line one JSON object::

    python benchmarks/sizing.py                                   # configs/quickstart.yaml
    python benchmarks/sizing.py --config configs/cartpole.yaml --seconds 20
    python benchmarks/sizing.py --config configs/keycorridor_counts.yaml --set actors.num_procs=1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
EXPLORER = Path(sys.executable).with_name("explorer")
_TICKS = os.sysconf("SC_CLK_TCK")
_PIDS = re.compile(r"started (learner|\d+ actors) \(([^)]*)\)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def role_pids(lines: list[str]) -> dict[str, list[int]]:
    """``{"learner": [pid], "actors": [pid, ...]}`` from the supervisor's start lines."""
    pids: dict[str, list[int]] = {}
    for line in lines:
        for role, where in _PIDS.findall(line):
            key = "learner" if role == "learner" else "actors"
            pids[key] = [int(p) for p in re.findall(r"pid (\d+)", where)]
    return pids


def trained_at(run_dir: Path, wall: float) -> dict[str, float]:
    """The learner's newest scalars logged at or before ``wall`` (time.time())."""
    out: dict[str, float] = {}
    if not (run_dir / "tb").is_dir():
        return out
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if "wire/received_bytes" not in acc.Tags()["scalars"]:
        return out
    for tag in ("wire/received_bytes", "wire/published_bytes"):
        events = [e for e in acc.Scalars(tag) if e.wall_time <= wall]
        if events:
            out[tag] = events[-1].value
            out["env_steps"] = events[-1].step
            out["wall"] = events[-1].wall_time
    return out


def measure(config: str, overrides: list[str], warmup: float, seconds: float) -> dict:
    runs = Path(tempfile.mkdtemp(prefix="sizing-"))
    cmd = [str(EXPLORER), "run", config, f"runs_dir={runs}", "name=sizing",
           "total_env_steps=1000000000", "target_return=null", "log_interval_s=0.5",
           *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=REPO)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while "learner" not in (pids := role_pids(lines)) or "actors" not in pids:
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("the run did not start:\n" + "".join(lines))
            lines.append(line)
        while trained_at(runs / "sizing", time.time()).get("env_steps", 0) <= 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("no env steps trained:\n" + "".join(lines))
            time.sleep(0.5)
        time.sleep(warmup)  # from the first trained rollout
        everyone = pids["learner"] + pids["actors"]
        cpu0, t0 = {p: cpu_seconds(p) for p in everyone}, time.time()
        time.sleep(seconds)
        cpu1, t1 = {p: cpu_seconds(p) for p in everyone}, time.time()
        time.sleep(1.0)  # the learner's log of the window's end
        start, end = trained_at(runs / "sizing", t0), trained_at(runs / "sizing", t1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    steps = end["env_steps"] - start["env_steps"]
    window = end["wall"] - start["wall"]
    if steps <= 0 or window <= 0:
        raise RuntimeError(f"no env steps trained in the window: {start} -> {end}")
    learner_s = cpu1[pids["learner"][0]] - cpu0[pids["learner"][0]]
    actor_s = sum(cpu1[p] - cpu0[p] for p in pids["actors"])
    actors = len(pids["actors"])
    # CPU over the sampling window, steps over the nearest logged window: scale to the same
    steps_per_s = steps / window
    learner_us = learner_s / (t1 - t0) / steps_per_s * 1e6
    actor_us = actor_s / (t1 - t0) / steps_per_s * 1e6
    received = end["wire/received_bytes"] - start["wire/received_bytes"]
    published = end["wire/published_bytes"] - start["wire/published_bytes"]
    return {
        "config": config, "overrides": overrides, "actor_procs": actors,
        "env_steps_per_s": round(steps_per_s),
        "learner_cpu_us_per_step": round(learner_us, 2),
        "actor_cpu_us_per_step": round(actor_us, 2),
        "learner_core_busy": round(learner_s / (t1 - t0), 3),
        "actor_cores_busy": round(actor_s / (t1 - t0), 3),
        "actors_per_learner": round(actor_us / learner_us, 2),
        "rollout_bytes_per_step": round(received / steps, 1),
        "weights_bytes_per_s_per_actor": round(published / window),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. learner.epochs=1")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--seconds", type=float, default=15.0, help="the window")
    args = parser.parse_args(argv)
    result = measure(args.config, args.set, args.warmup, args.seconds)
    table = Table(title=f"Sizing: {args.config} {' '.join(args.set)}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, key in (("env steps/s trained", "env_steps_per_s"),
                      ("learner CPU us per env step", "learner_cpu_us_per_step"),
                      ("actor CPU us per env step", "actor_cpu_us_per_step"),
                      ("learner core busy", "learner_core_busy"),
                      (f"actor cores busy ({result['actor_procs']} procs)", "actor_cores_busy"),
                      ("actor processes one learner core feeds", "actors_per_learner"),
                      ("rollout bytes per env step", "rollout_bytes_per_step"),
                      ("weights bytes/s to each actor", "weights_bytes_per_s_per_actor"),
                      ("load average", "load_avg")):
        table.add_row(name, str(result[key]))
    Console().print(table)
    print(json.dumps({"benchmark": "sizing", **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
