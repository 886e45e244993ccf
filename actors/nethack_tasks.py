"""NetHack tasks by id: NLE's registered tasks, ONI's deeper-staircase goals, action sets.

Task ids are NLE's gymnasium ids (``NetHackScore-v0``, ``NetHackStaircase-v0``,
``NetHackOracle-v0``, ...) plus two goals from ONI (Klissarov et al. 2024), built here as a
wrapper around ``NetHackScore-v0``:

* ``NetHackStaircaseLvl3-v0`` / ``NetHackStaircaseLvl4-v0``: reward 1 and terminate on the step
  where the dungeon depth in blstats first reaches 3 / 4, reward 0 on every other step. (ONI
  tests ``blstats[NLE_BL_DLEVEL]`` together with the "You descend the stairs" message and pays
  50; we test ``NLE_BL_DEPTH`` alone, so falling through a trap door also counts.)

Action sets, chosen by the env kwarg ``actions``:

* ``"task"`` (default): the task's own set (23 actions for NLE's tasks: ``TASK_ACTIONS``;
  86 ``USEFUL_ACTIONS`` for ``NetHack-v0``).
* ``"extended"``: ``nle.env.tasks.TASK_ACTIONS`` (MORE, 8 compass directions, 8 "far"
  directions, UP, DOWN, WAIT, KICK, EAT, SEARCH) + CAST, QUAFF, PRAY, PICKUP, PAY = 28 actions,
  the ``EXTENDED_TASK_ACTIONS`` of ONI's and Motif's ``rl_baseline/tasks_nle.py``. (ONI also
  stops NLE from auto-declining "drink" prompts and maps ``y`` at an eat prompt to the first
  offered item; neither change is replicated here.)
* ``"full"``: ``nle.nethack.ACTIONS``, all 121 keys (118 distinct key codes).
"""

from __future__ import annotations

import enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

__all__ = [
    "ACTION_SETS",
    "DEPTH_TASKS",
    "OBS_KEYS",
    "DepthGoal",
    "EndStatus",
    "action_set",
    "depth_reached",
    "make_nle_env",
    "nle_task_ids",
]

#: Observation keys every NetHack env returns (fixed shapes, so they fit the wire schema).
OBS_KEYS = ("glyphs", "blstats", "message", "tty_chars", "tty_colors")

#: ONI's deeper-staircase task ids -> dungeon depth that ends the episode with reward 1.
DEPTH_TASKS = {"NetHackStaircaseLvl3-v0": 3, "NetHackStaircaseLvl4-v0": 4}
_DEPTH_BASE_TASK = "NetHackScore-v0"

ACTION_SETS = ("task", "extended", "full")

# nle.nethack.NLE_BL_DEPTH; a constant so that depth_reached() needs no nle import.
_BL_DEPTH = 12


class EndStatus(enum.IntEnum):
    """``info["end_status"]`` values: NLE's ``StepStatus`` incl. the staircase tasks' success."""

    ABORTED = -1
    RUNNING = 0
    DEATH = 1
    TASK_SUCCESSFUL = 2


def nle_task_ids() -> frozenset[str]:
    """Every task id NLE registers with gymnasium, plus ``DEPTH_TASKS``.

    Raises:
        ImportError: ``nle`` is not installed.
    """
    import nle  # noqa: F401 - registers NLE's ids in gymnasium's registry

    registered = {env_id for env_id, spec in gym.registry.items()
                  if str(spec.entry_point).startswith("nle.")}
    return frozenset(registered | DEPTH_TASKS.keys())


def action_set(name: str) -> tuple[int, ...] | None:
    """NLE key codes of the action set ``name`` (``None``: the task's own set).

    Raises:
        ValueError: ``name`` is not in ``ACTION_SETS``.
    """
    from nle import nethack
    from nle.env.tasks import TASK_ACTIONS

    if name == "task":
        return None
    if name == "extended":
        cmd = nethack.Command
        return (*TASK_ACTIONS, cmd.CAST, cmd.QUAFF, cmd.PRAY, cmd.PICKUP, cmd.PAY)
    if name == "full":
        return tuple(nethack.ACTIONS)
    raise ValueError(f"env actions {name!r} is not one of {', '.join(ACTION_SETS)}")


def depth_reached(blstats: np.ndarray, target: int) -> bool:
    """Whether blstats ``(27,)`` shows dungeon depth ``>= target`` (zeros after the game ends)."""
    return int(blstats[_BL_DEPTH]) >= target


class DepthGoal(gym.Wrapper):
    """Reward 1 and terminate when the depth reaches ``target``; reward 0 otherwise.

    The inner game is not quit: the vectorised env resets it on the next step anyway.
    """

    def __init__(self, env: gym.Env, target: int) -> None:
        """Wraps ``env`` (any NLE env whose observations include ``blstats``)."""
        super().__init__(env)
        self.target = target

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Steps the inner env and replaces its reward with the goal's."""
        obs, _, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated) and depth_reached(obs["blstats"], self.target):
            return obs, 1.0, True, False, {**info, "end_status": EndStatus.TASK_SUCCESSFUL}
        return obs, 0.0, terminated, truncated, info


def make_nle_env(task_id: str, actions: str = "task", max_episode_steps: int | None = None,
                 **kwargs: Any) -> gym.Env:
    """One NLE env of ``task_id`` returning ``OBS_KEYS``; seed it via ``env.unwrapped.seed``.

    Args:
        task_id: An id from :func:`nle_task_ids`.
        actions: One of ``ACTION_SETS``.
        max_episode_steps: NLE's own step limit (``None``: NLE's default, 5000); hitting it
            ends the episode with ``end_status`` ABORTED.
        **kwargs: Passed on to the NLE task class (``character``, ``penalty_step``, ...).

    Returns:
        The unwrapped NLE env, or a :class:`DepthGoal` around one for ``DEPTH_TASKS``.

    Raises:
        ValueError: Unknown action set, ``observation_keys`` in ``kwargs``, or keyword
            arguments the task does not accept.
    """
    if "observation_keys" in kwargs:
        raise ValueError(f"env kwargs cannot set observation_keys; NetHack envs return {OBS_KEYS}")
    extra: dict[str, Any] = {"observation_keys": OBS_KEYS, "fix_moon_phase": True, **kwargs}
    keys = action_set(actions)
    if keys is not None:
        extra["actions"] = keys
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    nle_task_ids()  # import nle, so its ids are registered
    spec = gym.spec(_DEPTH_BASE_TASK if task_id in DEPTH_TASKS else task_id)
    # Not gym.make: it would take max_episode_steps for a TimeLimit wrapper instead of NLE.
    creator = load_env_creator(spec.entry_point)
    try:
        env = creator(**{**spec.kwargs, **extra})
    except TypeError as err:
        raise ValueError(f"env kwargs {sorted(kwargs)} not accepted by {task_id}: {err}") from None
    if task_id in DEPTH_TASKS:
        return DepthGoal(env, DEPTH_TASKS[task_id])
    return env
