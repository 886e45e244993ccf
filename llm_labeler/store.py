"""Durable label cache: SQLite in WAL mode, keyed by the SHA-256 of the text.

One writer process (the labeler) and any number of reader processes (the learner, a dashboard)
share one file. A label, once stored, is never replaced (``INSERT OR IGNORE``): the reward a
text earns must not change under the agent's feet, and a restart resumes with every label
already paid for (ONI keeps its labels in memory and loses them).

Texts are keyed by ``sha256(text.encode("utf-8"))`` of the *full* text; the stored copy is
truncated to ``max_text_chars``. ``bytes`` inputs are decoded as UTF-8 with
``errors="replace"`` (and so are ``str`` inputs holding lone surrogates); each such repair is
counted in :meth:`LabelStore.stats` as ``decode_errors``.

Example::

    store = LabelStore("run/labels.sqlite")
    missing = [t for t in texts if t not in store.get_many(texts)]
    store.put_many(labeler.label(missing), prompt_hash=labeler.prompt_hash)
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_labeler.protocol import Label

__all__ = ["MAX_TEXT_CHARS", "HeldWrites", "LabelStore", "LabelStoreFullError", "StoredLabel",
           "normalize_text", "text_hash"]

#: Default cap on the characters of a text kept in the store (the hash covers the full text).
MAX_TEXT_CHARS = 4096

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    text_hash   TEXT PRIMARY KEY,   -- sha256 hex of the full UTF-8 text
    text        TEXT NOT NULL,      -- the text, truncated to max_text_chars
    text_len    INTEGER NOT NULL,   -- length of the full text, characters
    label       INTEGER NOT NULL CHECK (label IN (0, 1)),
    score       REAL NOT NULL,
    rationale   TEXT,
    backend     TEXT NOT NULL,
    model       TEXT,
    prompt_hash TEXT NOT NULL,
    created     REAL NOT NULL       -- unix time, seconds
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (      -- every text the labeler received, labelled or not
    text_hash   TEXT PRIMARY KEY,
    text        TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS preferences ( -- pairwise judgements for ranking reward models
    a_hash      TEXT NOT NULL,
    b_hash      TEXT NOT NULL,
    a_text      TEXT NOT NULL,
    b_text      TEXT NOT NULL,
    preference  REAL NOT NULL,          -- P(a is better than b), 0.5 = tie
    backend     TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (a_hash, b_hash)
);
"""
_COLUMNS = ("rowid, text_hash, text, text_len, label, score, rationale, backend, model, "
            "prompt_hash, created")
_CHUNK = 500  # host parameters per IN (...) query; below every SQLite build's limit
#: Seconds between tries to write what a full disk refused (:class:`HeldWrites`).
_RETRY_FULL_S = 1.0

#: Below this much free space, a writer that cannot open the store blames the full disk.
_MIN_FREE_BYTES = 1 << 20

log = logging.getLogger(__name__)


def _free_bytes(directory: Path) -> int | None:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class LabelStoreFullError(sqlite3.OperationalError):
    """A write the disk had no room for; one line naming the store. SQLite rolled the whole
    transaction back: the file holds every row committed before, and none of this write."""


def normalize_text(text: str | bytes) -> tuple[str, bool]:
    """Turn any input into a valid Unicode string.

    Args:
        text: a ``str`` or UTF-8 ``bytes`` (invalid sequences allowed).

    Returns:
        ``(text, repaired)``: the string, and whether invalid bytes or lone surrogates were
        replaced by U+FFFD.

    Raises:
        TypeError: ``text`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace"), True
    if not isinstance(text, str):
        raise TypeError(f"label store: text must be str or bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from surrogateescape decoding
        return text.encode("utf-8", errors="surrogatepass").decode("utf-8", "replace"), True
    return text, False


def text_hash(text: str | bytes) -> str:
    """SHA-256 hex digest of the (normalised) text's UTF-8 encoding; the store's key."""
    return hashlib.sha256(normalize_text(text)[0].encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredLabel:
    """One row of the store.

    Attributes:
        text: the text; from :meth:`LabelStore.get_many` the full query text, from
            :meth:`LabelStore.all_labels` the stored copy (possibly truncated).
        text_hash: SHA-256 hex of the full text.
        label: 0 or 1.
        score: confidence that the label is 1, in [0, 1].
        rationale: the backend's explanation, if any.
        backend: registered name of the backend that produced the label.
        model: model identifier, if any.
        prompt_hash: hash of the prompt (or other labelling configuration) used.
        created: unix time the row was written, seconds.
        truncated: the stored copy of the text is shorter than the full text.
        row_id: insertion order (SQLite rowid); resume tailing with ``all_labels(after_id=)``.
    """

    text: str
    text_hash: str
    label: int
    score: float
    rationale: str | None
    backend: str
    model: str | None
    prompt_hash: str
    created: float
    truncated: bool
    row_id: int

    def to_label(self) -> Label:
        """The row as a protocol :class:`~llm_labeler.protocol.Label`."""
        return Label(text=self.text, label=self.label, score=self.score,
                     rationale=self.rationale, backend=self.backend, model=self.model)


class LabelStore:
    """SQLite label cache shared by one writer process and many readers.

    Call sequence: ``LabelStore(path)`` (creates the file and schema), then any mix of
    :meth:`get_many`, :meth:`put_many`, :meth:`all_labels`, :meth:`stats`; :meth:`close` (or
    use it as a context manager). Methods are thread-safe within a process.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 max_text_chars: int = MAX_TEXT_CHARS, busy_timeout_s: float = 30.0,
                 synchronous: str = "FULL") -> None:
        """Open (and if needed create) the store.

        Args:
            path: database file; its directory is created for a writer.
            readonly: open an existing store read-only (reader processes).
            max_text_chars: characters of each text kept in the ``text`` column (>= 1).
            busy_timeout_s: how long a statement waits for another process's lock, seconds.
            synchronous: SQLite ``synchronous`` pragma for the writer: ``"FULL"`` (each
                commit survives power loss) or ``"NORMAL"`` (survives process crashes).

        Raises:
            ValueError: bad argument.
            LabelStoreFullError: a writer cannot open it: its disk is full.
            FileNotFoundError: ``readonly`` and the file does not exist.
            sqlite3.DatabaseError: the file is not a SQLite database or WAL mode is refused.
        """
        if max_text_chars < 1:
            raise ValueError(f"label store: max_text_chars must be >= 1, got {max_text_chars}")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"label store: synchronous must be FULL, NORMAL or EXTRA, got "
                             f"{synchronous!r}")
        self.path = Path(path)
        self.readonly = readonly
        self.max_text_chars = max_text_chars
        self._lock = threading.Lock()
        self._counts = {"inserted": 0, "ignored": 0, "hits": 0, "misses": 0,
                        "decode_errors": 0, "truncated": 0}
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"label store: {self.path} does not exist")
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                         check_same_thread=False, timeout=busy_timeout_s)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=busy_timeout_s)
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not readonly:
                self._init_writer(synchronous.upper())
            self.journal_mode = str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])
        except sqlite3.Error as err:
            self._conn.close()
            free = _free_bytes(self.path.parent)
            if not readonly and isinstance(err, sqlite3.OperationalError) and (
                    getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                    or (free is not None and free < _MIN_FREE_BYTES)):
                # opening creates the -wal and -shm files: SQLite says "disk I/O error"
                raise LabelStoreFullError(
                    f"label store {self.path}: cannot open it, its disk is full ({free} bytes "
                    f"free; {err}); every row stored before is kept") from err
            raise

    def _init_writer(self, synchronous: str) -> None:
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"label store: {self.path} refused WAL mode (got {mode})")
        self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        self._conn.executescript(_SCHEMA)
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                               (str(_SCHEMA_VERSION),))
        elif int(row[0]) != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"label store: {self.path} has schema version {row[0]}, "
                                        f"this code reads version {_SCHEMA_VERSION}")

    # -- reading -------------------------------------------------------------------------

    def get_many(self, texts: Iterable[str | bytes]) -> dict[str | bytes, StoredLabel]:
        """Look texts up.

        Args:
            texts: texts (``str`` or ``bytes``); duplicates allowed.

        Returns:
            The labelled ones: ``{query text (as given): row}``, the row's ``text`` being the
            full normalised query text. Texts without a label are absent.
        """
        by_hash: dict[str, list[tuple[str | bytes, str]]] = {}
        repairs = 0
        for query in texts:
            text, repaired = normalize_text(query)
            repairs += repaired
            key = hashlib.sha256(text.encode("utf-8")).hexdigest()
            by_hash.setdefault(key, []).append((query, text))
        out: dict[str | bytes, StoredLabel] = {}
        hashes = list(by_hash)
        with self._lock:
            for i in range(0, len(hashes), _CHUNK):
                chunk = hashes[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                        f"SELECT {_COLUMNS} FROM labels WHERE text_hash IN ({marks})", chunk):
                    for query, text in by_hash[row[1]]:
                        out[query] = _row(row, text=text)
            hits = sum(len(by_hash[h]) for h in {r.text_hash for r in out.values()})
            self._counts["hits"] += hits
            self._counts["misses"] += sum(len(v) for v in by_hash.values()) - hits
            self._counts["decode_errors"] += repairs
        return out

    def get(self, text: str | bytes) -> StoredLabel | None:
        """The row for one text, or ``None`` when it is unlabelled."""
        return self.get_many([text]).get(text)

    def __contains__(self, text: object) -> bool:
        """Whether ``text`` (``str`` or ``bytes``) has a label; usable as a queue's ``known``."""
        if not isinstance(text, (str, bytes)):
            return False
        key = text_hash(text)
        with self._lock:
            return self._conn.execute("SELECT 1 FROM labels WHERE text_hash = ?",
                                      (key,)).fetchone() is not None

    def all_labels(self, *, after_id: int = 0, page: int = 1000) -> Iterator[StoredLabel]:
        """Every stored row in insertion order, read in pages (rows may be added meanwhile).

        Args:
            after_id: yield only rows with ``row_id > after_id`` (tail a live store: pass the
                last ``row_id`` seen).
            page: rows fetched per query.

        Yields:
            Rows, ``text`` being the stored (possibly truncated) copy.
        """
        last = after_id
        while True:
            with self._lock:
                rows = self._conn.execute(f"SELECT {_COLUMNS} FROM labels WHERE rowid > ? "
                                          "ORDER BY rowid LIMIT ?", (last, page)).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row(row, text=None)
            last = rows[-1][0]

    def __len__(self) -> int:
        """Number of stored labels."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """Counters for logging under ``labeler/store/``.

        Returns:
            ``rows``, ``positives`` (label 1), ``inserted`` / ``ignored`` (by this handle's
            :meth:`put_many`; ``ignored`` = already labelled), ``hits`` / ``misses`` (by
            :meth:`get_many`), ``decode_errors``, ``truncated``, ``journal_mode``, ``path``.
        """
        with self._lock:
            rows, positives = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(label), 0) FROM labels").fetchone()
            counts = dict(self._counts)
        return {"rows": int(rows), "positives": int(positives), **counts,
                "journal_mode": self.journal_mode, "path": str(self.path)}

    # -- writing -------------------------------------------------------------------------

    def put_many(self, labels: Iterable[Label], prompt_hash: str) -> int:
        """Store labels; a text that already has a label keeps it (``INSERT OR IGNORE``).

        Args:
            labels: labels to store; ``label.text`` may be ``str`` or ``bytes``.
            prompt_hash: identifies the prompt/configuration that produced them.

        Returns:
            Number of rows actually inserted (new texts).

        Raises:
            sqlite3.OperationalError: the store is read-only, or the lock wait timed out.
        """
        now = time.time()
        rows = []
        repairs = truncations = 0
        for lab in labels:
            text, repaired = normalize_text(lab.text)
            repairs += repaired
            kept = text[:self.max_text_chars]
            truncations += len(kept) < len(text)
            rows.append((hashlib.sha256(text.encode("utf-8")).hexdigest(), kept, len(text),
                         int(lab.label), float(lab.score), lab.rationale, lab.backend,
                         lab.model, prompt_hash, now))
        inserted = self._write("INSERT OR IGNORE INTO labels (text_hash, text, text_len, label, "
                               "score, rationale, backend, model, prompt_hash, created) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        with self._lock:
            self._counts["inserted"] += inserted
            self._counts["ignored"] += len(rows) - inserted
            self._counts["decode_errors"] += repairs
            self._counts["truncated"] += truncations
        return inserted

    def _write(self, sql: str, rows: list[tuple]) -> int:
        """``executemany`` in one immediate transaction; returns rows changed.

        Raises:
            LabelStoreFullError: the disk is full (nothing of this write is stored).
            sqlite3.OperationalError: other failures (read-only store, lock wait timed out).
        """
        if not rows:
            return 0
        with self._lock:
            before = self._conn.total_changes
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(sql, rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself on some errors (SQLITE_FULL at COMMIT): a
                    # second ROLLBACK would raise "no transaction is active" over the cause
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:
                if getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise LabelStoreFullError(
                        f"label store {self.path}: the disk is full ({err}); {len(rows)} rows "
                        "not written, every row written before is kept") from err
                raise
            return self._conn.total_changes - before

    # -- seen texts and preferences (reward models) --------------------------------------

    def add_seen(self, texts: Iterable[str]) -> int:
        """Remember texts the labeler received, so a restarted labeler still rewards and
        labels the ones actors will not send again. Returns how many were new."""
        now = time.time()
        rows = {}
        for query in texts:
            text = normalize_text(query)[0]
            rows[hashlib.sha256(text.encode("utf-8")).hexdigest()] = (
                text[:self.max_text_chars], now)
        return self._write("INSERT OR IGNORE INTO seen (text_hash, text, created) "
                           "VALUES (?, ?, ?)", [(k, t, c) for k, (t, c) in rows.items()])

    def seen_texts(self) -> list[str]:
        """Every text ever passed to :meth:`add_seen`, in arrival order."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT text FROM seen ORDER BY rowid")]

    def put_preferences(self, prefs: Iterable[tuple[str, str, float]], backend: str) -> int:
        """Store pairwise judgements ``(a, b, P(a better than b))``; a judged pair keeps its
        first judgement. Returns how many were new."""
        now = time.time()
        rows = []
        for a, b, pref in prefs:
            ta, tb = normalize_text(a)[0], normalize_text(b)[0]
            rows.append((hashlib.sha256(ta.encode("utf-8")).hexdigest(),
                         hashlib.sha256(tb.encode("utf-8")).hexdigest(),
                         ta[:self.max_text_chars], tb[:self.max_text_chars], float(pref),
                         backend, now))
        return self._write("INSERT OR IGNORE INTO preferences (a_hash, b_hash, a_text, b_text, "
                           "preference, backend, created) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def preferences(self) -> list[tuple[str, str, float]]:
        """Every stored judgement ``(a, b, P(a better than b))``, in arrival order."""
        with self._lock:
            return [(a, b, float(p)) for a, b, p in self._conn.execute(
                "SELECT a_text, b_text, preference FROM preferences ORDER BY rowid")]

    def close(self) -> None:
        """Close the connection (idempotent); the data stays on disk."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"LabelStore({str(self.path)!r}, {mode})"


class HeldWrites:
    """Writes to a :class:`LabelStore` that survive a full disk: rows it refuses are held in
    memory and written on a later try (at most one a second), in arrival order per kind.

    The labeler service writes through this: a full disk then costs no label already paid for
    (an LLM call) unless the process dies before the disk has room again. ``error`` is the
    first refusal's message while anything is held (logged once, and once when writes work
    again). Thread-safe.

    Example::

        writes = HeldWrites(store)
        writes.add(labels=labels, prompt_hash=h)   # written now, or held
        writes.flush()                              # True when nothing is held
    """

    def __init__(self, store: LabelStore, retry_s: float = _RETRY_FULL_S) -> None:
        self.store = store
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._seen: list[str] = []
        self._labels: dict[str, list[Label]] = {}  # prompt_hash -> labels
        self._prefs: dict[str, list[tuple[str, str, float]]] = {}  # backend -> prefs
        self._retry_at = 0.0
        #: writes the store refused (each try counts once)
        self.refused = 0
        self.error = ""

    def held(self) -> int:
        """Rows (seen texts, labels, preferences) waiting to be written."""
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return (len(self._seen) + sum(map(len, self._labels.values()))
                + sum(map(len, self._prefs.values())))

    def add(self, *, seen: Iterable[str] = (), labels: Iterable[Label] = (),
            prompt_hash: str = "", prefs: Iterable[tuple[str, str, float]] = (),
            backend: str = "") -> bool:
        """Write rows now, or hold them when the store is full; True when nothing is held.

        Raises:
            sqlite3.OperationalError: failures other than a full disk.
        """
        with self._lock:
            first = self._count() == 0
            self._seen.extend(seen)
            labels = list(labels)
            if labels:
                self._labels.setdefault(prompt_hash, []).extend(labels)
            prefs = list(prefs)
            if prefs:
                self._prefs.setdefault(backend, []).extend(prefs)
            return self._flush(now=first)

    def flush(self, *, now: bool = False) -> bool:
        """Try to write what is held (``now``: without waiting for the retry interval);
        True when nothing is held any more."""
        with self._lock:
            return self._flush(now)

    def _flush(self, now: bool) -> bool:
        if not self._count():
            return True
        if not now and time.monotonic() < self._retry_at:
            return False
        try:
            if self._seen:
                self.store.add_seen(self._seen)
                self._seen = []
            for key in list(self._labels):
                self.store.put_many(self._labels[key], prompt_hash=key)
                del self._labels[key]
            for key in list(self._prefs):
                self.store.put_preferences(self._prefs[key], backend=key)
                del self._prefs[key]
        except LabelStoreFullError as err:
            self.refused += 1
            self._retry_at = time.monotonic() + self.retry_s
            if not self.error:
                self.error = str(err)
                log.error("%s; %d rows held in memory, written once it has room (labelling "
                          "waits; cached labels keep flowing)", err, self._count())
            return False
        if self.error:
            log.warning("label store %s: writable again, every held row written",
                        self.store.path)
            self.error = ""
        return True


def _row(row: tuple, *, text: str | None) -> StoredLabel:
    row_id, key, stored, text_len, label, score, rationale, backend, model, prompt, created = row
    return StoredLabel(text=stored if text is None else text, text_hash=key, label=int(label),
                       score=float(score), rationale=rationale, backend=backend, model=model,
                       prompt_hash=prompt, created=float(created),
                       truncated=len(stored) < int(text_len), row_id=int(row_id))
