"""ONI reward models: turn labels (or pairwise preferences) into a reward for every text seen.

The labeler service feeds a model every text actors send (``add_texts``), every label the
backend produces (``add_labels``) and, for ranking, pairwise judgements (``add_preferences``);
``refresh()`` retrains when enough new data arrived, and ``table()`` is the text-id -> reward
table the learner applies as ``coef * reward / N_episode(text) ** beta``.

- ``retrieval``: the label itself, 0 while a text is unlabelled (ONI's hash-table variant).
- ``classification``: a logistic classifier on MiniLM embeddings distilled from the labels, so
  texts nobody has labelled yet are rewarded too; labelled texts keep their label.
- ``ranking``: Motif-style Bradley-Terry model on pairwise preferences; its output over the seen
  texts is standardised (zero mean, unit std) and only texts at or above a quantile keep a
  reward. ONI computes this normaliser and then never applies it; here it is applied.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from explorer.core.texts import text_id

__all__ = ["ClassificationRewardModel", "RankingRewardModel", "RetrievalRewardModel",
           "RewardModel", "make_reward_model"]

Encoder = Callable[[Sequence[str]], np.ndarray]


class RewardModel:
    """Shared bookkeeping: seen texts and labels by text id; subclasses map them to rewards."""

    name = "base"

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.labels: dict[int, int] = {}
        self.scores: dict[int, float] = {}
        self._dirty = True

    # -- data ------------------------------------------------------------------------------
    def add_texts(self, texts: Sequence[str]) -> int:
        """Register texts; returns how many were new."""
        new = 0
        for text in texts:
            key = text_id(text)
            if key and key not in self.texts:
                self.texts[key] = text
                new += 1
        self._dirty |= new > 0
        return new

    def add_labels(self, labels: Sequence[tuple[str, int, float]]) -> None:
        """Record ``(text, label 0/1, score in [0, 1])`` triples."""
        for text, label, score in labels:
            key = text_id(text)
            if not key:
                continue
            self.texts.setdefault(key, text)
            self.labels[key] = int(label)
            self.scores[key] = float(score)
        self._dirty |= bool(labels)

    def pairs_wanted(self) -> int:
        """Pairwise judgements the model would like now (ranking only)."""
        return 0

    def sample_pairs(self, n: int) -> list[tuple[str, str]]:
        return []

    def add_preferences(self, prefs: Sequence[tuple[str, str, float]]) -> None:
        return None

    # -- outputs ---------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Retrain if due; True when the table changed since the last call."""
        changed, self._dirty = self._dirty, False
        return changed

    def rewards(self) -> dict[int, float]:
        return {key: float(label) for key, label in self.labels.items()}

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N,), rewards float32 (N,)); texts absent from it earn 0."""
        rewards = self.rewards()
        ids = np.fromiter(rewards.keys(), dtype=np.int64, count=len(rewards))
        values = np.fromiter(rewards.values(), dtype=np.float32, count=len(rewards))
        return ids, values

    def metrics(self) -> dict[str, float]:
        return {"texts_seen": len(self.texts), "texts_labelled": len(self.labels)}


class RetrievalRewardModel(RewardModel):
    """ONI retrieval: reward = the text's label; unlabelled texts earn 0 until labelled."""

    name = "retrieval"

    def __init__(self, encoder: Encoder | None = None) -> None:
        super().__init__()


def _fit_linear(x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                weight: torch.nn.Linear, l2: float, steps: int) -> float:
    """Full-batch L-BFGS on a linear scorer (small data, convex loss: no tuning needed)."""
    opt = torch.optim.LBFGS(weight.parameters(), lr=1.0, max_iter=steps,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(weight(x).squeeze(-1)) + l2 * weight.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(loss_fn(weight(x).squeeze(-1)))


class ClassificationRewardModel(RewardModel):
    """ONI classification: logistic regression on embeddings, reward 1 where P > threshold.

    Args:
        encoder: ``encode(texts) -> (N, D)`` embeddings.
        threshold: P(interesting) above which an unlabelled text earns reward 1.
        soft: reward P itself instead of 0/1.
        retrain_every: new labels that trigger retraining.
        min_labels: labels needed (of both classes) before the first classifier.
        l2: weight decay of the classifier.
        steps: L-BFGS iterations per retraining.
    """

    name = "classification"

    def __init__(self, encoder: Encoder, threshold: float = 0.5, soft: bool = False,
                 retrain_every: int = 16, min_labels: int = 8, l2: float = 1e-3,
                 steps: int = 100) -> None:
        super().__init__()
        self.encoder = encoder
        self.threshold, self.soft = threshold, soft
        self.retrain_every, self.min_labels = retrain_every, min_labels
        self.l2, self.steps = l2, steps
        self.head: torch.nn.Linear | None = None
        self.trained_on: set[int] = set()
        self.probs: dict[int, float] = {}
        self._metrics: dict[str, float] = {}

    def _predict(self, keys: list[int]) -> np.ndarray:
        assert self.head is not None
        x = torch.from_numpy(self.encoder([self.texts[k] for k in keys]))
        with torch.no_grad():
            return torch.sigmoid(self.head(x).squeeze(-1)).numpy()

    def refresh(self) -> bool:
        new = [k for k in self.labels if k not in self.trained_on]
        classes = set(self.labels.values())
        if len(self.labels) >= self.min_labels and len(classes) == 2 and (
                self.head is None or len(new) >= self.retrain_every):
            self._train(new)
            self._dirty = True
        elif self.head is not None and self._dirty:
            unscored = [k for k in self.texts if k not in self.probs]
            if unscored:
                self.probs.update(zip(unscored, self._predict(unscored).tolist(), strict=True))
        return super().refresh()

    def _train(self, new: list[int]) -> None:
        if self.head is not None and new:  # prequential accuracy: judged before it learns them
            probs = self._predict(new)
            truth = np.array([self.labels[k] for k in new])
            self._metrics["heldout_accuracy"] = float(((probs > 0.5) == truth).mean())
        keys = list(self.labels)
        x = torch.from_numpy(self.encoder([self.texts[k] for k in keys]))
        y = torch.tensor([float(self.labels[k]) for k in keys])
        head = torch.nn.Linear(x.shape[1], 1)
        loss = _fit_linear(
            x, lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits, y),
            head, self.l2, self.steps)
        self.head = head
        self.trained_on = set(keys)
        with torch.no_grad():
            train_acc = float(((head(x).squeeze(-1) > 0).float() == y).float().mean())
        self._metrics.update(loss=loss, train_accuracy=train_acc, trained_labels=len(keys))
        all_keys = list(self.texts)
        self.probs = dict(zip(all_keys, self._predict(all_keys).tolist(), strict=True))

    def rewards(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for key, prob in self.probs.items():
            out[key] = prob if self.soft else float(prob > self.threshold)
        out.update((key, float(label)) for key, label in self.labels.items())
        return out

    def metrics(self) -> dict[str, float]:
        rewards = self.rewards()
        positive = float(np.mean([r > 0 for r in rewards.values()])) if rewards else 0.0
        return {**super().metrics(), **self._metrics, "rewarded_fraction": positive}


class RankingRewardModel(RewardModel):
    """Motif-style ranking: Bradley-Terry on pairwise preferences, normalised output.

    Preferences come from the labeler's ``compare(pairs)`` when it has one (an LLM asked which
    of two messages is better); otherwise they are derived from its label scores (higher score
    preferred, equal scores a tie).

    Args:
        encoder: ``encode(texts) -> (N, D)`` embeddings.
        pairs_per_round: pairs requested at once.
        retrain_every: new preferences that trigger retraining.
        min_preferences: preferences needed before the first model.
        threshold_quantile: normalised rewards below this quantile of the seen texts are set to
            0 (Motif keeps only the top of the reward distribution); 0 keeps all.
        l2: weight decay; steps: L-BFGS iterations per retraining.
        seed: pair-sampling seed.
    """

    name = "ranking"

    def __init__(self, encoder: Encoder, pairs_per_round: int = 32, retrain_every: int = 32,
                 min_preferences: int = 16, threshold_quantile: float = 0.5, l2: float = 1e-3,
                 steps: int = 100, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= threshold_quantile < 1.0:
            raise ValueError(f"ranking: threshold_quantile must be in [0, 1), "
                             f"got {threshold_quantile}")
        self.encoder = encoder
        self.pairs_per_round = pairs_per_round
        self.retrain_every, self.min_preferences = retrain_every, min_preferences
        self.threshold_quantile = threshold_quantile
        self.l2, self.steps = l2, steps
        self.rng = random.Random(seed)
        self.prefs: dict[tuple[int, int], float] = {}
        self.asked: set[tuple[int, int]] = set()
        self.trained_count = 0
        self.head: torch.nn.Linear | None = None
        self.normalised: dict[int, float] = {}
        self._rewards: dict[int, float] = {}
        self._metrics: dict[str, float] = {}

    def pairs_wanted(self) -> int:
        return self.pairs_per_round if len(self.texts) >= 2 else 0

    def sample_pairs(self, n: int, labelled_only: bool = False) -> list[tuple[str, str]]:
        """Up to ``n`` pairs never asked about; ``labelled_only`` for label-derived judgements."""
        pool = list(self.labels if labelled_only else self.texts)
        if len(pool) < 2:
            return []
        out: list[tuple[str, str]] = []
        for _ in range(4 * n):
            a, b = self.rng.sample(pool, 2)
            if (a, b) in self.asked or (b, a) in self.asked:
                continue
            self.asked.add((a, b))
            out.append((self.texts[a], self.texts[b]))
            if len(out) == n:
                break
        return out

    def preferences_from_scores(self, pairs: Sequence[tuple[str, str]]
                                ) -> list[tuple[str, str, float]]:
        """Judge pairs by label score (for labelers without ``compare``)."""
        out = []
        for a, b in pairs:
            sa, sb = self.scores.get(text_id(a)), self.scores.get(text_id(b))
            if sa is None or sb is None:
                continue
            out.append((a, b, 0.5 if sa == sb else float(sa > sb)))
        return out

    def add_preferences(self, prefs: Sequence[tuple[str, str, float]]) -> None:
        for a, b, pref in prefs:
            ka, kb = text_id(a), text_id(b)
            if not (ka and kb) or ka == kb:
                continue
            self.texts.setdefault(ka, a)
            self.texts.setdefault(kb, b)
            self.asked.add((ka, kb))
            self.prefs[(ka, kb)] = float(pref)

    def refresh(self) -> bool:
        due = len(self.prefs) - self.trained_count >= (
            self.min_preferences if self.head is None else self.retrain_every)
        if due and len(self.prefs) >= self.min_preferences:
            self._train()
            self._dirty = True
        if self.head is not None and self._dirty:
            self._normalise()
        return super().refresh()

    def _train(self) -> None:
        pairs = list(self.prefs)
        ids = sorted({k for pair in pairs for k in pair})
        index = {k: i for i, k in enumerate(ids)}
        x = torch.from_numpy(self.encoder([self.texts[k] for k in ids]))
        a = torch.tensor([index[p[0]] for p in pairs])
        b = torch.tensor([index[p[1]] for p in pairs])
        target = torch.tensor([self.prefs[p] for p in pairs])

        def bt_loss(scores: torch.Tensor) -> torch.Tensor:  # P(a > b) = sigmoid(r_a - r_b)
            return torch.nn.functional.binary_cross_entropy_with_logits(scores[a] - scores[b],
                                                                        target)

        head = torch.nn.Linear(x.shape[1], 1)
        loss = _fit_linear(x, bt_loss, head, self.l2, self.steps)
        self.head = head
        self.trained_count = len(pairs)
        with torch.no_grad():
            scores = head(x).squeeze(-1)
            decided = target != 0.5
            correct = ((scores[a] > scores[b]).float() == target)[decided]
        self._metrics.update(loss=loss, trained_preferences=len(pairs),
                             pair_accuracy=float(correct.float().mean()) if len(correct) else 0.0)

    def _normalise(self) -> None:
        """Standardise the scores of all seen texts, then zero those below the quantile."""
        assert self.head is not None
        keys = list(self.texts)
        with torch.no_grad():
            raw = self.head(torch.from_numpy(self.encoder([self.texts[k] for k in keys])))
        raw = raw.squeeze(-1).numpy().astype(np.float64)
        mean, std = float(raw.mean()), float(raw.std())
        z = (raw - mean) / (std if std > 1e-8 else 1.0)
        cut = float(np.quantile(z, self.threshold_quantile)) if self.threshold_quantile else -np.inf
        self.normalised = dict(zip(keys, z.tolist(), strict=True))
        self._rewards = {k: (v if v >= cut else 0.0) for k, v in self.normalised.items()}
        self._metrics.update(raw_mean=mean, raw_std=std, threshold=cut)

    def rewards(self) -> dict[int, float]:
        return dict(self._rewards)

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), **self._metrics, "preferences": len(self.prefs)}


_MODELS: dict[str, type[RewardModel]] = {
    "retrieval": RetrievalRewardModel,
    "classification": ClassificationRewardModel,
    "ranking": RankingRewardModel,
}


def make_reward_model(name: str, encoder: Encoder | None = None, **kwargs: Any) -> RewardModel:
    """Build a reward model by name; ``encoder`` is needed by classification and ranking.

    Raises:
        ValueError: unknown name or bad option (named).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown reward model {name!r}; choose one of {', '.join(_MODELS)}")
    if name != "retrieval" and encoder is None:
        from llm_labeler.encoder import TextEncoder

        encoder = TextEncoder().encode
    try:
        return _MODELS[name](encoder, **kwargs)
    except TypeError as err:
        raise ValueError(f"llm_labeler.reward_model_kwargs for {name!r}: {err}") from None
