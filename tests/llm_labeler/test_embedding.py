"""The embedded MiniLM labeler: prompts, quality on the dev set, on random-play trivia and on
held-out messages written by the same rule (a guard against memorising the dev set)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from llm_labeler.backends.embedding import (
    DEFAULT_NEGATIVE_ANCHORS,
    DEFAULT_POSITIVE_ANCHORS,
    GRIDWORLD_NEGATIVE_ANCHORS,
    GRIDWORLD_POSITIVE_ANCHORS,
    EmbeddingLabeler,
)
from llm_labeler.backends.rules import split_clauses
from llm_labeler.evaluate import Record, evaluate, load_jsonl
from llm_labeler.protocol import Labeler
from llm_labeler.registry import make_labeler

# tests/llm_labeler/ -> tests/ -> main/ (the repository) -> /work, which holds shared/
DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "nethack_messages_dev.jsonl"

# Messages an agent sees in random play: mostly prompts and trivia (two real positives).
RANDOM_PLAY = [
    "What do you want to eat? [fg or ?*]", "What do you want to read? [h or ?*]",
    "What do you want to throw? [$abc or ?*]", "Really attack the kitten? [yn] (n)",
    "In what direction?", "Do you want your possessions identified? [ynq] (n)",
    "Are you sure you want to pray? [yn] (n)", "--More--", "You see here a rock.",
    "You see here 2 rocks.", "You see here a newt corpse.", "You see here a crossbow bolt.",
    "The kitten moves.", "The kitten picks up a rock.", "The little dog drops a corpse.",
    "You hear some noises.", "You hear the splashing of a naiad.", "You hear a door open.",
    "It's a wall.", "It's solid stone.", "You stop.  Your kitten is in the way.",
    "You swap places with your kitten.", "The jackal bites!", "The newt misses!",
    "You miss the jackal.", "The grid bug bites!  You get zapped!", "There is a doorway here.",
    "There is an open door here.", "This door is locked.", "WHAMM!!",
    "You are beginning to feel hungry.", "You feel a bit steadier now.", "You can move again.",
    "There is a squeaky board here.", "A trap door opens up under you!", "You fall into a pit!",
    "Never mind.", "You don't have anything to eat.", "Nothing happens.",
    "They say that you can't trust a watchman.", "You kill the newt!", "$ - 3 gold pieces.",
]

# Written by the labelling rule of shared/data/README.md, not taken from the dev file.
HELD_OUT = [
    ("You kill the gnome lord!", 1), ("The sewer rat is killed!", 1),
    ("You destroy the kobold zombie!", 1), ("You hit the jackal.  The jackal bites!", 1),
    ("f - a scroll labeled ELBIB YLOH.", 1), ("$ - 23 gold pieces.", 1),
    ("q - a moonstone ring.", 1), ("There is a staircase down here.", 1),
    ("You find a hidden passage.", 1), ("You find a hidden door.", 1),
    ("You succeed in forcing the lock.", 1), ("You finish eating the food ration.", 1),
    ("You feel strong!  You must have been exercising diligently.", 1),
    ("Welcome to experience level 3.", 1), ("You see here a moonstone ring.", 1),
    ("You see here an oval amulet.", 1), ("You see here an oak wand.", 1),
    ("You see here a pair of padded gloves.", 1), ("You see here an elven mithril-coat.", 1),
    ("You see here a white gem.", 1), ("What do you want to wield? [- abc or ?*]", 0),
    ("Really attack the little dog? [yn] (n)", 0), ("In what direction?", 0),
    ("You miss the gnome.", 0), ("The giant bat bites!", 0),
    ("The kitten picks up a moonstone ring.", 0), ("You see here 3 rocks.", 0),
    ("You see here a gnome corpse.", 0), ("You hear the footsteps of a guard on patrol.", 0),
    ("They say that a gnome with a wand of wishing is a dangerous thing.", 0),
    ("There is a bear trap here.", 0), ("WHAMM!!", 0), ("This door is locked.", 0),
    ("You see here an orcish dagger.", 0), ("You are beginning to feel weak.", 0),
    ("The pony drops a blue gem.  You hear bubbling water.", 0),
    ("You kill the acid blob!", 1), ("The yellow mold is killed!", 1),
    ("You hit the homunculus.  The homunculus bites!", 1),
    ("The coyote is killed!  You hear a door open.", 1), ("You destroy the ghoul!", 1),
    ("i - a blue potion.", 1), ("x - an ivory wand.", 1), ("c - 10 darts.", 0),
    ("y - a newt corpse.", 0), ("z - 2 rocks.", 0), ("$ - 112 gold pieces.", 1),
    ("b - a pair of riding gloves.", 1), ("You see here a crested helmet.", 1),
    ("You see here a pair of snow boots.", 1), ("You see here a faded pall.", 1),
    ("You see here a studded leather armor.", 1),
    ("You see here a scroll labeled VERR YED HORRE.", 1), ("You see here a granite ring.", 1),
    ("You see here a triangular amulet.", 1), ("You see here an emerald.", 1),
    ("You see here a dusty spellbook.", 1), ("You see here a balsa wand.", 1),
    ("You see here a mace.", 0), ("You see here an axe.", 0), ("You see here a bullwhip.", 0),
    ("You see here a hill orc corpse.", 0), ("You see here 3 flint stones.", 0),
    ("You see here an egg.", 0), ("You see here a melon.", 0),
    ("You see here a skeleton key.", 0), ("You see here a tin opener.", 0),
    ("There is a ladder down here.", 1), ("You find a hidden passage.  The kitten moves.", 1),
    ("You finish eating the apple.", 1), ("You feel smart!", 1),
    ("Welcome to experience level 7.", 1), ("What do you want to drink? [f or ?*]", 0),
    ("Pick up what? --More--", 0), ("Really quit? [yn] (n)", 0),
    ("You kick at empty space.", 0), ("Dumb move!  You strain a muscle.", 0),
    ("You cannot pass through the bars.", 0), ("You can't go down here.", 0),
    ("You see no door there.", 0), ("The kitten picks up a triangular amulet.", 0),
    ("The large dog drops a gold piece.", 0), ("The little dog eats a sewer rat corpse.", 0),
    ("You swap places with your pony.", 0), ("The gnome misses!", 0), ("The hill orc hits!", 0),
    ("You miss the hill orc.", 0), ("The floating eye misses the little dog.", 0),
    ("The kitten bites the gecko.", 0), ("You hear a crunching sound.", 0),
    ("A dart shoots out at you!  The dart misses you.", 0),
    ("You are momentarily blinded by a flash of light!", 0), ("You feel hungry.", 0),
    ("You feel feverish.", 0), ("They say that nobody knows what the Amulet does.", 0),
    ("A fool and his gold are soon parted.", 0), ('You read: "Elbereth".', 0),
    ("You kill the poor little dog!", 1), ("v - a moonstone ring.", 1),
    ("You see here an ice box.", 0), ("You see here a long worm tail.", 0),
    ("Do you want to keep the save file? [yn] (n)", 0),
    ("You don't have enough room to maneuver.", 0), ("The door is locked.", 0),
    ("You hear the tones of courtly conversation.", 0), ("You stop fainting.", 0),
    ("You feel quick!", 1), ("Eat your vegetables, they are good for your constitution.", 0),
    ('Something is written here in the dust.  You read: "ad aquarium".', 0),
]


@pytest.fixture(scope="module")
def labeler() -> EmbeddingLabeler:
    return EmbeddingLabeler()


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9$]+", text.lower()))


def test_is_a_labeler(labeler: EmbeddingLabeler) -> None:
    assert isinstance(labeler, Labeler)
    out = labeler.label(["You kill the gnome!", "You kill the gnome!", ""])
    assert [lab.text for lab in out] == ["You kill the gnome!", "You kill the gnome!", ""]
    assert out[0] == out[1]
    assert out[2].label == 0 and out[2].score == 0.0
    assert all(lab.backend == "embedding" and lab.model for lab in out)
    assert labeler.label([]) == []


@pytest.mark.parametrize("prompt", [
    "What do you want to eat? [fg or ?*]",
    "Really attack the gnome? [yn] (n)",
    "In what direction?",
    "--More--",
    "Do you want to add to the current engraving? [ynq] (y)",
    "What do you want to wield? [- abc or ?*]  --More--",
    "Which ring, Right or Left? [rl]",
])
def test_prompts_score_zero(labeler: EmbeddingLabeler, prompt: str) -> None:
    (lab,) = labeler.label([prompt])
    assert (lab.label, lab.score) == (0, 0.0), lab.rationale


def test_prompt_does_not_hide_progress_in_the_same_text(labeler: EmbeddingLabeler) -> None:
    (lab,) = labeler.label(["You kill the gnome!  Continue eating? [yn] (n)"])
    assert lab.label == 1


def dev_set() -> Path:
    """The shared dev set; missing is a failure, not a skip: CI always lays ../shared beside
    the clone, so a skip would only hide a broken path."""
    if not DEV.is_file():
        pytest.fail(f"dev set not found at {DEV}: the tests need ../shared/data beside the "
                    "repository")
    return DEV


def test_anchors_do_not_copy_the_dev_set() -> None:
    dev = {_words(c) for r in load_jsonl(dev_set()) for c in [r.text, *split_clauses(r.text)]}
    copied = [a for a in DEFAULT_POSITIVE_ANCHORS + DEFAULT_NEGATIVE_ANCHORS if _words(a) in dev]
    assert not copied


def test_dev_set_accuracy_and_auc(labeler: EmbeddingLabeler) -> None:
    result = evaluate(labeler, load_jsonl(dev_set()))
    print(f"\ndev: accuracy {result.accuracy:.3f} AUC {result.auc:.3f} positive rate "
          f"{result.positive_rate:.3f} throughput {result.throughput_texts_per_s:.0f}/s")
    assert result.accuracy >= 0.88
    assert result.auc >= 0.85


def test_random_play_positive_rate_is_low(labeler: EmbeddingLabeler) -> None:
    labels = labeler.label(RANDOM_PLAY)
    rate = sum(lab.label for lab in labels) / len(labels)
    print(f"\nrandom-play positive rate {rate:.3f} "
          f"({[lab.text for lab in labels if lab.label]})")
    assert rate <= 0.25


def test_held_out_messages(labeler: EmbeddingLabeler) -> None:
    result = evaluate(labeler, [Record(text, label) for text, label in HELD_OUT])
    wrong = [(lab.text, lab.score) for lab, (_, y) in zip(labeler.label([t for t, _ in HELD_OUT]),
                                                            HELD_OUT, strict=True)
             if lab.label != y]
    print(f"\nheld-out: accuracy {result.accuracy:.3f} AUC {result.auc:.3f}; wrong: {wrong}")
    assert result.accuracy >= 0.8


def test_cache_reuses_embeddings(labeler: EmbeddingLabeler) -> None:
    texts = ["You kill the hobbit!  You hear a slow drip.", "You see here a fedora."]
    first = labeler.label(texts)
    hits = labeler.cache_stats["hits"]
    assert labeler.label(texts) == first
    assert labeler.cache_stats["hits"] >= hits + 3  # three distinct clauses


def test_lru_cache_evicts_oldest() -> None:
    small = EmbeddingLabeler(cache_size=2, positive_anchors=["a kill"],
                             negative_anchors=["a wall"])
    small.label(["one.", "two.", "three."])
    assert small.cache_stats["size"] == 2


def test_custom_anchors_label_babyai_missions() -> None:
    """Anchors and cues are configuration: the same labeler serves BabyAI missions."""
    babyai = make_labeler("embedding", use_cues=False, margin=0.0,
                          positive_anchors=["pick up the key", "open the locked door"],
                          negative_anchors=["go to the wall", "turn around"])
    out = babyai.label(["pick up the blue key", "go to the grey wall"])
    assert [lab.label for lab in out] == [1, 0]
    assert out[0].score > out[1].score


def test_gridworld_anchors_reward_progress_in_minigrid_captions() -> None:
    """``anchors: gridworld`` (configs/keycorridor_oni.yaml) against what the
    ``minigrid_events`` source says: getting things and unlocking the way are progress,
    no-ops, sightings and dropping what one holds are not."""
    grid = make_labeler("embedding", anchors="gridworld", use_cues=False)
    progress = ["You picked up a yellow key.", "You picked up a red ball.",
                "You picked up a green key.", "You unlocked the yellow door.",
                "You unlocked the purple door.", "You opened the green box. It held a red key."]
    idle = ["Nothing happens.", "You see a blue box.", "You see a yellow key.",
            "You see a red door.", "You see a green ball.", "You see the lava.",
            "You dropped the yellow key.", "You dropped the red ball."]
    labels = grid.label(progress + idle)
    assert [lab.label for lab in labels] == [1] * len(progress) + [0] * len(idle), [
        (lab.text, round(lab.score, 2)) for lab in labels]


def test_gridworld_anchors_name_no_colour_object_or_task() -> None:
    """The description is task-agnostic: it cannot be a caption -> reward table in disguise."""
    # "your goal" is the generic aim; "the goal" is MiniGrid's goal tile
    words = re.compile(r"\b(?:red|green|blue|purple|yellow|grey|key|door|ball|box|the goal|"
                       r"lava)s?\b", re.IGNORECASE)
    for anchor in GRIDWORLD_POSITIVE_ANCHORS + GRIDWORLD_NEGATIVE_ANCHORS:
        assert not words.search(anchor), anchor


def test_cues_can_be_switched_off(labeler: EmbeddingLabeler) -> None:
    plain = EmbeddingLabeler(use_cues=False)
    text = "r - 5 rocks."
    (with_cues,), (without,) = labeler.label([text]), plain.label([text])
    assert with_cues.score < without.score
    assert "junk item" in (with_cues.rationale or "")


@pytest.mark.parametrize("kwargs", [
    {"positive_anchors": []},
    {"threshold": 1.0},
    {"scale": 0.0},
    {"cue_weights": {"no_such_cue": 1.0}},
    {"anchors": "no_such_preset"},
])
def test_bad_configuration_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EmbeddingLabeler(**kwargs)


def test_reward_model_shares_the_labelers_cached_encoder(labeler: EmbeddingLabeler) -> None:
    """One MiniLM and one cache serve the labeler and the distilled reward model."""
    from llm_labeler.service import _encoder_for

    encode = _encoder_for(labeler)
    assert encode.__self__ is labeler.text_encoder
    first = encode(["You find a hidden passage."])
    hits = labeler.cache_stats["hits"]
    np.testing.assert_array_equal(encode(["You find a hidden passage."]), first)
    assert labeler.cache_stats["hits"] == hits + 1
