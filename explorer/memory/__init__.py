"""Retrieval memories of embeddings (nearest-neighbour search), for agents and bonuses.

``EmbeddingMemory`` wraps one FAISS index (flat / IVF / HNSW, GPU when present);
``RetrievalMemory`` adds payloads and bounded capacity with block eviction on top of it;
``EpisodicMemories`` keeps many small per-env memories in one tensor for batched search.
"""

from explorer.memory.episodic import EpisodicMemories
from explorer.memory.index import INDEX_KINDS, METRICS, CorruptMemoryError, EmbeddingMemory
from explorer.memory.store import EVICTIONS, PayloadSpec, RetrievalMemory, Retrieved

__all__ = ["EVICTIONS", "INDEX_KINDS", "METRICS", "CorruptMemoryError", "EmbeddingMemory",
           "EpisodicMemories", "PayloadSpec", "RetrievalMemory", "Retrieved"]
