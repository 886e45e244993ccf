"""Sentence embeddings of texts for the distilled reward models (MiniLM, bundled, offline).

The classification and ranking reward models generalise from labelled texts to unseen ones by
working on embeddings; this wraps the bundled MiniLM with a bounded per-text cache, since the
same NetHack messages recur constantly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["TextEncoder"]


class TextEncoder:
    """``encode(texts) -> (N, D)`` unit-norm float32 embeddings, cached by text.

    Args:
        model: a loaded ``SentenceTransformer``; None loads the bundled MiniLM on first use.
        cache_size: most embeddings kept.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: Any = None, cache_size: int = 200_000, batch_size: int = 64
                 ) -> None:
        self._model = model
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def model(self) -> Any:
        if self._model is None:
            from llm_labeler.backends.embedding import _load_minilm

            self._model = _load_minilm("cpu")
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = self.model.encode(missing, batch_size=self.batch_size,
                                     normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False).astype(np.float32)
            for text, vec in zip(missing, vecs, strict=True):
                self._cache[text] = vec
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if not texts:
            model = self.model
            dim = getattr(model, "get_embedding_dimension", None) or \
                model.get_sentence_embedding_dimension
            return np.zeros((0, dim()), np.float32)
        out = []
        for text in texts:
            vec = self._cache.get(text)
            if vec is None:  # evicted by this very call (more texts than the cache holds)
                vec = self.model.encode([text], normalize_embeddings=True,
                                        convert_to_numpy=True,
                                        show_progress_bar=False)[0].astype(np.float32)
            out.append(vec)
        return np.stack(out)
