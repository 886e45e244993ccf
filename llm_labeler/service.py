"""The labeler service: texts in from actors, labels on disk, reward tables out to the learner.

One process, two threads. The main thread owns the sockets and the reward model: it drains
texts (ZeroMQ PULL), records new ones in the store and the bounded queue, takes finished labels
from the worker, retrains the reward model when due and publishes the reward table (PUB). The
worker thread only labels: it pops the newest texts, calls the backend, writes the labels to
the SQLite store and hands them back. A slow or dead LLM server therefore delays labels, never
the sockets: actors send without blocking, cached labels keep flowing, and texts wait in the
queue (released, not failed, while the server is unavailable) until labelling resumes.

A restarted service reloads every seen text, label and preference from the store, re-queues the
seen texts that have no label yet, and never labels a text twice (``INSERT OR IGNORE`` and the
queue's ``known`` check).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import zmq

from explorer.core.curve import SocketSecurity
from explorer.core.sockets import bind
from explorer.core.tables import encode_table
from explorer.core.texts import parse_texts_message, text_id
from explorer.core.wire import MAX_META_ENTRIES
from llm_labeler.admission import TextAdmission
from llm_labeler.entry import ServiceArgs  # re-exported: where it was before
from llm_labeler.protocol import Label, LabelerError, as_sync
from llm_labeler.queue import PendingQueue
from llm_labeler.registry import make_labeler
from llm_labeler.reward_models import RankingRewardModel, make_reward_model
from llm_labeler.store import HeldWrites, LabelStore

__all__ = ["META_BUDGET", "LabelerService", "ServiceArgs", "fit_metrics", "labeler_main"]

log = logging.getLogger(__name__)

_POLL_MS = 50
#: Most texts messages read per loop iteration: a flood of messages must not keep the loop
#: from publishing (the rest wait in ZeroMQ's queue, bounded by the socket's RCVHWM).
_MAX_MESSAGES_PER_RECEIVE = 256
_MIN_PUBLISH_GAP_S = 0.2
#: Failures that say nothing about the texts: put them back without counting an attempt.
#: ``config`` (the server refuses this configuration) is one: the texts wait for it to be fixed.
_UNAVAILABLE = frozenset({"breaker_open", "connection", "timeout", "http_5xx", "http_429",
                          "closed", "config"})
#: Metrics one publication carries: the wire refuses a message with more meta entries (the
#: whole reward table would be lost), so :meth:`LabelerService.stats` fits in it.
META_BUDGET = MAX_META_ENTRIES
_BREAKER_CODES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


def _protected(key: str) -> bool:
    """Metrics that are never dropped: error counters and the configuration-error status."""
    return key.startswith("errors/") or key == "config_error"


def fit_metrics(metrics: dict[str, float], budget: int = META_BUDGET) -> dict[str, float]:
    """Fit metrics into ``budget`` entries, deterministically, never losing an error count.

    Kept first: every ``errors/<kind>`` counter and ``config_error``, then ``metrics_dropped``
    (always present: how many of the given keys were not published under their own name), then
    the other metrics in the order given, the later ones dropped first (the service lists the
    reward model's last). Only when the error kinds alone do not fit are the rarest kinds (ties
    by name) summed into ``errors/other``, so the errors' total is kept.

    Args:
        metrics: name -> value, most important first (error counters may come anywhere).
        budget: most entries of the result (>= 3).

    Returns:
        At most ``budget`` entries.
    """
    protected = {k: v for k, v in metrics.items() if _protected(k)}
    others = [(k, v) for k, v in metrics.items() if not _protected(k) and k != "metrics_dropped"]
    room = budget - 1  # metrics_dropped
    merged = 0
    if len(protected) > room:
        status = {k: protected.pop(k) for k in ("config_error",) if k in protected}
        other = protected.pop("errors/other", 0.0)
        ranked = sorted(protected.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = room - len(status) - 1  # errors/other
        merged = len(ranked) - keep
        protected = {**dict(ranked[:keep]), **status,
                     "errors/other": other + sum(v for _, v in ranked[keep:])}
    kept = others[:max(0, room - len(protected))]
    dropped = len(others) - len(kept) + merged
    return {**dict(kept), **protected, "metrics_dropped": float(dropped)}


def _encoder_for(labeler: Any) -> Any:
    """Reuse the embedded labeler's cached MiniLM for the reward model instead of loading it
    twice (any other labeler: a fresh encoder, loaded on first use)."""
    from llm_labeler.encoder import TextEncoder

    encoder = getattr(labeler, "text_encoder", None)
    return (encoder if isinstance(encoder, TextEncoder) else TextEncoder()).encode


class LabelerService:
    """Socket loop + labelling worker around a backend, a label store and a reward model."""

    def __init__(self, args: ServiceArgs, ctx: zmq.Context) -> None:
        cfg = args.cfg
        self.args, self.cfg = args, cfg
        self.labeler = make_labeler(cfg.labeler, **cfg.backend)
        self.sync_labeler = as_sync(self.labeler)
        self.prompt_hash = str(getattr(self.labeler, "prompt_hash", None) or
                               f"{getattr(self.labeler, 'name', cfg.labeler)}")
        encoder = _encoder_for(self.labeler) if cfg.reward_model != "retrieval" else None
        if encoder is not None:
            encoder([])  # load MiniLM now, not in the socket loop
        kwargs = dict(cfg.reward_model_kwargs)
        if cfg.reward_model == "ranking":
            kwargs.setdefault("seed", args.seed)
        self.model = make_reward_model(cfg.reward_model, encoder, **kwargs)
        self.store = LabelStore(args.store_path, synchronous="NORMAL")
        #: every write goes through it: a full disk holds rows in memory instead of killing
        #: the service (labelling waits until they are written)
        self.writes = HeldWrites(self.store)
        self.queue = PendingQueue(cfg.queue_size, known=self.store.__contains__)
        self._restore()
        self.admission = TextAdmission(cfg.max_texts, cfg.max_texts_per_sender,
                                       already=self.restored["seen"])

        self.security = SocketSecurity(ctx, args.curve)
        self.pull = ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.RCVHWM, 64)
        self.pull.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.security.serve(self.pull)
        self.texts_address = bind(self.pull, args.texts_address)
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 4)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.security.serve(self.pub)
        self.updates_address = bind(self.pub, args.updates_address)

        self.results: queue.Queue[tuple[str, list]] = queue.Queue()
        self.pair_requests: queue.Queue[list[tuple[str, str]]] = queue.Queue(maxsize=1)
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.latencies: collections.deque[float] = collections.deque(maxlen=1024)
        self.label_times: collections.deque[tuple[float, int]] = collections.deque(maxlen=256)
        # errors, latencies and label_times are written by the worker and read by stats() in
        # the main thread: every access holds this lock (iterating one while the other thread
        # appends raises "mutated during iteration")
        self._stats_lock = threading.Lock()
        self._dropped_logged = False
        self.version = 0
        self.last_publish = 0.0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="labeler-worker", daemon=True)

    # -- state -----------------------------------------------------------------------------
    def _restore(self) -> None:
        """Reload everything a previous incarnation stored; queue seen-but-unlabelled texts."""
        seen = self.store.seen_texts()
        self.model.add_texts(seen)
        labels = [(row.text, row.label, row.score) for row in self.store.all_labels()]
        self.model.add_labels(labels)
        self.model.add_preferences(self.store.preferences())
        self.queue.extend(seen)  # skips the labelled ones (``known``)
        self.restored = {"seen": len(seen), "labels": len(labels),
                         "queued": len(self.queue)}

    # -- worker thread: labelling only -----------------------------------------------------
    def _unavailable(self) -> bool:
        """Whether the backend would refuse every request now (server down, or refusing this
        configuration): the worker then waits instead of popping texts to put them back."""
        breaker = getattr(self.labeler, "breaker", None)
        if breaker is not None and breaker.state == "open":
            return True
        gate = getattr(self.labeler, "config_gate", None)
        return gate is not None and bool(gate.held)

    def _store_full(self) -> bool:
        """Whether rows wait for room on a full disk (tried again here, once a second):
        labelling waits, since a label the store cannot keep is an LLM call a crash loses."""
        return not self.writes.flush()

    def _work(self) -> None:
        while not self._stop.is_set():
            if self._unavailable() or self._store_full():
                self._stop.wait(0.1)
                continue
            busy = False
            batch = self.queue.pop_batch(self.cfg.batch_size)
            if batch:
                self._label(batch)
                busy = True
            try:
                pairs = self.pair_requests.get_nowait()
            except queue.Empty:
                pairs = None
            if pairs:
                self._compare(pairs)
                busy = True
            if not busy:
                self._stop.wait(0.02)

    def _label(self, batch: list[str]) -> None:
        start = time.monotonic()
        labels: list[Label] = []
        failed: dict[str, str] = {}
        try:
            if hasattr(self.labeler, "label_batch"):
                result = self.labeler.label_batch(batch)
                labels, failed = list(result.labels), dict(result.failed)
            else:
                labels = self.sync_labeler.label(batch)
                if len(labels) != len(batch) or not all(isinstance(x, Label) for x in labels):
                    raise LabelerError(f"returned {len(labels)} labels for {len(batch)} texts",
                                       reason="bad_output")
        except LabelerError as err:
            labels, failed = [], dict.fromkeys(batch, err.reason)
        except Exception:  # a user's labeler raised: count it, keep the service running
            log.exception("labeler %s raised while labelling %d texts", self.cfg.labeler,
                          len(batch))
            labels, failed = [], dict.fromkeys(batch, "exception")
        with self._stats_lock:
            self.latencies.append(time.monotonic() - start)
        if labels:
            self.writes.add(labels=labels, prompt_hash=self.prompt_hash)
            self.queue.done([lab.text for lab in labels])
            with self._stats_lock:
                self.label_times.append((time.monotonic(), len(labels)))
            self.results.put(("labels", [(lab.text, lab.label, lab.score) for lab in labels]))
        with self._stats_lock:
            self.errors.update(failed.values())
        self.queue.release([t for t, k in failed.items() if k in _UNAVAILABLE])
        self.queue.requeue([t for t, k in failed.items() if k not in _UNAVAILABLE])

    def _compare(self, pairs: list[tuple[str, str]]) -> None:
        try:
            prefs = [(a, b, float(p)) for (a, b), p in
                     zip(pairs, self.labeler.compare(pairs), strict=True) if p is not None]
        except Exception as err:  # noqa: BLE001 - any backend failure: count, ask again later
            with self._stats_lock:
                self.errors[getattr(err, "reason", "compare")] += 1
            return
        self.writes.add(prefs=prefs, backend=self.cfg.labeler)
        self.results.put(("preferences", prefs))

    # -- main thread: sockets and reward model ---------------------------------------------
    def receive(self, timeout_ms: int) -> None:
        """Read up to :data:`_MAX_MESSAGES_PER_RECEIVE` texts messages; malformed ones are
        dropped and counted, new texts beyond the per-sender or total cap refused and counted
        (:class:`~llm_labeler.admission.TextAdmission`)."""
        if not self.pull.poll(timeout_ms):
            return
        new: dict[str, None] = {}  # new distinct texts of this drain, in arrival order
        recurring: list[str] = []
        for _ in range(_MAX_MESSAGES_PER_RECEIVE):
            if not self.pull.poll(0):
                break
            frames = self.pull.recv_multipart()
            self.counts["messages"] += 1
            if len(frames) != 1:
                self.counts["dropped_messages"] += 1
                continue
            try:
                sender, texts, hot = parse_texts_message(frames[0])
            except ValueError:
                self.counts["dropped_messages"] += 1
                continue
            self.counts["texts_received"] += len(texts)  # clipped by the protocol
            ids = [text_id(t) for t in texts]
            self.counts["store_hits"] += sum(key in self.model.labels for key in ids)
            fresh = list(dict.fromkeys(t for t, key in zip(texts, ids, strict=True)
                                       if key not in self.model.texts and t not in new))
            new.update(dict.fromkeys(self.admission.admit(sender, fresh)))
            recurring.extend(hot)
        if new:
            accepted = list(new)
            self.model.add_texts(accepted)
            self.writes.add(seen=accepted)
            self.queue.extend(accepted)
        self.queue.bump(recurring)  # frequent texts first

    def _collect(self) -> None:
        while True:
            try:
                kind, items = self.results.get_nowait()
            except queue.Empty:
                return
            if kind == "labels":
                self.model.add_labels(items)
            else:
                self.model.add_preferences(items)

    def _schedule_pairs(self) -> None:
        """Ranking: ask the backend to compare pairs, or judge them by label scores."""
        model = self.model
        if not isinstance(model, RankingRewardModel) or not model.pairs_wanted():
            return
        if hasattr(self.labeler, "compare"):
            if self.pair_requests.empty():
                pairs = model.sample_pairs(model.pairs_per_round)
                if pairs:
                    self.pair_requests.put_nowait(pairs)
            return
        prefs = model.preferences_from_scores(
            model.sample_pairs(model.pairs_per_round, labelled_only=True))
        if prefs:
            self.writes.add(prefs=prefs, backend=f"{self.cfg.labeler}:scores")
            model.add_preferences(prefs)

    def stats(self) -> dict[str, float]:
        """Scalars for TensorBoard (``labeler/...``), sent as the publication's meta.

        At most :data:`META_BUDGET` entries (see :func:`fit_metrics`): error counters always,
        the reward model's metrics dropped first, ``metrics_dropped`` counting what was left
        out (logged once).
        """
        q = self.queue.stats()
        store = self.store.stats()
        with self._stats_lock:  # a snapshot: the worker appends to these
            lat = sorted(self.latencies)
            label_times = list(self.label_times)
            errors = dict(self.errors)
        now = time.monotonic()
        recent = [n for t, n in label_times if now - t < 10.0]
        out: dict[str, float] = {
            "queue_depth": q["size"], "queue_inflight": q["inflight"],
            "queue_dropped": q["dropped"], "queue_abandoned": q["abandoned"],
            "labelled_total": store["rows"],
            "positive_rate": store["positives"] / store["rows"] if store["rows"] else 0.0,
            "relabelled": store["ignored"],
            "texts_received": self.counts["texts_received"],
            "store_hits": self.counts["store_hits"],
            "dropped_messages": self.counts["dropped_messages"],
            # rows a full disk refused, held in memory until it has room (0: all on disk)
            "store_held": float(self.writes.held()),
            **self.admission.stats(),
            # handshakes refused because the client's key is not authorised (CURVE runs only)
            **({"auth_rejected": float(self.security.rejected)} if self.security.enabled
               else {}),
            "throughput_texts_per_s": sum(recent) / 10.0,
            "breaker_state": _BREAKER_CODES.get(
                getattr(getattr(self.labeler, "breaker", None), "state", "closed"), 0.0),
        }
        if lat:  # per labelled batch; an HTTP backend's per-request figures replace them
            out["latency_p50_s"] = lat[int(0.5 * (len(lat) - 1))]
            out["latency_p95_s"] = lat[round(0.95 * (len(lat) - 1))]
        backend_stats = getattr(self.labeler, "stats", None)
        if callable(backend_stats):
            extra = backend_stats()
            for key in ("latency_p50_s", "latency_p95_s"):
                if extra.get(key) is not None:
                    out[key] = float(extra[key])
            out["requests"] = float(extra.get("requests", 0))
            out["retries"] = float(extra.get("retries", 0))
            if "structured_fallbacks" in extra:
                out["structured_fallbacks"] = float(extra["structured_fallbacks"])
            config_error = extra.get("config_error")
            if isinstance(config_error, dict):  # HTTP status of the active one, 0: none
                out["config_error"] = float(config_error.get("status") or 0)
        out.update({f"errors/{kind}": n for kind, n in errors.items()})
        if self.writes.refused:
            out["errors/store_full"] = float(self.writes.refused)
        out.update({f"reward_model/{k}": float(v) for k, v in
                    sorted(self.model.metrics().items())})
        fitted = fit_metrics(out)
        if fitted["metrics_dropped"] and not self._dropped_logged:
            self._dropped_logged = True
            log.warning("labeler: %d metrics over the wire's %d-entry budget are not published: "
                        "%s (labeler/metrics_dropped counts them)", fitted["metrics_dropped"],
                        META_BUDGET, sorted(set(out) - set(fitted)))
        return fitted

    def publish(self) -> None:
        ids, rewards = self.model.table()
        self.version += 1
        self.pub.send_multipart(encode_table(ids, rewards, self.version, self.stats()),
                                copy=False)
        self.last_publish = time.monotonic()

    def step(self, timeout_ms: int = _POLL_MS) -> None:
        """One main-loop iteration (exposed for tests)."""
        self.receive(timeout_ms)
        self._collect()
        self._schedule_pairs()
        now = time.monotonic()
        changed = self.model.refresh()
        if (changed and now - self.last_publish > _MIN_PUBLISH_GAP_S) or (
                now - self.last_publish > self.cfg.publish_interval_s):
            self.publish()

    def start(self) -> None:
        self._worker.start()

    def run(self) -> None:
        """Loop until the stop event is set."""
        self.start()
        while not self.args.stop_event.is_set():
            self.step()

    def close(self) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        if not self.writes.flush(now=True):
            log.error("labeler: %d rows not saved, the label store is still full: %s",
                      self.writes.held(), self.writes.error)
        # an async labeler's wrapper closes it (aclose/close) on its event loop, then the loop
        close = getattr(self.sync_labeler, "close", None)
        if callable(close):
            close()
        self.pull.close(0)
        self.pub.close(0)
        self.security.close()
        self.store.close()


def _nice_every_thread(increment: int) -> None:
    """Lower the priority of every thread of this process (Linux's nice is per thread, and
    the service's worker threads already run); elsewhere, of the calling thread."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        os.nice(increment)
        return
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, tid,
                           min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))


def labeler_main(args: ServiceArgs) -> None:
    """Process entry point: SIGINT is the supervisor's; the service watches the stop event."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ctx = zmq.Context()
    try:
        service = LabelerService(args, ctx)
    except Exception as err:
        if args.status_queue is not None:
            args.status_queue.put(("labeler_failed", {"error": f"{type(err).__name__}: {err}"}))
        raise
    if args.status_queue is not None:
        args.status_queue.put(("labeler_ready", {"texts": service.texts_address,
                                                 "updates": service.updates_address,
                                                 **service.restored}))
    # niced only once ready: the run waits for the start-up (loading the model), which a
    # busy machine would otherwise starve; the labelling after it is asynchronous
    if args.cfg.nice:
        _nice_every_thread(args.cfg.nice)
    try:
        service.run()
    finally:
        service.close()
        ctx.term()
