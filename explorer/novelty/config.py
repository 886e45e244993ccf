"""Configuration of ``explorer search``: one dataclass per component, validated like a run's.

Loaded by :func:`explorer.core.config.load_config` with ``schema=SearchConfig``: unknown keys,
bad values and conflicting settings are one ``error:`` line each, naming the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from explorer.core.addresses import is_loopback_host
from explorer.core.config import LauncherConfig
from explorer.core.config import _check_launcher as _launcher_problems
from explorer.core.config import config_field as _field

__all__ = ["ALGORITHMS", "EMITTER_KINDS", "NoveltyConfig", "SearchConfig", "SearchEnvConfig",
           "SereneConfig", "StaxConfig", "WorkersConfig", "search_config_problems"]

ALGORITHMS = ("ns", "serene", "random")
EMITTER_KINDS = ("fit", "nov", "cma")


@dataclass(frozen=True)
class SearchEnvConfig:
    """The environment each genome's controller is run in, once."""

    #: Novelty-search env id (``HardMaze-v0``).
    id: str = _field("HardMaze-v0", choices=("HardMaze-v0",))
    #: Episode length T (the time limit); Lehman & Stanley's hard maze uses 400.
    max_episode_steps: int = _field(400, ge=1)
    #: Side of the square grid coverage is measured on (100: pyribs' maze benchmark).
    coverage_bins: int = _field(100, ge=1)
    #: Side of the top-down final frames (STAX).
    frame_size: int = _field(64, choices=(64,))


@dataclass(frozen=True)
class ControllerConfig:
    """The MLP controller a genome encodes."""

    #: Hidden layer width (Paolo et al.: 5).
    hidden_size: int = _field(5, ge=1)
    #: Number of hidden layers.
    hidden_layers: int = _field(1, ge=0)
    #: Genomes live in ``[-genome_bound, genome_bound]`` (clipped after mutation).
    genome_bound: float = _field(5.0, gt=0)


@dataclass(frozen=True)
class NoveltyConfig:
    """Novelty search: population, mutation, novelty k-NN and archive insertion."""

    #: Survivors per generation.
    pop_size: int = _field(100, ge=1)
    #: Children per parent per generation.
    offspring_per_parent: int = _field(2, ge=1)
    #: Gaussian mutation standard deviation, in genome units.
    sigma: float = _field(0.05, gt=0)
    #: k of the novelty mean distance.
    k_neighbors: int = _field(15, ge=1)
    #: ``random`` (add ``add_per_generation`` per generation, SERENE) or ``threshold``.
    insertion: str = _field("random", choices=("random", "threshold"))
    #: Individuals archived per generation (``random`` insertion).
    add_per_generation: int = _field(5, ge=0)
    #: Novelty needed to be archived (``threshold`` insertion; required there).
    novelty_threshold: float | None = _field(None, gt=0)
    #: k-NN index: ``auto`` (KD-tree up to 8-d, else FAISS), ``kdtree`` or ``faiss``.
    knn_backend: str = _field("auto", choices=("auto", "kdtree", "faiss"))


@dataclass(frozen=True)
class SereneConfig:
    """SERENE: budget chunks alternating novelty search and reward emitters."""

    #: Evaluations per chunk (exploration and exploitation alternate per chunk).
    chunk_size: int = _field(1000, ge=1)
    #: Reward emitter: ``fit`` (elitist ES on fitness), ``nov`` (local novelty), ``cma``.
    emitter: str = _field("cma", choices=EMITTER_KINDS)
    #: Emitter population (CMA-ES lambda; ES offspring per generation).
    emitter_pop_size: int = _field(11, ge=2)
    #: Initial mutation / CMA-ES step size around the rewarded solution.
    emitter_sigma: float = _field(0.5, gt=0)
    #: Evaluations a candidate emitter gets before it may join the pool (SERENE: ~66).
    bootstrap_evals: int = _field(66, ge=1)
    #: Stagnation window in emitter generations; null: ``int(20 * G / 6 + 120)`` (G genome).
    stagnation_window: int | None = _field(None, ge=2)
    #: A solution with fitness above this is rewarded (seeds an emitter).
    reward_threshold: float = 0.0
    #: Emitter priority: ``improvement`` (best - parent fitness) or ``novelty`` (of its parent
    #: w.r.t. the rewarded solutions).
    selection: str = _field("improvement", choices=("improvement", "novelty"))
    #: Candidate emitters kept waiting at most (the most novel are kept).
    max_candidates: int = _field(10, ge=1)


@dataclass(frozen=True)
class StaxConfig:
    """STAX: behaviour descriptor = latent of an autoencoder on final frames."""

    #: Use the autoencoder's latent as descriptor (else the final position).
    enabled: bool = False
    #: Latent width (descriptor dimension).
    latent_dim: int = _field(10, ge=1)
    #: Retrain after these chunk counts (1, 3, 6, 10, 15, ...: gaps grow by one).
    retrain_gap_growth: int = _field(1, ge=0)
    #: Evaluations per STAX chunk (retraining is scheduled in chunks).
    chunk_size: int = _field(1000, ge=1)
    #: Training epochs per retraining.
    epochs: int = _field(20, ge=1)
    #: Most frames kept for training (the newest).
    buffer_size: int = _field(10_000, ge=1)
    #: Adam learning rate.
    lr: float = _field(1e-3, gt=0)
    #: Minibatch size.
    batch_size: int = _field(64, ge=1)


@dataclass(frozen=True)
class WorkersConfig:
    """Evaluation worker processes (actor processes serving genomes over ZeroMQ)."""

    #: Worker processes.
    num_procs: int = _field(2, ge=1)
    #: Genomes per task sent to one worker; 0 splits each batch evenly over twice the workers.
    task_size: int = _field(0, ge=0, le=4096)
    #: ZeroMQ transport between driver and workers (``launcher=ray``: always tcp).
    transport: str = _field("ipc", choices=("ipc", "tcp"))
    #: Where the driver binds for workers over tcp: loopback (one machine) or an address other
    #: machines reach (``0.0.0.0``, a LAN address: a Ray cluster of many nodes), which needs
    #: ``curve_keys``. A wildcard is handed to workers as the driver's node address.
    host: str = _field("127.0.0.1", nonempty=True)
    #: The search's ZeroMQ CURVE keys (``explorer keys gen DIR``): the driver serves with the
    #: server pair, workers connect with the client pair; unauthorised peers get no genomes.
    curve_keys: str | None = _field(None, nonempty=True)
    #: Seconds before restarting a crashed worker (doubles per restart of that worker).
    restart_backoff_s: float = _field(0.5, ge=0)
    #: Restarts of one worker before the search gives up.
    max_restarts: int = _field(20, ge=0)
    #: Kill and restart a worker silent this long (a hung episode).
    heartbeat_timeout_s: float = _field(60.0, gt=0)


@dataclass(frozen=True)
class SearchConfig:
    """Root configuration of ``explorer search``."""

    #: Run name; names the run's directory under ``runs_dir``.
    name: str = _field("search", pattern=r"\w[\w.-]*",
                       pattern_hint="letters, digits, '_', '.', '-'")
    #: Root seed; every component derives its own.
    seed: int = _field(0, ge=0)
    #: ``ns`` (novelty search), ``serene`` (NS + reward emitters) or ``random`` (baseline).
    algorithm: str = _field("ns", choices=ALGORITHMS)
    #: Stop after this many evaluations (episodes).
    budget: int = _field(100_000, ge=1)
    #: Directory holding one sub-directory per run.
    runs_dir: str = _field("runs", nonempty=True)
    #: Seconds between TensorBoard writes.
    log_interval_s: float = _field(5.0, gt=0)
    #: Seconds between checkpoints (one is always written at the end).
    checkpoint_interval_s: float = _field(120.0, gt=0)
    env: SearchEnvConfig = field(default_factory=SearchEnvConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    serene: SereneConfig = field(default_factory=SereneConfig)
    stax: StaxConfig = field(default_factory=StaxConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    #: How evaluation workers are started: the run's ``launcher`` section (``launcher=ray``:
    #: Ray actors with ``launcher.resources.actor_cpus`` each; beyond one node the driver must
    #: bind an address the others reach: ``workers.host`` and ``workers.curve_keys``).
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


def search_config_problems(cfg: SearchConfig) -> list[str]:
    """Settings that are valid alone but not together, one line each naming the key."""
    problems = []
    if cfg.novelty.insertion == "threshold" and cfg.novelty.novelty_threshold is None:
        problems.append("novelty.novelty_threshold: needed with novelty.insertion=threshold")
    if cfg.stax.enabled and cfg.algorithm == "random":
        problems.append("stax.enabled: needs algorithm ns or serene (random search ignores "
                        "descriptors)")
    problems += _launcher_problems(cfg)  # the run's launcher checks (they read cfg.launcher)
    problems += _worker_bind_problems(cfg.workers, cfg.launcher.kind)
    return problems


def _worker_bind_problems(workers: WorkersConfig, launcher: str) -> list[str]:
    """A driver socket other machines can reach needs CURVE keys, and tcp."""
    if is_loopback_host(workers.host):
        return []
    problems = []
    if workers.transport != "tcp" and launcher != "ray":  # Ray always uses tcp
        problems.append(f"workers.host: {workers.host} needs workers.transport=tcp (ipc "
                        "sockets are files on one machine)")
    if workers.curve_keys is None:
        problems.append(f"workers.host: binding {workers.host} (reachable from other machines) "
                        "needs CURVE keys: run `explorer keys gen DIR` and set "
                        "workers.curve_keys=DIR")
    else:
        from explorer.core.curve import keys_dir_problems  # pyzmq's auth: only when set

        problems += keys_dir_problems(workers.curve_keys, "workers.curve_keys")
    return problems
