"""A text source for actor tests on envs that show no text (importable by spawned actors)."""

from __future__ import annotations

from typing import Any

import numpy as np


def two_sentences(obs: dict[str, np.ndarray], env: Any) -> list[str]:
    """The same two-sentence text for each of the B envs."""
    num_envs = len(next(iter(obs.values())))
    return ["The pole wobbles. The cart rolls on."] * num_envs
