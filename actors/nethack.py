"""NetHack (NLE) behind the ``VecEnv`` interface: M NLE envs stepped in a loop in-process.

Observations are the fixed-shape arrays of ``OBS_KEYS`` (B = num_envs)::

    glyphs (B, 21, 79) int16    blstats (B, 27) int64    message (B, 256) uint8
    tty_chars (B, 24, 80) uint8    tty_colors (B, 24, 80) int8

Semantics match EnvPool's: the step *after* an episode ends resets that env, ignores its action
and returns the new episode's first observation with reward 0 and terminated = truncated =
False. NLE's step limit (``max_episode_steps``) ends an episode as truncated, every other end
(death, task success) as terminated. Each reset seeds NetHack's core and disp RNGs from a
per-env generator seeded with ``seed + env index`` (no reseeding, moon phase from the seed), so
a run's episodes are reproducible.

An NLE env that raises from ``step`` or ``reset`` is closed and recreated and ``crashes`` is
incremented; a crash in ``step`` ends its episode as truncated, with the last good observation
and reward 0, and the next step resets that env as usual.

Every finished episode is summarised for ``episode_info()`` (declared in ``spec.episode_stats``,
shipped to the learner's TensorBoard as ``nethack/*``): score, max depth, experience level,
gold and game turns from the last in-game blstats (NLE zeroes blstats in the observation of the
step on which the character dies, so that step falls back to the previous observation's), the
number of distinct messages seen, how it ended, and for deaths NetHack's own death reason
("killed by a jackal", "starved to death") read from the game's xlogfile, which NetHack appends
to when a game ends (NLE has no API for the killer; ``how_done()`` only gives the end type).

In-process loop vs subprocess workers (``benchmarks/nethack_throughput.py``, NetHackScore-v0,
extended actions, random actions, M = 8 envs, 2-core machine shared with other jobs; two runs
of 10 s per figure, env steps/s):

    raw NLE loop, 1 process                         15,849 / 16,433
    this in-process loop, 1 process                 12,863 / 13,631   (0.81x / 0.83x raw)
    2 subprocess workers x 4 envs, shared memory     6,983 /  7,389   (0.54x in-process)
    gymnasium AsyncVectorEnv, 8 processes            3,027 /  3,767   (0.24x / 0.28x)

Subprocesses lose clearly: one NLE step takes ~60 us, so a pipe round trip per batch costs
more than a second core gains, and those cores are wanted by the actor's inference and the
learner anyway. The in-process loop is kept.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import sys
from typing import Any

import numpy as np

from actors.envs import StepResult
from actors.nethack_tasks import OBS_KEYS, EndStatus, make_nle_env
from explorer.core.specs import EnvSpec, EpisodeStatsSpec

__all__ = ["EPISODE_STATS", "NetHackVecEnv"]

#: What ``NetHackVecEnv.episode_info()`` reports per episode (TensorBoard ``nethack/<name>``).
EPISODE_STATS = EpisodeStatsSpec(
    prefix="nethack",
    values=("score", "depth", "xp_level", "gold", "turns", "unique_messages"),
    labels=("end", "death"),
)

_RESET_ATTEMPTS = 3
_MAX_EPISODES = 10_000  # episode_info() entries kept between calls
_SEED_HIGH = 2**63 - 1  # NetHack's seeds are C longs
# blstats fields (nle.nethack.NLE_BL_*)
_BL = {"score": 9, "depth": 12, "gold": 13, "xp_level": 18, "turns": 20}
_END_NAMES = {EndStatus.ABORTED: "aborted", EndStatus.DEATH: "death",
              EndStatus.TASK_SUCCESSFUL: "success"}


class NetHackVecEnv:
    """``num_envs`` NLE envs of one task, stepped in a batch loop in this process.

    Attributes:
        num_envs: B.
        spec: Observation spec of ``OBS_KEYS`` and the action count.
        crashes: NLE envs recreated after an exception, since construction.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None,
                 kwargs: dict) -> None:
        """Creates the envs (they are reset by :meth:`reset`).

        Args:
            env_id: A NetHack task id (see ``actors.nethack_tasks``).
            num_envs: B.
            seed: Env i draws the seeds of all its episodes from a generator seeded ``seed + i``.
            max_episode_steps: NLE's step limit (``None``: NLE's 5000).
            kwargs: ``actions`` (``"task"``, ``"extended"`` or ``"full"``) and keyword
                arguments of the NLE task class.
        """
        extra = dict(kwargs)
        actions = extra.pop("actions", "task")
        self._make = functools.partial(make_nle_env, env_id, actions, max_episode_steps, **extra)
        self.num_envs = num_envs
        self.crashes = 0
        self._envs = [self._make() for _ in range(num_envs)]
        space = self._envs[0].observation_space
        self.spec = EnvSpec(
            obs_spec={k: (tuple(space[k].shape), np.dtype(space[k].dtype).name) for k in OBS_KEYS},
            num_actions=int(self._envs[0].action_space.n),
            episode_stats=EPISODE_STATS,
        )
        self._rngs = [np.random.default_rng(seed + i) for i in range(num_envs)]
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._max_depth = np.zeros(num_envs, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._messages: list[set[bytes]] = [set() for _ in range(num_envs)]
        self._xlog_sizes = [0] * num_envs  # xlogfile bytes when the episode started
        self._last = self._alloc(fill=True)
        # bounded (oldest dropped): a caller that never asks for episode_info() must not leak
        self._episodes: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=_MAX_EPISODES)

    # -- VecEnv ----------------------------------------------------------------------------
    def reset(self) -> dict[str, np.ndarray]:
        """Resets every env.

        Returns:
            Key -> ``(B, *shape)`` first observations.
        """
        obs = self._alloc()
        for i in range(self.num_envs):
            self._reset_into(i, obs)
        self._last = obs
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps every env once (envs whose episode ended last step are reset instead).

        Args:
            actions: ``(B,)`` action indices.

        Returns:
            Fresh ``(B, ...)`` observations, rewards, terminated and truncated flags.
        """
        n = self.num_envs
        obs = self._alloc()
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for i, env in enumerate(self._envs):
            if self._needs_reset[i]:
                self._reset_into(i, obs)
                continue
            try:
                o, reward, done, aborted, info = env.step(int(actions[i]))
            except Exception as err:  # noqa: BLE001 - any NLE failure: recreate, keep stepping
                self._recover(i, err)
                for key in OBS_KEYS:
                    obs[key][i] = self._last[key][i]
                truncated[i] = True
                self._end_episode(i, self._last["blstats"][i], "crash", "")
                continue
            for key in OBS_KEYS:
                obs[key][i] = o[key]
            rewards[i] = reward
            self._steps[i] += 1
            if o["message"][0]:
                self._messages[i].add(o["message"].tobytes())
            if done or aborted:
                status = int(info.get("end_status", EndStatus.DEATH))
                truncated[i] = status == EndStatus.ABORTED
                terminated[i] = not truncated[i]
                blstats = o["blstats"] if o["blstats"].any() else self._last["blstats"][i]
                death = self._death_reason(i) if status == EndStatus.DEATH else ""
                self._end_episode(i, blstats, _END_NAMES.get(status, "other"), death)
        np.maximum(self._max_depth, obs["blstats"][:, _BL["depth"]], out=self._max_depth)
        self._last = obs
        return StepResult(obs, rewards, terminated, truncated)

    def close(self) -> None:
        """Closes every NLE env."""
        for env in self._envs:
            env.close()

    # -- extras ----------------------------------------------------------------------------
    def last_messages(self) -> list[str]:
        """The message line of each env after the last step or reset ("" when empty)."""
        return [row.tobytes().partition(b"\0")[0].decode("ascii", "replace").strip()
                if row[0] else "" for row in self._last["message"]]

    def episode_info(self) -> list[dict[str, Any]]:
        """Extras of the episodes completed since the last call (at most the newest 10,000).

        Returns:
            One dict per episode: ``end`` ("death", "success", "aborted" or "crash"),
            ``death`` (NetHack's death reason without articles, e.g. "killed by jackal",
            "starved to death"; NLE's end type such as "starving" when the xlogfile cannot be
            read, "unknown" when neither can; "" unless ``end`` is "death"), from the last
            in-game blstats ``score``, ``depth`` (the deepest level reached), ``xp_level``,
            ``gold``, ``turns``; ``unique_messages`` (distinct non-empty messages seen) and
            ``steps`` (env steps).
        """
        episodes = list(self._episodes)
        self._episodes.clear()
        return episodes

    # -- internals -------------------------------------------------------------------------
    def _alloc(self, fill: bool = False) -> dict[str, np.ndarray]:
        """New ``(B, *shape)`` arrays per key; fresh each step, so callers may keep them."""
        new = np.zeros if fill else np.empty
        return {k: new((self.num_envs, *shape), dtype=dtype)
                for k, (shape, dtype) in self.spec.obs_spec.items()}

    def _reset_into(self, i: int, obs: dict[str, np.ndarray]) -> None:
        """Seeds and resets env ``i`` (recreating it on failure) into row ``i`` of ``obs``."""
        core, disp = (int(s) for s in self._rngs[i].integers(0, _SEED_HIGH, size=2))
        for attempt in range(_RESET_ATTEMPTS):
            try:
                self._envs[i].unwrapped.seed(core, disp, reseed=False)
                o, _ = self._envs[i].reset()
                break
            except Exception as err:  # any NLE failure: recreate and retry
                self._recover(i, err)
                if attempt == _RESET_ATTEMPTS - 1:
                    raise RuntimeError(
                        f"NetHack env {i} failed to reset {_RESET_ATTEMPTS} times") from err
        for key in OBS_KEYS:
            obs[key][i] = o[key]
        self._needs_reset[i] = False
        self._steps[i] = 0
        self._max_depth[i] = o["blstats"][_BL["depth"]]
        self._messages[i] = {o["message"].tobytes()} if o["message"][0] else set()
        self._xlog_sizes[i] = _file_size(_xlogfile(self._envs[i]))

    def _recover(self, i: int, err: BaseException) -> None:
        """Counts a crash of env ``i``, closes it and puts a fresh env in its place."""
        self.crashes += 1
        print(f"nethack: env {i} raised {err!r}; recreating it (crash {self.crashes})",
              file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):  # a broken env may fail to close; drop it
            self._envs[i].close()
        self._envs[i] = self._make()
        self._needs_reset[i] = True

    def _end_episode(self, i: int, blstats: np.ndarray, end: str, death: str) -> None:
        self._needs_reset[i] = True
        self._episodes.append({
            "end": end,
            "death": death,
            "score": int(blstats[_BL["score"]]),
            "depth": max(int(self._max_depth[i]), int(blstats[_BL["depth"]])),
            "xp_level": int(blstats[_BL["xp_level"]]),
            "gold": int(blstats[_BL["gold"]]),
            "turns": int(blstats[_BL["turns"]]),
            "unique_messages": len(self._messages[i]),
            "steps": int(self._steps[i]),
        })

    def _death_reason(self, i: int) -> str:
        """Why env ``i``'s character just died: the xlogfile line its game wrote, else NLE's."""
        reason = _xlog_death(_xlogfile(self._envs[i]), self._xlog_sizes[i])
        return reason if reason is not None else _death_cause(self._envs[i])


def _xlogfile(env: Any) -> str | None:
    """Path of the xlogfile of ``env``'s NetHack (NLE keeps it in a private temp dir)."""
    vardir = getattr(getattr(env.unwrapped, "nethack", None), "_vardir", None)
    return os.path.join(vardir, "xlogfile") if isinstance(vardir, str) else None


def _file_size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def _xlog_death(path: str | None, offset: int) -> str | None:
    """The ``death`` field of the last xlogfile line written after byte ``offset``, normalised.

    xlogfile lines are tab-separated ``key=value`` fields, e.g. ``death=killed by a jackal,
    while sleeping``; the ", while ..." detail and the articles are dropped. ``None`` when
    nothing new was written or the file cannot be read.
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        fields = dict(part.partition("=")[::2] for part in line.split("\t"))
        death = fields.get("death", "").partition(", while")[0].strip()
        if death:
            return re.sub(r"\b(?:a|an|the) ", "", death)
    return None


def _death_cause(env: Any) -> str:
    """NetHack's end type of a finished game, e.g. "died", "starving", "drowning"."""
    try:
        how = env.unwrapped.nethack.how_done()  # a nethack.game_end_types member
        return str(getattr(how, "name", how)).lower()
    except Exception:  # noqa: BLE001 - optional detail; never fail a step for it
        return "unknown"
