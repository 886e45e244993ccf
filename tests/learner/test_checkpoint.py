"""Checkpoints: names carry their env steps; files hold only tensors and plain values, so
loading one can never run code, and every piece of learner state round-trips exactly."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hostile_checkpoint import write_hostile_checkpoint
from minigrid_batches import minigrid_batch, minigrid_learner

from explorer.app.rundir import create_run_dir
from explorer.core.checkpoint import (
    CheckpointError,
    capture_rng_state,
    checkpoint_env_steps,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from explorer.core.config import load_config
from explorer.core.texts import text_id
from explorer.intrinsic import registered_intrinsics

ROOT = Path(__file__).resolve().parents[2]


def test_env_steps_read_from_the_name_and_newest_found(tmp_path: Path) -> None:
    for steps in (2_048, 10_000_384, 512):
        save_checkpoint(tmp_path, steps, {"env_steps": steps})
    newest = latest_checkpoint(tmp_path)
    assert newest is not None and checkpoint_env_steps(newest) == 10_000_384
    with pytest.raises(ValueError, match=r"model\.pt: not a checkpoint name"):
        checkpoint_env_steps(tmp_path / "model.pt")


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_hostile_file_is_refused_without_running_it(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    path = write_hostile_checkpoint(tmp_path / "ckpt_000000001000.pt", marker, fmt)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert not marker.exists(), "loading the checkpoint ran its payload"
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    if fmt == "torch":  # the zip format names what it asked for
        assert "posix.system" in message, message


@pytest.mark.timeout(300)
def test_resume_from_a_hostile_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    """``explorer run --resume`` of a run dir whose newest checkpoint would run code: the
    learner refuses it, nothing of it runs, and the CLI prints one error line naming it."""
    cfg = load_config(ROOT / "configs" / "cartpole.yaml", [f"runs_dir={tmp_path / 'runs'}"])
    run_dir = create_run_dir(cfg, ["test"])
    marker = tmp_path / "pwned"
    hostile = write_hostile_checkpoint(run_dir / "checkpoints" / "ckpt_000000001000.pt",
                                       marker)
    out = subprocess.run([sys.executable, "-m", "explorer.app.cli", "run", "--resume",
                          str(run_dir), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                         timeout=240, check=False)
    assert not marker.exists(), "resuming ran the checkpoint's payload"
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    # the console (run directory, tensorboard hint) also writes to stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error")]
    assert out.returncode == 2 and len(errors) == 1, out.stdout + out.stderr
    assert errors[0].startswith(f"error: {hostile}: refused to load"), errors[0]
    assert "posix.system" in errors[0]


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    for name in ("empty.pt", "garbage.pt", "missing.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: not a readable checkpoint") as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)


def test_state_that_could_not_be_loaded_back_is_refused_at_save(tmp_path: Path) -> None:
    """A numpy array (or any other object) in the state fails when it is saved, naming
    where it is, instead of making the run's checkpoints unloadable."""
    with pytest.raises(TypeError, match=r"\['learner'\]\['table'\]\[1\] is a numpy\.ndarray"):
        save_checkpoint(tmp_path, 1, {"learner": {"table": [1, np.zeros(3)]}})
    with pytest.raises(TypeError, match=r"numpy\.float64"):
        save_checkpoint(tmp_path, 1, {"mean": np.float64(1.0)})
    assert latest_checkpoint(tmp_path) is None


def _assert_same(got: Any, want: Any, where: str = "") -> None:
    """Exact equality, types included: tensors bitwise, containers element by element."""
    assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and torch.equal(got, want), where
    elif isinstance(want, dict):
        assert set(got) == set(want), f"{where}: keys {set(got) ^ set(want)}"
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _draws() -> tuple[float, list[float], list[float]]:
    return (random.random(), np.random.random(3).tolist(), torch.rand(3).tolist())


@pytest.mark.timeout(300)
def test_every_bonus_text_reward_and_rng_state_round_trip_exactly(tmp_path: Path) -> None:
    """Every registered bonus (NGU past its first ring size), the text reward table and the
    RNG states survive save -> weights-only load -> load_state_dict unchanged."""
    bonuses = ", ".join("{name: ngu, coef: 0.1, kwargs: {initial_slots: 2}}" if name == "ngu"
                        else f"{{name: {name}, coef: 0.1}}" for name in registered_intrinsics())
    overrides = (f"intrinsic=[{bonuses}]", "text.source=babyai_mission",
                 "llm_labeler.labeler=rules")
    learner = minigrid_learner(*overrides)
    learner.text_reward.table.replace(np.array([text_id("a"), text_id("b")], np.int64),
                                      np.array([1.0, -0.5], np.float32), 3)
    batch = minigrid_batch()
    for _ in range(2):
        learner.train(batch)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    _draws()  # not at the start of a stream (numpy keeps a cached gaussian, python a position)
    np.random.standard_normal()
    state = {"learner": learner.state_dict(), "rng": capture_rng_state()}
    expected_draws = _draws()

    loaded = load_checkpoint(save_checkpoint(tmp_path, 1, state))
    _assert_same(loaded, state)
    fresh = minigrid_learner(*overrides)
    fresh.load_state_dict(loaded["learner"])
    _assert_same(fresh.state_dict(), state["learner"])
    restore_rng_state(loaded["rng"])
    assert _draws() == expected_draws
