"""The actor process: step envs with the newest policy, stream rollouts to the learner.

One actor owns ``env.envs_per_actor`` envs and runs CPU inference on one thread. Each rollout
of T steps is sent as one zero-copy ZeroMQ message (``explorer.core.wire``); weights arrive on a
SUB socket and the newest version is applied between rollouts.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np
import torch
import zmq
from threadpoolctl import threadpool_limits

from actors.entry import ActorArgs  # re-exported: where it was before
from actors.envs import StepResult, make_vec_env
from actors.rollout import RolloutRing, RolloutStorage, ring_sets
from actors.texts import TextCapture, make_text_source
from explorer.core.curve import SocketSecurity
from explorer.core.networks import make_actor_critic, obs_to_torch
from explorer.core.sockets import cap_tcp_buffers
from explorer.core.specs import pack_episode_stats, weights_schema
from explorer.core.tables import TableSubscriber
from explorer.core.wire import KIND_ROLLOUT, DropCounter, Message, WireError, decode, encode

__all__ = ["Actor", "ActorArgs", "ActorStopped", "actor_main"]

_POLL_MS = 100


def _retry_soon(sock: zmq.Socket) -> None:
    """Actors usually connect before the learner has bound (its start-up is longer): retry
    every 20 ms instead of ZeroMQ's 100 ms, so the first weights are not late by up to a
    retry interval. Flat, no back-off: a back-off that grew while the learner imported torch
    would make the actor late by most of a second."""
    sock.setsockopt(zmq.RECONNECT_IVL, 20)


class ActorStopped(Exception):
    """Raised inside the loop when the supervisor asked us to stop."""


class Actor:
    """Env stepping, inference and sending; ``run()`` loops until the stop event is set."""

    def __init__(self, args: ActorArgs, ctx: zmq.Context) -> None:
        cfg = args.cfg
        self.args = args
        self.stop_event = args.stop_event
        self.rollout_len = cfg.actors.rollout_len
        self.env = make_vec_env(cfg.env, cfg.env.envs_per_actor, args.env_seed)
        self.num_envs = self.env.num_envs
        torch.manual_seed(args.torch_seed)
        self.model = make_actor_critic(cfg, args.env_spec)
        self.model.eval()
        self.params = {k: v.detach().numpy() for k, v in self.model.state_dict().items()}
        self.weights_schema = weights_schema(self.params, max_bytes=1 << 34)
        self.policy_version = -1
        self.weight_drops = DropCounter()
        self.security = SocketSecurity(ctx, args.curve)
        self.ring = RolloutRing(args.env_spec, self.rollout_len, self.num_envs,
                                self.model.core_size, ring_sets(cfg.wire.send_hwm),
                                text_units=cfg.text.wire_units())
        self.texts = self._make_text_capture(cfg, ctx)
        self.label_updates = (TableSubscriber(ctx, cfg.text.updates_address, self.security)
                              if self.texts is not None and cfg.text.updates_address else None)
        self.label_version = -1

        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.SNDHWM, cfg.wire.send_hwm)
        cap_tcp_buffers(self.push, args.rollout_address)
        self.push.setsockopt(zmq.LINGER, 0)
        _retry_soon(self.push)
        self.security.connect(self.push)
        self.push.connect(args.rollout_address)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 2)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        _retry_soon(self.sub)
        self.security.connect(self.sub)
        self.sub.connect(args.weights_address)

        self.seq = 0
        self.env_steps = 0
        self.blocked_s = 0.0
        self.ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)

    def _make_text_capture(self, cfg: Any, ctx: zmq.Context) -> TextCapture | None:
        if cfg.text.source is None:
            return None
        socket = None
        if cfg.text.labeler_address:
            socket = ctx.socket(zmq.PUSH)
            socket.setsockopt(zmq.SNDHWM, 16)
            socket.setsockopt(zmq.LINGER, 0)
            self.security.connect(socket)
            socket.connect(cfg.text.labeler_address)
        return TextCapture(make_text_source(cfg.text.source), self.num_envs, self.args.actor_id,
                           socket, cfg.text.batch_size, cfg.text.sent_capacity,
                           cfg.text.units, cfg.text.max_units)

    # -- weights ---------------------------------------------------------------------------
    def _apply_weights(self, frames: list[Any]) -> None:
        try:
            msg = decode(frames, self.weights_schema)
        except WireError as err:
            if err.reason not in self.weight_drops:
                print(f"actor-{self.args.actor_id}: dropped a weights message: {err}",
                      file=sys.stderr, flush=True)
            self.weight_drops.record(err)
            return
        for name, array in msg.arrays.items():
            np.copyto(self.params[name], array)
        self.policy_version = msg.policy_version

    def poll_weights(self, wait: bool) -> None:
        """Apply the newest queued weights; with ``wait``, block until a first version arrives."""
        while True:
            newest = None
            while self.sub.poll(0):
                newest = self.sub.recv_multipart(copy=False)
            if newest is not None:
                self._apply_weights(newest)
            if not wait or self.policy_version >= 0:
                return
            self._check_stop()
            self.sub.poll(_POLL_MS)

    def poll_label_updates(self) -> None:
        """Tell text capture which texts the labeler already has (newest table; never waits)."""
        if self.label_updates is None:
            return
        msg = self.label_updates.poll()
        if msg is not None and msg.policy_version != self.label_version:
            self.texts.mark_known(msg.arrays["ids"])
            self.label_version = msg.policy_version

    def _text_meta(self) -> dict[str, float]:
        stats = self.texts.stats
        return {"texts_sent": stats["sent"], "texts_hot_sent": stats["hot_sent"],
                "texts_send_full": stats["send_full"], "texts_known": len(self.texts.known),
                "texts_skipped_known": stats["skipped_known"]}

    # -- sending ---------------------------------------------------------------------------
    def _check_stop(self) -> None:
        """Called in every loop that may wait: doubles as the liveness heartbeat."""
        if self.args.heartbeats is not None:
            self.args.heartbeats[self.args.actor_id] = time.monotonic()
        if self.stop_event.is_set():
            raise ActorStopped

    def send(self, storage: RolloutStorage, ep_returns: np.ndarray, ep_lengths: np.ndarray,
             meta: dict[str, float], episodes: dict[str, np.ndarray] | None = None) -> None:
        """Sends one rollout; ``episodes`` are the env's packed episode stats, if it has any."""
        arrays = storage.arrays(ep_returns, ep_lengths)
        if episodes is not None:
            arrays.update(episodes)
        msg = Message(kind=KIND_ROLLOUT, arrays=arrays,
                      actor_id=self.args.actor_id, seq=self.seq,
                      policy_version=max(self.policy_version, 0), env_steps=self.env_steps,
                      meta=meta)
        start = time.perf_counter()
        while not self.push.poll(_POLL_MS, zmq.POLLOUT):
            self._check_stop()
        storage.tracker = self._send_tracked(encode(msg))
        self.blocked_s += time.perf_counter() - start
        self.seq += 1

    def _send_tracked(self, buffers: list[Any]) -> zmq.MessageTracker:
        """Send zero-copy; the tracker is done once ZeroMQ released *every* frame.

        ``send_multipart`` returns only the last frame's tracker, and a small last frame is
        copied (its tracker is done at once) while the big arrays before it are still queued.
        """
        frames = [zmq.Frame(buf, track=True) for buf in buffers]  # small ones are copied
        self.push.send_multipart(frames, copy=False)
        return zmq.MessageTracker(*frames)

    def _next_storage(self) -> RolloutStorage:
        """The ring's next set; time spent waiting for ZeroMQ to release it counts as
        blocked on send (it is the same back-pressure, one step later)."""
        start = time.perf_counter()
        storage = self.ring.next(self._check_stop)
        self.blocked_s += time.perf_counter() - start
        return storage

    # -- stepping --------------------------------------------------------------------------
    @torch.inference_mode()
    def _policy(self, obs: dict[str, np.ndarray], core: torch.Tensor, start: np.ndarray,
                in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One policy step; ``in_place`` lets the core write its next state over ``core``
        (the step loop's own state, copied into storage at each rollout's start)."""
        tobs = {k: v.unsqueeze(0) for k, v in obs_to_torch(obs, "cpu").items()}  # (1, B, ...)
        logits, values, core = self.model(tobs, core, torch.from_numpy(start).unsqueeze(0),
                                          in_place)
        return logits[0], values[0], core  # (B, A), (B,), (B, H)

    @torch.inference_mode()
    def _sample(self, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Gumbel-max sampling: one fused draw, no distribution object per step."""
        logp_all = torch.log_softmax(logits, -1)  # (B, A)
        gumbel = -torch.empty_like(logp_all).exponential_().log()
        actions = (logp_all + gumbel).argmax(-1)  # (B,)
        return actions.numpy(), logp_all.gather(1, actions[:, None])[:, 0].numpy()

    def run(self) -> None:
        t_len, b = self.rollout_len, self.num_envs
        # extra per-episode stats (NetHack's score, depth, ...); None for most envs: no cost
        stats_spec = self.args.env_spec.episode_stats
        obs = self.env.reset()
        core = self.model.initial_state(b)
        episode_start = np.ones(b, dtype=bool)
        prev_done = np.zeros(b, dtype=bool)
        # one forward while the learner starts: a core's compiled kernel (retrieval) loads or
        # compiles here, off the path from the first weights to the first rollout
        self._policy(obs, core, episode_start)
        self.poll_weights(wait=True)
        window_start, window_steps, window_blocked = time.perf_counter(), 0, 0.0
        while True:
            self._check_stop()
            storage = self._next_storage()
            storage.core_state[:] = core.numpy()
            finished_returns: list[float] = []
            finished_lengths: list[int] = []
            for t in range(t_len):
                for k, v in obs.items():
                    storage.obs[k][t] = v
                storage.episode_start[t] = episode_start
                logits, values, core = self._policy(obs, core, episode_start, in_place=True)
                storage.actions[t], storage.logp[t] = self._sample(logits)
                storage.values[t] = values.numpy()
                result: StepResult = self.env.step(storage.actions[t])
                done = result.terminated | result.truncated
                valid = ~prev_done
                storage.rewards[t] = result.rewards
                storage.terminated[t] = result.terminated & valid
                storage.truncated[t] = result.truncated & valid
                storage.valid[t] = valid
                self.ep_return += result.rewards * valid
                self.ep_length += valid
                ended = done & valid
                if self.texts is not None:
                    self.texts.observe(result.obs, self.env, storage.text_hash[t],
                                       storage.text_count[t])
                    self.texts.end_episodes(ended)
                if ended.any():
                    finished_returns.extend(self.ep_return[ended].tolist())
                    finished_lengths.extend(self.ep_length[ended].tolist())
                    self.ep_return[ended] = 0.0
                    self.ep_length[ended] = 0
                # the step after an auto-reset step starts a new episode
                episode_start = prev_done  # rebound below, never mutated
                prev_done = ended
                obs = result.obs
            for k, v in obs.items():
                storage.obs[k][t_len] = v
            _, values, _ = self._policy(obs, core, episode_start)
            storage.values[t_len] = values.numpy()
            self.env_steps += t_len * b
            window_steps += t_len * b
            now = time.perf_counter()
            elapsed = now - window_start
            meta = {
                "fps": window_steps / max(elapsed, 1e-9),
                "send_blocked_frac": (self.blocked_s - window_blocked) / max(elapsed, 1e-9),
                "weight_drops": self.weight_drops.total,
            }
            if elapsed > 2.0:
                window_start, window_steps, window_blocked = now, 0, self.blocked_s
            if self.texts is not None:
                self.texts.flush()
                meta.update(self._text_meta())
            episodes = (None if stats_spec is None
                        else pack_episode_stats(self.env.episode_info(), stats_spec))
            self.send(storage, np.asarray(finished_returns, dtype=np.float32),
                      np.asarray(finished_lengths, dtype=np.int32), meta, episodes)
            self.poll_weights(wait=False)
            self.poll_label_updates()

    def close(self) -> None:
        if self.texts is not None and self.texts.socket is not None:
            self.texts.socket.close(0)
        if self.label_updates is not None:
            self.label_updates.close()
        self.push.close(0)
        self.sub.close(0)
        self.env.close()


def limit_threads() -> None:
    """One compute thread per actor: actors share the machine's cores with each other and the
    learner. Torch's pool, the BLAS libraries loaded so far (NumPy's) and those loaded later
    (the retrieval kernel's ``np.dot`` goes through SciPy's OpenBLAS, which reads
    ``OPENBLAS_NUM_THREADS`` when it loads): unlimited, a 16 x 32 x 1024 product spread
    over two threads and took twice the CPU for the same step."""
    torch.set_num_threads(1)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    threadpool_limits(1)


def actor_main(args: ActorArgs) -> None:
    """Process entry point: the supervisor handles Ctrl-C, actors only watch the stop event."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads()
    ctx = zmq.Context()
    actor = Actor(args, ctx)
    try:
        actor.run()
    except ActorStopped:
        pass
    finally:
        actor.close()
        ctx.term()
