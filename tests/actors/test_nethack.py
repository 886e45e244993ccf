"""NetHackVecEnv: spec, EnvPool-style next-step auto-reset, seeding, tasks, crash recovery."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest
from nle import nethack

from actors import nethack_tasks
from actors.env_ids import env_id_problems
from actors.envs import make_vec_env
from actors.nethack import EPISODE_STATS, NetHackVecEnv, _death_cause, _xlogfile
from actors.nethack_tasks import DepthGoal, EndStatus, action_set, make_nle_env
from explorer.core.config import ConfigError, load_config
from explorer.core.specs import pack_episode_stats, unpack_episode_stats

WAIT = 19  # index of MiscDirection.WAIT in NLE's task action set
SPEC = {
    "glyphs": ((21, 79), "int16"),
    "blstats": ((27,), "int64"),
    "message": ((256,), "uint8"),
    "tty_chars": ((24, 80), "uint8"),
    "tty_colors": ((24, 80), "int8"),
}


@dataclass(frozen=True)
class _EnvCfg:
    id: str
    backend: str = "auto"
    max_episode_steps: int | None = None
    envpool_kwargs: dict = field(default_factory=dict)


def _env(num_envs: int = 2, seed: int = 0, task: str = "NetHackScore-v0",
         limit: int | None = None, **kwargs) -> NetHackVecEnv:
    return NetHackVecEnv(task, num_envs, seed, limit, kwargs)


def _waits(env: NetHackVecEnv) -> np.ndarray:
    return np.full(env.num_envs, WAIT, dtype=np.int64)


def test_spec_and_observation_dtypes() -> None:
    env = _env()
    assert env.spec.obs_spec == SPEC and env.spec.num_actions == 23
    obs = env.reset()
    for key, (shape, dtype) in SPEC.items():
        assert obs[key].shape == (2, *shape) and obs[key].dtype == np.dtype(dtype), key
    result = env.step(_waits(env))
    assert result.rewards.dtype == np.float32 and result.terminated.dtype == bool
    assert {k: (v.shape[1:], v.dtype.name) for k, v in result.obs.items()} == SPEC
    env.close()


def test_auto_and_nle_backends_pick_nethack() -> None:
    for backend in ("auto", "nle"):
        env = make_vec_env(_EnvCfg("NetHackStaircase-v0", backend, envpool_kwargs={
            "actions": "extended"}), 1, 0)
        assert isinstance(env, NetHackVecEnv) and env.spec.num_actions == 28
        env.close()


def test_action_sets() -> None:
    # NLE's task set: MORE, 8 compass, 8 far-compass, UP, DOWN, WAIT, KICK, EAT, SEARCH = 23;
    # ONI/Motif's EXTENDED_TASK_ACTIONS add CAST, QUAFF, PRAY, PICKUP, PAY = 28.
    from nle.env.tasks import TASK_ACTIONS

    extended = action_set("extended")
    assert len(TASK_ACTIONS) == 23 and len(extended) == 28
    assert extended[:23] == TASK_ACTIONS
    cmd = nethack.Command
    assert extended[23:] == (cmd.CAST, cmd.QUAFF, cmd.PRAY, cmd.PICKUP, cmd.PAY)
    assert action_set("full") == tuple(nethack.ACTIONS) and len(nethack.ACTIONS) == 121
    assert action_set("task") is None
    with pytest.raises(ValueError, match="task, extended, full"):
        action_set("minimal")
    assert _env(1, actions="full").spec.num_actions == 121


def test_truncation_then_next_step_reset_like_envpool() -> None:
    # Same pattern as EnvPool with max_episode_steps=4 (tests/actors/test_envs.py).
    env = _env(1, limit=4)
    env.reset()
    flags = []
    for _ in range(5):
        result = env.step(_waits(env))
        flags.append((bool(result.terminated[0]), bool(result.truncated[0])))
    assert flags == [(False, False)] * 3 + [(False, True), (False, False)]
    assert result.rewards[0] == 0.0
    assert result.obs["blstats"][0, nethack.NLE_BL_TIME] == 1  # the new episode's first obs
    (info,) = env.episode_info()
    assert info["end"] == "aborted" and info["steps"] == 4 and info["death"] == ""
    assert info["depth"] == 1 and info["turns"] >= 1 and env.episode_info() == []


def test_termination_then_reset_ignores_the_action(monkeypatch: pytest.MonkeyPatch) -> None:
    # A depth goal of 1 is reached on the first step: every other step is a reset step.
    monkeypatch.setitem(nethack_tasks.DEPTH_TASKS, "TestDepth1-v0", 1)
    runs = []
    for action in (WAIT, 1):  # a different action on the reset step must not matter
        env = _env(1, seed=7, task="TestDepth1-v0")
        env.reset()
        first = env.step(_waits(env))
        reset = env.step(np.array([action]))
        runs.append(reset.obs)
        assert (first.rewards[0], first.terminated[0], first.truncated[0]) == (1.0, True, False)
        assert (reset.rewards[0], reset.terminated[0], reset.truncated[0]) == (0.0, False, False)
        assert env.step(_waits(env)).terminated[0]
        assert env.episode_info()[0]["end"] == "success"
    for key in SPEC:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_seeding_is_reproducible_per_env_index() -> None:
    a, b, c = _env(2, seed=3).reset(), _env(2, seed=3).reset(), _env(1, seed=4).reset()
    for key in ("glyphs", "blstats", "message", "tty_chars"):
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key][1], c[key][0])  # env i is seeded seed + i
    assert not np.array_equal(a["glyphs"][0], a["glyphs"][1])
    # later episodes are reproducible too (and differ from the first)
    env1, env2 = _env(1, seed=3, limit=2), _env(1, seed=3, limit=2)
    outs = []
    for env in (env1, env2):
        env.reset()
        outs.append([env.step(_waits(env)).obs["glyphs"].copy() for _ in range(3)][-1])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0][0], a["glyphs"][0])


def test_depth_goal_wrapper_rewards_and_terminates_at_depth() -> None:
    class FakeNle(gym.Env):
        observation_space = gym.spaces.Dict({})
        action_space = gym.spaces.Discrete(3)

        def __init__(self) -> None:
            self.depth = 1

        def step(self, action: int):
            blstats = np.zeros(27, dtype=np.int64)
            blstats[nethack.NLE_BL_DEPTH] = self.depth
            return {"blstats": blstats}, 5.0, False, False, {"end_status": EndStatus.RUNNING}

    inner = FakeNle()
    env = DepthGoal(inner, 3)
    for depth in (1, 2):
        inner.depth = depth
        assert env.step(0)[1:4] == (0.0, False, False)
    inner.depth = 3
    _, reward, terminated, truncated, info = env.step(0)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["end_status"] == EndStatus.TASK_SUCCESSFUL


def test_deeper_staircase_tasks_wrap_nethack_score() -> None:
    for task, depth in (("NetHackStaircaseLvl3-v0", 3), ("NetHackStaircaseLvl4-v0", 4)):
        env = make_nle_env(task, "extended")
        assert isinstance(env, DepthGoal) and env.target == depth
        assert type(env.unwrapped).__name__ == "NetHackScore" and env.action_space.n == 28
        env.close()
    env = _env(2, task="NetHackStaircaseLvl3-v0")
    env.reset()
    result = env.step(_waits(env))  # depth 1: no reward, nothing ends
    assert not result.rewards.any() and not result.terminated.any()


def test_crash_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(2)
    env.reset()
    good = env.step(_waits(env)).obs
    broken = env._envs[1]

    def explode(action: int):
        raise RuntimeError("nethack segfault stand-in")

    monkeypatch.setattr(broken, "step", explode)
    result = env.step(_waits(env))
    assert result.truncated.tolist() == [False, True] and not result.terminated.any()
    assert result.rewards[1] == 0.0 and env.crashes == 1 and env._envs[1] is not broken
    for key in SPEC:
        np.testing.assert_array_equal(result.obs[key][1], good[key][1])  # last good obs
    assert env.episode_info()[0]["end"] == "crash"
    reset = env.step(_waits(env))  # env 1 resets like after any episode end
    assert reset.rewards[1] == 0.0 and not (reset.terminated | reset.truncated).any()
    assert reset.obs["blstats"][1, nethack.NLE_BL_TIME] == 1
    for _ in range(3):
        assert not env.step(_waits(env)).truncated.any()
    assert env.crashes == 1


def test_reset_crash_recreates_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(1)

    def explode(**kwargs):
        raise OSError("no tty")

    monkeypatch.setattr(env._envs[0], "reset", explode)
    obs = env.reset()
    assert env.crashes == 1 and obs["blstats"][0, nethack.NLE_BL_TIME] == 1


def test_last_messages_decode_real_messages() -> None:
    env = _env(2)
    env.reset()
    messages = env.last_messages()
    assert all(m.startswith("Hello Agent, welcome to NetHack!") for m in messages)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        obs = env.step(rng.integers(0, env.spec.num_actions, 2)).obs
        texts = env.last_messages()
        assert [t == "" for t in texts] == [row[0] == 0 for row in obs["message"]]
        seen.update(texts)
    assert "" in seen and len(seen) > 1


def test_death_cause_names_nethack_end_type() -> None:
    class Game:
        @staticmethod
        def how_done():
            return nethack.game_end_types.STARVING

    class Env:
        unwrapped = type("Unwrapped", (), {"nethack": Game()})()

    assert _death_cause(Env()) == "starving"


ENV_CHECK = (env_id_problems,)


def test_config_accepts_nethack_ids_and_lists_them_on_typos() -> None:
    assert load_config(None, checks=ENV_CHECK, overrides=["env.id=NetHackStaircaseLvl3-v0"]).env.id
    cfg = load_config(None, ["env.id=NetHackOracle-v0", "env.backend=nle"], ENV_CHECK)
    assert cfg.env.backend == "nle"
    with pytest.raises(ConfigError) as info:
        load_config(None, checks=ENV_CHECK, overrides=["env.id=NetHackScor-v0"])
    (line,) = info.value.problems
    assert line.startswith("env.id: unknown env 'NetHackScor-v0'; nearest: NetHackScore-v0")
    assert "NetHack tasks: " in line and "NetHackStaircaseLvl4-v0" in line
    with pytest.raises(ConfigError, match="nle knows it"):
        load_config(None, ["env.id=NetHackScore-v0", "env.backend=gymnasium"], ENV_CHECK)


def _play_until_deaths(env: NetHackVecEnv, deaths: int, seed: int, before_step=None
                       ) -> tuple[list[dict], list[dict]]:
    """Random extended actions (PRAY angers the god fast) until ``deaths`` characters died.

    Returns ``episode_info()`` of every finished episode and, per episode, what the test saw
    itself: the set of messages, the blstats of the step before the end, NLE's end type.
    """
    rng = np.random.default_rng(seed)
    obs = env.reset()
    seen = [{"messages": {bytes(obs["message"][i])} - {bytes(256)}, "prev": None}
            for i in range(env.num_envs)]
    infos: list[dict] = []
    mine: list[dict] = []
    reset_next = np.zeros(env.num_envs, dtype=bool)
    for _ in range(20_000):
        if before_step is not None:
            before_step(env)
        prev = obs
        result = env.step(rng.integers(0, env.spec.num_actions, env.num_envs))
        obs = result.obs
        for i in range(env.num_envs):
            message = bytes(obs["message"][i])
            if reset_next[i]:  # an auto-reset step: a new episode starts with this obs
                seen[i] = {"messages": {message} - {bytes(256)}, "prev": None}
                continue
            seen[i]["messages"] |= {message} - {bytes(256)}
            seen[i]["prev"] = prev["blstats"][i].copy()
        done = result.terminated | result.truncated
        for i in np.flatnonzero(done):
            mine.append({"how_done": env._envs[i].unwrapped.nethack.how_done(), **seen[i]})
        reset_next = done
        infos += env.episode_info()
        if sum(info["end"] == "death" for info in infos) >= deaths:
            return infos, mine
    raise AssertionError(f"fewer than {deaths} deaths in 20,000 steps: {infos}")


def test_episode_info_of_real_deaths() -> None:
    env = _env(2, seed=11, actions="extended")
    assert env.spec.episode_stats is EPISODE_STATS
    infos, mine = _play_until_deaths(env, deaths=3, seed=0)
    assert len(infos) == len(mine)
    for info, seen in zip(infos, mine, strict=True):
        assert set(info) == {*EPISODE_STATS.values, *EPISODE_STATS.labels, "steps"}
        assert info["end"] in ("death", "aborted")
        if info["end"] != "death":
            assert info["death"] == ""
            continue
        # NLE zeroes blstats when the character dies: stats come from the step before
        prev = seen["prev"]
        assert info["score"] == prev[nethack.NLE_BL_SCORE] and info["turns"] == prev[
            nethack.NLE_BL_TIME] > 0
        assert info["gold"] == prev[nethack.NLE_BL_GOLD]
        assert info["xp_level"] == prev[nethack.NLE_BL_XP] >= 1 and info["depth"] >= 1
        assert info["unique_messages"] == len(seen["messages"]) >= 2
        # how_done() == DIED is NetHack's "killed by <something>" (from the xlogfile)
        assert seen["how_done"] == nethack.DIED
        assert info["death"].startswith("killed by "), info["death"]
        assert " a " not in info["death"] and ", while" not in info["death"]
    assert env.episode_info() == []
    # the labels go on the wire as [a-z0-9_]
    values, labels = unpack_episode_stats(pack_episode_stats(infos, EPISODE_STATS),
                                          EPISODE_STATS)
    assert values.shape == (len(infos), 6) and values[:, 0].tolist() == [
        i["score"] for i in infos]
    deaths = [lab[1] for lab in labels if lab[0] == "death"]
    assert deaths and all(d.startswith("killed_by_") for d in deaths)


def test_death_reason_falls_back_to_nle_end_type_without_xlogfile() -> None:
    env = _env(1, seed=11, actions="extended")

    def remove_xlogfile(env: NetHackVecEnv) -> None:
        path = _xlogfile(env._envs[0])
        if path is not None and os.path.exists(path):
            os.remove(path)

    infos, _ = _play_until_deaths(env, deaths=1, seed=0, before_step=remove_xlogfile)
    assert [i["death"] for i in infos if i["end"] == "death"] == ["died"]
