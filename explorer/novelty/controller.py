"""Genome -> policy: a small MLP controller whose weights are the genome (a flat vector).

Layout of the genome: for each layer, its ``(in, out)`` weight matrix row-major, then its
``(out,)`` bias. Hidden layers use tanh; the output squashes to the action range by sigmoid
(HardMaze's motors take ``[0, 1]``) or tanh (``[-1, 1]``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["OUTPUTS", "MLPController"]

OUTPUTS = ("sigmoid", "tanh", "linear")


class MLPController:
    """Shapes of the MLP and the map from a genome to its action function.

    Args:
        obs_dim: Observation width.
        act_dim: Action width.
        hidden: Widths of the hidden layers (Paolo et al.: one layer of 5).
        output: ``sigmoid``, ``tanh`` or ``linear`` output squashing.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (5,),
                 output: str = "sigmoid") -> None:
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; valid: {list(OUTPUTS)}")
        self.sizes = [int(obs_dim), *(int(h) for h in hidden), int(act_dim)]
        self.output = output
        self.genome_size = sum(a * b + b for a, b in itertools.pairwise(self.sizes))

    def unpack(self, genome: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(G,)`` genome -> ``[(W (in, out), b (out,)), ...]`` views.

        Raises:
            ValueError: A genome of the wrong length.
        """
        genome = np.asarray(genome, np.float64)
        if genome.shape != (self.genome_size,):
            raise ValueError(f"genome must have shape ({self.genome_size},); got {genome.shape}")
        layers, start = [], 0
        for a, b in itertools.pairwise(self.sizes):
            w = genome[start: start + a * b].reshape(a, b)
            bias = genome[start + a * b: start + a * b + b]
            layers.append((w, bias))
            start += a * b + b
        return layers

    def act(self, layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
        """``(obs_dim,)`` observation -> ``(act_dim,)`` float32 action."""
        x = np.asarray(obs, np.float64)
        for w, b in layers[:-1]:
            x = np.tanh(x @ w + b)
        w, b = layers[-1]
        x = x @ w + b
        if self.output == "sigmoid":
            x = 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
        elif self.output == "tanh":
            x = np.tanh(x)
        return x.astype(np.float32)
