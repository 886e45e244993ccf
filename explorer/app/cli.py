"""``explorer`` command line: ``run``, ``eval``, ``search``, ``show-config``, ``labeler ...``
and ``keys gen``.

Errors in user input (config keys, values, paths) are printed as one line per problem and exit
with status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from explorer.app.validate import check_env, load_run_config
from explorer.core.config import ConfigError, format_config
from explorer.core.specs import EnvSpec

__all__ = ["main"]


class UsageError(Exception):
    """A problem with what the user typed, reported without a traceback."""


def _split_args(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """First item is the config file unless it looks like an ``a.b=value`` override."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _cmd_show_config(args: argparse.Namespace) -> int:
    path, overrides = _split_args(args.items)
    print(format_config(load_run_config(path, overrides)), end="")
    return 0


def _resolve_resume(run_dir: Path, overrides: list[str]):
    from explorer.core.checkpoint import latest_checkpoint

    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"--resume {run_dir}: no config.yaml there (is it a run directory?)")
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise UsageError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    return load_run_config(run_dir / "config.yaml", overrides), ckpt


def _cmd_run(args: argparse.Namespace) -> int:
    from actors.envs import probe_env_spec
    from explorer.app.progress import ProgressReporter
    from explorer.app.rundir import create_run_dir, record_resume
    from explorer.app.supervisor import Supervisor

    path, overrides = _split_args(args.items)
    argv = sys.argv[1:]
    if args.resume:
        if path is not None:
            raise UsageError("with --resume, give only overrides: the run's config.yaml is used")
        run_dir = Path(args.resume)
        cfg, ckpt = _resolve_resume(run_dir, overrides)
        generation = record_resume(run_dir, cfg, argv)
    else:
        if path is None:
            raise UsageError("give a config file, e.g. `explorer run configs/quickstart.yaml`")
        # the env checks import envpool (most of a second): they run while the processes
        # start, in probe_env below
        cfg, ckpt, generation = load_run_config(path, overrides, env_checks=False), None, 0
        run_dir = create_run_dir(cfg, argv)
    reporter = ProgressReporter(enabled=not args.quiet)
    console = reporter.console

    def probe_env() -> EnvSpec:
        check_env(cfg)
        try:
            spec = probe_env_spec(cfg.env)
        except ValueError as err:
            raise UsageError(f"env.id={cfg.env.id}: {err}") from None
        console.print(f"run directory: {run_dir}"
                      + (f" (resuming from {ckpt.name})" if ckpt else ""))
        console.print(f"watch it live: tensorboard --logdir {run_dir / 'tb'}")
        return spec

    try:
        result = Supervisor(cfg, probe_env, run_dir, resume_path=ckpt,
                            resume_generation=generation, reporter=reporter).run()
    except (ConfigError, UsageError):
        if not args.resume:  # nothing ran: leave no run directory behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if result.reason == "bad_checkpoint":
        raise UsageError(result.last_status["error"])
    if result.reason == "labeler_failed":
        console.print(f"[red]labeler failed to start[/red]: {result.last_status.get('error')}")
        console.print("check llm_labeler.labeler / llm_labeler.backend in the config")
    elif result.reason == "learner_failed":
        where = result.checkpoint or "none written"
        console.print(f"[red]learner failed[/red]; last checkpoint: {where}; logs in {run_dir}")
        if result.checkpoint:
            console.print(f"resume with: explorer run --resume {run_dir}")
    else:
        console.print(f"{result.reason}: {result.env_steps:,} env steps; "
                      f"checkpoint {result.checkpoint}")
        console.print(f"logs: {run_dir}   tensorboard --logdir {run_dir / 'tb'}")
        if result.reason == "stopped":
            console.print(f"continue with: explorer run --resume {run_dir}")
    return result.exit_code


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from explorer.app.evaluate import evaluate_policy
    from explorer.core.checkpoint import latest_checkpoint

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir}: no config.yaml there (is it a run directory?)")
    cfg = load_run_config(run_dir / "config.yaml", args.overrides)
    checkpoint = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(
        run_dir / "checkpoints")
    if checkpoint is None or not checkpoint.is_file():
        raise UsageError(f"no checkpoint: {args.checkpoint or run_dir / 'checkpoints'}")
    episodes = args.episodes if args.episodes is not None else (3 if args.video else 100)
    if episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {episodes}")
    if args.fps <= 0:
        raise UsageError(f"--fps must be > 0, got {args.fps}")
    arms = {"policy": checkpoint} | ({"random": None} if args.random_baseline else {})
    figures = {}
    for arm, ckpt in arms.items():
        recorder = _video_recorder(run_dir, checkpoint, args.fps) if (
            args.video and arm == "policy") else None
        try:
            result = evaluate_policy(cfg, ckpt, episodes, args.seed, greedy=args.greedy,
                                     on_frame=recorder.append if recorder else None)
        except ValueError as err:
            raise UsageError(str(err)) from None
        figures[arm] = result.summary()
        if recorder is not None:
            _save_video(recorder, run_dir, checkpoint)
    keys = sorted({k for summary in figures.values() for k in summary})
    print(f"{'':<16}" + "".join(f"{arm:>14}" for arm in figures))
    for key in keys:
        print(f"{key:<16}" + "".join(f"{figures[arm].get(key, float('nan')):>14.3f}"
                                     for arm in figures))
    print(json.dumps({"checkpoint": str(checkpoint), "seed": args.seed, **figures}))
    return 0


def _video_recorder(run_dir: Path, checkpoint: Path, fps: float):
    from explorer.app.video import VideoRecorder

    return VideoRecorder(run_dir / "videos" / f"eval_{checkpoint.stem}", fps=fps)


def _save_video(recorder, run_dir: Path, checkpoint: Path) -> None:
    """Finish the file and log its frame sample to TensorBoard (``eval/video``)."""
    from torch.utils.tensorboard import SummaryWriter

    from explorer.app.video import log_gif
    from explorer.core.checkpoint import checkpoint_env_steps

    path = recorder.close()
    try:
        step = checkpoint_env_steps(checkpoint)
    except ValueError:  # a checkpoint file named by hand
        step = 0
    writer = SummaryWriter(str(run_dir / "tb"), filename_suffix=".eval")
    try:
        log_gif(writer, "eval/video", recorder.sample, recorder.sample_fps, step)
    finally:
        writer.close()
    kind = "mp4" if path.suffix == ".mp4" else "GIF (no ffmpeg encoder here)"
    print(f"video: {path} ({kind}, {recorder.frames} frames); TensorBoard: eval/video "
          f"at step {step}", file=sys.stderr)


def _load_search_config(path: str | Path | None, overrides: list[str]):
    from explorer.core.config import load_config
    from explorer.novelty.config import SearchConfig, search_config_problems

    return load_config(path, overrides, checks=(search_config_problems,), schema=SearchConfig)


def _cmd_search(args: argparse.Namespace) -> int:
    from explorer.core.checkpoint import latest_checkpoint

    path, overrides = _split_args(args.items)
    argv = sys.argv[1:]
    if args.show_config:
        if args.resume:
            path = str(Path(args.resume) / "config.yaml")
        print(format_config(_load_search_config(path, overrides)), end="")
        return 0
    from explorer.app.rundir import create_run_dir, record_resume
    from explorer.app.search import SearchRun

    if args.resume:
        if path is not None:
            raise UsageError("with --resume, give only overrides: the run's config.yaml is used")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"--resume {run_dir}: no config.yaml there (is it a run directory?)")
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise UsageError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
        cfg = _load_search_config(run_dir / "config.yaml", overrides)
        record_resume(run_dir, cfg, argv)
    else:
        if path is None:
            raise UsageError("give a config file, e.g. `explorer search configs/hardmaze_ns.yaml`")
        cfg, ckpt = _load_search_config(path, overrides), None
        run_dir = create_run_dir(cfg, argv)
    search = SearchRun(cfg, run_dir, resume_path=ckpt, quiet=args.quiet)
    console = search.reporter.console
    console.print(f"run directory: {run_dir}" + (f" (resuming from {ckpt.name})" if ckpt else ""))
    console.print(f"watch it live: tensorboard --logdir {run_dir / 'tb'}")
    try:
        result = search.run()
    except Exception as err:
        from explorer.core.checkpoint import CheckpointError

        if isinstance(err, CheckpointError):
            raise UsageError(str(err)) from None
        raise
    best = f"{result.best_fitness:.3f}" if result.best_fitness > float("-inf") else "n/a"
    console.print(f"{result.reason}: {result.evaluations:,} evaluations, coverage "
                  f"{100 * result.coverage:.1f}%, best reward {best}, goal reached "
                  f"{result.goal_evals} times; checkpoint {result.checkpoint}")
    if result.reason in ("stopped", "done") and result.checkpoint:
        console.print(f"continue with: explorer search --resume {run_dir} budget=N")
    return result.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train: launcher + actors + learner from a YAML config")
    run.add_argument("items", nargs="*", metavar="CONFIG [KEY=VALUE ...]",
                     help="config file, then dotted overrides such as learner.lr=3e-4")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue runs/<name> from its "
                     "newest checkpoint (overrides still apply)")
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.set_defaults(func=_cmd_run)
    evaluate = sub.add_parser("eval", help="run a run's newest checkpoint for N episodes "
                              "(optionally against a uniform-random policy)")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                          help="config overrides, e.g. env.max_episode_steps=1000")
    evaluate.add_argument("--checkpoint", help="a checkpoint file (default: the newest)")
    evaluate.add_argument("--episodes", type=int, default=None,
                          help="episodes to play (default 100; 3 with --video)")
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.add_argument("--greedy", action="store_true", help="argmax actions (default: "
                          "sampled, as the actors act)")
    evaluate.add_argument("--random-baseline", action="store_true",
                          help="also run uniform-random actions on the same envs and seed")
    evaluate.add_argument("--video", action="store_true",
                          help="record the policy's episodes (one env) to RUN_DIR/videos/ as "
                          "mp4 (GIF without an ffmpeg encoder) and to TensorBoard eval/video")
    evaluate.add_argument("--fps", type=float, default=15.0, help="video frame rate")
    evaluate.set_defaults(func=_cmd_eval)
    search = sub.add_parser("search", help="novelty search / SERENE / STAX with parallel "
                            "evaluation workers, from a YAML config")
    search.add_argument("items", nargs="*", metavar="CONFIG [KEY=VALUE ...]",
                        help="config file, then dotted overrides such as novelty.sigma=0.1")
    search.add_argument("--resume", metavar="RUN_DIR", help="continue a search from its "
                        "newest checkpoint (overrides still apply, e.g. budget=200000)")
    search.add_argument("--show-config", action="store_true",
                        help="print the fully resolved search config and exit")
    search.add_argument("--quiet", action="store_true", help="no progress line")
    search.set_defaults(func=_cmd_search)
    from explorer.app.keys import add_keys_subcommands
    from llm_labeler.cli import add_labeler_subcommands

    add_labeler_subcommands(sub)
    add_keys_subcommands(sub)
    show = sub.add_parser("show-config", help="print the fully resolved config")
    show.add_argument("items", nargs="*", metavar="CONFIG [KEY=VALUE ...]")
    show.set_defaults(func=_cmd_show_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
