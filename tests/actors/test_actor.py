"""A real actor over real sockets: its rollouts are exactly what the learner recomputes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from actors.actor import Actor, ActorArgs, ActorStopped
from actors.envs import probe_env_spec
from explorer.core.config import load_config
from explorer.core.networks import ActorCritic
from explorer.core.specs import rollout_schema
from explorer.core.wire import KIND_WEIGHTS, Message, decode, encode
from learner.batch import stack_rollouts

CARTPOLE = Path(__file__).resolve().parents[2] / "configs" / "cartpole.yaml"
VERSION = 7


#: Model overrides per core: "retrieval" attends over chunks of the episode's past (k=3 of
#: 4-step chunks in a 6-chunk window; random CartPole episodes last ~20 steps), "retrieval_run"
#: also over chunks of the env's earlier episodes still in that window.
CORES = {"none": ["learner.model.core=none"], "gru": ["learner.model.core=gru"],
         "retrieval": ["learner.model.retrieval={k: 3, chunk_len: 4, window_chunks: 6}"],
         "retrieval_run": ["learner.model.retrieval={k: 3, chunk_len: 4, window_chunks: 6, "
                           "source: run, memory_chunks: 32}"]}


def _collect(core: str, tmp_path: Path, num_rollouts: int = 3):
    cfg = load_config(CARTPOLE, ["env.envs_per_actor=4", "actors.rollout_len=48",
                                 *CORES[core], "learner.model.core_size=16"])
    spec = probe_env_spec(cfg.env)
    torch.manual_seed(3)
    model = ActorCritic(spec.obs_spec, spec.num_actions, cfg.learner.model)
    model.value_mean.fill_(2.0)  # normaliser buffers must travel with the weights
    model.value_std.fill_(3.0)
    if model.core is not None and getattr(model.core, "memory_chunks", 0):
        # a run memory the learner has written into: it travels with the weights too
        seen = {key: torch.randn(16, 4, *shape) for key, (shape, _) in spec.obs_spec.items()}
        assert model.remember(seen, torch.zeros(16, 4, dtype=torch.bool), torch.ones(16, 4),
                              12) == 12
    ctx = zmq.Context()
    pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
    # as the learner's: no backlog of weights for an actor that is busy (compiling a kernel),
    # which libzmq can trip over at ctx.term() in a process holding both ends
    pub.setsockopt(zmq.SNDHWM, 2)
    pub.setsockopt(zmq.LINGER, 0)
    pull.bind(f"ipc://{tmp_path}/r")
    pub.bind(f"ipc://{tmp_path}/w")
    stop = threading.Event()
    actor = Actor(ActorArgs(actor_id=5, cfg=cfg, env_spec=spec,
                            rollout_address=f"ipc://{tmp_path}/r",
                            weights_address=f"ipc://{tmp_path}/w",
                            env_seed=11, torch_seed=12, stop_event=stop), ctx)

    def run() -> None:
        with contextlib.suppress(ActorStopped):
            actor.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    weights = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
    schema = rollout_schema(spec, 48, 4, model.core_size, 1 << 30)
    messages = []
    deadline = time.monotonic() + 60
    try:
        while len(messages) < num_rollouts and time.monotonic() < deadline:
            pub.send_multipart(encode(Message(kind=KIND_WEIGHTS, arrays=weights,
                                              policy_version=VERSION)))
            if pull.poll(100):
                messages.append(decode(pull.recv_multipart(), schema))
    finally:
        stop.set()
        thread.join(10)
        actor.close()
        pull.close(0)
        pub.close(0)
        ctx.term()
    assert len(messages) == num_rollouts, "actor sent no rollouts"
    return cfg, model, messages


@pytest.mark.parametrize("core", ["none", "gru", "retrieval", "retrieval_run"])
def test_learner_recomputes_behaviour_logp_and_values(core: str, tmp_path: Path) -> None:
    _, model, messages = _collect(core, tmp_path)
    assert [m.seq for m in messages] == [0, 1, 2]
    assert all(m.policy_version == VERSION and m.actor_id == 5 for m in messages)
    state = None
    for msg in messages:
        batch = stack_rollouts([msg], reward_clip=None)
        if state is not None:  # the GRU state / the retrieval window carries over
            torch.testing.assert_close(batch.core_state, state, atol=1e-5, rtol=0)
        with torch.no_grad():
            logits, values, _ = model(batch.obs, batch.core_state, batch.episode_start)
            # the next rollout starts from the state after T steps (obs[T] is its obs[0])
            _, _, state = model({k: v[:-1] for k, v in batch.obs.items()}, batch.core_state,
                                batch.episode_start[:-1])
        logp = torch.log_softmax(logits[:-1], -1).gather(
            -1, batch.actions.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(logp, batch.behaviour_logp, atol=1e-5, rtol=0)
        torch.testing.assert_close(values, batch.behaviour_values, atol=1e-4, rtol=0)
        # the value normaliser's buffers arrived: values are on the denormalised scale
        assert abs(values.mean().item() - 2.0) < 3.0 * 2


def test_rollout_episode_bookkeeping(tmp_path: Path) -> None:
    """Auto-reset steps are invalid, the next obs starts an episode, returns add up."""
    _, _, messages = _collect("none", tmp_path)
    returns = []
    for msg in messages:
        a = msg.arrays
        ended = a["terminated"] | a["truncated"]  # (T, B)
        assert ended.any(), "a random CartPole policy ends episodes within 48 steps"
        t_idx, b_idx = np.nonzero(ended[:-1])
        assert not a["valid"][t_idx + 1, b_idx].any(), "step after an episode end is a reset"
        resets = np.argwhere(~a["valid"][:-1])
        assert a["episode_start"][resets[:, 0] + 1, resets[:, 1]].all()
        assert (a["rewards"][~a["valid"]] == 0).all()
        assert len(a["ep_returns"]) == int(ended.sum())
        returns.extend(a["ep_returns"].tolist())
        # CartPole pays 1 per valid step, so an episode's return is its length
        np.testing.assert_array_equal(a["ep_returns"], a["ep_lengths"].astype(np.float32))
    assert min(returns) >= 1


def test_an_actor_process_computes_on_one_thread() -> None:
    """``limit_threads`` (an actor's first call) leaves torch and every BLAS library at one
    thread, also one loaded after it: the retrieval kernel's products go through SciPy's
    OpenBLAS, which is loaded only when the kernel is. In a fresh interpreter, whose BLAS
    libraries would otherwise take every core."""
    script = (
        "import json, torch\n"
        "from threadpoolctl import threadpool_info\n"
        "from actors.actor import limit_threads\n"
        "limit_threads()\n"
        "from explorer.core.retrieval_kernel import core_step\n"
        "import scipy.linalg.cython_blas\n"
        "print(json.dumps([torch.get_num_threads()] + [(i['internal_api'], i['num_threads'])"
        " for i in threadpool_info()]))\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], check=True)
    torch_threads, *pools = json.loads(done.stdout.splitlines()[-1])
    assert torch_threads == 1
    blas = [threads for api, threads in pools if api == "openblas"]
    assert len(blas) >= 2 and set(blas) == {1}, pools  # NumPy's and SciPy's, both at one
