"""Retrieval memories of embeddings (nearest-neighbour search), used by episodic bonuses."""

from explorer.memory.index import INDEX_KINDS, METRICS, EmbeddingMemory

__all__ = ["INDEX_KINDS", "METRICS", "EmbeddingMemory"]
