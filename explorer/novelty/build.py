"""Builds the archive, emitters and scheduler a :class:`SearchConfig` describes.

Seeds: one ``SeedSequence(cfg.seed)`` is split into the archive's, the emitters' and SERENE's
own, so components never share a stream and a run is reproducible from ``seed`` alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explorer.novelty.archive import NoveltyArchive
from explorer.novelty.config import SearchConfig
from explorer.novelty.emitters import NoveltySearchEmitter, RandomEmitter
from explorer.novelty.scheduler import Scheduler

__all__ = ["build_scheduler"]


def _seeds(seed: int, n: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def build_scheduler(cfg: SearchConfig, genome_size: int, descriptor_dim: int) -> Any:
    """The scheduler of ``cfg.algorithm`` (``Scheduler`` or ``SereneScheduler``)."""
    archive_seed, emitter_seed, serene_seed = _seeds(cfg.seed, 3)
    n = cfg.novelty
    archive = NoveltyArchive(solution_dim=genome_size, descriptor_dim=descriptor_dim,
                             k_neighbors=n.k_neighbors, insertion=n.insertion,
                             add_per_generation=n.add_per_generation,
                             novelty_threshold=n.novelty_threshold,
                             knn_backend=n.knn_backend, seed=archive_seed)
    bound = cfg.controller.genome_bound
    if cfg.algorithm == "random":
        emitter = RandomEmitter(archive, solution_dim=genome_size,
                                batch_size=n.pop_size * n.offspring_per_parent,
                                bounds=(-bound, bound), seed=emitter_seed)
        return Scheduler(archive, [emitter])
    ns = NoveltySearchEmitter(archive, solution_dim=genome_size, pop_size=n.pop_size,
                              offspring_per_parent=n.offspring_per_parent, sigma=n.sigma,
                              bounds=(-bound, bound), seed=emitter_seed)
    if cfg.algorithm == "ns":
        return Scheduler(archive, [ns])
    from explorer.novelty.serene import SereneScheduler

    s = cfg.serene
    return SereneScheduler(archive, ns, emitter=s.emitter, chunk_size=s.chunk_size,
                           emitter_pop_size=s.emitter_pop_size, emitter_sigma=s.emitter_sigma,
                           bootstrap_evals=s.bootstrap_evals,
                           stagnation_window=s.stagnation_window,
                           reward_threshold=s.reward_threshold, selection=s.selection,
                           max_candidates=s.max_candidates, seed=serene_seed)
