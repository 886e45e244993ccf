"""Coverage of a normalised 2-D behaviour space on a square grid (pyribs' maze metric)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CoverageGrid"]


class CoverageGrid:
    """Counts evaluations per cell of a ``bins x bins`` grid over ``[0, 1]^2``.

    Args:
        bins: Cells per side (100 in pyribs' maze benchmark).
    """

    def __init__(self, bins: int = 100) -> None:
        self.bins = int(bins)
        self.counts = np.zeros((self.bins, self.bins), np.int64)  # (y, x)

    def update(self, points: np.ndarray) -> None:
        """Adds ``(B, 2)`` points ``(x, y)`` in ``[0, 1]``."""
        idx = np.clip((np.asarray(points, np.float64) * self.bins).astype(np.int64), 0,
                      self.bins - 1)
        np.add.at(self.counts, (idx[:, 1], idx[:, 0]), 1)

    @property
    def coverage(self) -> float:
        """Fraction of cells visited at least once."""
        return float((self.counts > 0).mean())

    def image(self) -> np.ndarray:
        """``(1, bins, bins)`` float32 in ``[0, 1]``: log visit counts (TensorBoard CHW)."""
        logc = np.log1p(self.counts.astype(np.float32))
        return (logc / max(float(logc.max()), 1e-6))[None]

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = np.asarray(state["counts"], np.int64).copy()
