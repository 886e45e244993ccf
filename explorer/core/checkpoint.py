"""Atomic checkpoints: write to a temp file, fsync, rename; keep the newest few."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "checkpoint_env_steps", "latest_checkpoint", "load_checkpoint",
           "restore_rng_state", "save_checkpoint"]

_NAME = re.compile(r"^ckpt_(\d{12})\.pt$")


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states of this process."""
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(directory: Path, env_steps: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``ckpt_<env_steps>.pt`` atomically and prune all but ``keep`` newest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{env_steps:012d}.pt"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    for old in sorted(p for p in directory.iterdir() if _NAME.match(p.name))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    """Newest checkpoint in ``directory`` (by env-step count), or None."""
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    return found[-1] if found else None


def checkpoint_env_steps(path: Path) -> int:
    """The env steps a checkpoint was written at, from its name (no need to load it)."""
    match = _NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path}: not a checkpoint name (ckpt_<12-digit env steps>.pt)")
    return int(match.group(1))


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: our own file holds RNG states (tuples, numpy arrays).
    return torch.load(path, map_location="cpu", weights_only=False)
