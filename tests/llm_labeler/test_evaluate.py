"""Evaluation figures against hand-computed cases, JSON Lines loading, and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from llm_labeler.backends.callable_backend import CallableLabeler
from llm_labeler.cli import add_labeler_subcommands, labeler_main, parse_options
from llm_labeler.evaluate import Record, evaluate, load_jsonl, roc_auc
from llm_labeler.protocol import Label

ROOT = Path(__file__).resolve().parents[2]


def _brute_force_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2, over all pairs."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize(("labels", "scores", "expected"), [
    ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),   # the classic sklearn example
    ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 1.0),
    ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),
    ([1, 0], [0.5, 0.5], 0.5),                      # a tie counts one half
    ([1, 0, 1, 0], [1.0, 1.0, 0.0, 0.0], 0.5),      # (1 + 0.5 + 0.5 + 0) / 4
    ([1, 0, 0], [0.5, 0.5, 0.2], 0.75),             # (0.5 + 1) / 2
])
def test_auc_hand_computed(labels: list[int], scores: list[float], expected: float) -> None:
    assert roc_auc(labels, scores) == pytest.approx(expected)


def test_auc_matches_brute_force_with_many_ties() -> None:
    labels = [1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 1]
    scores = [0.3, 0.3, 0.9, 0.1, 0.1, 0.5, 0.5, 0.5, 0.0, 0.9, 0.9, 0.3]
    assert roc_auc(labels, scores) == pytest.approx(_brute_force_auc(labels, scores))


def test_auc_one_class_is_nan() -> None:
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_evaluate_figures() -> None:
    # truth:      1    1    0    0    0
    # predicted:  1    0    1    0    0   -> tp 1, fn 1, fp 1, tn 2; accuracy 3/5
    scores = {"a": 0.9, "b": 0.3, "c": 0.6, "d": 0.2, "e": 0.1}
    labeler = CallableLabeler(lambda texts: [scores[t] for t in texts])
    records = [Record("a", 1), Record("b", 1), Record("c", 0), {"text": "d", "label": 0},
               Record("e", 0)]
    result = evaluate(labeler, records, batch_size=2)
    assert result.n == 5
    assert result.accuracy == pytest.approx(0.6)
    assert result.positive_rate == pytest.approx(0.4)
    assert result.confusion == {"tp": 1, "fp": 1, "tn": 2, "fn": 1}
    assert result.auc == pytest.approx(_brute_force_auc([1, 1, 0, 0, 0],
                                                        [0.9, 0.3, 0.6, 0.2, 0.1]))
    assert result.throughput_texts_per_s > 0
    assert json.loads(json.dumps(result.to_dict()))["confusion"]["tp"] == 1


def test_evaluate_runs_async_labelers() -> None:
    class Async:
        name = "async"

        async def alabel(self, texts: Sequence[str]) -> list[Label]:
            return [Label(text=t, label=1, score=1.0) for t in texts]

    assert evaluate(Async(), [Record("x", 1)]).accuracy == 1.0


def test_evaluate_rejects_wrong_label_count_and_no_records() -> None:
    class Short:
        name = "short"

        def label(self, texts: Sequence[str]) -> list[Label]:
            return []

    with pytest.raises(ValueError, match="returned 0 labels for 1 texts"):
        evaluate(Short(), [Record("x", 1)])
    with pytest.raises(ValueError, match="no records"):
        evaluate(Short(), [])


def test_load_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text('{"text": "You kill the newt!", "label": 1, "count": 3}\n\n'
                    '{"text": "It\'s a wall.", "label": 0}\n')
    assert load_jsonl(path) == [Record("You kill the newt!", 1), Record("It's a wall.", 0)]


@pytest.mark.parametrize(("second_line", "message"), [
    ("{not json", "not valid JSON"),
    ('["text", 1]', "expected an object"),
    ('{"label": 1}', '"text" must be a string'),
    ('{"text": "x", "label": 2}', '"label" must be 0 or 1'),
    ('{"text": "x", "label": true}', '"label" must be 0 or 1'),
    ('{"text": "x"}', '"label" must be 0 or 1'),
])
def test_load_jsonl_names_the_bad_line(tmp_path: Path, second_line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": 0}\n' + second_line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: {message}"):
        load_jsonl(path)


def test_parse_options() -> None:
    assert parse_options(["margin=0.1", "use_cues=false", "fn=pkg.mod:f", "a=[x, y]", "e="]) == \
        {"margin": 0.1, "use_cues": False, "fn": "pkg.mod:f", "a": ["x", "y"], "e": ""}
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["novalue"])


def _write_data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    rows = [("You kill the gnome!", 1), ("You see here a ruby.", 1), ("It's a wall.", 0),
            ("What do you want to eat? [f or ?*]", 0), ("You hear a slow drip.", 0)]
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def test_labeler_main_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _write_data(tmp_path)
    assert labeler_main(["eval", "--data", str(data), "--labeler", "rules"]) == 0
    table = capsys.readouterr().out
    for word in ("accuracy", "AUC", "positive rate", "throughput", "1.000"):
        assert word in table
    assert labeler_main(["eval", "--data", str(data), "--labeler", "rules", "--option",
                         "default_score=0.1", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    figures = json.loads(out[0])
    assert figures["accuracy"] == 1.0 and figures["n"] == 5
    assert figures["options"] == {"default_score": 0.1}


@pytest.mark.parametrize(("args", "message"), [
    (["--labeler", "nope"], "unknown labeler 'nope'"),
    (["--option", "margin"], "expected key=value"),
    (["--labeler", "rules", "--option", "bogus=1"], "bogus"),
])
def test_labeler_main_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture,
                                   args: list[str], message: str) -> None:
    assert labeler_main(["eval", "--data", str(_write_data(tmp_path)), *args]) == 2
    assert message in capsys.readouterr().err


def test_labeler_main_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert labeler_main(["eval", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 3, "label": 0}\n')
    assert labeler_main(["eval", "--data", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_add_labeler_subcommands_hooks_into_a_parent_parser(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture
                                                            ) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="explorer")
    add_labeler_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["labeler", "eval", "--data", str(_write_data(tmp_path)),
                              "--labeler", "rules", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0


def test_cli_end_to_end_with_the_embedded_labeler(tmp_path: Path) -> None:
    """One real process run: ``python -m llm_labeler.cli eval`` with the MiniLM default."""
    out = subprocess.run([sys.executable, "-m", "llm_labeler.cli", "eval", "--data",
                          str(_write_data(tmp_path)), "--json"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["labeler"] == "embedding" and figures["n"] == 5
    assert figures["accuracy"] >= 0.8
