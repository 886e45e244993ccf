"""Reward models on a small deterministic encoder (word features), so each assertion is about
the model's logic: what gets rewarded, when it retrains, how ranking output is normalised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from explorer.core.texts import text_id
from llm_labeler.reward_models import (
    ClassificationRewardModel,
    RankingRewardModel,
    RetrievalRewardModel,
    make_reward_model,
)

WORDS = ("kill", "find", "wall", "see", "door", "hear")


def encode(texts: Sequence[str]) -> np.ndarray:
    """One feature per word plus a bias feature; rows unit-normalised like MiniLM's."""
    x = np.array([[float(w in t.lower()) for w in WORDS] + [1.0] for t in texts], np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if len(x) else x.reshape(0, 7)


GOOD = ["You kill the newt!", "You find a ring.", "You kill the jackal!", "You find a wand."]
BAD = ["It's a wall.", "You see a door.", "You hear a door open.", "You see a wall."]


def _labels(texts: Sequence[str], label: int) -> list[tuple[str, int, float]]:
    return [(t, label, float(label)) for t in texts]


def test_retrieval_rewards_only_labelled_texts() -> None:
    model = RetrievalRewardModel()
    model.add_texts(GOOD + BAD)
    model.add_labels(_labels(GOOD[:1], 1) + _labels(BAD[:1], 0))
    assert model.refresh()
    ids, rewards = model.table()
    assert dict(zip(ids.tolist(), rewards.tolist(), strict=True)) == {
        text_id(GOOD[0]): 1.0, text_id(BAD[0]): 0.0}
    assert not model.refresh()  # nothing new: the table did not change


def test_classification_rewards_unlabelled_texts_and_retrains_when_due() -> None:
    model = ClassificationRewardModel(encode, min_labels=4, retrain_every=3)
    model.add_texts(GOOD + BAD)
    model.add_labels(_labels(GOOD[:2], 1) + _labels(BAD[:2], 0))
    model.refresh()
    rewards = model.rewards()
    assert rewards[text_id("You kill the jackal!")] == 1.0  # unlabelled, rewarded
    assert rewards[text_id("You see a wall.")] == 0.0
    assert model.metrics()["trained_labels"] == 4
    model.add_labels(_labels(GOOD[2:3], 1))
    model.refresh()
    assert model.metrics()["trained_labels"] == 4  # 1 new label < retrain_every
    model.add_labels(_labels(BAD[2:4], 0))
    model.refresh()
    metrics = model.metrics()
    assert metrics["trained_labels"] == 7
    assert metrics["heldout_accuracy"] == 1.0  # judged on the 3 new labels before training
    model.add_texts(["You kill the lichen!"])
    model.refresh()
    assert model.rewards()[text_id("You kill the lichen!")] == 1.0  # scored on arrival


def test_classification_waits_for_both_classes() -> None:
    model = ClassificationRewardModel(encode, min_labels=2)
    model.add_texts(GOOD)
    model.add_labels(_labels(GOOD, 1))
    model.refresh()
    assert model.head is None and set(model.rewards()) == {text_id(t) for t in GOOD}


def test_soft_classification_rewards_probabilities() -> None:
    model = ClassificationRewardModel(encode, min_labels=4, soft=True)
    model.add_texts(GOOD + BAD + ["You kill a wall."])
    model.add_labels(_labels(GOOD[:2], 1) + _labels(BAD[:2], 0))
    model.refresh()
    mixed = model.rewards()[text_id("You kill a wall.")]
    assert 0.0 < mixed < 1.0


def test_ranking_standardises_then_keeps_the_top_quantile() -> None:
    model = RankingRewardModel(encode, min_preferences=10, threshold_quantile=0.5, seed=1)
    model.add_texts(GOOD + BAD)
    model.add_labels(_labels(GOOD, 1) + _labels(BAD, 0))
    prefs = model.preferences_from_scores(model.sample_pairs(28, labelled_only=True))
    assert all(p == 0.5 for a, b, p in prefs if (a in GOOD) == (b in GOOD))
    assert all(p == float(a in GOOD) for a, b, p in prefs if (a in GOOD) != (b in GOOD))
    model.add_preferences(prefs)
    model.refresh()
    z = np.array(list(model.normalised.values()))
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0, abs=1e-6)
    rewards = model.rewards()
    assert all(rewards[text_id(t)] > 0 for t in GOOD)
    assert all(rewards[text_id(t)] == 0.0 for t in BAD)
    assert model.metrics()["pair_accuracy"] == 1.0
    asked = {frozenset(p) for p in (prefs_pair[:2] for prefs_pair in prefs)}
    again = model.sample_pairs(28, labelled_only=True)
    assert not asked & {frozenset(p) for p in again}  # a pair is never asked twice


def test_ranking_without_threshold_keeps_every_normalised_reward() -> None:
    model = RankingRewardModel(encode, min_preferences=4, threshold_quantile=0.0)
    model.add_preferences([(g, b, 1.0) for g, b in zip(GOOD, BAD, strict=True)])
    model.refresh()
    rewards = np.array(list(model.rewards().values()))
    assert (rewards < 0).any() and abs(rewards.mean()) < 1e-6


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="reward_model_kwargs for 'classification'"):
        make_reward_model("classification", encode, treshold=0.5)
    with pytest.raises(ValueError, match="unknown reward model"):
        make_reward_model("ranker", encode)
    with pytest.raises(ValueError, match="threshold_quantile"):
        RankingRewardModel(encode, threshold_quantile=1.5)
