"""Cue recall: the smallest task on which a policy needs memory, for the retrieval agent's test.

Why it exists: MiniGrid-MemoryS7 needs memory too, but it needs exploration and millions of
steps first, and there neither retrieval nor a feed-forward policy left chance level
(README, "Retrieval memory"). Here memory is the *only* thing to learn, so a short seeded run of
the whole system (``tests/test_cue_recall_learning.py``, ``configs/cue_recall_ra.yaml``) shows
whether the retrieval core really carries information across steps, where a feed-forward
policy provably cannot.

An episode is ``length`` steps. The first observation shows a cue, -1 or +1 with equal
probability; the steps in between show none; the last shows a "decide" flag. The action taken
at that last step earns 1 if it names the cue (action 1 for +1, action 0 for -1), else 0, and
ends the episode; actions at the other steps do nothing. Observation ``(4,)`` float32::

    [cue (+-1 at the first step, else 0), cue shown (1 / 0), decide (1 / 0), noise]

``noise`` (a small seeded Gaussian entry, ``noise`` its std, 0 turns it off) makes the middle
steps differ from one another without carrying anything. A feed-forward policy sees the same
decide observation whatever the cue was: its expected return is 0.5. A policy that remembers
the first step gets 1.0.

Importing the module registers :data:`ENV_ID` with gymnasium, so a config names the env as
``actors.cue_recall:CueRecall-v0`` (gymnasium imports the module before looking the id up, in
every process that makes it: the launcher's probe and each actor).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ENV_ID", "CueRecallEnv"]

#: The id registered with gymnasium (configs use ``actors.cue_recall:CueRecall-v0``).
ENV_ID = "CueRecall-v0"


class CueRecallEnv(gym.Env):
    """Remember a cue from the first step and name it at the last one.

    Attributes:
        length: Steps per episode (the cue at step 0, the decision at step ``length - 1``).
        noise: Std of the observation's noise entry (0: none).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(self, length: int = 8, noise: float = 0.1) -> None:
        """Builds the spaces.

        Args:
            length: Steps per episode, >= 2.
            noise: Std of the noise entry, >= 0.

        Raises:
            ValueError: ``length`` below 2 or ``noise`` below 0.
        """
        if length < 2 or noise < 0:
            raise ValueError(f"need length >= 2 and noise >= 0; got length={length}, "
                             f"noise={noise}")
        self.length, self.noise = int(length), float(noise)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0
        self._cue = 1

    def _obs(self) -> np.ndarray:
        obs = np.zeros(4, np.float32)  # (4,): cue, cue shown, decide, noise
        if self._t == 0:
            obs[0], obs[1] = 2 * self._cue - 1, 1.0
        if self._t == self.length - 1:
            obs[2] = 1.0
        if self.noise:
            obs[3] = self.noise * self.np_random.standard_normal()
        return obs

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """A new episode with a fresh cue (``self.np_random``, seeded by ``seed``)."""
        super().reset(seed=seed)
        self._t = 0
        self._cue = int(self.np_random.integers(2))  # the action that names the cue
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Reward 1 for naming the cue at the last step (which ends the episode), else 0."""
        if self._t == self.length - 1:
            reward = float(int(action) == self._cue)
            return self._obs(), reward, True, False, {"cue": self._cue}
        self._t += 1
        return self._obs(), 0.0, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:CueRecallEnv")
