"""Regular-expression labeler, plus the NetHack text helpers other backends share.

NetHack joins the messages of one turn with two spaces (``"You kill the newt!  It's a
wall."``), so a text is split into clauses and each clause is judged on its own: a text is
interesting if any clause is. Within a clause, negative patterns veto positive ones.

Config (YAML or a dict)::

    labeler: rules
    labeler_options:
      positive: ['^You kill\\b', '\\bis killed!']
      negative: ['^The .* (picks up|drops) ']
      default: 0
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from llm_labeler.protocol import Label
from llm_labeler.registry import register_labeler

__all__ = ["NETHACK_RULES", "RuleLabeler", "is_prompt", "split_clauses"]

# Two or more spaces end a NetHack message; "--More--" also separates messages.
_CLAUSE_BREAK = re.compile(r"\s{2,}|--More--")

_PROMPT_PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"\[[^\]]*\bor \?\*\]",                     # object menu: [abc or ?*]
    r"\[(y|yn|ny|ynq|nyq|ynaq|[a-z]{1,6}q)\]",     # choice menus: [yn] [ynq] [ynaq] [rlq]
    r"^(what|which|where|who|how|why|in what|to what|call|name|really|shall|do|does|are|is|"
    r"can|will|would|continue|pick|adjust)\b[^\"]*\?(\s*\[[^\]]*\])?(\s*\(\w\))?$",
    r"\(For instructions type a \?\)",
)]


def split_clauses(text: str) -> list[str]:
    """Split a NetHack message line into its messages.

    Splits on runs of two or more spaces and on ``--More--`` outside double quotes (engravings
    and fortune texts quote other text, which may contain double spaces).

    Args:
        text: one text as the agent saw it.

    Returns:
        Non-empty stripped clauses, in order; ``[]`` for a blank text.
    """
    clauses, start = [], 0
    for match in _CLAUSE_BREAK.finditer(text):
        if text.count('"', 0, match.start()) % 2 == 0:
            clauses.append(text[start:match.start()])
            start = match.end()
    clauses.append(text[start:])
    return [c.strip() for c in clauses if c.strip()]


def is_prompt(clause: str) -> bool:
    """True for a question or menu prompt (``[yn]``, ``What do you want to eat? [...]``)."""
    clause = clause.strip()
    return any(p.search(clause) for p in _PROMPT_PATTERNS)


# Item words shared by the rules below. Appearance names follow NetHack 3.6 objects.c.
_VALUABLE = (r"rings?|amulets?|wands?|gems?|spellbooks?|scrolls?|potions?|"
             r"armou?r|mail|mithril-coat|helm|helmet|hat|cap|cornuthaum|fedora|shield|"
             r"cloak|cape|cope|pall|robe|apron|boots|shoes|gloves|gauntlets|jacket|shirt|"
             r"dragon scales|named|luckstone|diamond|ruby|emerald|sapphire|opal")
_JUNK = (r"rocks?|stones?|boulders?|corpses?|darts?|arrows?|bolts?|crude|orcish dagger|"
         r"orcish arrows?|shuriken|eggs?|tins?|boxes|box|chest|statue|iron chain|glass")

#: Default rule set for NetHack messages (labelling rule of ``shared/data/README.md``).
NETHACK_RULES: dict[str, Any] = {
    "positive": [
        r"^You (kill|destroy|hit|smite|bite|kick|strike|bash)\b(?! at)",  # you hit or kill
        r"\bis (killed|destroyed)!",
        r"staggers from your powerful strike",
        r"^[a-zA-Z$#] - ",                                             # item or gold acquired
        rf"^(You see|You feel|There is|There are) .*\b({_VALUABLE})\b.*here",
        rf"^You (see|feel) here .*\b({_VALUABLE})\b",
        r"^There is a (staircase|ladder) (up|down) here",
        r"^You find a (hidden|secret) (door|passage)",
        r"^You succeed in (forcing|picking|opening) the lock",
        r"^You finish eating\b|\bis delicious!|really hit the spot",
        r"^You feel (strong|tough|agile|smart|wise|charismatic|quick)!",
        r"^You feel (especially healthy|full of hot air|a momentary chill|wide awake)",
        r"^You must have been (exercising|leading a healthy|working on your|very observant)",
        r"^Welcome to experience level",
    ],
    "negative": [
        rf"^[a-zA-Z#] - .*\b({_JUNK})\b",       # junk acquired
        rf"^You (see|feel) here .*\b({_JUNK})\b(?!.*named)",
        r"^(The|Your) [\w -]+ (picks up|drops|eats) ",  # monsters and pets moving items
        r"^You (see|feel) here .*(weapon|dagger|sword|axe|spear|bow)\b(?!.*named)",
    ],
    "default": 0,
}


def _compile(patterns: Sequence[str], ignore_case: bool, kind: str) -> list[re.Pattern[str]]:
    if isinstance(patterns, str) or not isinstance(patterns, Sequence):
        raise ValueError(f"rules: {kind} must be a list of regular expressions")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE if ignore_case else 0))
        except re.error as err:
            raise ValueError(f"rules: bad {kind} pattern {pattern!r}: {err}") from None
    return compiled


@register_labeler("rules")
class RuleLabeler:
    """Label texts with lists of regular expressions.

    Each clause (see :func:`split_clauses`) is a prompt (0), else matches a negative pattern
    (0), else a positive pattern (1), else gets ``default``. A text is 1 if any clause is 1.
    """

    name = "rules"

    def __init__(self, *, positive: Sequence[str] | None = None,
                 negative: Sequence[str] | None = None, default: int | None = None,
                 default_score: float | None = None, ignore_case: bool = True,
                 split: bool = True, prompts_are_negative: bool = True) -> None:
        """Build a rule labeler; with no patterns given, :data:`NETHACK_RULES` is used.

        Args:
            positive: regexes (``re.search``) that mark a clause interesting.
            negative: regexes that mark a clause uninteresting; they win over ``positive``.
            default: label of a clause no pattern matches (0 or 1).
            default_score: score of such a clause; ``float(default)`` if None.
            ignore_case: compile patterns case-insensitively.
            split: judge NetHack clauses separately (else the whole text is one clause).
            prompts_are_negative: clauses that are prompts are 0 before any pattern is tried.

        Raises:
            ValueError: a pattern does not compile, or ``default``/``default_score`` is out of
                range.
        """
        if positive is None and negative is None:
            positive, negative = NETHACK_RULES["positive"], NETHACK_RULES["negative"]
            default = NETHACK_RULES["default"] if default is None else default
        default = 0 if default is None else default
        if default not in (0, 1):
            raise ValueError(f"rules: default must be 0 or 1, got {default!r}")
        score = float(default) if default_score is None else float(default_score)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"rules: default_score must be in [0, 1], got {default_score!r}")
        self.positive = _compile(positive or [], ignore_case, "positive")
        self.negative = _compile(negative or [], ignore_case, "negative")
        self.default, self.default_score = int(default), score
        self.split, self.prompts_are_negative = split, prompts_are_negative

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RuleLabeler:
        """Build from a YAML-like mapping with the keyword arguments of ``__init__``.

        Raises:
            ValueError: an unknown key (listing the known ones) or a bad value.
        """
        known = {"positive", "negative", "default", "default_score", "ignore_case", "split",
                 "prompts_are_negative"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"rules: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**config)

    def _clause(self, clause: str) -> tuple[int, float, str]:
        if self.prompts_are_negative and is_prompt(clause):
            return 0, 0.0, "prompt"
        for pattern in self.negative:
            if pattern.search(clause):
                return 0, 0.0, f"negative: {pattern.pattern}"
        for pattern in self.positive:
            if pattern.search(clause):
                return 1, 1.0, f"positive: {pattern.pattern}"
        return self.default, self.default_score, "default"

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label each text; ``rationale`` names the deciding rule. See :class:`Labeler`."""
        labels = []
        for text in texts:
            clauses = split_clauses(text) if self.split else [text.strip()]
            judged = [self._clause(c) for c in clauses] or [(0, 0.0, "empty")]
            label, score, why = max(judged, key=lambda j: (j[0], j[1]))
            labels.append(Label(text=text, label=label, score=score, rationale=why,
                                backend=self.name))
        return labels
