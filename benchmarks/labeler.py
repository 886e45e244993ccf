"""Cost of the LLM labeler to the actors, labeler throughput, and the label-cache hit rate.

One invocation measures, on NetHack (``configs/nethack_oni_full.yaml``, a small model by default so
env stepping and text capture, not inference, dominate the actors):

a. actors-only fps (N real actor processes -> a stand-in learner that decodes and discards, as
   in ``benchmarks/throughput.py``) with the labeler **off** (no text capture), **on** (a real
   labeler process with the embedded MiniLM labeler receiving every new message) and **on with
   the LLM server dead** (``openai`` backend pointed at a closed port: breaker open, texts
   queue up). "off" is measured before and after the others; ratios are to their mean
   (goal >= 0.95 each).
b. labeler throughput, texts/s, per backend on distinct NetHack messages from random play:
   ``rules``, ``embedding``, ``openai`` against the scriptable test server (client overhead) and,
   when installed, against a real llama.cpp server with SmolLM2-135M (one message per request).
c. label-cache hit rate after warm-up: a full ONI run (supervisor, actors, learner, labeler);
   the share of steps with a message whose labels were all already in the reward table
   (``labeler/cache_hit_rate``), averaged over the second half of the run (goal >= 0.99). Run
   once per text unit: ``sentences`` (the ONI configs) and ``message`` (one label per whole
   message line, the baseline).

Prints a table, then as its LAST stdout line one JSON object with every figure::

    python benchmarks/labeler.py --seconds 20
    python benchmarks/labeler.py --parts hit --hit-seconds 200   # only (c)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bench_utils import CTX, RESULT_TIMEOUT_S, ratio
from throughput import actors_fps

from actors.envs import make_vec_env, probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import Config, load_config
from llm_labeler.service import ServiceArgs, labeler_main

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "llm_labeler"
GOALS = {"fps_ratio": 0.95, "cache_hit_rate": 0.99}
SMALL_MODEL = ["learner.model.hidden_size=32", "learner.model.core=none",
               "learner.model.encoder_kwargs={embed_dim: 8, full_map: false, message_dim: 0}"]


def log(text: str) -> None:
    print(f"[labeler-bench] {text}", file=sys.stderr, flush=True)


def base_config(args: argparse.Namespace, *extra: str) -> Config:
    overrides = [f"actors.num_procs={args.num_procs}", f"env.envs_per_actor={args.envs}",
                 "env.max_episode_steps=1000", *(SMALL_MODEL if args.model == "small" else []),
                 *extra]
    # the full config with the model cut down, as when the figures in RESULTS.md were taken
    # (extended actions, 32-step rollouts: the messages and load those figures are about)
    return load_config(REPO / "configs" / "nethack_oni_full.yaml", overrides)


# --------------------------------------------------------------------------- a. actor fps


def start_labeler(cfg: Config, store: Path) -> tuple[Any, Any, str]:
    """A real labeler process; returns (process, stop event, texts address)."""
    stop, status = CTX.Event(), CTX.Queue()
    args = ServiceArgs(cfg=cfg.llm_labeler, store_path=str(store),
                       texts_address="tcp://127.0.0.1:0", updates_address="tcp://127.0.0.1:0",
                       stop_event=stop, status_queue=status)
    proc = CTX.Process(target=labeler_main, args=(args,), daemon=True)
    proc.start()
    kind, payload = status.get(timeout=RESULT_TIMEOUT_S)
    if kind != "labeler_ready":
        raise RuntimeError(f"labeler did not start: {payload}")
    return proc, stop, payload["texts"]


def fps_with(cfg: Config, mode: str, warmup: float, seconds: float, workdir: Path
             ) -> dict[str, Any]:
    """Actors-only fps with the labeler ``off``, ``embedding`` or ``dead_server``."""
    spec = probe_env_spec(cfg.env)
    if mode == "off":
        off_cfg = replace(cfg, text=replace(cfg.text, source=None),
                          llm_labeler=replace(cfg.llm_labeler, labeler=None))
        return actors_fps(off_cfg, spec, warmup, seconds)
    lab = cfg.llm_labeler
    if mode == "dead_server":  # nothing listens on port 9: connection refused at once
        lab = replace(lab, labeler="openai",
                      backend={"base_url": "http://127.0.0.1:9/v1", "model": "none",
                               "breaker_cooldown_s": 5.0})
    lab_cfg = replace(cfg, llm_labeler=lab)
    proc, stop, texts_address = start_labeler(lab_cfg, workdir / f"{mode}.sqlite")
    try:
        on_cfg = replace(lab_cfg, text=replace(cfg.text, labeler_address=texts_address))
        return actors_fps(on_cfg, spec, warmup, seconds)
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()


# --------------------------------------------------------------------------- b. throughput


def nethack_messages(cfg: Config, steps: int, seed: int = 0) -> list[str]:
    """Distinct messages of random play (what a fresh run sends to the labeler)."""
    env = make_vec_env(cfg.env, 8, seed)
    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}
    env.reset()
    for _ in range(steps // 8):
        env.step(rng.integers(0, env.spec.num_actions, 8))
        for text in env.last_messages():
            if text:
                seen[text] = None
    env.close()
    return list(seen)


def throughput(name: str, labeler: Any, texts: list[str], batch: int) -> dict[str, Any]:
    from llm_labeler.protocol import as_sync

    sync = as_sync(labeler)
    labelled, failed = 0, 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        if hasattr(labeler, "label_batch"):
            result = labeler.label_batch(chunk)
            labelled, failed = labelled + len(result.labels), failed + len(result.failed)
        else:
            labelled += len(sync.label(chunk))
    elapsed = time.perf_counter() - start
    positives = None
    if not hasattr(labeler, "label_batch"):
        positives = float(np.mean([lab.label for lab in sync.label(texts)]))
    log(f"{name}: {labelled} labelled, {failed} failed in {elapsed:.2f}s")
    return {"texts": len(texts), "labelled": labelled, "failed": failed,
            "texts_per_s": labelled / elapsed, "positive_rate": positives}


def backend_throughputs(texts: list[str], llm_texts: int) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    from fake_openai_server import FakeOpenAIServer
    from llama_server import MODEL_ALIAS, LlamaServer, available

    from llm_labeler.registry import make_labeler

    out: dict[str, Any] = {}
    out["rules"] = throughput("rules", make_labeler("rules"), texts, 64)
    out["embedding"] = throughput("embedding", make_labeler("embedding"), texts, 64)
    with FakeOpenAIServer() as server:
        labeler = make_labeler("openai", base_url=server.url, model="fake", batch_size=20,
                               max_concurrency=4)
        out["openai_test_server"] = throughput("openai (test server)", labeler, texts, 80)
        labeler.close()
    reason = available()
    if reason is None:
        with LlamaServer(threads=2) as server:
            labeler = make_labeler("openai", base_url=server.url, model=MODEL_ALIAS,
                                   batch_size=1, max_concurrency=1, timeout_s=120,
                                   user_template="NetHack message: {messages}\n\nDoes this "
                                   "message show progress? Answer yes or no.")
            out["openai_smollm2"] = throughput("openai (llama.cpp SmolLM2-135M)", labeler,
                                               texts[:llm_texts], 1)
            labeler.close()
    else:
        out["openai_smollm2"] = {"skipped": reason}
    return out


# --------------------------------------------------------------------------- c. hit rate


def cache_hit_rate(args: argparse.Namespace, workdir: Path, units: str) -> dict[str, Any]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = base_config(args, f"runs_dir={workdir}", "log_interval_s=2",
                      "checkpoint_interval_s=100000", "total_env_steps=1000000000",
                      f"text.units={units}", f"name=hit_{units}")
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["bench"]))
    import threading

    timer = threading.Timer(args.hit_seconds, sup.stop_event.set)
    timer.daemon = True
    timer.start()
    result = sup.run()
    timer.cancel()
    acc = EventAccumulator(str(sup.run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    out: dict[str, Any] = {"units": units, "env_steps": result.env_steps,
                           "seconds": args.hit_seconds, "hit_rate_first": None,
                           "hit_rate_second_half": None, "hit_rate_second_half_p10": None,
                           "hit_rate_last": None, "labelled_total": None}
    if "labeler/labelled_total" in tags:
        out["labelled_total"] = acc.Scalars("labeler/labelled_total")[-1].value
    if "labeler/cache_hit_rate" in tags:
        events = acc.Scalars("labeler/cache_hit_rate")
        late = [e.value for e in events[len(events) // 2:]]
        out.update(hit_rate_first=events[0].value, hit_rate_last=events[-1].value,
                   hit_rate_second_half=float(np.mean(late)),
                   hit_rate_second_half_p10=float(np.percentile(late, 10)))
    return out


# --------------------------------------------------------------------------- main


def print_table(res: dict[str, Any]) -> None:
    fps = res["actor_fps"]
    if fps:
        print(f"\nNetHack actors-only fps ({res['setup']})")
        print(f"{'labeler':<28}{'fps':>10}{'ratio to off':>14}")
        for mode in ("off_before", "embedding", "dead_server", "off_after"):
            r = res["ratios"].get(mode)
            print(f"{mode:<28}{fps[mode]:>10.0f}{'' if r is None else f'{r:>14.3f}'}")
        print(f"goal: on / off >= {GOALS['fps_ratio']}")
    if res["throughput"]:
        print_throughput(res["throughput"])
    print_hit_rates(res["cache"])


def print_throughput(throughput: dict[str, Any]) -> None:
    print("\nlabeler throughput (distinct random-play NetHack messages)")
    print(f"{'backend':<28}{'texts':>8}{'texts/s':>12}{'positive rate':>15}")
    for name, row in throughput.items():
        if "skipped" in row:
            print(f"{name:<28}  skipped: {row['skipped']}")
            continue
        pos = "" if row["positive_rate"] is None else f"{row['positive_rate']:.3f}"
        print(f"{name:<28}{row['labelled']:>8}{row['texts_per_s']:>12.1f}{pos:>15}")


def print_hit_rates(cache: dict[str, Any]) -> None:
    if not cache:
        return
    print(f"\nlabel-cache hit rate after warm-up (full ONI run; goal >= "
          f"{GOALS['cache_hit_rate']} over the second half)")
    print(f"{'text units':<12}{'seconds':>8}{'env steps':>11}{'labels':>8}{'first':>8}"
          f"{'2nd half':>10}{'p10':>8}{'last':>8}")
    for hit in cache.values():
        if hit["hit_rate_last"] is None:
            print(f"{hit['units']:<12}  no trained batch in the {hit['seconds']:.0f}s run")
            continue
        print(f"{hit['units']:<12}{hit['seconds']:>8.0f}{hit['env_steps']:>11,}"
              f"{hit['labelled_total']:>8.0f}{hit['hit_rate_first']:>8.4f}"
              f"{hit['hit_rate_second_half']:>10.4f}{hit['hit_rate_second_half_p10']:>8.4f}"
              f"{hit['hit_rate_last']:>8.4f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per fps run")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--num-procs", type=int, default=2)
    parser.add_argument("--envs", type=int, default=16, help="NLE envs per actor")
    parser.add_argument("--model", choices=("small", "full"), default="small")
    parser.add_argument("--messages-steps", type=int, default=20000,
                        help="random-play steps to collect distinct messages for (b)")
    parser.add_argument("--llm-texts", type=int, default=20,
                        help="messages sent to the real SmolLM2 server (slow on CPU)")
    parser.add_argument("--hit-seconds", type=float, default=120.0,
                        help="length of each full ONI run for (c)")
    parser.add_argument("--hit-units", nargs="+", default=["sentences", "message"],
                        choices=("sentences", "message"), help="text units compared in (c)")
    parser.add_argument("--parts", nargs="+", default=["fps", "throughput", "hit"],
                        choices=("fps", "throughput", "hit"), help="which of a, b, c to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="labeler-bench-"))
    try:
        cfg = base_config(args)
        fps: dict[str, float] = {}
        ratios: dict[str, float] = {}
        through: dict[str, Any] = {}
        cache: dict[str, Any] = {}
        if "fps" in args.parts:
            for mode, key in (("off", "off_before"), ("embedding", "embedding"),
                              ("dead_server", "dead_server"), ("off", "off_after")):
                log(f"actors-only fps, labeler {key} ...")
                fps[key] = fps_with(cfg, mode, args.warmup, args.seconds, workdir)["fps"]
                log(f"  {fps[key]:.0f} env steps/s")
            off = (fps["off_before"] + fps["off_after"]) / 2
            ratios = {k: ratio(v, off) for k, v in fps.items()}
        if "throughput" in args.parts:
            log("collecting random-play messages ...")
            texts = nethack_messages(cfg, args.messages_steps)
            log(f"{len(texts)} distinct messages; labeler throughput ...")
            through = backend_throughputs(texts, args.llm_texts)
        if "hit" in args.parts:
            for units in args.hit_units:
                log(f"full ONI run for the cache hit rate, text units {units} ...")
                cache[units] = cache_hit_rate(args, workdir, units)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res = {"setup": f"{args.num_procs} actors x {args.envs} NLE envs, {args.model} model, "
                    f"NetHackScore-v0, {args.seconds:.0f}s windows after {args.warmup:.0f}s",
           "actor_fps": fps, "ratios": ratios, "throughput": through, "cache": cache,
           "goals": GOALS}
    print_table(res)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
