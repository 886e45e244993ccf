"""Regex labeler and the NetHack text helpers (clause splitting, prompt detection)."""

from __future__ import annotations

import pytest

from llm_labeler.backends.rules import NETHACK_RULES, RuleLabeler, is_prompt, split_clauses
from llm_labeler.protocol import Labeler


@pytest.mark.parametrize(("text", "clauses"), [
    ("You kill the newt!  It's a wall.", ["You kill the newt!", "It's a wall."]),
    ("One.", ["One."]),
    ("   ", []),
    ("Hello--More--", ["Hello"]),
    ('You read: "Want a hint?  Zap it!".  The gnome bites!',
     ['You read: "Want a hint?  Zap it!".', "The gnome bites!"]),
])
def test_split_clauses(text: str, clauses: list[str]) -> None:
    assert split_clauses(text) == clauses


@pytest.mark.parametrize(("clause", "prompt"), [
    ("What do you want to eat? [fg or ?*]", True),
    ("Really attack the kitten? [yn] (n)", True),
    ("Do you want your possessions identified? [ynq] (n)", True),
    ("In what direction?", True),
    ("Which ring, Right or Left? [rl]", True),
    ("Afraid of thieves?", False),  # a question, but not a prompt (fortune text)
    ("You kill the newt!", False),
    ("You see here a ring.", False),
])
def test_is_prompt(clause: str, prompt: bool) -> None:
    assert is_prompt(clause) is prompt


def test_default_nethack_rules() -> None:
    labeler = RuleLabeler()
    assert isinstance(labeler, Labeler)
    cases = {
        "You kill the gnome!  It's a wall.": 1,
        "The hill orc is killed!": 1,
        "$ - 12 gold pieces.": 1,
        "q - a moonstone ring.": 1,
        "r - 3 rocks.": 0,
        "You see here a granite ring.": 1,
        "You see here a gnome corpse.": 0,
        "You see here a long sword.": 0,
        "You see here a long sword named Excalibur.": 1,
        "The kitten picks up a moonstone ring.": 0,
        "You find a hidden door.": 1,
        "What do you want to eat? [fg or ?*]": 0,
        "You hear a slow drip.": 0,
        "You kick at empty space.": 0,
    }
    out = labeler.label(list(cases))
    assert {lab.text: lab.label for lab in out} == cases
    assert all(lab.rationale for lab in out)
    assert out[0].rationale.startswith("positive")


def test_custom_rules_from_config() -> None:
    labeler = RuleLabeler.from_config({
        "positive": [r"\bkey\b", r"^open"],
        "negative": [r"\bgrey\b"],
        "default": 0,
        "default_score": 0.25,
        "split": False,
    })
    out = labeler.label(["pick up the blue key", "pick up the grey key", "go to the ball",
                         "open the door"])
    assert [lab.label for lab in out] == [1, 0, 0, 1]
    assert [lab.score for lab in out] == [1.0, 0.0, 0.25, 1.0]


def test_default_label_one() -> None:
    labeler = RuleLabeler(positive=[], negative=["wall"], default=1)
    assert [lab.label for lab in labeler.label(["It's a wall.", "Anything else."])] == [0, 1]


def test_rules_are_case_insensitive_by_default() -> None:
    assert RuleLabeler(positive=["kill"]).label(["KILL"])[0].label == 1
    assert RuleLabeler(positive=["kill"], ignore_case=False).label(["KILL"])[0].label == 0


@pytest.mark.parametrize(("config", "message"), [
    ({"positive": ["("]}, "bad positive pattern"),
    ({"positive": "kill"}, "must be a list"),
    ({"default": 2}, "default must be 0 or 1"),
    ({"default_score": 1.5}, "default_score"),
    ({"postive": ["x"]}, "unknown keys"),
])
def test_bad_config_is_rejected(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleLabeler.from_config(config)


def test_shipped_rules_compile() -> None:
    labeler = RuleLabeler(positive=NETHACK_RULES["positive"], negative=NETHACK_RULES["negative"])
    assert len(labeler.positive) == len(NETHACK_RULES["positive"])
