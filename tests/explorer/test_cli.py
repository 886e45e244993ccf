"""The ``explorer`` command: resolved configs, and one-line errors (never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer.app.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, check=False)


def test_show_config_applies_overrides() -> None:
    out = _cli("show-config", QUICKSTART, "learner.lr=3e-4", "actors.num_procs=4",
               "env.envpool_kwargs.max_num_players=1")
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert resolved["learner"]["lr"] == pytest.approx(3e-4)
    assert resolved["actors"]["num_procs"] == 4
    assert resolved["env"]["envpool_kwargs"] == {"max_num_players": 1}
    assert resolved["env"]["id"] == "MiniGrid-DoorKey-5x5-v0"  # untouched keys from the file


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("learner.lrr=3e-4",), "unknown key 'learner.lrr'; did you mean 'learner.lr'?"),
        (("actors.num_procs=four",), "actors.num_procs: expected int"),
        (("learner.algo=apo",), "did you mean 'appo'"),
        (("env.id=MiniGrid-DoorKey-5x5-v9",), "MiniGrid-DoorKey-5x5-v0"),
        (("learner.gamma=1.5",), "learner.gamma"),
        (("learner.lr",), "learner.lr"),
    ],
)
def test_bad_overrides_are_one_line_errors(args: tuple[str, ...], expected: str) -> None:
    for command in ("show-config", "run"):
        out = _cli(command, QUICKSTART, *args)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert expected in lines[0], lines[0]


def test_several_errors_are_all_reported() -> None:
    out = _cli("show-config", QUICKSTART, "learner.lrr=1", "actors.num_procs=0")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 2, out.stderr
    assert all(line.startswith("error: ") for line in lines)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show-config", "configs/nope.yaml"), "nope.yaml"),
        (("run",), "give a config file"),
        (("run", "--resume", "/nonexistent/run"), "no config.yaml"),
    ],
)
def test_usage_errors(args: tuple[str, ...], expected: str) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert expected in out.stderr, out.stderr


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  id: CartPole-v1\n  num_env: 4\n")
    out = _cli("run", str(bad))
    assert out.returncode == 2
    assert "unknown key 'env.num_env'" in out.stderr, out.stderr


def test_a_bad_env_id_leaves_no_run_directory(tmp_path: Path) -> None:
    """The env checks run while the processes start: a bad id still ends the command with
    one error line, and the run directory made for it is gone again."""
    out = _cli("run", QUICKSTART, "env.id=MiniGrid-DoorKey-5x5-v9", f"runs_dir={tmp_path}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "MiniGrid-DoorKey-5x5-v0" in lines[0], out.stderr
    assert list(tmp_path.iterdir()) == []
