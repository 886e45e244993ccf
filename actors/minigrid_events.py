"""MiniGrid event captions: what happened at each step, read from the agent's own view.

ONI needs text to label. MiniGrid shows none but its mission, so this source captions the
world's state changes, as a narrator would: "You picked up a yellow key.", "You unlocked the
yellow door.", "You see a blue box.", "Nothing happens.". The captions describe; they never
say what is worth reward: that is the labeler's call alone.

Everything is read from the 7x7 egocentric ``image`` (object, colour, state ids per cell,
indexed ``[x, y]``, the agent at ``(3, 6)`` facing ``(3, 5)``), which EnvPool and gymnasium
MiniGrid both return: the agent's own cell shows what it carries, the cell in front what it
acts on. When nothing but those two cells changed, the agent neither moved nor turned, so a
change there was its doing (pick up, drop, toggle). Stateful: one instance per actor, told of
episode ends through :meth:`end_episodes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MiniGridEvents"]

# MiniGrid's id tables (minigrid.core.constants)
OBJECTS = ("unseen", "empty", "wall", "floor", "door", "key", "ball", "box", "goal", "lava",
           "agent")
COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
DOOR_OPEN, DOOR_CLOSED, DOOR_LOCKED = 0, 1, 2

AGENT_CELL = (3, 6)
FRONT_CELL = (3, 5)
#: objects worth a "you see" caption the first time a (type, colour) enters the view
NOTABLE = frozenset({"door", "key", "ball", "box", "goal", "lava"})

_DOOR = OBJECTS.index("door")
_BOX = OBJECTS.index("box")
_EMPTY = OBJECTS.index("empty")
_UNSEEN = OBJECTS.index("unseen")
_NOTABLE_IDS = np.array([OBJECTS.index(kind) for kind in sorted(NOTABLE)])


def _name(cell: np.ndarray) -> str:
    """``yellow key`` for a cell's (object, colour); the goal and lava have one colour."""
    kind = OBJECTS[int(cell[0])] if int(cell[0]) < len(OBJECTS) else "thing"
    if kind in ("goal", "lava"):
        return kind
    color = COLORS[int(cell[1])] if int(cell[1]) < len(COLORS) else "strange"
    return f"{color} {kind}"


def _article(name: str) -> str:
    return "the" if name in ("goal", "lava") else "a"


def interaction(before: np.ndarray, after: np.ndarray) -> str | None:
    """The caption of what the agent did to its own or its front cell, if it stood still.

    Args:
        before: ``(7, 7, 3)`` view before the step.
        after: ``(7, 7, 3)`` view after it.

    Returns:
        ``"Nothing happens."`` for an unchanged view, a sentence for a pick-up, drop or
        toggle, or None when the agent moved or turned (the view moved under it). A turn
        is also caught by the caller's direction check; a step forward in a room so large
        that no wall is in view looks like "nothing happens" (the view cannot tell).
    """
    # cells seen in both views, but the two the agent acts on: a door that opens or closes
    # shows or hides what is behind it (unseen <-> seen) without the agent moving
    both = (before[..., 0] != _UNSEEN) & (after[..., 0] != _UNSEEN)
    both[AGENT_CELL] = both[FRONT_CELL] = False
    if not np.array_equal(before[both], after[both]):
        return None  # moved or turned
    held0, held1 = before[AGENT_CELL], after[AGENT_CELL]
    front0, front1 = before[FRONT_CELL], after[FRONT_CELL]
    if np.array_equal(held0, held1) and np.array_equal(front0, front1):
        return "Nothing happens."
    if held0[0] == _EMPTY and held1[0] != _EMPTY:
        return f"You picked up a {_name(held1)}."
    if held0[0] != _EMPTY and held1[0] == _EMPTY:
        return f"You dropped the {_name(held0)}."
    if front0[0] == _DOOR and front1[0] == _DOOR and front0[2] != front1[2]:
        door = _name(front1)
        if front1[2] == DOOR_OPEN:
            return (f"You unlocked the {door}." if front0[2] == DOOR_LOCKED
                    else f"You opened the {door}.")
        return f"You closed the {door}."
    if front0[0] == _BOX and front1[0] != _BOX:
        found = "" if front1[0] == _EMPTY else f" It held a {_name(front1)}."
        return f"You opened the {_name(front0)}.{found}"
    return None


class MiniGridEvents:
    """Text source ``minigrid_events``: one caption per env and step ("" when nothing new).

    A caption is the step's interaction (see :func:`interaction`) followed by a "You see
    ..." sentence for each notable (type, colour) entering the view for the first time this
    episode; with ``text.units: sentences`` each sentence is labelled on its own.
    """

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None  # (B, 7, 7, 3) last view per env
        self.fresh: np.ndarray | None = None  # (B,) True: the next view starts an episode
        self.direction: np.ndarray | None = None  # (B,) last direction per env
        self.seen: list[set[tuple[int, int]]] = []

    def __call__(self, obs: dict[str, np.ndarray], env: Any = None) -> list[str]:
        image = obs.get("image")
        if image is None or image.ndim != 4 or image.shape[1:3] != (7, 7):
            raise ValueError("text source minigrid_events needs MiniGrid's (B, 7, 7, 3) "
                             f"'image' observation; got {None if image is None else image.shape}")
        if self.previous is None or len(self.previous) != len(image):
            self.previous = image.copy()
            self.fresh = np.ones(len(image), dtype=bool)
            self.seen = [set() for _ in range(len(image))]
        direction = obs.get("direction")
        turned = (np.zeros(len(image), dtype=bool) if direction is None or self.direction is None
                  else np.asarray(direction).reshape(-1) != self.direction)
        captions = []
        for i, view in enumerate(image):
            sentences = []
            if not self.fresh[i] and not turned[i]:
                event = interaction(self.previous[i], view)
                if event is not None:
                    sentences.append(event)
            sentences += self._sightings(i, view)
            # two spaces between sentences: the break ``text.units: sentences`` splits on
            captions.append("  ".join(sentences))
        self.previous[:] = image
        self.direction = None if direction is None else np.asarray(direction).reshape(-1).copy()
        self.fresh[:] = False
        return captions

    def _sightings(self, env_index: int, view: np.ndarray) -> list[str]:
        """"You see a blue box." for each notable (type, colour) new to this episode."""
        out = []
        seen = self.seen[env_index]
        notable = np.isin(view[..., 0], _NOTABLE_IDS)  # (7, 7): a step in the actor loop
        notable[AGENT_CELL] = False  # what the agent carries, not a sight
        for x, y in zip(*np.nonzero(notable), strict=True):
            key = (int(view[x, y, 0]), int(view[x, y, 1]))
            if key in seen:
                continue
            seen.add(key)
            name = _name(view[x, y])
            out.append(f"You see {_article(name)} {name}.")
        return out

    def end_episodes(self, ended: np.ndarray) -> None:
        """The next view of each ``ended`` env is a new episode's first: no event, new sights."""
        if self.fresh is None:
            return
        for i in np.flatnonzero(ended):
            self.fresh[i] = True
            self.seen[i].clear()
