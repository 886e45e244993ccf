"""A real actor process against a learner that stops reading its rollouts.

Rollout arrays leave the actor zero-copy, so a buffer may be reused only once ZeroMQ is done
with it; the actor must wait for that without going silent (the supervisor's watchdog kills
an actor whose heartbeat stops), must still obey the stop event, and must never send a buffer
it has started to overwrite.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import zmq

from actors.actor import ActorArgs, actor_main
from actors.envs import probe_env_spec
from explorer.core.config import Config, load_config
from explorer.core.networks import make_actor_critic
from explorer.core.specs import rollout_schema
from explorer.core.wire import KIND_WEIGHTS, Message, decode, encode
from learner.batch import stack_rollouts

CARTPOLE = Path(__file__).resolve().parents[2] / "configs" / "cartpole.yaml"
START_TIMEOUT_S = 120.0
#: Arrays of at least 64 KiB leave the actor zero-copy (pyzmq copies smaller frames).
ZERO_COPY_CFG = ["env.envs_per_actor=64", "actors.rollout_len=128"]
#: As ZERO_COPY_CFG, and the last frame of a message (text_count) is zero-copy too.
TEXT_CFG = ["env.envs_per_actor=8", "actors.rollout_len=64",
            "text.source=sentence_texts:two_sentences", "text.units=sentences",
            "text.max_units=64"]

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


class ActorProcess:
    """A spawned ``actor_main`` with the sockets, stop event and heartbeat the test controls."""

    def __init__(self, overrides: list[str], sock_dir: str) -> None:
        self.cfg: Config = load_config(CARTPOLE, [*overrides, "learner.model.core=none"])
        self.spec = probe_env_spec(self.cfg.env)
        self.rollout_address = f"ipc://{sock_dir}/r"
        self.zctx = zmq.Context()
        self.pub = self.zctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(f"ipc://{sock_dir}/w")
        torch.manual_seed(0)
        self.model = make_actor_critic(self.cfg, self.spec)
        self.weights = {k: v.detach().clone().numpy() for k, v in self.model.state_dict().items()}
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.heartbeats = ctx.Array("d", 1, lock=False)
        args = ActorArgs(actor_id=0, cfg=self.cfg, env_spec=self.spec,
                         rollout_address=self.rollout_address,
                         weights_address=f"ipc://{sock_dir}/w", env_seed=1, torch_seed=2,
                         stop_event=self.stop_event, heartbeats=self.heartbeats)
        self.process = ctx.Process(target=actor_main, args=(args,), daemon=True)
        self.process.start()

    def publish_weights(self) -> None:
        self.pub.send_multipart(encode(Message(kind=KIND_WEIGHTS, arrays=self.weights,
                                               policy_version=1)))

    def run_for(self, seconds: float) -> list[float]:
        """Publish weights (a late subscriber misses earlier ones) and sample the heartbeat's
        age every 0.1 s for ``seconds``."""
        ages = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.process.is_alive(), f"actor died (exit code {self.process.exitcode})"
            self.publish_weights()
            ages.append(time.monotonic() - self.heartbeats[0])
            time.sleep(0.1)
        return ages

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.heartbeats[0] == 0.0:
            assert self.process.is_alive(), f"actor died (exit code {self.process.exitcode})"
            assert time.monotonic() < deadline, "actor never beat"
            self.publish_weights()
            time.sleep(0.1)

    def stop(self) -> float:
        """Set the stop event; the seconds until the process exited."""
        start = time.monotonic()
        self.stop_event.set()
        self.process.join(30)
        return time.monotonic() - start

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pub.close(0)
        self.zctx.destroy(linger=0)


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # ipc paths are limited to ~100 bytes, so the sockets live in a short temp dir
    path = tempfile.mkdtemp(prefix="abp-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _pull(actor: ActorProcess) -> zmq.Socket:
    """The learner's socket, holding as little as ZeroMQ allows while nobody reads it."""
    pull = actor.zctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(actor.rollout_address)
    return pull


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cfg", [ZERO_COPY_CFG, TEXT_CFG], ids=["zero_copy", "text"])
@pytest.mark.parametrize("learner", ["never_binds", "never_reads"])
def test_stalled_learner_actor_keeps_beating_and_stops(cfg: list[str], learner: str,
                                                       sock_dir: str) -> None:
    actor = ActorProcess(cfg, sock_dir)
    pull = _pull(actor) if learner == "never_reads" else None
    try:
        actor.wait_started()
        actor.run_for(3.0)  # ample time to fill every buffer and queue
        ages = actor.run_for(3.0)
        assert max(ages) < 1.0, f"heartbeat went silent for {max(ages):.1f}s"
        took = actor.stop()
        assert actor.process.exitcode == 0
        assert took < 3.0, f"the actor took {took:.1f}s to obey the stop event"
    finally:
        if pull is not None:
            pull.close(0)
        actor.close()


def _behaviour_matches_obs(actor: ActorProcess, msg: Message) -> bool:
    """The message's logp and values are the policy's on its own obs (no buffer torn)."""
    batch = stack_rollouts([msg], reward_clip=None)
    with torch.no_grad():
        logits, values, _ = actor.model(batch.obs, batch.core_state, batch.episode_start)
    logp = torch.log_softmax(logits[:-1], -1).gather(
        -1, batch.actions.unsqueeze(-1)).squeeze(-1)
    return (torch.allclose(logp, batch.behaviour_logp, atol=1e-5, rtol=0)
            and torch.allclose(values, batch.behaviour_values, atol=1e-4, rtol=0))


@pytest.mark.timeout(300)
def test_rollouts_sent_under_backpressure_are_intact(sock_dir: str) -> None:
    """Messages queued while the learner stalls arrive as they were sent, not overwritten."""
    actor = ActorProcess(ZERO_COPY_CFG, sock_dir)
    pull = _pull(actor)
    schema = rollout_schema(actor.spec, 128, 64, 0, 1 << 30)
    try:
        actor.wait_started()
        actor.run_for(3.0)  # the learner stalls: the actor fills every queue
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        while len(messages) < 12 and time.monotonic() < deadline:
            actor.publish_weights()
            if pull.poll(100):
                messages.append(decode(pull.recv_multipart(), schema))
        assert len(messages) == 12
        assert [m.seq for m in messages] == list(range(12))
        torn = [m.seq for m in messages if not _behaviour_matches_obs(actor, m)]
        assert not torn, f"rollouts {torn} were overwritten while queued"
        assert actor.stop() < 3.0
    finally:
        pull.close(0)
        actor.close()
