"""Retrieval memories of embeddings (nearest-neighbour search), for agents and bonuses.

``EmbeddingMemory`` wraps one FAISS index (flat / IVF / HNSW, GPU when present);
``RetrievalMemory`` adds payloads and bounded capacity with block eviction on top of it;
``EpisodicMemories`` keeps many small per-env memories in one tensor for batched search.

The FAISS-backed names load on first use (PEP 562): importing FAISS costs ~0.1 s of CPU,
and the learner imports every bonus (NGU's episodic memory among them) on its path to its
first published weights, where most runs never touch FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from explorer.memory.episodic import EpisodicMemories

if TYPE_CHECKING:
    from explorer.memory.index import INDEX_KINDS, METRICS, CorruptMemoryError, EmbeddingMemory
    from explorer.memory.store import EVICTIONS, PayloadSpec, RetrievalMemory, Retrieved

_LAZY = {
    "INDEX_KINDS": "explorer.memory.index", "METRICS": "explorer.memory.index",
    "CorruptMemoryError": "explorer.memory.index", "EmbeddingMemory": "explorer.memory.index",
    "EVICTIONS": "explorer.memory.store", "PayloadSpec": "explorer.memory.store",
    "RetrievalMemory": "explorer.memory.store", "Retrieved": "explorer.memory.store",
}

__all__ = ["EVICTIONS", "INDEX_KINDS", "METRICS", "CorruptMemoryError", "EmbeddingMemory",
           "EpisodicMemories", "PayloadSpec", "RetrievalMemory", "Retrieved"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'explorer.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
