"""``explorer labeler ...`` commands.

``explorer labeler eval --data dev.jsonl [--labeler embedding] [--option key=value ...]
[--json]`` labels every text of a JSON Lines file and prints accuracy, AUC, positive rate and
throughput (with ``--json``: one JSON line instead of the table).

The main ``explorer`` CLI hooks these in with one call, :func:`add_labeler_subcommands`;
:func:`labeler_main` runs them standalone. Mistakes in what the user typed (a missing file, a
bad line, an unknown labeler or option) print one ``error:`` line and return exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from llm_labeler.evaluate import EvalResult, evaluate, load_jsonl
from llm_labeler.protocol import LabelerError
from llm_labeler.registry import make_labeler

__all__ = ["add_labeler_subcommands", "format_table", "labeler_main", "parse_options"]


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["margin=0.1", "use_cues=false"]`` into keyword arguments.

    Values are parsed as YAML scalars or flow collections (``0.1`` -> float, ``false`` ->
    bool, ``[a, b]`` -> list); anything else stays a string.

    Raises:
        ValueError: an item without ``=`` or with an empty key.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        options[key.strip()] = value
    return options


def format_table(result: EvalResult, *, labeler: str, data: str) -> str:
    """A small human-readable table of one evaluation."""
    c = result.confusion
    rows = [("data", data), ("labeler", labeler), ("texts", f"{result.n}"),
            ("accuracy", f"{result.accuracy:.3f}"),
            ("AUC", "n/a (one class)" if result.auc != result.auc else f"{result.auc:.3f}"),
            ("positive rate", f"{result.positive_rate:.3f}"),
            ("throughput", f"{result.throughput_texts_per_s:,.1f} texts/s"),
            ("confusion", f"tp {c['tp']}  fp {c['fp']}  tn {c['tn']}  fn {c['fn']}")]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _cmd_eval(args: argparse.Namespace) -> int:
    try:
        options = parse_options(args.option or [])
        records = load_jsonl(args.data)
        labeler = make_labeler(args.labeler, **options)
    except FileNotFoundError:
        print(f"error: --data {args.data}: no such file", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:  # bad line, unknown labeler, unknown option
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: --data {args.data}: no records", file=sys.stderr)
        return 2
    try:
        result = evaluate(labeler, records)
    except LabelerError as err:
        print(f"error: labeler {args.labeler} failed ({err.reason}): {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"data": str(args.data), "labeler": args.labeler, "options": options,
                          **result.to_dict()}, default=str))
    else:
        print(format_table(result, labeler=args.labeler, data=str(args.data)))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="score a labeler on hand-labelled texts (JSON Lines)",
                        description="Label each text of a JSON Lines file "
                        '({"text": str, "label": 0|1} per line) and report accuracy, AUC, '
                        "positive rate and throughput.")
    ev.add_argument("--data", required=True, metavar="FILE.jsonl",
                    help='hand-labelled texts, one {"text": ..., "label": 0|1} a line')
    ev.add_argument("--labeler", default="embedding", metavar="SPEC",
                    help="registered name (embedding, rules, callable, openai), import path "
                         "package.module:Class, or entry point (default: embedding)")
    ev.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="keyword argument for the labeler, repeatable (e.g. margin=0.1)")
    ev.add_argument("--json", action="store_true", help="print one JSON line, no table")
    ev.set_defaults(func=_cmd_eval)


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run the labeler service in this process until Ctrl-C."""
    import signal
    import threading

    import zmq

    from explorer.core.config import ConfigError, load_config
    from explorer.core.curve import curve_key_problems, load_curve_keys
    from llm_labeler.registry import labeler_problems
    from llm_labeler.service import LabelerService, ServiceArgs

    path = next((i for i in args.items if "=" not in i), None)
    overrides = [i for i in args.items if "=" in i]
    try:
        cfg = load_config(path, overrides, checks=(labeler_problems, curve_key_problems))
    except ConfigError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    lab = cfg.llm_labeler
    if not lab.labeler:
        print("error: llm_labeler.labeler is not set (e.g. llm_labeler.labeler=embedding)",
              file=sys.stderr)
        return 2
    store = args.store or lab.store_path or "labels.sqlite"
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ctx = zmq.Context()
    try:
        service = LabelerService(ServiceArgs(cfg=lab, store_path=store,
                                             texts_address=lab.texts_address,
                                             updates_address=lab.updates_address,
                                             stop_event=stop, seed=cfg.seed,
                                             curve=(load_curve_keys(cfg.wire.curve_keys)
                                                    if cfg.wire.curve_keys else None)), ctx)
    except (ValueError, TypeError) as err:
        print(f"error: llm_labeler: {err}", file=sys.stderr)
        ctx.term()
        return 2
    print(f"labeler {lab.labeler} ({lab.reward_model}); store {store}: "
          f"{service.restored['labels']} labels, {service.restored['seen']} texts seen")
    print(f"texts in:    {service.texts_address}")
    print(f"updates out: {service.updates_address}")
    print("connect a run with: explorer run CONFIG llm_labeler.external=true "
          f"llm_labeler.texts_address={service.texts_address} "
          f"llm_labeler.updates_address={service.updates_address}", flush=True)
    try:
        service.run()
    finally:
        service.close()
        ctx.term()
    print("labeler stopped", flush=True)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the labeler service standalone",
                           description="Receive texts from actors, label them into a SQLite "
                           "store and publish reward tables, until Ctrl-C. Uses the "
                           "llm_labeler section of the config.")
    serve.add_argument("items", nargs="*", metavar="CONFIG [KEY=VALUE ...]",
                       help="run config, then dotted overrides (llm_labeler.labeler=openai ...)")
    serve.add_argument("--store", metavar="PATH", help="label store (default: "
                       "llm_labeler.store_path, else ./labels.sqlite)")
    serve.set_defaults(func=_cmd_serve)


def add_labeler_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``labeler`` (with its ``eval`` command) under an existing sub-parser set.

    Args:
        subparsers: the object ``parser.add_subparsers()`` returned in the main CLI. Each leaf
            command sets ``func(args) -> int`` as a default, like the other ``explorer``
            commands.

    Returns:
        The ``labeler`` parser.
    """
    labeler = subparsers.add_parser("labeler", help="label texts and evaluate labelers",
                                    description=__doc__.splitlines()[0])
    sub = labeler.add_subparsers(dest="labeler_command", required=True)
    _add_eval(sub)
    _add_serve(sub)
    return labeler


def labeler_main(argv: Sequence[str] | None = None) -> int:
    """Run ``explorer labeler`` standalone, e.g. ``labeler_main(["eval", "--data", f])``.

    Returns:
        Exit status: 0 on success, 1 if the labeler failed, 2 on a usage error.
    """
    parser = argparse.ArgumentParser(prog="explorer labeler",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="labeler_command", required=True)
    _add_eval(sub)
    _add_serve(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(labeler_main())
