"""Shapes shared by actors and learner: the env's observation spec and the rollout schema.

Both sides build the same :class:`~explorer.core.wire.WireSchema` from these, so a rollout that does
not match the running env and model is rejected at the learner's socket.

An env may also report extra statistics per finished episode (NetHack: score, depth, death
cause, ...). It declares their names in ``EnvSpec.episode_stats``; the actor packs the episodes
of each rollout into two arrays (:func:`pack_episode_stats`) and the learner checks and unpacks
them (:func:`unpack_episode_stats`). Envs that declare none send nothing extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from explorer.core.wire import KIND_ROLLOUT, KIND_WEIGHTS, ArraySpec, WireError, WireSchema

__all__ = [
    "LABEL_BYTES",
    "EnvSpec",
    "EpisodeStatsSpec",
    "ObsSpec",
    "pack_episode_stats",
    "rollout_schema",
    "sanitize_label",
    "unpack_episode_stats",
    "weights_schema",
    "with_env_spec",
]

#: key -> (per-env shape, numpy dtype name)
ObsSpec = dict[str, tuple[tuple[int, ...], str]]

#: Bytes per categorical episode label on the wire (ASCII ``[a-z0-9_]``, zero padded).
LABEL_BYTES = 48
_LABEL_RE = re.compile(rb"[a-z0-9_]*")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class EpisodeStatsSpec:
    """Extra per-episode statistics an env reports from ``episode_info()``.

    ``episode_info()`` returns one dict per episode completed since its last call, with a
    number for each of ``values`` and a short string for each of ``labels``.

    Attributes:
        prefix: TensorBoard tag prefix: ``nethack`` gives ``nethack/score``.
        values: Numeric stats; the learner logs the mean of recent episodes of each.
        labels: Categorical stats (e.g. the death cause); the learner logs counts per value.
            An empty label means "not applicable" and is not counted.
    """

    prefix: str
    values: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = (self.prefix, *self.values, *self.labels)
        bad = [n for n in names if not _NAME_RE.fullmatch(n)]
        if bad or len(set(names[1:])) != len(names) - 1:
            raise ValueError(f"episode stat names must be unique [a-z][a-z0-9_]*; got {names}")


@dataclass(frozen=True)
class EnvSpec:
    """What the model needs to know about an env: named observation arrays and action count.

    ``episode_stats`` (optional) declares the extra per-episode statistics the env reports.
    """

    obs_spec: ObsSpec
    num_actions: int
    episode_stats: EpisodeStatsSpec | None = None


def rollout_schema(
    spec: EnvSpec, rollout_len: int, num_envs: int, core_size: int, max_bytes: int,
    text_units: int = 0,
) -> WireSchema:
    """Schema of one actor rollout of ``rollout_len`` steps from ``num_envs`` envs.

    Arrays (T = rollout_len, B = num_envs):
        obs/<key>: (T+1, B, *shape): observations, the last row is the bootstrap observation.
        actions (T, B) int64; logp (T, B) float32: behaviour log-probabilities.
        values (T+1, B) float32: behaviour values incl. the bootstrap value.
        rewards (T, B) float32; terminated, truncated (T, B) bool.
        valid (T, B) bool: False on auto-reset steps (the action was ignored by the env).
        episode_start (T, B) bool: obs[t] is the first observation of an episode.
        core_state (B, H) float32: recurrent state before step 0.
        ep_returns, ep_lengths (K,): episodes completed during this rollout.
        text_hash (T, B, U) int64, text_count (T, B, U) int32 (``text_units`` U > 0): ids of
            the U text units (the message, or its sentences) shown after step t (0: none) and
            how often each was shown so far in the episode.
        ep_stats (K', S) float32, ep_labels (K', L, LABEL_BYTES) uint8 (when the env declares
            ``episode_stats`` with S values and L labels): its episodes completed during this
            rollout (see :func:`pack_episode_stats`).
    """
    t, b = rollout_len, num_envs
    arrays = {f"obs/{key}": ArraySpec(dtype, (t + 1, b, *shape))
              for key, (shape, dtype) in spec.obs_spec.items()}
    arrays.update(
        actions=ArraySpec("int64", (t, b)),
        logp=ArraySpec("float32", (t, b)),
        values=ArraySpec("float32", (t + 1, b)),
        rewards=ArraySpec("float32", (t, b)),
        terminated=ArraySpec("bool", (t, b)),
        truncated=ArraySpec("bool", (t, b)),
        valid=ArraySpec("bool", (t, b)),
        episode_start=ArraySpec("bool", (t, b)),
        core_state=ArraySpec("float32", (b, core_size)),
        ep_returns=ArraySpec("float32", (None,)),
        ep_lengths=ArraySpec("int32", (None,)),
    )
    if text_units:
        u = text_units
        arrays.update(text_hash=ArraySpec("int64", (t, b, u)),
                      text_count=ArraySpec("int32", (t, b, u)))
    stats = spec.episode_stats
    if stats is not None:
        arrays.update(ep_stats=ArraySpec("float32", (None, len(stats.values))),
                      ep_labels=ArraySpec("uint8", (None, len(stats.labels), LABEL_BYTES)))
    return WireSchema(kind=KIND_ROLLOUT, arrays=arrays, max_bytes=max_bytes)


def sanitize_label(text: str) -> str:
    """``text`` as a wire label: lower case, runs of other characters as ``_``, truncated."""
    label = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return label[:LABEL_BYTES].rstrip("_")


def pack_episode_stats(episodes: Sequence[Mapping[str, Any]], stats: EpisodeStatsSpec
                       ) -> dict[str, np.ndarray]:
    """The ``ep_stats`` and ``ep_labels`` arrays of K episodes from ``episode_info()``.

    Labels pass through :func:`sanitize_label`.

    Raises:
        KeyError: An episode lacks one of the declared stats (a bug in the env).
    """
    k = len(episodes)
    values = np.zeros((k, len(stats.values)), dtype=np.float32)  # (K, S)
    labels = np.zeros((k, len(stats.labels), LABEL_BYTES), dtype=np.uint8)  # (K, L, LABEL_BYTES)
    for i, episode in enumerate(episodes):
        values[i] = [float(episode[name]) for name in stats.values]
        for j, name in enumerate(stats.labels):
            raw = sanitize_label(str(episode[name])).encode("ascii")
            labels[i, j, :len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return {"ep_stats": values, "ep_labels": labels}


def unpack_episode_stats(arrays: Mapping[str, np.ndarray], stats: EpisodeStatsSpec
                         ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Checks a received rollout's episode stats and decodes them.

    Args:
        arrays: A decoded rollout (shapes already checked against :func:`rollout_schema`).
        stats: The env's declaration.

    Returns:
        ``(K, S)`` float32 values and K tuples of L labels.

    Raises:
        WireError: ``bad_episode_stats`` for a count mismatch, a non-finite value, or a label
            that is not zero-padded ``[a-z0-9_]`` ASCII.
    """
    values, raw = arrays["ep_stats"], arrays["ep_labels"]
    if len(values) != len(raw):
        raise WireError("bad_episode_stats",
                        f"{len(values)} rows of ep_stats but {len(raw)} of ep_labels")
    if not np.isfinite(values).all():
        raise WireError("bad_episode_stats", "ep_stats holds a non-finite value")
    labels = []
    for row in raw:
        episode = []
        for entry in row:
            text, _, padding = entry.tobytes().partition(b"\0")
            if padding.strip(b"\0") or not _LABEL_RE.fullmatch(text):
                raise WireError("bad_episode_stats", f"ep_labels entry {entry.tobytes()[:60]!r} "
                                "is not zero-padded [a-z0-9_] ASCII")
            episode.append(text.decode("ascii"))
        labels.append(tuple(episode))
    return values, labels


def weights_schema(named_params: Mapping[str, np.ndarray], max_bytes: int) -> WireSchema:
    """Schema of a weights broadcast for a model with these named float32 tensors."""
    arrays = {name: ArraySpec(str(p.dtype), tuple(p.shape)) for name, p in named_params.items()}
    return WireSchema(kind=KIND_WEIGHTS, arrays=arrays, max_bytes=max_bytes)


def with_env_spec(args: Any) -> Any:
    """A process's frozen args with ``env_spec`` filled in from ``args.env_spec_pipe``.

    The launcher starts the processes while it still probes the env (so their imports of
    torch and envpool overlap the probe) and sends the spec down that pipe when it has it.
    Exits the process quietly when the launcher closes the pipe without one (a bad env id:
    the launcher reports it).
    """
    if args.env_spec is not None or args.env_spec_pipe is None:
        return args
    try:
        spec = args.env_spec_pipe.recv()
    except EOFError:
        raise SystemExit(1) from None
    finally:
        args.env_spec_pipe.close()
    return replace(args, env_spec=spec, env_spec_pipe=None)
