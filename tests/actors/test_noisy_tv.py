"""The noisy-TV wrapper on real EnvPool MiniGrid envs, alone and inside the whole system."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.envs import make_vec_env, probe_env_spec
from actors.noisy_tv import NoisyTVVecEnv
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import EnvConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ENV_ID = "MiniGrid-DoorKey-5x5-v0"
NOOP = 6  # MiniGrid "done"
B = 4


def _pair(**kwargs) -> tuple[NoisyTVVecEnv, object]:
    """The wrapped env and a plain one with the same seed (they step identically)."""
    wrapped = make_vec_env(EnvConfig(id=ENV_ID, noisy_tv=True, **kwargs), B, seed=5)
    plain = make_vec_env(EnvConfig(id=ENV_ID, **kwargs), B, seed=5)
    assert isinstance(wrapped, NoisyTVVecEnv)
    return wrapped, plain


def test_config_adds_one_action_and_keeps_obs_spec() -> None:
    plain = probe_env_spec(EnvConfig(id=ENV_ID))
    noisy = probe_env_spec(EnvConfig(id=ENV_ID, noisy_tv=True))
    assert noisy.num_actions == plain.num_actions + 1
    assert noisy.obs_spec == plain.obs_spec
    cfg = load_config(CONFIGS / "quickstart.yaml", ["env.noisy_tv=true"])
    assert cfg.env.noisy_tv is True


def test_tv_action_shows_fresh_noise_in_the_patch_only() -> None:
    wrapped, plain = _pair()
    np.testing.assert_array_equal(wrapped.reset()["image"], plain.reset()["image"])
    tv = np.full(B, wrapped.noise_action)
    shown = []
    for _ in range(3):
        got, want = wrapped.step(tv), plain.step(np.full(B, NOOP))
        image, clean = got.obs["image"], want.obs["image"]  # (B, 7, 7, 3)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        np.testing.assert_array_equal(image[:, 4:], clean[:, 4:])  # outside the 4x4 patch
        np.testing.assert_array_equal(image[:, :, 4:], clean[:, :, 4:])
        patch = image[:, :4, :4]  # (B, 4, 4, 3)
        assert not np.array_equal(patch, clean[:, :4, :4])
        assert (patch.max(axis=(0, 1, 2)) < np.array([11, 6, 3])).all()  # valid MiniGrid ids
        shown.append(patch.copy())
    assert not np.array_equal(shown[0], shown[1])  # fresh noise every time
    assert not np.array_equal(shown[0][0], shown[0][1])  # and per env
    # any other action passes through and shows the env's own observation again
    for action in (0, 2, NOOP):
        got, want = wrapped.step(np.full(B, action)), plain.step(np.full(B, action))
        for key in got.obs:
            np.testing.assert_array_equal(got.obs[key], want.obs[key])
    wrapped.close()
    plain.close()


def test_no_noise_on_the_first_observation_after_an_episode_ends() -> None:
    wrapped, plain = _pair(max_episode_steps=2)
    wrapped.reset()
    plain.reset()
    tv = np.full(B, wrapped.noise_action)
    for _ in range(2):
        wrapped.step(tv)
        ended = plain.step(np.full(B, NOOP))
    assert ended.truncated.all()
    got, want = wrapped.step(tv), plain.step(np.full(B, NOOP))  # auto-reset step
    np.testing.assert_array_equal(got.obs["image"], want.obs["image"])
    wrapped.close()
    plain.close()


def test_rejects_envs_without_an_image() -> None:
    with pytest.raises(ValueError, match="uint8 image"):
        make_vec_env(EnvConfig(id="CartPole-v1", noisy_tv=True), 1, seed=0)


@pytest.mark.timeout(300)
def test_whole_system_trains_with_the_tv_action(tmp_path: Path) -> None:
    """Actors send 8-action rollouts that the learner's schema and model accept."""
    cfg = load_config(CONFIGS / "quickstart.yaml", [
        f"runs_dir={tmp_path}", "env.noisy_tv=true", "total_env_steps=4096",
        "env.envs_per_actor=4", "actors.rollout_len=16",
        "intrinsic=[{name: rnd, coef: 0.1}]"])
    spec = probe_env_spec(cfg.env)
    assert spec.num_actions == 8
    result = Supervisor(cfg, spec, create_run_dir(cfg, ["test"])).run()
    assert result.reason == "done"
    assert result.env_steps >= 4096
    assert result.last_status["dropped"] == 0
    assert result.last_status["updates"] >= 4096 // (2 * 4 * 16)
