"""HardMaze (``gymnasium-hardmaze``) for novelty search: sparse goal reward, time limit, final
position as behaviour, and a 64x64 top-down frame for STAX.

The package's own reward is dense (distance to the next point of interest); the benchmark is
about finding the goal without that guidance, so :class:`SparseGoalReward` pays only on
reaching it: ``1 - 0.9 * t / T`` at step t of at most T, 0 otherwise. Reaching it sooner pays
more, which gives reward emitters something to improve once the goal is found.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["MAZE_BOUNDS", "SEARCH_ENV_IDS", "SparseGoalReward", "TopDownRenderer",
           "make_search_env", "normalise_position"]

SEARCH_ENV_IDS = ("HardMaze-v0",)
#: ``(x_min, y_min, x_max, y_max)``: the box around HardMaze's walls, in maze units.
MAZE_BOUNDS = (157.0, 112.0, 423.0, 414.0)


def normalise_position(position: Any) -> np.ndarray:
    """Maze ``(x, y)`` -> ``(2,)`` in ``[0, 1]`` (the behaviour descriptor)."""
    x0, y0, x1, y1 = MAZE_BOUNDS
    x, y = position
    return np.clip(np.array([(x - x0) / (x1 - x0), (y - y0) / (y1 - y0)]), 0.0, 1.0)


class SparseGoalReward(gym.Wrapper):
    """Replaces the dense reward by ``1 - 0.9 * t / max_steps`` on reaching the goal, else 0."""

    def __init__(self, env: gym.Env, max_steps: int) -> None:
        super().__init__(env)
        self.max_steps = int(max_steps)
        self._t = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self._t = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, _, terminated, truncated, info = self.env.step(action)
        self._t += 1
        reward = 1.0 - 0.9 * self._t / self.max_steps if info.get("reached_goal") else 0.0
        return obs, reward, terminated, truncated, info


class TopDownRenderer:
    """``(H, H)`` uint8 top-down frames: walls 96, robot disk 255, floor 0 (NumPy only: the
    package's renderer opens a pygame window)."""

    def __init__(self, env: gym.Env, size: int = 64) -> None:
        self.size = int(size)
        self._walls = np.zeros((self.size, self.size), np.uint8)
        for wall in env.unwrapped.env.walls:
            n = 4 * self.size
            xs = np.linspace(wall.ax, wall.bx, n)
            ys = np.linspace(wall.ay, wall.by, n)
            px, py = self._pixels(np.stack([xs, ys], axis=1))
            self._walls[py, px] = 96
        yy, xx = np.mgrid[: self.size, : self.size]
        self._grid = (xx, yy)

    def _pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        norm = np.stack([normalise_position(p) for p in points])
        idx = np.clip((norm * self.size).astype(int), 0, self.size - 1)
        return idx[:, 0], idx[:, 1]

    def frame(self, position: Any, radius: float = 2.5) -> np.ndarray:
        """The maze with the robot at maze ``position``."""
        px, py = self._pixels(np.asarray([position], np.float64))
        xx, yy = self._grid
        frame = self._walls.copy()
        frame[(xx - px[0]) ** 2 + (yy - py[0]) ** 2 <= radius ** 2] = 255
        return frame


def make_search_env(env_id: str, max_episode_steps: int) -> gym.Env:
    """The env with its time limit and sparse goal reward.

    Raises:
        ValueError: An id that is not a novelty-search env.
    """
    if env_id not in SEARCH_ENV_IDS:
        raise ValueError(f"unknown search env {env_id!r}; valid: {list(SEARCH_ENV_IDS)}")
    import gymnasium_hardmaze  # noqa: F401 - registers HardMaze-v0

    env = gym.make(env_id, max_episode_steps=max_episode_steps, disable_env_checker=True)
    return SparseGoalReward(env, max_episode_steps)
