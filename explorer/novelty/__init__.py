"""Novelty search in pyribs' shape: an archive, emitters and a scheduler with ask / tell.

``NoveltyArchive`` (incremental k-NN novelty), ``NoveltySearchEmitter`` / ``RandomEmitter``,
``Scheduler`` (plain novelty search) and ``SereneScheduler`` (novelty search alternating with
reward emitters). Imports only ``explorer.core`` and ``explorer.memory``.
"""

from explorer.novelty.archive import AddStatus, ArchiveStats, NoveltyArchive
from explorer.novelty.emitters import EmitterBase, NoveltySearchEmitter, RandomEmitter
from explorer.novelty.knn import IncrementalKNN, brute_force_knn
from explorer.novelty.scheduler import Scheduler

__all__ = ["AddStatus", "ArchiveStats", "EmitterBase", "IncrementalKNN", "NoveltyArchive",
           "NoveltySearchEmitter", "RandomEmitter", "Scheduler", "brute_force_knn"]
