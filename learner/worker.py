"""The learner process: receive rollouts, train, publish weights, log, checkpoint.

The socket loop never lets a bad message reach training: ``explorer.core.wire.decode`` rejects it,
the drop is counted by reason (TensorBoard ``wire/dropped``), and the loop goes on.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from explorer.core.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    write_progress,
)
from explorer.core.curve import SocketSecurity
from explorer.core.dashboard import write_layout
from explorer.core.sockets import bind, cap_tcp_buffers
from explorer.core.specs import EpisodeStatsSpec, rollout_schema, unpack_episode_stats
from explorer.core.tables import TableSubscriber
from explorer.core.wire import KIND_WEIGHTS, DropCounter, Message, WireError, decode, encode
from learner.algo import Learner, resolve_device
from learner.batch import stack_rollouts
from learner.entry import LearnerArgs  # re-exported: where it was before

__all__ = ["LearnerArgs", "LearnerWorker", "learner_main"]

_POLL_MS = 20
_REPUBLISH_S = 1.0
#: Until the first rollout arrives: actors that connected after a publication (ZeroMQ drops
#: what a subscriber not yet joined would have got) wait this long, not ``_REPUBLISH_S``.
_STARTUP_REPUBLISH_S = 0.02
_STATUS_S = 1.0
_REPORT_TIMEOUT_S = 30.0
_RETURN_WINDOW = 100


class EpisodeStatsLog:
    """What the learner logs of an env's extra per-episode stats (``EnvSpec.episode_stats``).

    Numeric stats: mean over the last ``window`` episodes, like ``episode/return``, tagged
    ``<prefix>/<name>``. Labels: all-time episode counts per value, as ``<prefix>/<label>/<value>``
    scalars for the ``TOP`` most frequent values and a text table ``<prefix>/<label>`` of the
    ``TEXT_ROWS`` most frequent.
    At most ``MAX_VALUES`` distinct values are kept per label (later ones count as "other"), so
    a flood of new labels cannot grow the learner's memory.
    """

    TOP = 8
    TEXT_ROWS = 100
    MAX_VALUES = 1000

    def __init__(self, spec: EpisodeStatsSpec, window: int) -> None:
        self.spec = spec
        self.values: collections.deque[np.ndarray] = collections.deque(maxlen=window)  # (S,)
        self.counts: dict[str, collections.Counter[str]] = {
            name: collections.Counter() for name in spec.labels}
        self.changed: set[str] = set()

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        """Raises ``WireError`` (``bad_episode_stats``) if a rollout's episode stats are bad."""
        unpack_episode_stats(arrays, self.spec)

    def add(self, arrays: dict[str, np.ndarray]) -> int:
        """Records a rollout's episodes; returns how many.

        Raises:
            WireError: ``bad_episode_stats`` (see ``explorer.core.specs.unpack_episode_stats``).
        """
        values, labels = unpack_episode_stats(arrays, self.spec)
        self.values.extend(values)
        for episode in labels:
            for name, value in zip(self.spec.labels, episode, strict=True):
                if not value:
                    continue
                counts = self.counts[name]
                full = value not in counts and len(counts) >= self.MAX_VALUES
                counts["other" if full else value] += 1
                self.changed.add(name)
        return len(values)

    def means(self) -> dict[str, float]:
        """Name -> mean over the window (empty before the first episode)."""
        if not self.values:
            return {}
        means = np.mean(np.stack(self.values), axis=0)  # (S,)
        return {name: float(m) for name, m in zip(self.spec.values, means, strict=True)}

    def scalars(self) -> dict[str, float]:
        """TensorBoard tag -> value."""
        prefix = self.spec.prefix
        out = {f"{prefix}/{name}": m for name, m in self.means().items()}
        for name, counts in self.counts.items():
            out.update({f"{prefix}/{name}/{value}": float(n)
                        for value, n in counts.most_common(self.TOP)})
        return out

    def texts(self) -> dict[str, str]:
        """Tag -> markdown table of the labels whose counts changed since the last call."""
        out = {}
        for name in sorted(self.changed):
            counts = self.counts[name]
            total = sum(counts.values())
            rows = [f"| {value} | {n} | {n / total:.1%} |"
                    for value, n in counts.most_common(self.TEXT_ROWS)]
            if len(counts) > self.TEXT_ROWS:
                rows.append(f"| ({len(counts) - self.TEXT_ROWS} more) | | |")
            out[f"{self.spec.prefix}/{name}"] = "\n".join(
                [f"| {name} | episodes | share |", "|---|---:|---:|", *rows])
        self.changed.clear()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"values": [v.tolist() for v in self.values],
                "counts": {name: dict(c) for name, c in self.counts.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values.extend(np.asarray(v, dtype=np.float32) for v in state["values"])
        for name, counts in state["counts"].items():
            if name in self.counts:
                self.counts[name].update(counts)
                self.changed.add(name)


class LearnerWorker:
    """Socket loop around a :class:`~learner.algo.Learner`."""

    def __init__(self, args: LearnerArgs, ctx: zmq.Context) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = args.cfg
        self.args = args
        self.cfg = cfg
        self.run_dir = Path(args.run_dir)
        self.learner = Learner(cfg, args.env_spec, resolve_device(cfg.learner.device))
        num_envs = cfg.env.envs_per_actor
        max_bytes = int(cfg.wire.max_message_mb * (1 << 20))
        self.schema = rollout_schema(args.env_spec, cfg.actors.rollout_len, num_envs,
                                     self.learner.model.core_size, max_bytes,
                                     text_units=cfg.text.wire_units())
        self.drops = DropCounter()
        self.env_steps = 0
        self.episodes = 0
        self.returns: collections.deque[float] = collections.deque(maxlen=_RETURN_WINDOW)
        self.lengths: collections.deque[int] = collections.deque(maxlen=_RETURN_WINDOW)
        stats_spec = args.env_spec.episode_stats
        self.episode_stats = (None if stats_spec is None
                              else EpisodeStatsLog(stats_spec, _RETURN_WINDOW))
        if args.resume_path:
            self._restore(Path(args.resume_path))

        self.security = SocketSecurity(ctx, args.curve)
        self.pull = ctx.socket(zmq.PULL)
        # One message per actor pipe waits here; more would only age before training (the
        # actors' own send queues hold the rest, and block them: back-pressure, not staleness).
        self.pull.setsockopt(zmq.RCVHWM, 1)
        cap_tcp_buffers(self.pull, args.rollout_address)
        self.pull.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.security.serve(self.pull)
        self.rollout_address = bind(self.pull, args.rollout_address)
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 2)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.security.serve(self.pub)
        self.weights_address = bind(self.pub, args.weights_address)

        self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                    purge_step=self.env_steps if args.resume_path else None)
        write_layout(self.writer)  # the whole system on one TensorBoard page
        self.pending: list[Message] = []
        # One batch waits while the next arrives: fresh data is never queued behind more.
        self.max_pending = cfg.learner.batch_rollouts
        self.actor_meta: dict[int, dict] = {}
        self.last_metrics: dict[str, float] = {}
        self.lag: list[int] = []
        #: All-time largest policy lag of a trained rollout (the bound's witness).
        self.lag_max_trained = 0
        self.stale_env_steps = 0
        self.fps_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        self.last_publish = 0.0
        self.received = 0
        #: Payload bytes of every rollout message received (sizing a cluster's network).
        self.received_bytes = 0
        #: Payload bytes of every weights broadcast (each subscribed actor receives up to this).
        self.published_bytes = 0
        self.labeler_sub = (None if args.labeler_address is None
                            else TableSubscriber(ctx, args.labeler_address, self.security))
        self.labeler_meta: dict[str, float] = {}
        #: periodic checkpoints that could not be written (full disk): training went on
        self.checkpoint_failures = 0
        #: periodic checkpoints failed in a row, up to now
        self.failing_since = 0
        #: ``checkpoint_interval_s: 0``: a checkpoint after every update, written before the
        #: update's env steps are reported anywhere (weights, status, TensorBoard, progress)
        self.checkpoint_every_update = cfg.checkpoint_interval_s == 0
        #: the newest checkpoint this process wrote or resumed from (None: none yet)
        self.last_checkpoint: Path | None = Path(args.resume_path) if args.resume_path else None
        #: env steps in the newest checkpoint (0 at a fresh start: nothing to lose yet)
        self.checkpointed_steps = self.env_steps
        #: env steps of the last ``progress.json`` write, failed or not (None: none yet)
        self.progress_steps: int | None = None
        self.progress_failed = False

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "rng": capture_rng_state(),
            "drops": dict(self.drops),
            "episode_stats": (None if self.episode_stats is None
                              else self.episode_stats.state_dict()),
        }

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.learner.load_state_dict(state["learner"])
        self.env_steps = int(state["env_steps"])
        self.episodes = int(state["episodes"])
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.drops.update(state["drops"])
        if self.episode_stats is not None and state.get("episode_stats"):
            self.episode_stats.load_state_dict(state["episode_stats"])
        restore_rng_state(state["rng"])

    def checkpoint(self) -> Path:
        path = save_checkpoint(self.run_dir / "checkpoints", self.env_steps, self.state_dict())
        self.last_checkpoint, self.checkpointed_steps = path, self.env_steps
        return path

    def _periodic_checkpoint(self) -> None:
        """A periodic checkpoint that cannot be written (a full disk) is one line on stderr
        and a count (``perf/checkpoint_failures``), not the end of the run: training goes on,
        the next interval tries again, the newest complete checkpoint stays as it was. With a
        checkpoint per update, one line when they start failing and one when they are written
        again, not one per update."""
        try:
            self.checkpoint()
        except CheckpointWriteError as err:
            self.checkpoint_failures += 1
            self.failing_since += 1
            if self.checkpoint_every_update and self.failing_since > 1:
                return
            when = ("after every update until one is written" if self.checkpoint_every_update
                    else f"in {self.cfg.checkpoint_interval_s:g}s")
            print(f"learner: {err}; training goes on, next try {when}", file=sys.stderr,
                  flush=True)
            return
        if self.checkpoint_every_update and self.failing_since:
            print(f"learner: checkpoint written again after {self.failing_since} failed "
                  f"({self.last_checkpoint})", file=sys.stderr, flush=True)
        self.failing_since = 0

    def steps_counted(self) -> None:
        """Call once env steps were counted (an update, stale rollouts), before the count is
        reported anywhere (weights, status, TensorBoard). With every-update checkpoints the
        checkpoint is written first, then ``progress.json``: a kill -9 at any point loses no
        env steps that left this process as trained (unless that checkpoint failed: a full
        disk, counted in ``perf/checkpoint_failures`` and visible in ``progress.json``).
        With an interval nothing is written here (no file I/O per update): ``progress.json``
        follows the status reports and the checkpoints."""
        if not self.checkpoint_every_update or self.env_steps == self.progress_steps:
            return
        if self.env_steps != self.checkpointed_steps:
            self._periodic_checkpoint()
        self.write_progress()

    def write_progress(self) -> None:
        """Record the env steps counted so far and the newest checkpoint in
        ``run_dir/progress.json`` (atomic): after a kill, what the learner had counted as
        trained, to compare with the checkpoint a resumed run starts from. A failed write is
        one line on stderr (once); training goes on."""
        last = self.last_checkpoint
        record = {"env_steps": self.env_steps, "updates": self.learner.updates,
                  "policy_version": self.learner.policy_version,
                  "checkpoint": None if last is None else last.name,
                  "checkpoint_env_steps": None if last is None else self.checkpointed_steps,
                  "checkpoint_every_update": self.checkpoint_every_update}
        self.progress_steps = self.env_steps  # a failed write is tried again at the next count
        try:
            write_progress(self.run_dir, record)
        except OSError as err:
            if not self.progress_failed:
                print(f"learner: progress record not written: {err}", file=sys.stderr,
                      flush=True)
            self.progress_failed = True

    # -- sockets ---------------------------------------------------------------------------
    def poll_labeler(self) -> None:
        """Install the newest reward table the labeler published (never waits)."""
        if self.labeler_sub is None or self.learner.text_reward is None:
            return
        msg = self.labeler_sub.poll()
        if msg is None:
            return
        self.learner.text_reward.table.replace(msg.arrays["ids"], msg.arrays["rewards"],
                                               msg.policy_version)
        self.labeler_meta = {k: float(v) for k, v in msg.meta.items()
                             if isinstance(v, (int, float))}

    def publish(self) -> None:
        """Broadcast a snapshot of the weights (copied, so training can't tear a send)."""
        arrays = {k: v.detach().to("cpu", copy=True).numpy()
                  for k, v in self.learner.model.state_dict().items()}
        msg = Message(kind=KIND_WEIGHTS, arrays=arrays,
                      policy_version=self.learner.policy_version, env_steps=self.env_steps)
        frames = encode(msg)
        self.pub.send_multipart(frames, copy=False)
        self.published_bytes += sum(len(frame) for frame in frames)  # bytes and uint8 views
        self.last_publish = time.monotonic()

    def receive(self, timeout_ms: int) -> None:
        """Move every waiting rollout into ``pending`` (up to a cap); count and drop bad ones."""
        if not self.pull.poll(timeout_ms):
            return
        while len(self.pending) < self.max_pending and self.pull.poll(0):
            frames = self.pull.recv_multipart(copy=False)
            self.received += 1
            self.received_bytes += sum(len(frame) for frame in frames)
            try:
                msg = decode(frames, self.schema)
                if self.episode_stats is not None:
                    self.episode_stats.check(msg.arrays)
            except WireError as err:
                self.drops.record(err)
                continue
            self.actor_meta[msg.actor_id] = dict(msg.meta, env_steps=msg.env_steps)
            if not self._drop_if_stale(msg):
                self.pending.append(msg)

    def _lag(self, msg: Message) -> int:
        return self.learner.policy_version - msg.policy_version

    def _drop_if_stale(self, msg: Message) -> bool:
        """Drop a rollout older than ``max_policy_lag`` (counted as ``stale``); its episodes
        and env steps were real, so they still count. Returns whether it was dropped."""
        lag = self._lag(msg)
        if lag <= self.cfg.learner.max_policy_lag:
            return False
        self.drops.record(WireError("stale", f"policy lag {lag} > max_policy_lag "
                                             f"{self.cfg.learner.max_policy_lag}"))
        self._record_episodes(msg)
        steps = int(msg.arrays["actions"].size)
        self.env_steps += steps
        self.stale_env_steps += steps
        return True

    def _record_episodes(self, msg: Message) -> None:
        self.returns.extend(msg.arrays["ep_returns"].tolist())
        self.lengths.extend(msg.arrays["ep_lengths"].tolist())
        self.episodes += len(msg.arrays["ep_returns"])
        if self.episode_stats is not None:
            self.episode_stats.add(msg.arrays)

    # -- training --------------------------------------------------------------------------
    def train_step(self) -> None:
        """Train on the oldest ``batch_rollouts`` pending rollouts, once all are within the
        policy-lag bound (the learner's version moved since some of them arrived)."""
        self.pending = [msg for msg in self.pending if not self._drop_if_stale(msg)]
        k = self.cfg.learner.batch_rollouts
        if len(self.pending) < k:
            return
        messages, self.pending = self.pending[:k], self.pending[k:]
        for msg in messages:
            lag = self._lag(msg)
            self.lag.append(lag)
            self.lag_max_trained = max(self.lag_max_trained, lag)
            self._record_episodes(msg)
        batch = stack_rollouts(messages, self.cfg.learner.reward_clip)
        if self.cfg.learner.anneal_lr:
            self.learner.set_lr_fraction(1.0 - self.env_steps / self.cfg.total_env_steps)
        self.last_metrics = self.learner.train(batch)
        self.env_steps += batch.num_steps
        self.fps_window.append((time.monotonic(), self.env_steps))
        self.steps_counted()  # the update's checkpoint (every-update mode) before the publish
        if self.learner.updates % self.cfg.learner.publish_every == 0:
            self.publish()

    # -- reporting -------------------------------------------------------------------------
    def fps(self) -> float:
        if len(self.fps_window) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self.fps_window[0], self.fps_window[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def status(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "total_env_steps": self.cfg.total_env_steps,
            "fps": self.fps(),
            "episode_return": float(np.mean(self.returns)) if self.returns else float("nan"),
            "episodes": self.episodes,
            "policy_version": self.learner.policy_version,
            "policy_lag": float(np.mean(self.lag)) if self.lag else 0.0,
            "policy_lag_max_trained": self.lag_max_trained,
            "stale_env_steps": self.stale_env_steps,
            "dropped": self.drops.total,
            "dropped_by_reason": dict(self.drops),
            "received": self.received,
            "received_bytes": self.received_bytes,
            "published_bytes": self.published_bytes,
            "updates": self.learner.updates,
            "actors_seen": sorted(self.actor_meta),
            "episode_stats": {} if self.episode_stats is None else self.episode_stats.means(),
        }

    def log(self) -> None:
        step = self.env_steps
        scalars = dict(self.last_metrics)
        scalars.update({
            "perf/fps": self.fps(),
            "perf/rollout_queue_depth": len(self.pending),
            "perf/stale_env_steps": self.stale_env_steps,
            "perf/policy_version": self.learner.policy_version,
            "wire/dropped": self.drops.total,
            "wire/received": self.received,
            "wire/received_bytes": self.received_bytes,
            "wire/published_bytes": self.published_bytes,
            "perf/checkpoint_failures": self.checkpoint_failures,
        })
        if self.security.enabled:  # handshakes refused: a client without an authorised key
            scalars["wire/auth_rejected"] = self.security.rejected
        scalars.update({f"wire/dropped/{reason}": n for reason, n in self.drops.items()})
        if self.lag:
            scalars.update({"perf/policy_lag_mean": float(np.mean(self.lag)),
                            "perf/policy_lag_min": min(self.lag),
                            "perf/policy_lag_max": max(self.lag)})
            self.lag.clear()
        if self.returns:
            scalars["episode/return"] = float(np.mean(self.returns))
            scalars["episode/length"] = float(np.mean(self.lengths))
            scalars["episode/count"] = self.episodes
        for actor_id, meta in self.actor_meta.items():
            for key in ("fps", "send_blocked_frac"):
                if key in meta:
                    scalars[f"perf/actor_{actor_id}/{key}"] = float(meta[key])
            for key in ("texts_sent", "texts_hot_sent", "texts_send_full", "texts_known",
                        "texts_skipped_known"):
                if key in meta:
                    scalars[f"text/actor_{actor_id}/{key[6:]}"] = float(meta[key])
        scalars.update({f"labeler/{k}": v for k, v in self.labeler_meta.items()})
        if self.labeler_sub is not None and self.labeler_sub.drops:
            scalars["labeler/dropped_updates"] = self.labeler_sub.drops.total
        if self.episode_stats is not None:
            scalars.update(self.episode_stats.scalars())
            for tag, text in self.episode_stats.texts().items():
                self.writer.add_text(tag, text, step)
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def _put_status(self, kind: str, payload: dict[str, Any]) -> None:
        """Periodic reports may be dropped: the next one supersedes them."""
        with contextlib.suppress(queue.Full):
            self.args.status_queue.put_nowait((kind, payload))

    def _report_final(self, reason: str, path: Path) -> None:
        """The run's outcome must arrive: without it the supervisor sees a learner that
        exited unexplained, i.e. a failure. Hence its own channel, or a put that waits."""
        final = self.args.final_queue
        channel = self.args.status_queue if final is None else final
        payload = {"checkpoint": str(path), "env_steps": self.env_steps, "status": self.status()}
        try:
            channel.put((reason, payload), timeout=_REPORT_TIMEOUT_S)
        except queue.Full:
            print(f"learner: final report ({reason}) not delivered: the supervisor read nothing "
                  f"for {_REPORT_TIMEOUT_S:.0f}s", file=sys.stderr, flush=True)

    def _target_reached(self) -> bool:
        target = self.cfg.target_return
        full = len(self.returns) == self.returns.maxlen
        return target is not None and full and float(np.mean(self.returns)) >= target

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> str:
        """Loop until the step budget is spent or the stop event is set; returns the reason."""
        cfg = self.cfg
        self._put_status("ready", {"rollout": self.rollout_address,
                                   "weights": self.weights_address})
        self.publish()
        now = time.monotonic()
        last_log = last_ckpt = last_status = now
        self.fps_window.append((now, self.env_steps))
        while True:
            if self.args.stop_event.is_set():
                reason = "stopped"
                break
            if self.env_steps >= cfg.total_env_steps or self._target_reached():
                reason = "done"
                break
            self.receive(_POLL_MS)
            self.poll_labeler()
            if len(self.pending) >= cfg.learner.batch_rollouts:
                self.train_step()
            self.steps_counted()  # stale rollouts counted without an update
            now = time.monotonic()
            if now - self.last_publish > (_REPUBLISH_S if self.received else _STARTUP_REPUBLISH_S):
                self.publish()
            if now - last_status > _STATUS_S:
                if self.env_steps != self.progress_steps:  # with an interval: once a second
                    self.write_progress()
                self._put_status("status", self.status())
                last_status = now
            if now - last_log > cfg.log_interval_s:
                self.log()
                last_log = now
            if not self.checkpoint_every_update and now - last_ckpt > cfg.checkpoint_interval_s:
                self._periodic_checkpoint()
                self.write_progress()
                last_ckpt = now
        self.log()
        path = self.checkpoint()
        self.write_progress()
        self._put_status("status", self.status())
        self._report_final(reason, path)
        return reason

    def close(self) -> None:
        self.writer.close()
        self.pull.close(0)
        self.pub.close(0)
        if self.labeler_sub is not None:
            self.labeler_sub.close()
        self.security.close()


def learner_main(args: LearnerArgs) -> None:
    """Process entry point. Ctrl-C is the supervisor's; the learner watches the stop event."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.cfg.learner.num_threads:
        torch.set_num_threads(args.cfg.learner.num_threads)
    torch.manual_seed(args.cfg.seed)
    np.random.seed(args.cfg.seed % (1 << 32))
    ctx = zmq.Context()
    try:
        worker = LearnerWorker(args, ctx)
    except CheckpointError as err:  # a bad --resume checkpoint is the user's to fix: no traceback
        ctx.term()
        args.status_queue.put(("bad_checkpoint", {"error": str(err)}), timeout=_REPORT_TIMEOUT_S)
        raise SystemExit(1) from None
    try:
        worker.run()
    except CheckpointWriteError as err:  # the final checkpoint: one line, the supervisor
        # names the newest complete checkpoint and how to resume from it
        print(f"learner: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        worker.close()
        ctx.term()
