"""Both env backends give the same spec and the same next-step auto-reset semantics."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium
import numpy as np
import pytest

from actors.envs import EnvPoolVecEnv, GymnasiumVecEnv, make_vec_env


@dataclass(frozen=True)
class _EnvCfg:
    id: str
    backend: str = "auto"
    max_episode_steps: int | None = None
    envpool_kwargs: dict = field(default_factory=dict)


# A real gymnasium env under an id EnvPool does not know, so `auto` must fall back to gymnasium.
GYM_ONLY_ID = "ExplorerTestLake-v0"
if GYM_ONLY_ID not in gymnasium.registry:
    gymnasium.register(GYM_ONLY_ID, entry_point="gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv",
                       max_episode_steps=100)


def _pattern(env, steps: int) -> list[tuple[float, bool, bool]]:
    env.reset()
    out = []
    for _ in range(steps):
        r = env.step(np.zeros(env.num_envs, dtype=np.int64))
        out.append((float(r.rewards[0]), bool(r.terminated[0]), bool(r.truncated[0])))
    return out


def test_auto_backend_picks_envpool_then_gymnasium() -> None:
    assert isinstance(make_vec_env(_EnvCfg("CartPole-v1"), 2, 0), EnvPoolVecEnv)
    assert isinstance(make_vec_env(_EnvCfg(GYM_ONLY_ID), 2, 0), GymnasiumVecEnv)


def test_backends_agree_on_spec_and_truncation_reset() -> None:
    pool = make_vec_env(_EnvCfg("CartPole-v1", "envpool", max_episode_steps=4), 1, 0)
    gym = make_vec_env(_EnvCfg("CartPole-v1", "gymnasium", max_episode_steps=4), 1, 0)
    assert pool.spec == gym.spec
    assert pool.spec.obs_spec == {"obs": ((4,), "float32")} and pool.spec.num_actions == 2
    # always pushing left: the pole falls after ~10 steps; with a 4-step limit it truncates
    expected = [(1.0, False, False)] * 3 + [(1.0, False, True), (0.0, False, False)]
    assert _pattern(pool, 5) == expected
    assert _pattern(gym, 5) == expected


def test_discrete_observations_and_dict_specs() -> None:
    lake = make_vec_env(_EnvCfg(GYM_ONLY_ID), 3, 0)
    assert lake.spec.obs_spec == {"obs": ((), "int32")}
    obs = lake.reset()
    assert obs["obs"].shape == (3,) and obs["obs"].dtype == np.int32
    grid = make_vec_env(_EnvCfg("MiniGrid-Empty-5x5-v0"), 2, 0)
    assert grid.spec.obs_spec["image"] == ((7, 7, 3), "uint8")
    assert set(grid.reset()) == set(grid.spec.obs_spec)


def test_continuous_actions_are_a_clear_error() -> None:
    with pytest.raises(TypeError, match="only Discrete actions"):
        make_vec_env(_EnvCfg("Pendulum-v1", "gymnasium"), 1, 0)


def test_envpool_registers_only_the_family_it_needs() -> None:
    """A MiniGrid run never imports EnvPool's jumanji family (and its matplotlib); an Atari
    id or an unknown one still resolves, the latter against every family's ids."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from actors.env_ids import envpool_ids, envpool_knows\n"
        "from actors.envs import EnvPoolVecEnv\n"
        "env = EnvPoolVecEnv('MiniGrid-DoorKey-5x5-v0', 2, 0, None, {})\n"
        "env.reset(); env.close()\n"
        "light = 'matplotlib' not in sys.modules and 'envpool.jumanji' not in sys.modules\n"
        "print(light, envpool_knows('Pong-v5'), envpool_knows('Nope-v0'),\n"
        "      'envpool.jumanji.registration' in sys.modules, len(envpool_ids()) > 1000)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["True", "True", "False", "True", "True"]


@pytest.mark.parametrize(("env_id", "steps"), [
    ("MiniGrid-DoorKey-5x5-v0", 600),  # dict obs; episodes end (100-step limit) and reset
    ("CartPole-v1", 400),
    ("Pong-v5", 110),  # image obs
])
def test_direct_step_returns_what_envpools_wrapper_returns(env_id: str, steps: int) -> None:
    """The direct ``_send``/``_recv`` step against the wrapper's ``env.step``, two pools of
    the same seed side by side with the same random actions, episode ends included."""
    direct, wrapped = (make_vec_env(_EnvCfg(env_id, max_episode_steps=100), 4, 7)
                       for _ in range(2))
    assert direct._direct is not None
    wrapped._direct = None  # the wrapper's path
    rng = np.random.default_rng(0)
    for obs_a, obs_b in zip(direct.reset().values(), wrapped.reset().values(), strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
    ended = 0
    for _ in range(steps):
        actions = rng.integers(0, direct.spec.num_actions, 4)
        a, b = direct.step(actions), wrapped.step(actions)
        assert a.obs.keys() == b.obs.keys() == direct.spec.obs_spec.keys()
        for key in a.obs:
            assert a.obs[key].dtype == b.obs[key].dtype
            np.testing.assert_array_equal(a.obs[key], b.obs[key])
        for field_a, field_b in ((a.rewards, b.rewards), (a.terminated, b.terminated),
                                 (a.truncated, b.truncated)):
            assert field_a.dtype == field_b.dtype and field_a.shape == (4,)
            np.testing.assert_array_equal(field_a, field_b)
        ended += int((a.terminated | a.truncated).sum())
    assert ended > 0
