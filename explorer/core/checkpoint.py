"""Atomic checkpoints: write to a temp file, fsync, rename; keep the newest few.

A checkpoint holds tensors and plain values only (dicts, lists, tuples, str, bytes, int, float,
bool, None) and is read with ``torch.load(weights_only=True)``: run dirs and checkpoints get
shared, and unpickling anything else could run code (``--resume``, ``explorer eval``).
``save_checkpoint`` refuses state that could not be read back that way, naming where it is.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["PROGRESS_FILE", "CheckpointError", "CheckpointWriteError", "capture_rng_state",
           "checkpoint_env_steps", "latest_checkpoint", "load_checkpoint", "read_progress",
           "restore_rng_state", "save_checkpoint", "write_progress"]

#: The learner's record of what it counted as trained, in the run directory (``write_progress``).
PROGRESS_FILE = "progress.json"

_NAME = re.compile(r"^ckpt_(\d{12})\.pt$")
_TMP_NAME = re.compile(r"^ckpt_(\d{12})\.tmp$")
_PLAIN = frozenset({str, bytes, int, float, bool, type(None), torch.Size})
_GLOBAL = re.compile(r"GLOBAL (\S+)")
_MAX_DETAIL = 160


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (safely); the message is one line naming it."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, no permission, ...); the message is one
    line naming the file, the cause and the newest complete checkpoint, which is untouched.

    ``errno`` is the cause's (``errno.ENOSPC`` for a full disk), or None when unknown.
    """


def _os_cause(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: torch's zip writer turns a failed write (ENOSPC) into a
    RuntimeError ("unexpected pos ...") raised while handling the OSError."""
    seen = 0
    cur: BaseException | None = err
    while cur is not None and seen < 8:
        if isinstance(cur, OSError):
            return cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, and CUDA once in use) RNG states of this process, as
    tensors and plain values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():  # never start CUDA just to read its state
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo ``capture_rng_state``; CUDA states only where the same number of GPUs is seen."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["bit_generator"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def _check_loadable(value: Any, where: str = "") -> None:
    """Raise TypeError at the first value ``weights_only`` loading would refuse.

    Failing here, when the state is saved, beats a run whose checkpoints cannot be resumed.
    """
    kind = type(value)
    if kind in (dict, collections.OrderedDict):
        for key, item in value.items():
            _check_loadable(key, f"{where} (a key)")
            _check_loadable(item, f"{where}[{key!r}]")
    elif kind in (list, tuple):
        for i, item in enumerate(value):
            _check_loadable(item, f"{where}[{i}]")
    elif kind not in _PLAIN and not isinstance(value, torch.Tensor):
        raise TypeError(f"checkpoint state{where} is a {kind.__module__}.{kind.__qualname__}: "
                        "store tensors and plain values (checkpoints load with weights_only)")


def save_checkpoint(directory: Path, env_steps: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``ckpt_<env_steps>.pt`` atomically and prune all but ``keep`` newest.

    A failed write (a full disk) leaves no partial file behind (the temp file is removed, so
    it does not hold the space either) and every earlier checkpoint as it was.

    Raises:
        TypeError: ``state`` holds something other than tensors and plain values.
        CheckpointWriteError: the file could not be written; one line naming it and why.
    """
    _check_loadable(state)
    path = directory / f"ckpt_{env_steps:012d}.pt"
    tmp = path.with_suffix(".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        cause = _os_cause(err)
        if cause is None and not isinstance(err, OSError):
            raise  # not an I/O failure: a bug, keep its traceback
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = cause.strerror if cause is not None and cause.strerror else _one_line(str(err))
        previous = latest_checkpoint(directory)
        error = CheckpointWriteError(f"checkpoint not written: {path}: {why}; newest complete "
                                     f"checkpoint: {previous if previous is not None else 'none'}")
        error.errno = cause.errno if cause is not None else None
        raise error from err
    for old in sorted(p for p in directory.iterdir() if _NAME.match(p.name))[:-keep]:
        old.unlink(missing_ok=True)
    # a process killed while writing leaves its temp file: one writer per run, so any other
    # is stale, and on a small disk it holds the space the next checkpoint needs
    for stale in directory.iterdir():
        if _TMP_NAME.match(stale.name) and stale != tmp:
            stale.unlink(missing_ok=True)
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


def write_progress(run_dir: Path, record: dict[str, Any]) -> None:
    """Atomically replace ``run_dir/progress.json`` with ``record`` (JSON).

    With a checkpoint per update the learner rewrites it after each update's checkpoint,
    before the count is reported anywhere, so after a kill it holds the count at the kill, to
    compare with the checkpoint a resumed run starts from; with an interval, with each status
    report (once a second) and checkpoint, so it is then a lower bound of the count. No
    fsync: the file must survive the process (a kill -9 keeps the page cache), not the
    machine; a crash of the machine may leave it older than the newest checkpoint.

    Raises:
        OSError: it could not be written (the previous record is left as it was).
    """
    path = run_dir / PROGRESS_FILE
    tmp = path.with_name(PROGRESS_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The newest record ``write_progress`` left in ``run_dir``, or None if there is none."""
    try:
        return json.loads((run_dir / PROGRESS_FILE).read_text())
    except FileNotFoundError:
        return None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL - 3] + "..."


def _refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """One line for a file the weights-only unpickler refused, naming what it asked for."""
    found = _GLOBAL.search(str(err))
    if found is None:  # not a pickle, or one using opcodes torch never writes
        detail = str(err).split("error:", 1)[-1].split("Check the documentation")[0]
        return (f"{path}: not a readable checkpoint (refused by the weights-only unpickler: "
                f"{_one_line(detail)})")
    name = found.group(1).rstrip(".,")
    hint = (" (checkpoints written before weights-only loading held NumPy RNG state; they "
            "cannot be loaded safely)" if name.startswith("numpy") else "")
    return (f"{path}: refused to load: it asks for {name}, which is not a tensor or plain "
            f"value, and unpickling it could run code{hint}")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint``, never unpickling arbitrary objects.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint, or asks for an
            object other than tensors and plain values (it is refused, nothing of it runs).
    """
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, not news
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, err)) from None
    except (OSError, EOFError, RuntimeError, ValueError) as err:
        detail = _one_line(str(err)) or "empty file"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: "
                              f"{detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (it holds a {type(state).__name__}, "
                              "not a dict of state)")
    return state
