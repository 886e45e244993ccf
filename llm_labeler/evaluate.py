"""Score a labeler against hand-labelled texts: accuracy, AUC, positive rate, throughput.

Data is JSON Lines, one object a line with at least ``{"text": str, "label": 0 | 1}`` (other
keys, such as ``count``, are kept but unused).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm_labeler.protocol import AsyncLabeler, Labeler, as_sync

__all__ = ["EvalResult", "Record", "evaluate", "load_jsonl", "roc_auc"]


@dataclass(frozen=True)
class Record:
    """One hand-labelled text.

    Attributes:
        text: the text.
        label: 1 interesting, 0 not.
    """

    text: str
    label: int


@dataclass(frozen=True)
class EvalResult:
    """Figures of one evaluation.

    Attributes:
        accuracy: fraction of predicted labels equal to the true ones.
        auc: area under the ROC curve of the scores (NaN when only one class is present).
        positive_rate: fraction of texts predicted 1.
        throughput_texts_per_s: texts labelled per second of ``label`` calls.
        n: number of texts.
        confusion: counts ``{"tp", "fp", "tn", "fn"}``.
    """

    accuracy: float
    auc: float
    positive_rate: float
    throughput_texts_per_s: float
    n: int
    confusion: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready; NaN AUC becomes None)."""
        out = asdict(self)
        if np.isnan(self.auc):
            out["auc"] = None
        return out


def load_jsonl(path: str | Path) -> list[Record]:
    """Read hand-labelled texts.

    Args:
        path: a ``.jsonl`` file; blank lines are skipped.

    Returns:
        The records in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line is not JSON or lacks ``text`` (str) / ``label`` (0 or 1); the
            message names the file and line number.
    """
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, Mapping):
                raise ValueError(f"{where}: expected an object "
                                 '{"text": str, "label": 0|1}, got ' + type(obj).__name__)
            text, label = obj.get("text"), obj.get("label")
            if not isinstance(text, str):
                raise ValueError(f'{where}: "text" must be a string, got {text!r}')
            if isinstance(label, bool) or label not in (0, 1):
                raise ValueError(f'{where}: "label" must be 0 or 1, got {label!r}')
            records.append(Record(text=text, label=int(label)))
    return records


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) statistic.

    Tied scores get their average rank, so a tie between a positive and a negative counts 1/2.

    Args:
        labels: (N,) 0/1 true labels.
        scores: (N,) scores, higher meaning more likely 1.

    Returns:
        AUC in [0, 1]; NaN when ``labels`` holds only one class.
    """
    y = np.asarray(labels, dtype=np.int64)      # (N,)
    s = np.asarray(scores, dtype=np.float64)    # (N,)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be equal 1-D shapes")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)  # (N,) 1-based average ranks
    start = 0
    while start < len(s):
        stop = start
        while stop + 1 < len(s) and sorted_s[stop + 1] == sorted_s[start]:
            stop += 1
        ranks[order[start:stop + 1]] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def evaluate(labeler: Labeler | AsyncLabeler, records: Sequence[Record | Mapping[str, Any]],
             *, batch_size: int = 256) -> EvalResult:
    """Label every record's text and compare with its label.

    Args:
        labeler: any labeler (asynchronous ones are run through ``as_sync``).
        records: :class:`Record` objects or mappings with ``text`` and ``label``.
        batch_size: texts per ``label`` call.

    Returns:
        The figures; throughput counts only time spent inside ``label`` calls.

    Raises:
        ValueError: no records, or the labeler returned the wrong number of labels.
    """
    if not records:
        raise ValueError("evaluate: no records")
    recs = [r if isinstance(r, Record) else Record(text=r["text"], label=int(r["label"]))
            for r in records]
    sync = as_sync(labeler)
    texts = [r.text for r in recs]
    predicted, scores, elapsed = [], [], 0.0
    for i in range(0, len(texts), batch_size):
        batch = texts[i:i + batch_size]
        t0 = time.perf_counter()
        out = sync.label(batch)
        elapsed += time.perf_counter() - t0
        if len(out) != len(batch):
            raise ValueError(f"evaluate: labeler returned {len(out)} labels for {len(batch)} "
                             "texts")
        predicted += [lab.label for lab in out]
        scores += [lab.score for lab in out]
    y = np.array([r.label for r in recs])   # (N,)
    p = np.array(predicted)                 # (N,)
    confusion = {"tp": int(((p == 1) & (y == 1)).sum()), "fp": int(((p == 1) & (y == 0)).sum()),
                 "tn": int(((p == 0) & (y == 0)).sum()), "fn": int(((p == 0) & (y == 1)).sum())}
    return EvalResult(accuracy=float((p == y).mean()), auc=roc_auc(y, scores),
                      positive_rate=float(p.mean()),
                      throughput_texts_per_s=len(texts) / max(elapsed, 1e-9), n=len(texts),
                      confusion=confusion)
