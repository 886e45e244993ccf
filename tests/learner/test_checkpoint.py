"""Checkpoint names carry their env steps; the newest is found by them."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.core.checkpoint import checkpoint_env_steps, latest_checkpoint, save_checkpoint


def test_env_steps_read_from_the_name_and_newest_found(tmp_path: Path) -> None:
    for steps in (2_048, 10_000_384, 512):
        save_checkpoint(tmp_path, steps, {"env_steps": steps})
    newest = latest_checkpoint(tmp_path)
    assert newest is not None and checkpoint_env_steps(newest) == 10_000_384
    with pytest.raises(ValueError, match=r"model\.pt: not a checkpoint name"):
        checkpoint_env_steps(tmp_path / "model.pt")
