"""Run configuration: typed dataclasses, YAML loading, CLI overrides and validation.

A run is described by a YAML file whose keys mirror the dataclasses below; every key is
optional and falls back to its default. Command-line overrides use dotted keys::

    explorer run configs/x.yaml learner.lr=3e-4 actors.num_procs=4 env.envpool_kwargs.foo=1

Override values are parsed as YAML. Unlike plain PyYAML (YAML 1.1), numbers such as ``3e-4``
or ``1E5`` are read as floats, in files and overrides alike; duplicate keys are errors.

Validation walks the dataclass fields and their type hints; the allowed values of a field
(``choices``, ``pattern``, bounds ``ge``/``gt``/``le``/``lt``, ``nonempty``) live in its
``metadata``. Every problem is collected first and then reported together in one
:class:`ConfigError`, one line per problem, each naming the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import operator
import re
import reprlib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from explorer.core.addresses import is_loopback_address, is_loopback_host

__all__ = [
    "ActorsConfig",
    "Config",
    "ConfigCheck",
    "ConfigError",
    "EnvConfig",
    "IntrinsicConfig",
    "LabelerConfig",
    "LauncherConfig",
    "LauncherResources",
    "LearnerConfig",
    "ModelConfig",
    "RetrievalConfig",
    "TextConfig",
    "WireConfig",
    "config_field",
    "config_from_dict",
    "config_to_dict",
    "format_config",
    "load_config",
    "save_config",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration; the message has one line per problem.

    Attributes:
        problems: The individual problem messages, in the order they were found.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        """Store ``problems`` (one message or several) and join them into the message."""
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


#: The validation rules a field may carry (see :func:`_check_rules`).
_RULE_NAMES = frozenset({"ge", "gt", "le", "lt", "choices", "pattern", "pattern_hint",
                         "nonempty"})


def _field(default: Any, **rules: Any) -> Any:
    """A dataclass field whose validation ``rules`` are kept in its metadata.

    Raises:
        TypeError: a rule name that no check reads (a typo would silently validate nothing).
    """
    unknown = sorted(set(rules) - _RULE_NAMES)
    if unknown:
        raise TypeError(f"unknown config field rule(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(_RULE_NAMES))}")
    return field(default=default, metadata=rules)


#: Public name of :func:`_field` for config schemas defined outside this module (e.g. the
#: novelty-search schema of ``explorer search``), which share its validation rules.
config_field = _field


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class EnvConfig:
    """Which environment the actors step, and how many copies each actor runs."""

    #: EnvPool task id, NetHack task id (``NetHackScore-v0``, ``NetHackStaircaseLvl3-v0``, ...)
    #: or any registered gymnasium id, e.g. ``Pong-v5`` or ``CartPole-v1``.
    id: str = _field("MiniGrid-Empty-5x5-v0", nonempty=True)
    #: Simulator: ``envpool`` (batched C++), ``nle`` (NetHack), ``gymnasium``, or ``auto`` (NLE
    #: for NetHack ids, else EnvPool if it has the id, else gymnasium).
    backend: str = _field("auto", choices=("auto", "envpool", "nle", "gymnasium"))
    #: Environments batched inside each actor process; more amortise each policy forward pass.
    envs_per_actor: int = _field(8, ge=1)
    #: Truncate episodes after this many steps; ``None`` keeps the environment's own limit.
    max_episode_steps: int | None = _field(None, ge=1)
    #: Env kwargs (the key keeps its old name): for ``envpool.make`` (e.g. ``episodic_life``),
    #: or for NetHack ``actions`` (``task``, ``extended``, ``full``) and NLE task arguments.
    envpool_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Add a "noisy TV" action that fills part of the image with fresh noise (a trap for
    #: curiosity bonuses; ``actors/noisy_tv.py``). Needs a uint8 image observation.
    noisy_tv: bool = False


@dataclass(frozen=True)
class ActorsConfig:
    """Actor processes that step environments and send rollouts to the learner."""

    #: Number of actor processes, each stepping its own batch of environments.
    num_procs: int = _field(2, ge=1)
    #: Environment steps per rollout sent to the learner (the unroll length T).
    rollout_len: int = _field(32, ge=1)
    #: Seconds to wait before restarting a crashed actor, so crash loops do not spin.
    restart_backoff_s: float = _field(1.0, ge=0)
    #: Actor restarts allowed before the run is aborted as broken.
    max_restarts: int = _field(20, ge=0)
    #: Restart an actor whose rollouts stopped arriving this long while others still arrive.
    heartbeat_timeout_s: float = _field(120.0, gt=0)


@dataclass(frozen=True)
class RetrievalConfig:
    """Retrieval-augmented core (RA-RL): the policy attends over top-k chunks of its past
    (``explorer/core/retrieval.py``)."""

    #: Chunks retrieved per step; 0 turns retrieval off (RA-RL: 10).
    k: int = _field(0, ge=0)
    #: Steps per trajectory chunk (chunks are aligned at the episode's first step).
    chunk_len: int = _field(8, ge=1)
    #: Where chunks come from: ``episode``, the current episode's chunks in the window (the
    #: env's last ``window_chunks`` chunks, carried as the recurrent state); ``run``, also
    #: the env's earlier episodes' chunks in the window and the run memory (below).
    source: str = _field("episode", choices=("episode", "run"))
    #: Chunks of the past the window holds (the state is ``window_chunks * chunk_len`` steps).
    window_chunks: int = _field(16, ge=1)
    #: Width of the keys, queries and values of both attention levels.
    key_dim: int = _field(32, ge=1)
    #: ``source: run`` only: chunks in the run memory, one memory shared by every env and
    #: actor: the learner writes chunks of its training batches into it (FIFO) and it
    #: travels with the weights; 0 turns it off.
    memory_chunks: int = _field(1024, ge=0)
    #: Chunks the learner writes into the run memory per update (drawn from the batch).
    memory_inserts: int = _field(64, ge=1)


@dataclass(frozen=True)
class ModelConfig:
    """Policy/value network architecture."""

    #: Torso: ``auto`` picks from the observation space (MLP for vectors, CNN for images,
    #: ``nethack`` for NLE glyphs + blstats).
    kind: str = _field("auto", choices=("auto", "mlp", "minigrid_cnn", "nature_cnn", "nethack"))
    #: Width of the torso's hidden layers and of its output features.
    hidden_size: int = _field(64, ge=1)
    #: Recurrent core after the torso; ``none`` keeps the policy feed-forward.
    core: str = _field("none", choices=("none", "gru"))
    #: Hidden-state size of the recurrent core (unused when ``core`` is ``none``).
    core_size: int = _field(128, ge=1)
    #: Size knobs of the torso, passed to its class as keywords; ``nethack`` takes
    #: ``embed_dim``, ``full_map``, ``crop_size``, ``blstats_dim``, ``message_dim``.
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Give the value head its own torso (CleanRL's PPO) instead of sharing the policy's:
    #: on DoorKey-5x5 a shared MLP torso needed 1.35x the env steps (benchmarks/RESULTS.md).
    #: Feed-forward models only (``core: none``).
    separate_critic: bool = False
    #: Retrieval-augmented core in place of ``core`` (on when ``retrieval.k > 0``).
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)


@dataclass(frozen=True)
class LearnerConfig:
    """Optimisation: algorithm, loss coefficients, batching and device."""

    #: ``appo`` corrects for stale actor policies with V-trace; ``ppo`` uses plain GAE.
    algo: str = _field("appo", choices=("appo", "ppo"))
    #: Adam learning rate.
    lr: float = _field(3e-4, gt=0)
    #: Adam epsilon; 1e-5 (not torch's 1e-8) is the usual, more stable PPO choice.
    adam_eps: float = _field(1e-5, gt=0)
    #: Decay the learning rate linearly to zero over ``total_env_steps``.
    anneal_lr: bool = False
    #: Discount factor for future rewards.
    gamma: float = _field(0.99, ge=0, le=1)
    #: GAE lambda: trades bias (low) against variance (high) in advantage estimates.
    gae_lambda: float = _field(0.95, ge=0, le=1)
    #: PPO clip range for the policy probability ratio.
    clip_coef: float = _field(0.2, gt=0)
    #: Clip value updates to this distance from the old values; ``None`` disables clipping.
    value_clip_coef: float | None = _field(None, gt=0)
    #: Weight of the entropy bonus, which keeps the policy exploring.
    ent_coef: float = _field(0.01, ge=0)
    #: Weight of the value loss in the total loss.
    vf_coef: float = _field(0.5, ge=0)
    #: Clip the global gradient norm to this value.
    max_grad_norm: float = _field(0.5, gt=0)
    #: V-trace clip on importance weights for value targets (rho bar); ``appo`` only.
    vtrace_rho_bar: float = _field(1.0, gt=0)
    #: V-trace clip on trace coefficients (c bar); ``appo`` only.
    vtrace_c_bar: float = _field(1.0, gt=0)
    #: Actor rollouts gathered into one training batch.
    batch_rollouts: int = _field(2, ge=1)
    #: Most policy versions (learner updates) a rollout may lag behind the learner when it is
    #: trained on, as in Sample Factory: an older rollout is dropped and counted
    #: (``wire/dropped/stale``); its env steps and episodes still count.
    max_policy_lag: int = _field(10, ge=0)
    #: PPO on rollouts the actors collected with older weights (asynchrony makes them at
    #: least one update old): ``true`` clips the update around the learner's policy at its
    #: start and weights each transition by pi_learner / pi_actor (decoupled PPO, Hilton et
    #: al. 2022), with GAE from the learner's critic; ``false`` is textbook PPO around the
    #: actors' policy and values. The two agree on fresh data. ``ppo`` only.
    ppo_lag_correction: bool = True
    #: Optimisation passes over each batch.
    epochs: int = _field(1, ge=1)
    #: Minibatches each batch is split into per epoch.
    minibatches: int = _field(1, ge=1)
    #: What a minibatch is made of: ``samples`` (shuffled single transitions, as CleanRL's
    #: PPO; needs ``algo: ppo`` and no recurrent core), ``envs`` (shuffled whole env columns:
    #: the sequences V-trace and a GRU need), or ``auto`` (``samples`` where it can).
    minibatch_split: str = _field("auto", choices=("auto", "samples", "envs"))
    #: Standardise advantages per minibatch, which makes ``lr`` less reward-scale dependent.
    normalize_advantages: bool = True
    #: torch CPU threads of the learner process (0 = torch's default); actors always use 1.
    num_threads: int = _field(1, ge=0)
    #: Coefficient of the (clipped) extrinsic reward in the combined reward.
    ext_coef: float = _field(1.0, ge=0)
    #: Learn the value head on running-normalised targets (keeps value and policy on one scale).
    normalize_values: bool = True
    #: Clip rewards to ``[-reward_clip, reward_clip]``; ``None`` keeps raw rewards.
    reward_clip: float | None = _field(None, gt=0)
    #: Publish weights to actors every K updates (higher: less traffic, staler actors).
    publish_every: int = _field(1, ge=1)
    #: Torch device for the learner; ``auto`` uses CUDA when it is available.
    device: str = _field(
        "auto", choices=("auto", "cpu", "cuda"), pattern=r"cuda:\d+", pattern_hint="cuda:N"
    )
    #: Network architecture.
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass(frozen=True)
class WireConfig:
    """ZeroMQ sockets between actors and learner."""

    #: ZeroMQ transport: ``ipc`` for a single host, ``tcp`` when actors run elsewhere.
    transport: str = _field("ipc", choices=("ipc", "tcp"))
    #: Address the learner binds and actors connect to (tcp only).
    host: str = _field("127.0.0.1", nonempty=True)
    #: Port for actor-to-learner rollouts; 0 picks a free port at launch (tcp only).
    rollout_port: int = _field(0, ge=0, le=65535)
    #: Port for learner-to-actor weight broadcasts; 0 picks a free port at launch (tcp only).
    weights_port: int = _field(0, ge=0, le=65535)
    #: ZeroMQ send high-water mark: messages queued before a sender blocks (bounds staleness).
    send_hwm: int = _field(2, ge=1)
    #: Largest message accepted, in MiB; guards against oversized or corrupt payloads.
    max_message_mb: float = _field(512.0, gt=0)
    #: Directory of ZeroMQ CURVE keys (``explorer keys gen DIR``): every socket of the run
    #: (rollouts, weights, texts, reward tables) then encrypts and accepts authorised clients
    #: only. Required when any address binds beyond loopback (``wire.host``,
    #: ``llm_labeler.texts_address`` / ``updates_address``); None: no CURVE (loopback, ipc).
    curve_keys: str | None = _field(None, nonempty=True)


@dataclass(frozen=True)
class LauncherResources:
    """What a Ray launcher asks the cluster for, per process (the local launcher ignores it)."""

    #: CPUs reserved for each actor process.
    actor_cpus: float = _field(1.0, ge=0)
    #: CPUs reserved for the learner process.
    learner_cpus: float = _field(1.0, ge=0)
    #: GPUs reserved for the learner; None: 1 when the cluster has a GPU, else 0.
    learner_gpus: float | None = _field(None, ge=0)
    #: CPUs reserved for the labeler process.
    labeler_cpus: float = _field(1.0, ge=0)
    #: Custom Ray resources each actor asks for, e.g. ``{actor_node: 1}`` to place actors only
    #: on nodes started with ``ray start --resources='{"actor_node": 8}'``.
    actor_custom: dict[str, float] = field(default_factory=dict)
    #: Custom Ray resources the learner asks for (e.g. ``{learner_node: 1}``).
    learner_custom: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LauncherConfig:
    """How ``explorer run`` starts its processes. ``launcher=ray`` is short for
    ``launcher.kind=ray``.

    ``local``: learner, actors and labeler are child processes of the command. ``ray``: they
    are Ray actors placed on a Ray cluster with the resources below; the launcher only places,
    starts, watches and restarts them, data still flows over ZeroMQ ``tcp://`` (with
    ``wire.transport=ipc`` the run switches to tcp and says so).
    """

    #: ``local`` (child processes) or ``ray`` (Ray actors on a cluster).
    kind: str = _field("local", choices=("local", "ray"))
    #: Ray cluster to join: None starts a private one-machine Ray instance for the run,
    #: ``auto`` joins the cluster running on this machine (``ray start``), ``HOST:PORT`` the
    #: one whose head listens there (ray only).
    address: str | None = _field(None, pattern=r"auto|ray://\S+|[\w.\-\[\]:]+:\d+",
                                 pattern_hint="auto, HOST:PORT or ray://HOST:PORT")
    #: Resources each process asks the cluster for (ray only).
    resources: LauncherResources = field(default_factory=LauncherResources)


#: A string where the section's mapping belongs sets this field (``launcher=ray``).
LauncherConfig._shorthand = "kind"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TextConfig:
    """What the agent reads (for the LLM labeler): captured, counted per episode, sent."""

    #: ``nethack_message``, ``babyai_mission``, ``minigrid_events`` (captions of what happened
    #: in MiniGrid: "You picked up a yellow key.") or ``package.module:function(obs, env)``;
    #: None turns text capture off (and it then costs nothing).
    source: str | None = None
    #: ZeroMQ address actors push new unique texts to; None counts texts without sending.
    labeler_address: str | None = None
    #: The labeler's reward-table publications (set by the launcher): actors subscribe and
    #: stop sending or re-announcing texts the labeler already has.
    updates_address: str | None = None
    #: Texts per message to the labeler.
    batch_size: int = _field(64, ge=1)
    #: Size of each actor's "already sent" set.
    sent_capacity: int = _field(100_000, ge=1)
    #: What one label is for: the whole ``message`` a step shows, or each of its
    #: ``sentences`` (NetHack joins several sentences on one line: labelling them apart gives
    #: half the distinct texts, so labels arrive sooner and are reused more, and each sentence
    #: is count-normalised on its own).
    units: str = _field("message", choices=("message", "sentences"))
    #: Most sentences kept apart per step (``units: sentences``); the rest stay joined in the
    #: last one.
    max_units: int = _field(4, ge=1, le=64)

    def wire_units(self) -> int:
        """Text ids per step on the wire: 0 without text capture, else 1 or ``max_units``."""
        if self.source is None:
            return 0
        return 1 if self.units == "message" else self.max_units


@dataclass(frozen=True)
class LabelerConfig:
    """The asynchronous LLM labeler and its ONI-style reward (``llm_labeler/``).

    The labeler process labels the texts actors capture (``text.source``), keeps the labels in a
    SQLite store, distils them into a reward model and publishes a text -> reward table; the
    learner adds ``coef * reward(text) / N_episode(text) ** beta`` to the extrinsic reward.
    """

    #: Labeler backend: ``embedding`` (embedded MiniLM, the default), ``openai``, ``rules``,
    #: ``callable``, an import path ``package.module:Class``, an entry point of group
    #: ``explorer.labelers``; None turns the labeler off.
    labeler: str | None = None
    #: Constructor options of the backend (``base_url``, ``model``, ... for ``openai``).
    backend: dict[str, Any] = field(default_factory=dict)
    #: How labels become rewards: ``retrieval`` (label lookup, 0 while unlabelled),
    #: ``classification`` (classifier distilled from labels rewards unseen texts too) or
    #: ``ranking`` (Bradley-Terry model on pairwise preferences, normalised output).
    reward_model: str = _field("retrieval",
                               choices=("retrieval", "classification", "ranking"))
    #: Options of the reward model (e.g. ``retrain_every``, ``threshold``, ``pairs_per_round``).
    reward_model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Intrinsic coefficient ``c_llm`` (the extrinsic one is ``learner.ext_coef``).
    coef: float = _field(0.1, ge=0)
    #: Episodic count exponent: reward / N_episode(text) ** beta (ONI: 3).
    beta: float = _field(3.0, ge=0)
    #: Most texts waiting for a label; the oldest is dropped (and counted) when full.
    queue_size: int = _field(10_000, ge=1)
    #: Texts handed to the backend at once.
    batch_size: int = _field(64, ge=1)
    #: Most distinct texts the labeler accepts over the run (its store included); new texts
    #: beyond it are refused and counted (``labeler/texts_refused_total``), so a flood of
    #: distinct texts cannot grow the label store or the LLM bill without limit.
    max_texts: int = _field(1_000_000, ge=1)
    #: Most new distinct texts one sender (actor id) may bring per labeler start; beyond it
    #: they are refused and counted (``labeler/texts_refused_sender``), so one runaway actor
    #: cannot spend the whole ``max_texts`` budget of the others.
    max_texts_per_sender: int = _field(250_000, ge=1)
    #: SQLite label store; None puts ``labels.sqlite`` in the run directory.
    store_path: str | None = None
    #: Where the labeler receives texts from actors (port 0: a free port).
    texts_address: str = _field("tcp://127.0.0.1:0", nonempty=True)
    #: Where the labeler publishes reward tables (port 0: a free port).
    updates_address: str = _field("tcp://127.0.0.1:0", nonempty=True)
    #: Most seconds between two reward-table publications (also re-sent for late joiners).
    publish_interval_s: float = _field(1.0, gt=0)
    #: Restarts of a crashed labeler process before the run goes on without it.
    max_restarts: int = _field(100, ge=0)
    #: OS niceness of the labeler process (0-19): labelling is asynchronous, so on a machine
    #: with few cores it yields the CPU to actors and learner rather than slow them down.
    nice: int = _field(10, ge=0, le=19)
    #: Use a labeler started elsewhere (``explorer labeler serve``) at ``texts_address`` /
    #: ``updates_address`` instead of starting one with the run.
    external: bool = False


@dataclass(frozen=True)
class IntrinsicConfig:
    """One exploration bonus added to the reward (see ``explorer/intrinsic``)."""

    #: Registered bonus name (rnd, icm, noveld, e3b, ngu, counts, byol_explore,
    #: byol_hindsight) or an import path ``package.module:Class``.
    name: str = _field("rnd", nonempty=True)
    #: Coefficient of this bonus in the combined reward (or advantage, with its own head).
    coef: float = _field(0.01, ge=0)
    #: Divide the bonus by the running std of its discounted return (as RND does).
    normalize: bool = True
    #: Learn a separate value head for this bonus, with its own discount (RND two-stream).
    separate_value_head: bool = False
    #: Discount of the separate intrinsic stream.
    gamma: float = _field(0.99, ge=0, le=1)
    #: Separate stream only: cut intrinsic returns at episode ends (RND: False).
    episodic_returns: bool = False
    #: Extra constructor arguments of the bonus (lr, embed_dim, ...).
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """Root configuration of one training run."""

    #: Run name; labels logs and names the run's directory under ``runs_dir``.
    name: str = _field("run", pattern=r"\w[\w.-]*", pattern_hint="letters, digits, '_', '.', '-'")
    #: Base random seed; every process derives its own seed from it.
    seed: int = _field(0, ge=0)
    #: Stop after this many environment steps, summed over all actors and environments.
    total_env_steps: int = _field(200_000, ge=1)
    #: Stop early once the mean return of the last 100 episodes reaches this (None: never).
    target_return: float | None = None
    #: Directory holding one sub-directory per run.
    runs_dir: str = _field("runs", nonempty=True)
    #: Seconds between metric log lines.
    log_interval_s: float = _field(5.0, gt=0)
    #: Seconds between checkpoints; 0: a checkpoint after every update, written before the
    #: update's env steps are reported anywhere, so a learner killed with SIGKILL loses no
    #: env steps it had counted as trained (costs ~2 ms of CPU per update for a MiniGrid CNN).
    checkpoint_interval_s: float = _field(120.0, ge=0)
    #: Environment settings.
    env: EnvConfig = field(default_factory=EnvConfig)
    #: Actor process settings.
    actors: ActorsConfig = field(default_factory=ActorsConfig)
    #: Learner and model settings.
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    #: Actor/learner transport settings.
    wire: WireConfig = field(default_factory=WireConfig)
    #: Text capture for the LLM labeler.
    text: TextConfig = field(default_factory=TextConfig)
    #: Exploration bonuses; each entry is an ``IntrinsicConfig`` mapping.
    intrinsic: tuple[IntrinsicConfig, ...] = ()
    #: The LLM labeler and its ONI reward (off unless ``llm_labeler.labeler`` is set).
    llm_labeler: LabelerConfig = field(default_factory=LabelerConfig)
    #: How the processes are started: locally (default) or on a Ray cluster.
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.2) and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


# PyYAML implements YAML 1.1, where a float needs a dot and a signed exponent ("1.0e-4").
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML error as ``line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --------------------------------------------------------------------------- validation


def _show(value: Any) -> str:
    """Render a value and its type for an error message, e.g. ``'abc' (str)``."""
    return "null" if value is None else f"{reprlib.repr(value)} ({type(value).__name__})"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """Return ``(base type, is_optional)`` for ``X`` or ``X | None``."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        return args[0], len(args) < len(get_args(hint))
    return hint, False


@functools.cache
def _dotted_keys(cls: type) -> tuple[str, ...]:
    """All dotted leaf keys of a config dataclass, e.g. ``learner.model.kind``."""
    keys: list[str] = []
    for name, hint in get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys += [f"{name}.{key}" for key in _dotted_keys(hint)]
        else:
            keys.append(name)
    return tuple(keys)


def _unknown_key(prefix: str, key: str, valid: Sequence[str], schema: type | None = None) -> str:
    """Message for an unknown key, suggesting the nearest valid one (in ``schema``, the root
    dataclass, default :class:`Config`)."""
    dotted = _join(prefix, key)
    near = difflib.get_close_matches(key, valid, n=1)
    if near:
        return f"unknown key {dotted!r}; did you mean {_join(prefix, near[0])!r}?"
    elsewhere = [k for k in _dotted_keys(schema or Config) if k.rsplit(".", 1)[-1] == key]
    if elsewhere:
        return f"unknown key {dotted!r}; did you mean {elsewhere[0]!r}?"
    return f"unknown key {dotted!r}; valid keys: {', '.join(sorted(valid))}"


def _check_type(hint: Any, value: Any) -> tuple[bool, Any]:
    """Check ``value`` against a non-optional leaf type; return ``(ok, normalised value)``."""
    if hint is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):  # bool is an int subclass, but True is no count.
        return False, value
    if hint is float:
        return isinstance(value, int | float), float(value) if isinstance(value, int) else value
    if hint is int and isinstance(value, float) and value.is_integer():
        return True, int(value)  # 1e7 from YAML or the CLI is a count, written briefly
    if get_origin(hint) is dict or hint is dict:
        ok = isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
        return ok, copy.deepcopy(dict(value)) if ok else value
    return isinstance(value, hint), value


def _type_name(hint: Any) -> str:
    return "mapping with string keys" if get_origin(hint) is dict else hint.__name__


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_TESTS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def _check_rules(rules: Mapping[str, Any], value: Any) -> str | None:
    """Check a well-typed value against its field's metadata rules."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be finite, got {value}"
    if rules.get("nonempty") and not value:
        return "must not be empty"
    choices, pattern = rules.get("choices", ()), rules.get("pattern")
    if (
        (choices or pattern)
        and value not in choices
        and not (pattern and re.fullmatch(pattern, value))
    ):
        if not choices:
            return f"{value!r} must match {rules.get('pattern_hint', pattern)}"
        options = [*choices, rules["pattern_hint"]] if pattern else list(choices)
        near = difflib.get_close_matches(value, choices, n=1)
        suggestion = f"; did you mean {near[0]!r}?" if near else ""
        return f"{value!r} is not one of {', '.join(options)}{suggestion}"
    bounds = [name for name in _BOUNDS if name in rules]
    if all(_BOUND_TESTS[name](value, rules[name]) for name in bounds):
        return None
    wanted = " and ".join(f"{_BOUNDS[name]} {rules[name]}" for name in bounds)
    return f"must be {wanted}, got {value}"


def _check_field(hint: Any, rules: Mapping[str, Any], value: Any) -> tuple[str | None, Any]:
    """Validate one leaf value; return ``(problem or None, normalised value)``."""
    base, optional = _split_optional(hint)
    if value is None and optional:
        return None, None
    ok, value = _check_type(base, value)
    if not ok:
        expected = _type_name(base) + (" or null" if optional else "")
        return f"expected {expected}, got {_show(value)}", value
    return _check_rules(rules, value), value


def _sequence_item_dataclass(hint: Any) -> type | None:
    """``X`` for a ``tuple[X, ...]`` field whose items are config dataclasses, else None."""
    args = get_args(hint)
    if get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _expand_shorthand(cls: type, value: Any) -> Any:
    """``{field: value}`` for a string given where a section with a ``_shorthand`` field
    belongs (``launcher: ray`` is ``launcher: {kind: ray}``); else ``value`` unchanged."""
    shorthand = getattr(cls, "_shorthand", None)
    return {shorthand: value} if shorthand and isinstance(value, str) else value


def _build(cls: type[T], data: Any, prefix: str, problems: list[str],
           schema: type | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, appending problems; bad values keep defaults.
    ``schema`` is the root dataclass (for suggestions), default :class:`Config`."""
    if not isinstance(data, Mapping):
        problems.append(f"{prefix or 'config'}: expected mapping, got {_show(data)}")
        return cls()
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    problems += [_unknown_key(prefix, str(key), list(fields), schema)
                 for key in data if key not in fields]
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        key, hint = _join(prefix, name), hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, _expand_shorthand(hint, value), key, problems, schema)
            continue
        item_cls = _sequence_item_dataclass(hint)
        if item_cls is not None:
            if isinstance(value, list | tuple):
                values[name] = tuple(_build(item_cls, item, f"{key}[{i}]", problems, schema)
                                     for i, item in enumerate(value))
            else:
                problems.append(f"{key}: expected a list of mappings, got {_show(value)}")
            continue
        problem, checked = _check_field(hint, fields[name].metadata, value)
        if problem:
            problems.append(f"{key}: {problem}")
        else:
            values[name] = checked
    return cls(**values)


def _check_ports(cfg: Config) -> list[str]:
    """Two fixed tcp ports must differ."""
    wire = cfg.wire
    if wire.transport == "tcp" and wire.rollout_port and wire.rollout_port == wire.weights_port:
        return [f"wire.weights_port: must differ from wire.rollout_port ({wire.rollout_port})"]
    return []


def _check_minibatch_split(cfg: Config) -> list[str]:
    """Shuffled single transitions lose the sequences V-trace and a recurrent core need."""
    learner = cfg.learner
    if learner.minibatch_split == "samples" and (learner.algo != "ppo"
                                                  or learner.model.core != "none"):
        return ["learner.minibatch_split: 'samples' needs learner.algo=ppo and "
                "learner.model.core=none (V-trace and a recurrent core need whole sequences; "
                "use 'envs' or 'auto')"]
    return []


def _check_separate_critic(cfg: Config) -> list[str]:
    """A separate critic torso has no recurrent core of its own."""
    model = cfg.learner.model
    core = "retrieval" if model.retrieval.k > 0 else model.core
    if model.separate_critic and core != "none":
        return [f"learner.model.separate_critic: needs a feed-forward model, not the {core} "
                "core (the critic's own torso has no core); set "
                "learner.model.separate_critic=false to use one"]
    return []


def _check_retrieval(cfg: Config) -> list[str]:
    """Retrieval is the model's core: sequences, no second core, no separate critic."""
    model, learner = cfg.learner.model, cfg.learner
    if model.retrieval.k == 0:
        return []
    problems = []
    if model.core != "none":
        problems.append("learner.model.retrieval.k: retrieval is a core of its own; needs "
                        "learner.model.core=none")
    if model.separate_critic:
        problems.append("learner.model.retrieval.k: retrieval needs "
                        "learner.model.separate_critic=false (the critic shares the core)")
    if learner.minibatch_split == "samples":
        problems.append("learner.model.retrieval.k: retrieval needs whole sequences; "
                        "learner.minibatch_split must be 'envs' or 'auto'")
    return problems


def _check_labeler(cfg: Config) -> list[str]:
    """A labeler needs texts to label and fixed addresses when external (its name is checked
    against the labeler registry by the app, which may import ``llm_labeler``)."""
    lab = cfg.llm_labeler
    if lab.labeler is None:
        return []
    problems = []
    if cfg.text.source is None:
        problems.append("llm_labeler.labeler: needs text.source (what the agent reads), e.g. "
                        "text.source=nethack_message or text.source=babyai_mission")
    if lab.external and (lab.texts_address.endswith(":0") or lab.updates_address.endswith(":0")):
        problems.append("llm_labeler.external: needs fixed llm_labeler.texts_address and "
                        "llm_labeler.updates_address (the ones `explorer labeler serve` printed)")
    return problems


def _check_public_binds(cfg: Config) -> list[str]:
    """A socket other machines can reach needs CURVE keys (loopback and ipc may run without);
    so does connecting to an external labeler beyond loopback (it runs with CURVE)."""
    if cfg.wire.curve_keys is not None:
        return []
    hint = "needs CURVE keys: run `explorer keys gen DIR` and set wire.curve_keys=DIR"
    problems = []
    wire, lab = cfg.wire, cfg.llm_labeler
    if wire.transport == "tcp" and not is_loopback_host(wire.host):
        problems.append(f"wire.host: binding {wire.host} (reachable from other machines) {hint}")
    if lab.labeler is not None:
        what = "connecting to" if lab.external else "binding"
        for key in ("texts_address", "updates_address"):
            address = getattr(lab, key)
            if not is_loopback_address(address):
                problems.append(f"llm_labeler.{key}: {what} {address} (beyond loopback) {hint}")
    return problems


def _check_launcher(cfg: Config) -> list[str]:
    """Cluster settings mean something to the Ray launcher only; custom resources are
    amounts."""
    launcher = cfg.launcher
    problems = []
    if launcher.kind == "local" and launcher.address is not None:
        problems.append(f"launcher.address: {launcher.address!r} is for launcher.kind=ray "
                        "(set launcher=ray, or drop the address)")
    for key in ("actor_custom", "learner_custom"):
        for name, amount in getattr(launcher.resources, key).items():
            if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                problems.append(f"launcher.resources.{key}.{name}: expected an amount >= 0, "
                                f"got {_show(amount)}")
    return problems


#: A check that needs more than the schema (an env registry, a labeler registry): it returns
#: one problem line per mistake, naming the key. The app layer supplies these.
ConfigCheck = Callable[["Config"], list[str]]


def _validate(data: Any, checks: Sequence[ConfigCheck] = (),
              schema: type = Config) -> tuple[Any, list[str]]:
    """Build a ``schema`` (default :class:`Config`) from ``data``; return it with every
    problem found. The run checks below apply to :class:`Config` only."""
    problems: list[str] = []
    cfg = _build(schema, data, "", problems, schema)
    own = ((_check_ports, _check_minibatch_split, _check_separate_critic, _check_retrieval,
            _check_labeler, _check_public_binds, _check_launcher) if schema is Config else ())
    for check in (*own, *checks):
        problems += check(cfg)
    return cfg, problems


# --------------------------------------------------------------------------- overrides


def _apply_override(data: dict[str, Any], override: str, schema: type = Config) -> str | None:
    """Set ``a.b.c=value`` into raw config ``data`` (of root dataclass ``schema``); return a
    problem message or ``None``."""
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        return f"override {override!r}: expected key=value, e.g. learner.lr=3e-4"
    try:
        value = _parse_yaml(text)
    except yaml.YAMLError as exc:
        return f"override {override!r}: invalid YAML value: {_yaml_problem(exc)}"
    cls: Any = schema
    for depth, part in enumerate(parts):
        hints = get_type_hints(cls)
        if part not in hints:
            problem = _unknown_key(".".join(parts[:depth]), part, list(hints), schema)
            return f"override {override!r}: {problem}"
        hint = hints[part]
        if dataclasses.is_dataclass(hint):
            cls = hint
        elif depth + 1 < len(parts) and get_origin(hint) is not dict:
            return f"override {override!r}: {'.'.join(parts[: depth + 1])} is not a mapping"
        else:
            break  # a leaf, or free-form keys inside a dict field
    node, cls = data, schema
    for part in parts[:-1]:
        cls = get_type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
        if dataclasses.is_dataclass(cls):  # launcher=ray, then launcher.address=auto
            node[part] = _expand_shorthand(cls, node.get(part))
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    hint = get_type_hints(cls).get(parts[-1]) if dataclasses.is_dataclass(cls) else None
    expanded = _expand_shorthand(hint, value) if dataclasses.is_dataclass(hint) else value
    if expanded is not value and isinstance(node.get(parts[-1]), dict):
        node[parts[-1]].update(expanded)  # launcher.address=auto, then launcher=ray
    else:
        node[parts[-1]] = expanded
    return None


# --------------------------------------------------------------------------- public API


def config_from_dict(data: Mapping[str, Any], checks: Sequence[ConfigCheck] = (),
                     schema: type = Config) -> Any:
    """Build and validate a :class:`Config` from a (possibly partial) nested mapping.

    Args:
        data: Nested mapping mirroring the dataclasses; missing keys take their defaults.
        checks: Further checks (registries of envs, labelers, bonuses) run after the schema.
        schema: Root dataclass (default :class:`Config`; ``explorer search`` has its own).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: Listing every problem found, one per line.
    """
    cfg, problems = _validate(data, checks, schema)
    if problems:
        raise ConfigError(problems)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Convert a config to nested plain dicts; ``config_from_dict`` inverts it exactly."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    """Tuples (of bonus configs) become lists so YAML and dict round trips stay plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def load_config(path: str | Path | None, overrides: Sequence[str] = (),
                checks: Sequence[ConfigCheck] = (), schema: type = Config) -> Any:
    """Load a YAML config file, apply ``key=value`` overrides, and validate the result.

    Args:
        path: YAML file holding a (possibly partial) mapping, or ``None`` for the defaults.
        overrides: Strings like ``learner.lr=3e-4`` or ``env.envpool_kwargs.foo=1``; each value
            is parsed as YAML, with ``3e-4``-style numbers read as floats.
        checks: Further checks (registries of envs, labelers, bonuses) run after the schema.
        schema: Root dataclass (default :class:`Config`; ``explorer search`` has its own).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: If the file is missing, unreadable or not a YAML mapping (reported at
            once), or listing every bad override and every invalid value together.
    """
    data: Any = {}
    if path is not None:
        try:
            data = _parse_yaml(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {_show(data)}")
    problems = [p for p in (_apply_override(data, o, schema) for o in overrides) if p]
    cfg, invalid = _validate(data, checks, schema)
    if problems or invalid:
        raise ConfigError(problems + invalid)
    return cfg


def format_config(cfg: Config) -> str:
    """Render a config as YAML text with sorted keys (stable across runs)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=True, default_flow_style=False)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write a config as YAML (see :func:`format_config`), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_config(cfg), encoding="utf-8")
