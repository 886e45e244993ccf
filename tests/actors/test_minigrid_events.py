"""The ``minigrid_events`` text source captions real MiniGrid steps (EnvPool) correctly."""

from __future__ import annotations

import re

import numpy as np
import pytest

from actors.envs import make_vec_env
from actors.minigrid_events import AGENT_CELL, FRONT_CELL, OBJECTS, MiniGridEvents, interaction
from actors.texts import TextCapture, make_text_source, text_source_problems
from explorer.core.config import load_config
from explorer.core.texts import split_units

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5

SENTENCE = re.compile(
    r"Nothing happens\.|You (picked up a|dropped the|unlocked the|opened the|closed the) "
    r"\w+ \w+\.( It held a \w+ \w+\.)?|You see (a \w+ \w+|the goal|the lava)\.")


def _env(env_id: str, num_envs: int = 1, seed: int = 0):
    cfg = load_config(None, [f"env.id={env_id}"])
    return make_vec_env(cfg.env, num_envs, seed)


def _play(env, source: MiniGridEvents, actions: list[int]) -> list[str]:
    captions = source(env.reset())
    for action in actions:
        result = env.step(np.array([action]))
        captions += source(result.obs)
        source.end_episodes(result.terminated | result.truncated)
    return captions


def test_a_scripted_doorkey_episode_is_narrated() -> None:
    """DoorKey-5x5, seed 0: the key is in front of the agent, the door to its front right."""
    env = _env("MiniGrid-DoorKey-5x5-v0")
    actions = [PICKUP, PICKUP, FORWARD, RIGHT, TOGGLE, TOGGLE, TOGGLE, DROP, FORWARD, FORWARD,
               RIGHT, FORWARD]
    captions = _play(env, MiniGridEvents(), actions)
    env.close()
    assert captions == [
        "You see a yellow key.  You see a yellow door.",
        "You picked up a yellow key.",
        "Nothing happens.",  # nothing left to pick up
        "", "",  # a step and a turn: nothing new
        "You unlocked the yellow door.  You see the goal.",  # the open door shows the goal
        "You closed the yellow door.",
        "You opened the yellow door.",
        "Nothing happens.",  # cannot drop into a doorway
        "", "", "",
        "",  # reached the goal: the episode ends
    ]


def test_a_new_episode_starts_a_new_narration() -> None:
    env = _env("MiniGrid-DoorKey-5x5-v0")
    source = MiniGridEvents()
    captions = _play(env, source, [PICKUP, FORWARD, RIGHT, TOGGLE, FORWARD, FORWARD, RIGHT,
                                   FORWARD, FORWARD])
    env.close()
    # the step after the goal is the new episode's first view: its sights, no event
    assert captions[-1].startswith("You see ") and "You picked up" not in captions[-1]
    assert all(SENTENCE.fullmatch(s) for c in captions if c for s in split_units(c, 64))


def _view(cells: dict[tuple[int, int], tuple[int, int, int]]) -> np.ndarray:
    view = np.zeros((7, 7, 3), dtype=np.uint8)
    view[..., 0] = OBJECTS.index("empty")
    for (x, y), cell in cells.items():
        view[x, y] = cell
    return view


def test_opening_a_box_says_what_it_held() -> None:
    box, key = (OBJECTS.index("box"), 2, 0), (OBJECTS.index("key"), 4, 0)
    before = _view({FRONT_CELL: box})
    assert interaction(before, _view({FRONT_CELL: key})) == \
        "You opened the blue box. It held a yellow key."
    assert interaction(before, _view({})) == "You opened the blue box."


def test_moving_is_not_an_event() -> None:
    wall = (OBJECTS.index("wall"), 5, 0)
    assert interaction(_view({(0, 0): wall}), _view({(0, 1): wall})) is None
    # a door hiding what was behind it is not movement: unseen cells are ignored
    door_open, door_closed = (OBJECTS.index("door"), 0, 0), (OBJECTS.index("door"), 0, 1)
    before = _view({FRONT_CELL: door_open, (3, 0): wall})
    after = _view({FRONT_CELL: door_closed})
    after[3, 0] = (0, 0, 0)  # unseen behind the closed door
    assert interaction(before, after) == "You closed the red door."
    held = _view({AGENT_CELL: (OBJECTS.index("ball"), 3, 0)})
    assert interaction(held, _view({FRONT_CELL: (OBJECTS.index("ball"), 3, 0)})) == \
        "You dropped the purple ball."


def test_random_play_speaks_only_the_grammar() -> None:
    """16 envs of KeyCorridorS3R1 under random actions: every sentence is well formed, each
    env's sights are not repeated within an episode, and the agent does pick things up."""
    env = _env("MiniGrid-KeyCorridorS3R1-v0", num_envs=16, seed=3)
    source = make_text_source("minigrid_events")
    rng = np.random.default_rng(0)
    obs = env.reset()
    counts = {"picked": 0, "nothing": 0, "see": 0}
    for _ in range(400):
        captions = source(obs)
        assert len(captions) == 16
        for caption in captions:
            for sentence in re.findall(r"[^.]+\.", caption):
                assert SENTENCE.fullmatch(sentence.strip()), caption
            counts["picked"] += caption.count("You picked up")
            counts["nothing"] += caption.count("Nothing happens")
            counts["see"] += caption.count("You see")
        result = env.step(rng.integers(0, 7, 16))
        source.end_episodes(result.terminated | result.truncated)
        obs = result.obs
    env.close()
    assert counts["picked"] > 0 and counts["nothing"] > 0 and counts["see"] >= 16


def test_text_capture_tells_the_source_about_episode_ends() -> None:
    source = make_text_source("minigrid_events")
    capture = TextCapture(source, 2, actor_id=0, socket=None)
    view = _view({(1, 1): (OBJECTS.index("key"), 4, 0)})
    obs = {"image": np.stack([view, view]), "direction": np.zeros(2, np.int32)}
    hashes, counts = np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int32)
    capture.observe(obs, None, hashes, counts)
    assert (hashes != 0).all()  # "You see a yellow key." in both
    capture.observe(obs, None, hashes, counts)
    assert (counts == 1).all()  # "Nothing happens." now, once each
    capture.end_episodes(np.array([True, False]))
    capture.observe(obs, None, hashes, counts)
    assert hashes[0, 0] != hashes[1, 0]  # env 0 sees the key anew; env 1: nothing happens


def test_bad_observations_and_names_are_clear() -> None:
    with pytest.raises(ValueError, match=r"minigrid_events needs MiniGrid's \(B, 7, 7, 3\)"):
        MiniGridEvents()({"obs": np.zeros((2, 4), np.float32)})
    cfg = load_config(None, ["text.source=minigrid_event"])
    (problem,) = text_source_problems(cfg)
    assert problem.startswith("text.source") and "minigrid_events" in problem
