"""A hostile "checkpoint": unpickling it would run a shell command (for refusal tests)."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import torch


class _RunsCommand:
    """Pickles as a call to ``os.system``: loading it with plain pickle runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def write_hostile_checkpoint(path: Path, marker: Path, fmt: str = "torch") -> Path:
    """Write at ``path`` a checkpoint-shaped pickle whose loading would create ``marker``.

    ``fmt``: ``torch`` (``torch.save``'s zip format) or ``pickle`` (a bare pickle stream,
    which ``torch.load`` also accepts).
    """
    payload = _RunsCommand(f"touch {shlex.quote(str(marker))}")
    state = {"learner": {"model": payload}, "env_steps": 1000}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torch":
        torch.save(state, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(state, fh)
    return path
