"""A FAISS nearest-neighbour memory of float32 embeddings with int64 ids.

The CPU index is the source of truth: an ``IndexIDMap2`` around a flat or HNSW index, or an
``IndexIVFFlat`` (which keeps ids itself: ``IndexIDMap2`` cannot remove from IVF lists). It is
what ``save`` / ``state_dict`` serialise. With GPUs, searches run on a replica made by
``faiss.index_cpu_to_all_gpus`` that follows additions and is rebuilt lazily after removals.

Shapes: N = vectors added, Q = queries, D = ``dim``, k = neighbours. Distances are squared L2
(``metric="l2"``, smaller is nearer) or inner products (``metric="ip"``, larger is nearer).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from typing import Any

import faiss
import numpy as np

__all__ = ["INDEX_KINDS", "METRICS", "CorruptMemoryError", "EmbeddingMemory"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
METRICS = ("l2", "ip")

_FAISS_METRIC = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}
_GPU_MAX_K = 2048  # FAISS GPU indexes answer at most this many neighbours
_MIN_POINTS_PER_CENTROID = 39  # below this FAISS warns that k-means is under-trained


class CorruptMemoryError(ValueError):
    """A saved memory whose bytes do not match their checksum or do not parse as an index."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gpu_count() -> int:
    """GPUs FAISS can use (0 for a CPU-only build)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _as_matrix(x: Any, dim: int, name: str) -> np.ndarray:
    """Array-like or tensor -> C-contiguous float32 ``(N, dim)``."""
    if hasattr(x, "detach"):  # torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}); got {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():  # FAISS would store / answer garbage without a word
        rows = np.flatnonzero(~finite)
        raise ValueError(f"{name} hold NaN or inf in {len(rows)} of {len(x)} rows (first: "
                         f"{rows[:5].tolist()})")
    return x


def _deserialize(data: bytes, sha256: str | None, dim: int) -> faiss.Index:
    """Index bytes -> FAISS index, checked first: FAISS's reader trusts its input."""
    if sha256 is not None and _digest(data) != sha256:
        raise CorruptMemoryError(f"saved memory index ({len(data)} bytes) fails its sha256 "
                                 f"checksum: the file is damaged or truncated")
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8).copy())
    except RuntimeError as err:
        raise CorruptMemoryError(f"saved memory index does not parse: "
                                 f"{str(err).splitlines()[0]}") from None
    if index.d != dim:
        raise CorruptMemoryError(f"saved memory index has dim {index.d}, its config {dim}")
    return index


def _as_ids(x: Any) -> np.ndarray:
    """Array-like or tensor of ids -> C-contiguous int64 ``(N,)``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.int64).reshape(-1))


class EmbeddingMemory:
    """Exact (``flat``) or approximate (``ivf``, ``hnsw``) k-NN memory with removable ids.

    ``ivf`` answers exactly, from a flat index, until ``ivf_train_size`` vectors are stored;
    it then trains its coarse quantiser on them and moves them into the IVF index.
    ``hnsw`` cannot remove in place: ``remove`` rebuilds it from the remaining vectors.

    Attributes:
        dim: D, the vector width.
        kind: One of ``INDEX_KINDS``.
        metric: One of ``METRICS``.
        use_gpu: Whether searches run on a GPU replica.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: str = "flat",
        metric: str = "l2",
        use_gpu: bool | str = "auto",
        nlist: int = 64,
        nprobe: int = 8,
        ivf_train_size: int | None = None,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 40,
        hnsw_ef_search: int = 64,
    ) -> None:
        """Creates an empty memory.

        Args:
            dim: D, the vector width.
            kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists) or ``"hnsw"`` (graph).
            metric: ``"l2"`` (squared Euclidean distance) or ``"ip"`` (inner product).
            use_gpu: ``True`` requires FAISS GPUs, ``False`` stays on the CPU, ``"auto"`` uses
                GPUs when FAISS sees any (``hnsw`` has no GPU version and stays on the CPU).
            nlist: IVF inverted lists (coarse centroids).
            nprobe: IVF lists visited per query.
            ivf_train_size: Stored vectors that trigger IVF training (default ``39 * nlist``).
            hnsw_m: HNSW neighbours per node.
            hnsw_ef_construction: HNSW build-time beam width.
            hnsw_ef_search: HNSW search-time beam width.

        Raises:
            ValueError: Unknown kind / metric / ``use_gpu``, or GPUs requested but unusable.
        """
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; valid kinds are {list(INDEX_KINDS)}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid metrics are {list(METRICS)}")
        if use_gpu not in (True, False, "auto"):
            raise ValueError(f"use_gpu must be True, False or 'auto'; got {use_gpu!r}")
        if dim <= 0:
            raise ValueError(f"dim must be positive; got {dim}")
        if use_gpu is True and (kind == "hnsw" or _gpu_count() == 0):
            raise ValueError(f"use_gpu=True needs FAISS GPUs ({_gpu_count()} found) and a "
                             f"flat or ivf index (got {kind!r})")
        self.dim, self.kind, self.metric = int(dim), kind, metric
        self.nlist, self.nprobe = int(nlist), int(nprobe)
        self.ivf_train_size = (int(ivf_train_size) if ivf_train_size is not None
                               else _MIN_POINTS_PER_CENTROID * self.nlist)
        self.hnsw_m, self.hnsw_ef_construction = int(hnsw_m), int(hnsw_ef_construction)
        self.hnsw_ef_search = int(hnsw_ef_search)
        self.use_gpu = use_gpu is True or (use_gpu == "auto" and kind != "hnsw"
                                           and _gpu_count() > 0)
        self._strict_gpu = use_gpu is True
        self.reset()

    # -- construction --------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"dim": self.dim, "kind": self.kind, "metric": self.metric, "nlist": self.nlist,
                "nprobe": self.nprobe, "ivf_train_size": self.ivf_train_size,
                "hnsw_m": self.hnsw_m, "hnsw_ef_construction": self.hnsw_ef_construction,
                "hnsw_ef_search": self.hnsw_ef_search}

    def _new_index(self, trained_ivf: bool = False) -> faiss.Index:
        """An empty index of this kind (flat while IVF is untrained), storing ids."""
        metric = _FAISS_METRIC[self.metric]
        if self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, metric)
            base.hnsw.efConstruction = self.hnsw_ef_construction
            base.hnsw.efSearch = self.hnsw_ef_search
        elif self.kind == "ivf" and trained_ivf:
            quantizer = faiss.IndexFlat(self.dim, metric)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, metric)
            ivf.nprobe = self.nprobe
            ivf.own_fields = True  # the IVF index frees its quantiser
            quantizer.this.disown()
            return ivf
        else:
            base = faiss.IndexFlat(self.dim, metric)
        index = faiss.IndexIDMap2(base)
        index.own_fields = True
        base.this.disown()
        return index

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors ``(N, D)`` and ids ``(N,)`` of a flat or HNSW index, in order."""
        ids = self.ids()
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32), ids
        vectors = self._cpu.index.reconstruct_n(0, len(ids))  # flat or HNSW storage
        return np.ascontiguousarray(vectors, dtype=np.float32), ids

    def _rebuild(self, vectors: np.ndarray, ids: np.ndarray, trained_ivf: bool) -> None:
        """Replaces the CPU index by a new one holding ``vectors`` with ``ids``."""
        index = self._new_index(trained_ivf)
        if trained_ivf:
            index.train(vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self._cpu, self._ivf_trained = index, trained_ivf
        self._gpu = None

    def _maybe_train_ivf(self) -> None:
        """Moves an ``ivf`` memory from its flat buffer into a trained IVF index."""
        if self.kind != "ivf" or self._ivf_trained or len(self) < self.ivf_train_size:
            return
        if len(self) < self.nlist:
            raise ValueError(f"ivf needs at least nlist={self.nlist} vectors to train; "
                             f"ivf_train_size={self.ivf_train_size} is too small")
        vectors, ids = self._contents()
        self._rebuild(vectors, ids, trained_ivf=True)

    def _searcher(self) -> faiss.Index:
        """The index to search: the GPU replica (rebuilt if stale) or the CPU index."""
        if not self.use_gpu:
            return self._cpu
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_all_gpus(self._cpu)
            except (RuntimeError, AttributeError) as err:
                if self._strict_gpu:
                    raise
                warnings.warn(f"FAISS GPU replica failed ({err}); searching on the CPU",
                              RuntimeWarning, stacklevel=3)
                self.use_gpu = False
                return self._cpu
        return self._gpu

    # -- public API ----------------------------------------------------------------------

    @property
    def index(self) -> faiss.Index:
        """The CPU FAISS index (read it; change it through this class)."""
        return self._cpu

    def __len__(self) -> int:
        return int(self._cpu.ntotal)

    def reset(self) -> None:
        """Forgets every vector; ids restart at 0."""
        self._cpu = self._new_index()
        self._ivf_trained = False
        self._gpu: faiss.Index | None = None
        self._next_id = 0

    def add(self, vectors: Any, payload_ids: Any = None) -> np.ndarray:
        """Stores vectors.

        Args:
            vectors: ``(N, D)`` float array or tensor.
            payload_ids: ``(N,)`` non-negative int64 ids to store them under (e.g. indices into
                the caller's own storage); default: consecutive ids after the largest so far.

        Returns:
            ``(N,)`` int64 ids of the stored vectors (what ``search`` returns for them).
        """
        vectors = _as_matrix(vectors, self.dim, "vectors")
        if payload_ids is None:
            ids = np.arange(self._next_id, self._next_id + len(vectors), dtype=np.int64)
        else:
            ids = _as_ids(payload_ids)
            if ids.shape != (len(vectors),) or (ids < 0).any():
                raise ValueError(f"payload_ids must be {len(vectors)} non-negative ids; got "
                                 f"shape {ids.shape}")
        if len(ids) == 0:
            return ids
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._cpu.add_with_ids(vectors, ids)
        if self._gpu is not None:
            self._gpu.add_with_ids(vectors, ids)
        self._maybe_train_ivf()
        return ids

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest stored vectors of each query, nearest first.

        Args:
            queries: ``(Q, D)`` float array or tensor.
            k: Neighbours per query (>= 1).

        Returns:
            distances ``(Q, k)`` float32 and ids ``(Q, k)`` int64. Missing neighbours (fewer
            than k stored, or not found by an approximate index) have id -1 and distance
            ``inf`` (``l2``) or ``-inf`` (``ip``).
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an int >= 1; got {k!r}")
        k = int(k)
        queries = _as_matrix(queries, self.dim, "queries")
        missing = np.inf if self.metric == "l2" else -np.inf
        if len(self) == 0 or len(queries) == 0:
            return (np.full((len(queries), k), missing, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        index = self._searcher() if k <= _GPU_MAX_K else self._cpu
        distances, ids = index.search(queries, k)
        distances = np.where(ids < 0, missing, distances).astype(np.float32)
        return distances, ids.astype(np.int64)

    def remove(self, ids: Any) -> int:
        """Deletes the vectors stored under ``ids`` (unknown ids are ignored).

        Args:
            ids: ``(M,)`` int64 ids.

        Returns:
            Number of vectors removed.
        """
        ids = _as_ids(ids)
        if len(ids) == 0 or len(self) == 0:
            return 0
        if self.kind == "hnsw":
            vectors, stored = self._contents()
            keep = ~np.isin(stored, ids)
            self._rebuild(vectors[keep], stored[keep], trained_ivf=False)
            return int((~keep).sum())
        removed = int(self._cpu.remove_ids(ids))
        if removed:
            self._gpu = None  # GPU indexes cannot remove: rebuild the replica on next search
        return removed

    def ids(self) -> np.ndarray:
        """``(N,)`` int64 ids of all stored vectors (storage order; by IVF list for IVF)."""
        if not self._ivf_trained:
            return faiss.vector_to_array(self._cpu.id_map).astype(np.int64)
        lists = self._cpu.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def state_dict(self) -> dict[str, Any]:
        """Config, serialised CPU index and id counter; plain values only (``bytes``, not an
        array), so checkpoints holding a memory load with ``torch.load(weights_only=True)``."""
        index = faiss.serialize_index(self._cpu).tobytes()
        return {"config": self._config(), "index": index, "sha256": _digest(index),
                "ivf_trained": self._ivf_trained, "next_id": self._next_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict`` output of a memory with the same dim / kind / metric.

        Raises:
            ValueError: The saved memory has another dim / kind / metric.
            CorruptMemoryError: The index bytes fail their checksum, do not parse, or parse as
                an index that does not match the saved config.
        """
        config = dict(state["config"])
        for key in ("dim", "kind", "metric"):
            if config[key] != getattr(self, key):
                raise ValueError(f"saved memory has {key}={config[key]!r}, this one "
                                 f"{getattr(self, key)!r}")
        index = _deserialize(bytes(state["index"]), state.get("sha256"), self.dim)
        self.nlist, self.nprobe = int(config["nlist"]), int(config["nprobe"])
        self.ivf_train_size = int(config["ivf_train_size"])
        self._cpu = index
        self._ivf_trained = bool(state["ivf_trained"])
        if self._ivf_trained:
            faiss.extract_index_ivf(index).nprobe = self.nprobe
        self._next_id = int(state["next_id"])
        self._gpu = None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the memory to one ``.npz`` file at ``path`` (exactly that name)."""
        state = self.state_dict()
        buffer = io.BytesIO()
        np.savez(buffer, index=np.frombuffer(state["index"], dtype=np.uint8),
                 config=np.array(json.dumps(state["config"])), sha256=np.array(state["sha256"]),
                 ivf_trained=np.array(state["ivf_trained"]), next_id=np.array(state["next_id"]))
        with open(path, "wb") as file:
            file.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, use_gpu: bool | str = "auto"
             ) -> EmbeddingMemory:
        """Reads a memory written by ``save``.

        Args:
            path: The file.
            use_gpu: As in the constructor.

        Returns:
            The memory, with the saved vectors, ids and config.

        Raises:
            CorruptMemoryError: The file is not a saved memory, or its index is damaged.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                config = json.loads(str(data["config"]))
                state = {"config": config, "index": data["index"].tobytes(),
                         "sha256": str(data["sha256"]) if "sha256" in data else None,
                         "ivf_trained": bool(data["ivf_trained"]),
                         "next_id": int(data["next_id"])}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise CorruptMemoryError(f"{path}: not a saved memory ({err})") from None
        memory = cls(**config, use_gpu=use_gpu)
        memory.load_state_dict(state)
        return memory
