"""Throughput of the distributed trainer against its baselines, for one env and one model.

One invocation measures, each for ``--seconds`` after a ``--warmup`` (N = ``--num-procs``,
E = ``--envs-per-actor``, T = ``--rollout-len``):

a. raw EnvPool, random actions: one process stepping N*E envs on N EnvPool threads, and N
   processes stepping E envs each on one thread (the fair baseline for N actor processes);
b. env + policy inference: N processes, each E envs and the ActorCritic on CPU with one torch
   thread (forward, Gumbel-max sample, log-prob: the least any actor computes per step, with no
   rollout storage or sending) -- the fair baseline for (c);
c. our actors only: N real ``actor_main`` processes streaming rollouts to a sink process that
   binds the rollout PULL / weights PUB ipc sockets like the learner, publishes weights like the
   learner (at start, after every batch of rollouts, and at least once a second), decodes every
   rollout with the real schema and discards it; goal c/b >= 0.8;
d. our end-to-end training: the real ``Supervisor`` (learner + N actors), env steps trained per
   wall second from the learner's status reports; goal d/e >= 1.2;
e. ``benchmarks/cleanrl_ppo.py``: the 1-epoch x 1-minibatch single-process baseline: a
   CleanRL-shaped PPO loop on N*E envs with *our* model class, our rollout length T and the
   same update per batch as our learner config (1 epoch x 1 minibatch with the default APPO
   config): the fair baseline for (d), but not CleanRL's PPO;
e'. ``benchmarks/cleanrl_ppo_faithful.py``: CleanRL's PPO as ``ppo.py`` configures it
   (separate 64x64 tanh actor and critic MLPs, T=128, 4 epochs x 4 minibatches), one process,
   N*E envs on N EnvPool threads, 1 torch thread; throughput only (the opponent of
   ``benchmarks/time_to_solve.py``), no goal; "n/a" for envs it cannot run (not EnvPool);
f. Sample Factory 2 APPO (``benchmarks/sf_runner.py`` in its own venv, ``--sf-python``),
   or "not runnable here: <reason>";
g. wire: rollout-like 8/16/32 MB messages PUSH -> PULL between two processes over tcp
   loopback and ipc, zero-copy send, ``decode`` on receive, in GB/s; goal >= 2 GB/s.

``--launcher ray`` measures instead only (d) under each launcher, interleaved ``--repeats``
times: local (ipc, the default), local over tcp loopback, and Ray (a private one-machine Ray
instance, tcp; ``--ray-address`` joins a running cluster); goal: Ray's training fps >= 0.9 of
the local launcher's. It also reports the CPU seconds each kind of process of the command used
(run processes, driver, each Ray daemon of a private instance; from /proc, per 10 s of the
measured window) and the CPU per env step, which the machine's other load disturbs far less
than fps; and the bytes on the wire per actor and second (rollouts up, weights down: the
learner's ``received_bytes`` / ``published_bytes``), to size a cluster::

    python benchmarks/throughput.py --launcher ray --seconds 20 --repeats 2

The model is ``explorer.core.networks.ActorCritic`` with the config's model settings (``--config``,
default ``configs/quickstart.yaml``); if they do not fit the env (e.g. ``minigrid_cnn`` on
CartPole) the torso kind falls back to ``auto``. Our learner batches N rollouts per update
(``learner.batch_rollouts = N``), the same N*E*T steps as one CleanRL / Sample Factory batch.

Prints a table, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/throughput.py --env MiniGrid-Empty-8x8-v0 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cleanrl_ppo
import cleanrl_ppo_faithful
import numpy as np
import torch
import zmq
from bench_utils import CTX, RESULT_TIMEOUT_S, ratio, run_parallel, timed_loop

from actors.actor import ActorArgs, actor_main
from actors.env_ids import envpool_ids
from actors.envs import make_vec_env, probe_env_spec
from explorer.app.progress import ProgressReporter
from explorer.app.supervisor import Supervisor
from explorer.core.config import Config, load_config
from explorer.core.networks import ActorCritic, select_encoder_kind
from explorer.core.specs import EnvSpec, rollout_schema
from explorer.core.wire import KIND_ROLLOUT, KIND_WEIGHTS, Message, WireError, decode, encode

REPO = Path(__file__).resolve().parents[1]
WIRE_SIZES_MB = (8, 16, 32)
GOALS = {"actors_vs_env_policy": 0.8, "train_vs_cleanrl": 1.2, "wire_gbps": 2.0}
LAUNCHER_GOAL = 0.9  # training fps under Ray / under the local launcher


def log(text: str) -> None:
    """Progress to stderr, so stdout holds only the table and the final JSON line."""
    print(f"[throughput] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers




def make_raw_env(env_cfg: Any, num_envs: int, num_threads: int, seed: int):
    """A ``step(actions)`` callable on plain EnvPool (gymnasium ids: ``make_vec_env``)."""
    if env_cfg.id in (envpool_ids() or ()) and env_cfg.backend != "gymnasium":
        import envpool

        extra = dict(env_cfg.envpool_kwargs)
        if env_cfg.max_episode_steps is not None:
            extra["max_episode_steps"] = env_cfg.max_episode_steps
        env = envpool.make(env_cfg.id, env_type="gymnasium", num_envs=num_envs,
                           num_threads=num_threads, seed=seed, **extra)
        env.reset()
        return env.step
    env = make_vec_env(env_cfg, num_envs, seed)
    env.reset()
    return env.step


def build_model(cfg: Config, spec: EnvSpec) -> ActorCritic:
    return ActorCritic(spec.obs_spec, spec.num_actions, cfg.learner.model)


# --------------------------------------------------------------------------- a. raw env


def raw_env_worker(index: int, barrier: Any, results: Any, env_cfg: Any, num_envs: int,
                   num_threads: int, num_actions: int, warmup: float, seconds: float) -> None:
    step = make_raw_env(env_cfg, num_envs, num_threads, seed=index)
    table = np.random.default_rng(index).integers(0, num_actions, (64, num_envs), np.int32)
    counter = iter(range(1 << 62))
    barrier.wait()
    results.put(timed_loop(lambda: step(table[next(counter) % 64]), num_envs, warmup, seconds))


def raw_env_fps(cfg: Config, spec: EnvSpec, warmup: float, seconds: float) -> dict[str, float]:
    """a. random-action EnvPool: 1 process x N*E envs (N threads), and N processes x E envs."""
    n, e = cfg.actors.num_procs, cfg.env.envs_per_actor
    one = run_parallel(raw_env_worker, 1, cfg.env, n * e, n, spec.num_actions, warmup, seconds)
    many = run_parallel(raw_env_worker, n, cfg.env, e, 1, spec.num_actions, warmup, seconds)
    return {"one_proc": one, "n_procs": many}


# --------------------------------------------------------------------------- b. env + policy


def env_policy_worker(index: int, barrier: Any, results: Any, cfg: Config, spec: EnvSpec,
                      warmup: float, seconds: float) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(index)
    env = make_vec_env(cfg.env, cfg.env.envs_per_actor, seed=index)
    model = build_model(cfg, spec).eval()
    b = env.num_envs
    state = {"obs": env.reset(), "core": model.initial_state(b),
             "start": torch.ones(1, b, dtype=torch.bool)}

    @torch.inference_mode()
    def step() -> None:
        tobs = {k: torch.from_numpy(v).unsqueeze(0) for k, v in state["obs"].items()}
        logits, _, state["core"] = model(tobs, state["core"], state["start"],
                                         in_place=True)  # as the actor steps
        # sample with the Gumbel-max trick (one fused draw) and keep the action log-prob
        logp = torch.log_softmax(logits[0], -1)  # (B, A)
        actions = (logp - torch.empty_like(logp).exponential_().log()).argmax(-1)  # (B,)
        logp.gather(1, actions[:, None])
        result = env.step(actions.numpy())
        state["obs"] = result.obs
        state["start"] = torch.from_numpy(result.terminated | result.truncated).unsqueeze(0)

    barrier.wait()
    results.put(timed_loop(step, b, warmup, seconds))


def env_policy_fps(cfg: Config, spec: EnvSpec, warmup: float, seconds: float) -> float:
    """b. N processes, each E envs + ActorCritic inference on one torch thread."""
    return run_parallel(env_policy_worker, cfg.actors.num_procs, cfg, spec, warmup, seconds)


# --------------------------------------------------------------------------- c. actors only


def publish_weights(pub: zmq.Socket, model: ActorCritic, version: int) -> None:
    """Exactly ``learner.worker.LearnerWorker.publish``: a copied snapshot, zero-copy send."""
    arrays = {k: v.detach().to("cpu", copy=True).numpy() for k, v in model.state_dict().items()}
    msg = Message(kind=KIND_WEIGHTS, arrays=arrays, policy_version=version)
    pub.send_multipart(encode(msg), copy=False)


def sink_main(cfg: Config, spec: EnvSpec, rollout_addr: str, weights_addr: str,
              warmup: float, seconds: float, stop_event: Any, results: Any) -> None:
    """Stand-in learner: bind, publish weights, decode and discard rollouts, count env steps."""
    torch.set_num_threads(1)
    model = build_model(cfg, spec)
    schema = rollout_schema(spec, cfg.actors.rollout_len, cfg.env.envs_per_actor,
                            model.core_size, int(cfg.wire.max_message_mb * (1 << 20)),
                            text_units=cfg.text.wire_units())
    steps_per_msg = cfg.actors.rollout_len * cfg.env.envs_per_actor
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, cfg.wire.send_hwm)
    pull.setsockopt(zmq.MAXMSGSIZE, int(cfg.wire.max_message_mb * (1 << 20)))
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(rollout_addr)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 2)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(weights_addr)
    results.put("ready")
    version, received, dropped, last_pub = 0, 0, 0, 0.0
    actor_fps: dict[int, float] = {}  # newest self-reported fps of each actor
    first = window = None  # time all actors were seen; (start time, received at start)
    reported = False
    while not stop_event.is_set():
        now = time.monotonic()
        if now - last_pub > 1.0:
            publish_weights(pub, model, version)
            last_pub = now
        if not pull.poll(20):
            continue
        frames = pull.recv_multipart(copy=False)
        try:
            msg = decode(frames, schema)
        except WireError:
            dropped += 1
            continue
        received += 1
        actor_fps[msg.actor_id] = float(msg.meta.get("fps", 0.0))
        if received % (cfg.learner.batch_rollouts * cfg.learner.publish_every) == 0:
            version += 1
            publish_weights(pub, model, version)
            last_pub = time.monotonic()
        now = time.monotonic()
        if first is None and len(actor_fps) == cfg.actors.num_procs:
            first = now
        if first is not None and window is None and now - first >= warmup:
            window = (now, received)
        if window is not None and not reported and now - window[0] >= seconds:
            count = received - window[1]
            results.put((count * steps_per_msg, now - window[0], dropped,
                         sum(actor_fps.values())))
            reported = True
    pull.close(0)
    pub.close(0)
    ctx.term()


def actors_fps(cfg: Config, spec: EnvSpec, warmup: float, seconds: float) -> dict[str, float]:
    """c. N real actor processes -> sink over ipc; env steps per second the sink decoded."""
    ipc_dir = tempfile.mkdtemp(prefix="tp-")
    rollout_addr, weights_addr = f"ipc://{ipc_dir}/rollouts", f"ipc://{ipc_dir}/weights"
    stop_event, results = CTX.Event(), CTX.Queue()
    sink = CTX.Process(target=sink_main, args=(cfg, spec, rollout_addr, weights_addr, warmup,
                                               seconds, stop_event, results), daemon=True)
    sink.start()
    actors = []
    try:
        if results.get(timeout=RESULT_TIMEOUT_S) != "ready":
            raise RuntimeError("sink did not start")
        seeds = np.random.SeedSequence(cfg.seed).generate_state(2 * cfg.actors.num_procs)
        for i in range(cfg.actors.num_procs):
            args = ActorArgs(actor_id=i, cfg=cfg, env_spec=spec, rollout_address=rollout_addr,
                             weights_address=weights_addr, env_seed=int(seeds[2 * i] % (1 << 31)),
                             torch_seed=int(seeds[2 * i + 1]), stop_event=stop_event)
            actors.append(CTX.Process(target=actor_main, args=(args,), daemon=True))
            actors[-1].start()
        steps, elapsed, dropped, self_reported = results.get(
            timeout=RESULT_TIMEOUT_S + warmup + seconds)
    finally:
        stop_event.set()
        for proc in [*actors, sink]:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    return {"fps": steps / elapsed, "dropped": dropped, "actor_reported_fps": self_reported}


# --------------------------------------------------------------------------- d. training

#: What a process of this command's tree is, by its command line (first match); the rest of the
#: tree (the local launcher's learner and actors) is "run".
PROCESS_KINDS = (("ray::_Host", "run"), ("ray::_Control", "ray control actor"),
                 ("gcs_server", "ray gcs_server"), ("raylet/raylet", "ray raylet"),
                 ("dashboard/agent.py", "ray dashboard agent"),
                 ("dashboard/dashboard.py", "ray dashboard"), ("log_monitor", "ray log_monitor"),
                 ("runtime_env/agent", "ray runtime_env agent"),
                 ("autoscaler/_private/monitor", "ray monitor"), ("ray::", "ray idle workers"),
                 ("default_worker.py", "ray idle workers"))
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, tuple[str, float]]:
    """``{pid: (kind, CPU seconds so far)}`` of this process (kind "driver": the supervisor)
    and all its descendants (Ray's daemons and workers included), from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                stats[int(entry)] = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(stats[int(entry)][1]), []).append(int(entry))
    tree, todo = {os.getpid()}, [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            tree.add(child)
            todo.append(child)
    result = {}
    for pid in tree & stats.keys():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        kind = "driver" if pid == os.getpid() else next(
            (name for key, name in PROCESS_KINDS if key in cmd), "run")
        result[pid] = (kind, (int(stats[pid][11]) + int(stats[pid][12])) / _TICK)
    return result


def cpu_between(before: dict[int, tuple[str, float]],
                after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each kind of process used between two :func:`process_cpu` snapshots
    (a worker's later kind wins: an idle Ray worker becomes a run process)."""
    used: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        used[kind] = used.get(kind, 0.0) + cpu - before.get(pid, (kind, 0.0))[1]
    return used


class StepClock(ProgressReporter):
    """Supervisor reporter that times learner env steps and stops the run when done.

    Counting starts ``warmup`` s after the first trained step and lasts ``seconds``; then it
    sets the supervisor's stop event (the learner checkpoints and every process exits).
    """

    def __init__(self, warmup: float, seconds: float) -> None:
        super().__init__(enabled=False)
        self.warmup, self.seconds = warmup, seconds
        self.stop_event: Any = None
        self.first: float | None = None
        self.base: tuple[float, int] | None = None
        self.end: tuple[float, int] | None = None
        #: the learner's status reports at ``base`` and ``end`` (wire byte counters)
        self.base_status: dict[str, Any] = {}
        self.end_status: dict[str, Any] = {}
        #: :func:`process_cpu` at ``base`` and ``end``
        self.base_cpu: dict[int, tuple[str, float]] = {}
        self.end_cpu: dict[int, tuple[str, float]] = {}
        self.last: dict[str, Any] = {}
        self.events: list[str] = []

    def event(self, text: str) -> None:
        self.events.append(text)

    def update(self, status: dict[str, Any]) -> None:
        if self.end is not None:
            return
        now, steps = time.monotonic(), int(status.get("env_steps", 0))
        self.last = status
        if steps == 0:
            return
        if self.first is None:
            self.first = now
        if self.base is None:
            if now - self.first >= self.warmup:
                self.base, self.base_status = (now, steps), status
                self.base_cpu = process_cpu()
            return
        if now - self.base[0] >= self.seconds:
            self.end, self.end_status = (now, steps), status
            self.end_cpu = process_cpu()
            self.stop_event.set()

    def fps(self) -> float | None:
        if self.base is None or self.end is None:
            return None
        return (self.end[1] - self.base[1]) / (self.end[0] - self.base[0])

    def rate(self, key: str) -> float | None:
        """Growth per second of a status counter over the measured window."""
        if self.base is None or self.end is None or key not in self.end_status:
            return None
        return ((self.end_status[key] - self.base_status.get(key, 0))
                / (self.end[0] - self.base[0]))


def train_fps(cfg: Config, spec: EnvSpec, warmup: float, seconds: float) -> dict[str, Any]:
    """d. the real Supervisor (learner + N actors) until ``warmup + seconds`` of training."""
    runs_dir = tempfile.mkdtemp(prefix="tp-runs-")
    cfg = replace(cfg, name="throughput", runs_dir=runs_dir, total_env_steps=10**15,
                  checkpoint_interval_s=1e9, log_interval_s=1e9)
    run_dir = Path(runs_dir) / cfg.name
    run_dir.mkdir(parents=True)
    clock = StepClock(warmup, seconds)
    supervisor = Supervisor(cfg, spec, run_dir, reporter=clock)
    clock.stop_event = supervisor.stop_event
    watchdog = threading.Timer(warmup + seconds + RESULT_TIMEOUT_S, supervisor.stop_event.set)
    watchdog.daemon = True
    watchdog.start()
    try:
        result = supervisor.run()
    finally:
        watchdog.cancel()
        shutil.rmtree(runs_dir, ignore_errors=True)
    status = clock.last
    cpu = cpu_between(clock.base_cpu, clock.end_cpu)
    span = clock.end[0] - clock.base[0] if clock.end and clock.base else None
    return {"fps": clock.fps(), "reason": result.reason, "actor_restarts": result.actor_restarts,
            # CPU seconds of each kind of process per 10 s of the measured window
            "cpu_s_per_10s": {k: 10 * v / span for k, v in cpu.items()} if span else {},
            "policy_lag": status.get("policy_lag"), "dropped": status.get("dropped"),
            "learner_fps": status.get("fps"),
            "stale_steps_per_s": clock.rate("stale_env_steps"),
            "rollout_bytes_per_s": clock.rate("received_bytes"),
            "weights_bytes_per_s": clock.rate("published_bytes")}


# --------------------------------------------------------------------------- --launcher ray


def launcher_variants(cfg: Config, ray_address: str | None) -> dict[str, Config]:
    """The same run under the local launcher (ipc, then tcp loopback) and under Ray."""
    local_tcp = replace(cfg.wire, transport="tcp", host="127.0.0.1")
    return {
        "local (ipc)": replace(cfg, launcher=replace(cfg.launcher, kind="local", address=None),
                               wire=replace(cfg.wire, transport="ipc")),
        "local (tcp)": replace(cfg, launcher=replace(cfg.launcher, kind="local", address=None),
                               wire=local_tcp),
        "ray (tcp)": replace(cfg, launcher=replace(cfg.launcher, kind="ray",
                                                   address=ray_address), wire=local_tcp),
    }


def launcher_comparison(cfg: Config, spec: EnvSpec, args: argparse.Namespace) -> dict[str, Any]:
    """(d) under each launcher, interleaved ``repeats`` times (the machine's load drifts)."""
    variants = launcher_variants(cfg, args.ray_address)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, variant in variants.items():
            log(f"d. training under {name} (repeat {repeat + 1}/{args.repeats})")
            runs[name].append(train_fps(variant, spec, args.warmup, args.seconds))
    n = cfg.actors.num_procs
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        fps = [r["fps"] for r in results if r["fps"] is not None]
        # env steps the learner trained on (not those it dropped as stale): the ratio's figure
        trained = [r["fps"] - (r["stale_steps_per_s"] or 0.0) for r in results
                   if r["fps"] is not None]
        up = [r["rollout_bytes_per_s"] for r in results if r["rollout_bytes_per_s"]]
        down = [r["weights_bytes_per_s"] for r in results if r["weights_bytes_per_s"]]
        summary[name] = {
            "fps": [round(f) for f in fps], "fps_median": float(np.median(fps)) if fps else None,
            "trained_fps": [round(f) for f in trained],
            "trained_fps_median": float(np.median(trained)) if trained else None,
            "rollout_bytes_per_s_per_actor": float(np.median(up)) / n if up else None,
            "weights_bytes_per_s_per_actor": float(np.median(down)) if down else None,
            "reasons": [r["reason"] for r in results],
            "actor_restarts": sum(r["actor_restarts"] for r in results),
            "cpu_s_per_10s": median_by_key([r["cpu_s_per_10s"] for r in results]),
            # CPU per env step: decides where the machine's load makes fps figures noisy
            "cpu_us_per_env_step": median_or_none(
                [1e5 * sum(r["cpu_s_per_10s"].values()) / r["fps"] for r in results
                 if r["fps"] and r["cpu_s_per_10s"]]),
        }
    local, local_tcp, ray_ = (summary[k]["trained_fps_median"] for k in variants)
    steps_per_s = summary["ray (tcp)"]["fps_median"]
    up = summary["ray (tcp)"]["rollout_bytes_per_s_per_actor"]
    return {
        "launchers": summary,
        "ratios": {"ray_vs_local": ratio(ray_, local), "ray_vs_local_tcp": ratio(ray_, local_tcp)},
        "bytes_per_env_step": up * n / steps_per_s if up and steps_per_s else None,
        "goal_ray_vs_local": LAUNCHER_GOAL,
    }


def median_or_none(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def median_by_key(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Median of each key over ``dicts`` (0.0 where one lacks the key)."""
    keys = sorted({k for d in dicts for k in d})
    return {k: float(np.median([d.get(k, 0.0) for d in dicts])) for k in keys} if dicts else {}


def print_launcher_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    n, e = res["num_procs"], res["envs_per_actor"]
    table = Table(title=f"Training fps by launcher: {res['env']} (learner + {n} actors x {e} "
                        f"envs, T={res['rollout_len']}, {res['seconds']:g}s per figure, "
                        f"{res['repeats']} repeats interleaved)")
    for col in ("launcher", "trained env steps/s (median)", "each run", "ratio to local",
                "all env steps/s (incl. stale)",
                "rollouts up, MB/s per actor", "weights down, MB/s per actor"):
        table.add_column(col, justify="left" if col == "launcher" else "right")
    base = res["launchers"]["local (ipc)"]["trained_fps_median"]
    for name, row in res["launchers"].items():
        up, down = row["rollout_bytes_per_s_per_actor"], row["weights_bytes_per_s_per_actor"]
        table.add_row(name, fmt(row["trained_fps_median"]),
                      " ".join(f"{f:,}" for f in row["trained_fps"]),
                      fmt(ratio(row["trained_fps_median"], base), "x"), fmt(row["fps_median"]),
                      f"{up / 1e6:.2f}" if up else "n/a", f"{down / 1e6:.2f}" if down else "n/a")
    Console(width=160).print(table)
    for name, row in res["launchers"].items():
        cpu = row["cpu_s_per_10s"]
        beside = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "run")
        print(f"{name}: CPU s per 10 s (median): run processes {cpu.get('run', 0.0):.2f}, "
              f"{beside}; {fmt(row['cpu_us_per_env_step'])} CPU us per env step, all included")
    r = res["ratios"]["ray_vs_local"]
    print(f"ray / local: {fmt(r, 'x')}  goal {goal_text(r, LAUNCHER_GOAL)}; "
          f"ray / local over tcp: {fmt(res['ratios']['ray_vs_local_tcp'], 'x')}; "
          f"rollout bytes per env step: {fmt(res['bytes_per_env_step'])}")


# --------------------------------------------------------------------------- e. cleanrl


def cleanrl_worker(index: int, barrier: Any, results: Any, cfg: Config, warmup: float,
                   seconds: float) -> None:
    lc, n = cfg.learner, cfg.actors.num_procs
    barrier.wait()
    fps = cleanrl_ppo.run(
        cfg.env.id, seconds, num_envs=n * cfg.env.envs_per_actor,
        rollout_len=cfg.actors.rollout_len, model_cfg=lc.model, lr=lc.lr, adam_eps=lc.adam_eps,
        gamma=lc.gamma, gae_lambda=lc.gae_lambda, clip_coef=lc.clip_coef, ent_coef=lc.ent_coef,
        vf_coef=lc.vf_coef, max_grad_norm=lc.max_grad_norm, epochs=lc.epochs,
        minibatches=lc.minibatches, num_threads=n, warmup=warmup, seed=cfg.seed,
        env_kwargs=dict(cfg.env.envpool_kwargs))
    results.put((fps, 1.0))


def cleanrl_fps(cfg: Config, warmup: float, seconds: float) -> float:
    """e. the 1-epoch x 1-minibatch baseline, one process, N*E envs on N EnvPool threads."""
    return run_parallel(cleanrl_worker, 1, cfg, warmup, seconds)


def cleanrl_faithful_worker(index: int, barrier: Any, results: Any, cfg: Config,
                            warmup: float, seconds: float) -> None:
    n = cfg.actors.num_procs
    barrier.wait()
    results.put(cleanrl_ppo_faithful.throughput(
        cfg.env.id, seconds, warmup, num_envs=n * cfg.env.envs_per_actor, torch_threads=1,
        seed=cfg.seed, envpool_threads=n))


def cleanrl_faithful_fps(cfg: Config, warmup: float, seconds: float) -> tuple[float | None, str]:
    """e'. CleanRL's PPO (ppo.py's settings), one process, N*E envs on N EnvPool threads."""
    if cfg.env.id not in (envpool_ids() or ()) or cfg.env.backend == "gymnasium":
        return None, f"{cfg.env.id} is not run through EnvPool"
    return run_parallel(cleanrl_faithful_worker, 1, cfg, warmup, seconds), ""


# --------------------------------------------------------------------------- f. sample factory


def sample_factory_fps(cfg: Config, spec: EnvSpec, python: str, warmup: float,
                       seconds: float) -> tuple[float | None, str]:
    """f. Sample Factory 2 APPO via ``sf_runner.py`` in its own venv; (fps or None, note)."""
    if not Path(python).exists():
        return None, f"{python} not found (python3 -m venv /work/sfvenv && " \
                     "/work/sfvenv/bin/pip install torch==2.13.0 sample-factory envpool)"
    kind = torso_kind(cfg, spec)
    cmd = [python, str(REPO / "benchmarks" / "sf_runner.py"), "--env", cfg.env.id,
           "--seconds", str(seconds), "--warmup", str(warmup),
           "--num-workers", str(cfg.actors.num_procs),
           "--envs-per-worker", str(cfg.env.envs_per_actor),
           "--rollout", str(cfg.actors.rollout_len), "--model-kind", kind,
           "--hidden-size", str(cfg.learner.model.hidden_size), "--lr", str(cfg.learner.lr),
           "--gamma", str(cfg.learner.gamma),
           "--device", "gpu" if torch.cuda.is_available() else "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=str(REPO))
    try:
        out, _ = proc.communicate(timeout=warmup + seconds + 180)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, "timed out without a result"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # Sample Factory's own worker processes
    lines = out.splitlines()
    found = [line for line in lines if line.startswith("SF_RESULT ")]
    if found:
        return float(json.loads(found[-1][len("SF_RESULT "):])["fps"]), \
            "APPO, GAE (its V-trace fails in SF 2.1.1), our torso as custom encoder"
    errors = [line for line in lines if "Error" in line or "error:" in line]
    reason = (errors or [line for line in lines if line.strip()] or ["no output"])[-1]
    return None, reason.strip()[:200]


# --------------------------------------------------------------------------- g. wire


def wire_message(size_mb: float) -> tuple[Message, Any]:
    """A rollout (T=32, B=16) whose uint8 observation makes the message ~``size_mb`` MB."""
    t, b = 32, 16
    obs_len = max(1, int(size_mb * 1e6) // ((t + 1) * b))
    spec = EnvSpec(obs_spec={"obs": ((obs_len,), "uint8")}, num_actions=4)
    schema = rollout_schema(spec, t, b, 0, 1 << 34)
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for name, array_spec in schema.arrays.items():
        shape = tuple(0 if d is None else d for d in array_spec.shape)
        arrays[name] = rng.integers(0, 2, shape).astype(array_spec.dtype)
    return Message(kind=KIND_ROLLOUT, arrays=arrays), schema


def wire_sender(address: str, size_mb: float, stop_event: Any) -> None:
    msg, _ = wire_message(size_mb)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 4)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)
    seq = 0
    while not stop_event.is_set():
        if push.poll(100, zmq.POLLOUT):
            push.send_multipart(encode(replace(msg, seq=seq)), copy=False)
            seq += 1
    push.close(0)
    ctx.term()


def wire_receiver(address: str, size_mb: float, warmup: float, seconds: float,
                  results: Any) -> None:
    _, schema = wire_message(size_mb)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 4)
    pull.setsockopt(zmq.LINGER, 0)
    if address.startswith("tcp://"):
        address = f"{address}:{pull.bind_to_random_port(address)}"
    else:
        pull.bind(address)
    results.put(address)
    pull.poll(RESULT_TIMEOUT_S * 1000)
    start = time.monotonic()
    counted = None  # (start time) once warm
    total = 0
    while True:
        frames = pull.recv_multipart(copy=False)
        msg = decode(frames, schema)
        now = time.monotonic()
        if counted is None:
            if now - start >= warmup:
                counted = now
            continue
        total += sum(a.nbytes for a in msg.arrays.values()) + len(frames[0].bytes)
        if now - counted >= seconds:
            break
    results.put(total / (now - counted) / 1e9)
    pull.close(0)
    ctx.term()


def wire_gbps(transport: str, size_mb: float, seconds: float) -> float:
    """g. GB/s of rollout messages PUSH -> PULL between two processes."""
    ipc_dir = tempfile.mkdtemp(prefix="tp-wire-")
    address = "tcp://127.0.0.1" if transport == "tcp" else f"ipc://{ipc_dir}/wire"
    stop_event, results = CTX.Event(), CTX.Queue()
    receiver = CTX.Process(target=wire_receiver, daemon=True,
                           args=(address, size_mb, min(1.0, seconds / 3), seconds, results))
    receiver.start()
    sender = None
    try:
        bound = results.get(timeout=RESULT_TIMEOUT_S)
        sender = CTX.Process(target=wire_sender, args=(bound, size_mb, stop_event), daemon=True)
        sender.start()
        return results.get(timeout=RESULT_TIMEOUT_S + seconds)
    finally:
        stop_event.set()
        for proc in (sender, receiver):
            if proc is not None:
                proc.join(10)
                if proc.is_alive():
                    proc.terminate()
        shutil.rmtree(ipc_dir, ignore_errors=True)


def wire_all(seconds: float) -> dict[str, dict[str, float]]:
    return {t: {str(mb): wire_gbps(t, mb, seconds) for mb in WIRE_SIZES_MB}
            for t in ("ipc", "tcp")}


# --------------------------------------------------------------------------- config + report


def resolve_config(args: argparse.Namespace) -> tuple[Config, EnvSpec, str]:
    """Config with the CLI's env/sizes; torso kind falls back to auto if it does not fit."""
    n = args.num_procs
    overrides = [f"env.id={args.env}", f"env.envs_per_actor={args.envs_per_actor}",
                 f"actors.num_procs={n}", f"actors.rollout_len={args.rollout_len}",
                 f"learner.batch_rollouts={n}", *args.set]
    cfg = load_config(args.config, overrides)
    spec = probe_env_spec(cfg.env)
    try:
        build_model(cfg, spec)
        note = f"model kind {cfg.learner.model.kind} (from config)"
    except ValueError as err:
        wanted = cfg.learner.model.kind
        cfg = load_config(args.config, [*overrides, "learner.model.kind=auto"])
        build_model(cfg, spec)
        note = f"model kind auto (config's {wanted!r} does not fit: {err})"
    return cfg, spec, note


def torso_kind(cfg: Config, spec: EnvSpec) -> str:
    """The encoder kind actually built (``auto`` resolved)."""
    kind = cfg.learner.model.kind
    return select_encoder_kind(spec.obs_spec) if kind == "auto" else kind



def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}{unit}" if unit else f"{value:,.0f}"


def goal_text(value: float | None, goal: float) -> str:
    if value is None:
        return f">= {goal:g}  (n/a)"
    return f">= {goal:g}  {'met' if value >= goal else 'MISSED'}"


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    n, e = res["num_procs"], res["envs_per_actor"]
    table = Table(title=f"Throughput: {res['env']} (N={n} procs, E={e} envs each, "
                        f"T={res['rollout_len']}, {res['seconds']:g}s per figure)")
    for col in ("", "measurement", "env steps/s", "ratio", "goal"):
        table.add_column(col, justify="right" if col in ("env steps/s", "ratio") else "left")
    r, g = res["ratios"], GOALS
    table.add_row("a", f"raw EnvPool, random actions, 1 proc x {n * e} envs ({n} threads)",
                  fmt(res["raw_env_fps_one_proc"]), "", "")
    table.add_row("a", f"raw EnvPool, random actions, {n} procs x {e} envs (1 thread each)",
                  fmt(res["raw_env_fps_n_procs"]), "", "")
    table.add_row("b", f"env + policy inference, {n} procs x {e} envs, 1 torch thread",
                  fmt(res["env_policy_fps"]), fmt(r["env_policy_vs_raw_env"], "x") + " of a",
                  "")
    table.add_row("c", f"our actors only: {n} actor procs -> sink (ipc, decode)",
                  fmt(res["actors_fps"]), fmt(r["actors_vs_env_policy"], "x") + " of b",
                  goal_text(r["actors_vs_env_policy"], g["actors_vs_env_policy"]))
    table.add_row("d", f"our training: Supervisor, learner + {n} actors",
                  fmt(res["train_fps"]), fmt(r["train_vs_cleanrl"], "x") + " of e",
                  goal_text(r["train_vs_cleanrl"], g["train_vs_cleanrl"]))
    table.add_row("e", f"{res['update']} baseline: CleanRL-shaped PPO loop, our model and "
                       f"update, 1 proc x {n * e} envs, T={res['rollout_len']}",
                  fmt(res["cleanrl_ppo_fps"]), "", "")
    table.add_row("e'", f"CleanRL PPO (ppo.py: 64x64 tanh MLPs, T=128, 4 epochs x 4 "
                        f"minibatches), 1 proc x {n * e} envs, 1 torch thread",
                  fmt(res["cleanrl_faithful_fps"]),
                  fmt(r["cleanrl_faithful_vs_baseline"], "x") + " of e"
                  if res["cleanrl_faithful_fps"] is not None else "", "")
    sf = res["sample_factory_fps"]
    sf_label = f"Sample Factory 2 APPO, {n} workers x {e} envs" + (
        "" if sf is not None else ": not runnable here (see below)")
    table.add_row("f", sf_label, fmt(sf),
                  fmt(r["train_vs_sample_factory"], "x") + " d/f" if sf is not None else "", "")
    for transport, sizes in res["wire_gbps"].items():
        for mb, gbps in sizes.items():
            table.add_row("g", f"wire {transport}: {mb} MB rollout PUSH->PULL, decode",
                          fmt(gbps, " GB/s"), "", goal_text(gbps, g["wire_gbps"]))
    Console(width=160).print(table)
    print(f"model: {res['model_note']}; learner {res['algo']}, {res['update']} per batch of "
          f"{n * e * res['rollout_len']} steps (row e: the same; row e': CleanRL's own MLP and "
          f"update, {n * e * 128} steps per batch)")
    if res["cleanrl_faithful_fps"] is None:
        print(f"row e': not run: {res['cleanrl_faithful_note']}")
    if sf is None:
        print(f"sample-factory: not runnable here: {res['sample_factory_note']}")
    else:
        print(f"sample-factory: {res['sample_factory_note']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-Empty-8x8-v0")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds run before each measurement starts counting")
    parser.add_argument("--num-procs", type=int, default=2)
    parser.add_argument("--envs-per-actor", type=int, default=16)
    parser.add_argument("--rollout-len", type=int, default=32)
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"),
                        help="model and learner settings come from here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, e.g. learner.model.hidden_size=128")
    parser.add_argument("--wire-seconds", type=float, default=None,
                        help="per wire figure (default: min(--seconds, 5))")
    parser.add_argument("--skip-sample-factory", action="store_true")
    parser.add_argument("--sf-python", default="/work/sfvenv/bin/python",
                        help="python of the separate venv that has sample-factory and envpool")
    parser.add_argument("--launcher", choices=("local", "ray"), default="local",
                        help="ray: compare training fps under the Ray and local launchers "
                        "(only that), with bytes on the wire per actor")
    parser.add_argument("--repeats", type=int, default=2,
                        help="--launcher ray: interleaved runs per launcher")
    parser.add_argument("--ray-address", default=None,
                        help="--launcher ray: a running cluster (default: a private one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg, spec, model_note = resolve_config(args)
    s, w = args.seconds, args.warmup
    wire_s = args.wire_seconds if args.wire_seconds is not None else min(s, 5.0)
    lc = cfg.learner
    res: dict[str, Any] = {
        "env": cfg.env.id, "num_procs": cfg.actors.num_procs,
        "envs_per_actor": cfg.env.envs_per_actor, "rollout_len": cfg.actors.rollout_len,
        "seconds": s, "warmup": w, "wire_seconds": wire_s, "model_note": model_note,
        "model": {"kind": torso_kind(cfg, spec), "hidden_size": lc.model.hidden_size,
                  "core": lc.model.core},
        "algo": lc.algo, "update": f"{lc.epochs} epoch x {lc.minibatches} minibatch",
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }
    log(f"{cfg.env.id}: {model_note}")
    if args.launcher == "ray":
        res["repeats"], res["load_average_start"] = args.repeats, os.getloadavg()
        res.update(launcher_comparison(cfg, spec, args))
        res["load_average"] = os.getloadavg()
        print_launcher_table(res)
        print(json.dumps(res))
        return 0
    log("a. raw EnvPool, random actions")
    raw = raw_env_fps(cfg, spec, w, s)
    res["raw_env_fps_one_proc"], res["raw_env_fps_n_procs"] = raw["one_proc"], raw["n_procs"]
    log("b. env + policy inference")
    res["env_policy_fps"] = env_policy_fps(cfg, spec, w, s)
    log("c. our actors -> sink")
    actors = actors_fps(cfg, spec, w, s)
    res["actors_fps"], res["actors_sink_dropped"] = actors["fps"], actors["dropped"]
    res["actors_self_reported_fps"] = actors["actor_reported_fps"]
    log("d. our training (Supervisor)")
    train = train_fps(cfg, spec, w, s)
    res["train_fps"] = train.pop("fps")
    res["train_details"] = train
    log(f"e. {res['update']} baseline (our model and update, CleanRL-shaped loop)")
    res["cleanrl_ppo_fps"] = cleanrl_fps(cfg, w, s)
    log("e'. CleanRL PPO, faithful (4 epochs x 4 minibatches)")
    res["cleanrl_faithful_fps"], res["cleanrl_faithful_note"] = cleanrl_faithful_fps(cfg, w, s)
    if args.skip_sample_factory:
        res["sample_factory_fps"] = None
        res["sample_factory_note"] = "skipped (--skip-sample-factory)"
    else:
        log("f. Sample Factory 2")
        sf, note = sample_factory_fps(cfg, spec, args.sf_python, w, s)
        res["sample_factory_fps"], res["sample_factory_note"] = sf, note
    log("g. wire")
    res["wire_gbps"] = wire_all(wire_s)
    res["ratios"] = {
        "env_policy_vs_raw_env": ratio(res["env_policy_fps"], res["raw_env_fps_n_procs"]),
        "actors_vs_env_policy": ratio(res["actors_fps"], res["env_policy_fps"]),
        "train_vs_actors": ratio(res["train_fps"], res["actors_fps"]),
        "train_vs_cleanrl": ratio(res["train_fps"], res["cleanrl_ppo_fps"]),
        "train_vs_cleanrl_faithful": ratio(res["train_fps"], res["cleanrl_faithful_fps"]),
        "cleanrl_faithful_vs_baseline": ratio(res["cleanrl_faithful_fps"],
                                              res["cleanrl_ppo_fps"]),
        "train_vs_sample_factory": ratio(res["train_fps"], res["sample_factory_fps"]),
    }
    res["goals"] = dict(GOALS)
    print_table(res)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
