"""Vectorised environments behind one small interface: EnvPool first, gymnasium as fallback.

NetHack task ids go to ``actors.nethack.NetHackVecEnv`` (backend ``nle``).

All backends auto-reset on the step *after* an episode ends (the step's action is ignored and
it returns the first observation of the next episode with reward 0). The actor marks those
steps invalid instead of hiding them, so truncated episodes keep their true final observation
for bootstrapping.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from actors.env_ids import envpool_knows, nle_ids
from explorer.core.specs import EnvSpec, ObsSpec

__all__ = ["StepResult", "VecEnv", "make_vec_env", "probe_env_spec"]

_OBS_KEY = "obs"


@dataclass
class StepResult:
    """One vectorised step. All arrays have leading dimension B (num_envs)."""

    obs: dict[str, np.ndarray]
    rewards: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool
    truncated: np.ndarray  # (B,) bool


class VecEnv(Protocol):
    """What the actor needs from a batch of environments."""

    num_envs: int
    spec: EnvSpec

    def reset(self) -> dict[str, np.ndarray]: ...

    def step(self, actions: np.ndarray) -> StepResult: ...

    def close(self) -> None: ...


def _as_obs_dict(obs: Any) -> dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {_OBS_KEY: np.asarray(obs)}


def _obs_spec_from_space(space: Any) -> ObsSpec:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return {k: _leaf_spec(k, s) for k, s in space.spaces.items()}
    return {_OBS_KEY: _leaf_spec(_OBS_KEY, space)}


def _leaf_spec(name: str, space: Any) -> tuple[tuple[int, ...], str]:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return (), "int32"
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), np.dtype(space.dtype).name
    raise ValueError(
        f"observation {name!r} has space {space}; supported: Box, Discrete (or a Dict of them)"
    )


def _num_actions(space: Any, env_id: str) -> int:
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(
            f"env {env_id!r} has action space {space}; only Discrete actions are supported"
        )
    return int(space.n)


class _Backend:
    """Shared step bookkeeping: dtype normalisation of every backend's outputs."""

    spec: EnvSpec

    def _cast_obs(self, obs: Any) -> dict[str, np.ndarray]:
        out = _as_obs_dict(obs)
        return {k: out[k].astype(self.spec.obs_spec[k][1], copy=False) for k in self.spec.obs_spec}

    def _result(self, obs: Any, rew: Any, term: Any, trunc: Any) -> StepResult:
        return StepResult(
            obs=self._cast_obs(obs),
            rewards=np.asarray(rew, dtype=np.float32),
            terminated=np.asarray(term, dtype=bool),
            truncated=np.asarray(trunc, dtype=bool),
        )


class EnvPoolVecEnv(_Backend):
    """EnvPool's C++ thread pool stepping ``num_envs`` envs synchronously."""

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None,
                 kwargs: dict) -> None:
        envpool_knows(env_id)  # first: imports envpool with only this id's family registered
        import envpool

        extra = dict(kwargs)
        if max_episode_steps is not None:
            extra["max_episode_steps"] = max_episode_steps
        with warnings.catch_warnings():  # EnvPool builds float64-bounded float32 Boxes
            warnings.filterwarnings("ignore", message=".*precision lowered.*")
            self._env = envpool.make(
                env_id, env_type="gymnasium", num_envs=num_envs, seed=seed, num_threads=1, **extra
            )
            self.spec = EnvSpec(
                obs_spec=_obs_spec_from_space(self._env.observation_space),
                num_actions=_num_actions(self._env.action_space, env_id),
            )
        self.num_envs = num_envs
        self._direct = _DirectStep.plan(self._env, self.spec.obs_spec, num_envs)

    def reset(self) -> dict[str, np.ndarray]:
        obs, _ = self._env.reset()
        return self._cast_obs(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = actions.astype(np.int32, copy=False)
        if self._direct is not None:
            return self._direct.step(self._env, actions, self.spec.obs_spec)
        obs, rew, term, trunc, _ = self._env.step(actions)
        return self._result(obs, rew, term, trunc)

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """(H, W, 3) uint8 screen of env ``index`` (needs ``make_vec_env(..., render=True)``)."""
        return self._env.render(env_ids=[index])[0]

    def close(self) -> None:
        self._env.close()


class _DirectStep:
    """EnvPool's step without its Python wrapper: ``_send`` / ``_recv`` on the C++ pool.

    Why: for 16 MiniGrid envs the wrapper (action conversion, the multi-player env-id
    inference that rebuilds the config dict every call, state unflattening through optree)
    costs more CPU than the C++ step itself, once per actor step. Used only for what the
    wrapper would do the same: a synchronous single-player pool whose actions are exactly
    ``(env_id, players.env_id, action)``; anything else keeps ``env.step``. The arrays are
    the very ones the wrapper returns (``tests/actors/test_envs.py`` steps both side by side).
    """

    def __init__(self, env_ids: np.ndarray, done: int, trunc: int, reward: int,
                 obs: dict[str, int]) -> None:
        self.env_ids, self.done, self.trunc, self.reward, self.obs = env_ids, done, trunc, \
            reward, obs

    @classmethod
    def plan(cls, env: Any, obs_spec: ObsSpec, num_envs: int) -> _DirectStep | None:
        try:
            config, states = env.config, list(env._state_keys)
            direct = (list(env._action_keys) == ["env_id", "players.env_id", "action"]
                      and config.get("max_num_players", 1) == 1
                      and config.get("batch_size", num_envs) in (0, num_envs)
                      and callable(getattr(env, "_send", None))
                      and callable(getattr(env, "_recv", None)))
            if not direct:
                return None
            obs = {k: states.index(_OBS_KEY if list(obs_spec) == [_OBS_KEY] else f"obs:{k}")
                   for k in obs_spec}
            return cls(np.arange(num_envs, dtype=np.int32), states.index("done"),
                       states.index("trunc"), states.index("reward"), obs)
        except (AttributeError, ValueError, TypeError):  # another EnvPool: its own wrapper
            return None

    def step(self, env: Any, actions: np.ndarray, obs_spec: ObsSpec) -> StepResult:
        env._send([self.env_ids, self.env_ids, actions])
        state = env._recv()
        done, trunc = state[self.done], state[self.trunc]
        return StepResult(
            obs={k: state[i].astype(obs_spec[k][1], copy=False) for k, i in self.obs.items()},
            rewards=np.asarray(state[self.reward], dtype=np.float32),
            terminated=done & ~trunc,
            truncated=np.asarray(trunc, dtype=bool),
        )


class GymnasiumVecEnv(_Backend):
    """Any registered gymnasium id, vectorised in-process (SyncVectorEnv, next-step reset)."""

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None,
                 kwargs: dict) -> None:
        import gymnasium as gym

        extra = dict(kwargs)
        if max_episode_steps is not None:
            extra["max_episode_steps"] = max_episode_steps
        self._env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **extra)
        self._seed = seed
        self.num_envs = num_envs
        self.spec = EnvSpec(
            obs_spec=_obs_spec_from_space(self._env.single_observation_space),
            num_actions=_num_actions(self._env.single_action_space, env_id),
        )

    def reset(self) -> dict[str, np.ndarray]:
        obs, _ = self._env.reset(seed=self._seed)
        return self._cast_obs(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, _ = self._env.step(actions)
        return self._result(obs, rew, term, trunc)

    def render_rgb(self, index: int = 0) -> np.ndarray:
        """(H, W, 3) uint8 screen of env ``index`` (needs ``make_vec_env(..., render=True)``)."""
        return self._env.render()[index]

    def close(self) -> None:
        self._env.close()


def make_vec_env(env_cfg: Any, num_envs: int, seed: int, *, render: bool = False) -> VecEnv:
    """Build ``num_envs`` envs of ``env_cfg.id`` on the configured backend.

    ``backend="auto"`` takes NLE for NetHack task ids, EnvPool when it knows the id, else
    gymnasium. ``env_cfg.noisy_tv`` wraps the result in ``actors.noisy_tv.NoisyTVVecEnv``.
    ``render`` builds EnvPool and gymnasium envs with ``render_mode="rgb_array"`` so that
    ``render_rgb(i)`` draws them (for videos; NetHack is drawn from its tty observation).
    """
    env = _make_backend(env_cfg, num_envs, seed, render)
    # getattr: callers may pass any object with the EnvConfig fields, older ones lack noisy_tv
    if getattr(env_cfg, "noisy_tv", False):
        from actors.noisy_tv import NoisyTVVecEnv  # imports actors.envs itself

        env = NoisyTVVecEnv(env, env_id=env_cfg.id, seed=seed)
    return env


def _make_backend(env_cfg: Any, num_envs: int, seed: int, render: bool = False) -> VecEnv:
    """The backend env of :func:`make_vec_env`, unwrapped."""
    backend = env_cfg.backend
    if backend == "auto" and env_cfg.id in (nle_ids() or ()):
        backend = "nle"
    if backend == "auto":
        backend = "envpool" if envpool_knows(env_cfg.id) else "gymnasium"
    if backend == "nle":
        from actors.nethack import NetHackVecEnv  # imports nle only when it is needed

        return NetHackVecEnv(env_cfg.id, num_envs, seed, env_cfg.max_episode_steps,
                             dict(env_cfg.envpool_kwargs))
    cls = EnvPoolVecEnv if backend == "envpool" else GymnasiumVecEnv
    kwargs = dict(env_cfg.envpool_kwargs) | ({"render_mode": "rgb_array"} if render else {})
    return cls(env_cfg.id, num_envs, seed, env_cfg.max_episode_steps, kwargs)


def probe_env_spec(env_cfg: Any) -> EnvSpec:
    """Make one env to read its spec (the launcher does this once, before any process starts)."""
    env = make_vec_env(env_cfg, 1, 0)
    try:
        return env.spec
    finally:
        env.close()
