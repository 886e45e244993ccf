"""Noisy-TV wrapper: one extra action that shows fresh random noise in the observation.

The "noisy TV" (Burda et al. 2018, arXiv:1810.12355, section 3.6) is the classic trap for
prediction-error bonuses: an action whose outcome is unpredictable looks forever novel, so a
curious agent can stay in front of the TV instead of exploring. This wrapper adds that trap to
any discrete-action env with image-like observations, so that bonuses can be compared on how
much of their time they waste on it (``benchmarks/exploration.py``).

The extra action has index ``num_actions`` of the wrapped env. Taking it steps the wrapped env
with a no-op action and then overwrites a fixed patch (the top-left ceil(H/2) x ceil(W/2) cells)
of every image key of the resulting observation with fresh uniform noise (the patch spans the
first two axes of each image's per-env shape). Any other action
passes through, and the observation after it is the env's own. Auto-reset steps (the step after
an episode ended, whose action the env ignores) never show noise: their observation is the
first of a new episode.

Shapes: B = envs; an image key has per-env shape (H, W) or (H, W, C).
"""

from __future__ import annotations

import numpy as np

from actors.envs import StepResult, VecEnv
from explorer.core.specs import EnvSpec

__all__ = ["NoisyTVVecEnv", "default_noise_high", "default_noop_action", "image_keys"]

#: MiniGrid's "done" action does nothing in every task EnvPool ships (actions 0..6).
_MINIGRID_NOOP = 6
#: Ranges of MiniGrid's image channels (object id, colour id, state id), so the noise is made
#: of valid ids that the ``minigrid_cnn`` model and RND whitening see as plausible cells.
_MINIGRID_CHANNEL_HIGH = (11, 6, 3)


def _is_minigrid(env_id: str) -> bool:
    return env_id.startswith(("MiniGrid-", "BabyAI-"))


def default_noop_action(env_id: str) -> int:
    """The action the wrapped env takes while the TV shows noise: MiniGrid ``done``, else 0.

    Args:
        env_id: The wrapped env's id.

    Returns:
        An action index of the wrapped env (0 is NOOP in Atari's action sets).
    """
    return _MINIGRID_NOOP if _is_minigrid(env_id) else 0


def default_noise_high(env_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """Exclusive upper bound of the noise per channel of an image of per-env ``shape``.

    Args:
        env_id: The wrapped env's id.
        shape: Per-env image shape, (H, W) or (H, W, C).

    Returns:
        ``(C,)`` int64 bounds for a MiniGrid (H, W, 3) image, else ``(1,)`` ``[256]``.
    """
    if _is_minigrid(env_id) and len(shape) == 3 and shape[2] == len(_MINIGRID_CHANNEL_HIGH):
        return np.asarray(_MINIGRID_CHANNEL_HIGH, dtype=np.int64)
    return np.asarray([256], dtype=np.int64)


def image_keys(env: VecEnv) -> list[str]:
    """Observation keys the noise is drawn into: uint8 arrays with 2+ dims per env."""
    return [k for k, (shape, dtype) in env.spec.obs_spec.items()
            if dtype == "uint8" and len(shape) >= 2]


class NoisyTVVecEnv:
    """Wraps a :class:`~actors.envs.VecEnv`, adding action ``num_actions`` = "watch the TV".

    Attributes:
        num_envs: B, as the wrapped env.
        spec: The wrapped spec with one more action.
        noise_action: Index of the added action.
        noop_action: Wrapped-env action stepped in its place.
        keys: Image keys that show the noise.
    """

    def __init__(self, env: VecEnv, *, env_id: str, seed: int,
                 noop_action: int | None = None) -> None:
        """Wraps ``env``; the noise is drawn from ``np.random.default_rng(seed)``.

        Args:
            env: The env to wrap.
            env_id: Its id (picks the no-op action and the noise range).
            seed: Seed of the noise generator.
            noop_action: Wrapped-env action stepped for the TV action (default: by ``env_id``).

        Raises:
            ValueError: The env has no image key to show noise in, or ``noop_action`` is not
                one of its actions.
        """
        self.env = env
        self.num_envs = env.num_envs
        self.keys = image_keys(env)
        if not self.keys:
            raise ValueError(f"noisy_tv needs a uint8 image observation (2+ dims per env); "
                             f"{env_id!r} has {env.spec.obs_spec}")
        num_actions = env.spec.num_actions
        self.noop_action = default_noop_action(env_id) if noop_action is None else noop_action
        if not 0 <= self.noop_action < num_actions:
            raise ValueError(f"noisy_tv no-op action {self.noop_action} is not an action of "
                             f"{env_id!r} (0..{num_actions - 1})")
        self.noise_action = num_actions
        self.spec = EnvSpec(obs_spec=env.spec.obs_spec, num_actions=num_actions + 1)
        self._high = {k: default_noise_high(env_id, env.spec.obs_spec[k][0]) for k in self.keys}
        self._rng = np.random.default_rng(seed)
        self._resetting = np.zeros(self.num_envs, dtype=bool)  # (B,) next step auto-resets

    def reset(self) -> dict[str, np.ndarray]:
        self._resetting[:] = False
        return self.env.reset()

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps the wrapped env; envs that chose the TV action see noise in their image.

        Args:
            actions: ``(B,)`` ints in ``0..num_actions`` of the wrapped env (inclusive).

        Returns:
            The wrapped env's step, with noisy image patches where the TV was watched.
        """
        actions = np.asarray(actions)
        watch = (actions == self.noise_action) & ~self._resetting  # (B,)
        inner = np.where(actions == self.noise_action, self.noop_action, actions)
        result = self.env.step(inner.astype(actions.dtype, copy=False))
        self._resetting = result.terminated | result.truncated
        if watch.any():
            rows = np.flatnonzero(watch)
            for key in self.keys:
                obs = result.obs[key].copy()  # the backend may reuse its buffers
                shape = obs.shape[1:]
                h, w = (shape[0] + 1) // 2, (shape[1] + 1) // 2
                patch = (len(rows), h, w, *shape[2:])  # (b, h, w[, C])
                high = np.broadcast_to(self._high[key], patch)
                noise = self._rng.integers(0, high, dtype=np.int64)
                obs[rows, :h, :w] = noise.astype(obs.dtype)
                result.obs[key] = obs
        return result

    def close(self) -> None:
        self.env.close()
