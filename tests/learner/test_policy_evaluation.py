"""Policy evaluation: a checkpoint's policy and the random baseline, and ``explorer eval``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_checkpoint import write_hostile_checkpoint

from actors.envs import probe_env_spec
from explorer.app.evaluate import evaluate_policy
from explorer.app.rundir import create_run_dir
from explorer.core.checkpoint import save_checkpoint
from explorer.core.config import load_config
from explorer.core.networks import make_actor_critic

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = ROOT / "configs" / "cartpole.yaml"


def always_left_run(tmp_path: Path) -> tuple[object, Path, Path]:
    """A run dir whose checkpoint's policy pushes CartPole left (action 0) every step."""
    cfg = load_config(CARTPOLE, [f"runs_dir={tmp_path}"])
    model = make_actor_critic(cfg, probe_env_spec(cfg.env))
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.copy_(torch.tensor([20.0, -20.0]))
    run_dir = create_run_dir(cfg, ["test"])
    ckpt = save_checkpoint(run_dir / "checkpoints", 1000,
                           {"learner": {"model": model.state_dict()}})
    return cfg, run_dir, ckpt


def test_random_baseline_counts_every_real_step() -> None:
    cfg = load_config(CARTPOLE)
    result = evaluate_policy(cfg, None, episodes=40, seed=3, num_envs=8)
    assert result.returns.shape == result.lengths.shape == (40,)
    # CartPole pays 1 per step: returns equal lengths, and auto-reset steps are not counted
    np.testing.assert_allclose(result.returns, result.lengths)
    assert result.action_counts.sum() >= result.lengths.sum()  # + steps of unfinished episodes
    assert 0.4 < result.action_counts[0] / result.action_counts.sum() < 0.6
    assert 12 < result.returns.mean() < 40  # a uniform policy balances the pole ~22 steps
    again = evaluate_policy(cfg, None, episodes=40, seed=3, num_envs=8)
    np.testing.assert_array_equal(again.returns, result.returns)  # seeded


def test_checkpoint_policy_is_the_one_evaluated(tmp_path: Path) -> None:
    cfg, _, ckpt = always_left_run(tmp_path)
    policy = evaluate_policy(cfg, ckpt, episodes=16, seed=0, greedy=True)
    assert policy.action_counts[1] == 0 and policy.action_counts[0] > 0
    assert policy.lengths.max() < 15  # pushing one way drops the pole within ~10 steps
    sampled = evaluate_policy(cfg, ckpt, episodes=16, seed=0)  # p(right) ~ e^-40: never
    assert sampled.action_counts[1] == 0
    summary = policy.summary()
    assert summary["episodes"] == 16 and summary["success"] == 1.0
    assert summary["return_mean"] == pytest.approx(policy.returns.mean())
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy(cfg, ckpt, episodes=0, seed=0)


def test_nethack_evaluation_reports_scores() -> None:
    cfg = load_config(ROOT / "configs" / "nethack_score_small.yaml",
                      ["env.max_episode_steps=30"])
    result = evaluate_policy(cfg, None, episodes=6, seed=1, num_envs=3)
    assert len(result.episode_info) == 6
    assert result.info_values("score").shape == (6,)
    assert (result.info_values("steps") == result.lengths).all()
    assert "score_mean" in result.summary() and "depth_mean" in result.summary()


def _eval_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer.app.cli", "eval", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_eval_command_compares_with_random(tmp_path: Path) -> None:
    _, run_dir, _ = always_left_run(tmp_path)
    out = _eval_cli(str(run_dir), "--episodes", "12", "--greedy", "--random-baseline")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["policy"]["episodes"] == figures["random"]["episodes"] == 12
    assert figures["policy"]["return_mean"] < figures["random"]["return_mean"]
    assert any(line.startswith("return_mean") for line in out.stdout.splitlines()[:-1])


@pytest.mark.parametrize(("args", "expected"), [
    (("{tmp}",), "no config.yaml there"),
    (("{run}", "--checkpoint", "{tmp}/missing.pt"), "no checkpoint"),
    (("{run}", "--episodes", "0"), "--episodes must be >= 1"),
    (("{run}", "learner.lrr=1"), "unknown key 'learner.lrr'"),
    (("{run}", "--checkpoint", "{tmp}/garbage.pt"), "garbage.pt: not a readable checkpoint"),
    (("{run}", "learner.model.hidden_size=32"), "not a checkpoint of this run's model"),
])
def test_eval_command_errors(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    _, run_dir, _ = always_left_run(tmp_path / "runs")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    out = _eval_cli(*(a.format(tmp=tmp_path, run=run_dir) for a in args))
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_eval_refuses_a_hostile_checkpoint(tmp_path: Path, fmt: str) -> None:
    """A run dir from elsewhere whose newest checkpoint would run code when unpickled."""
    _, run_dir, _ = always_left_run(tmp_path / "runs")
    marker = tmp_path / "pwned"
    hostile = write_hostile_checkpoint(run_dir / "checkpoints" / "ckpt_000000002000.pt",
                                       marker, fmt)
    out = _eval_cli(str(run_dir), "--episodes", "2")
    assert not marker.exists(), "explorer eval ran the checkpoint's payload"
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {hostile}: "), lines[0]
