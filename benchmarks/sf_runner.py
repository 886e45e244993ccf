"""Sample Factory 2 APPO on an EnvPool env, timed like ``benchmarks/throughput.py`` times ours.

Runs inside a *separate* virtual environment that has ``sample-factory`` and ``envpool``
(Sample Factory pins gymnasium < 1 and numpy < 2, which the project's venv does not allow)::

    /work/sfvenv/bin/python benchmarks/sf_runner.py --env MiniGrid-Empty-8x8-v0 --seconds 20

``throughput.py`` starts it as a subprocess. It imports only ``explorer.core.networks`` from this
repository (torch and numpy only), so Sample Factory trains the same torso as our learner.

Setup, matched to ours: ``num_workers`` rollout workers, each stepping one batched EnvPool of
``envs_per_worker`` envs on one thread (``env_agents``, batched sampling), rollout T, one
training batch = every worker's rollout (1 epoch x 1 minibatch), asynchronous, no RNN.
Advantages are GAE: with ``--with_vtrace=True`` Sample Factory 2.1.1's learner fails here
(``AttributeError: 'AttrDict' object has no attribute 'advantages'``), so ``--vtrace`` defaults
to False; the cost difference of the two estimators is small next to env stepping.
The encoder is our ``build_encoder``; Sample Factory adds its own linear heads.
Env steps are agent steps (``env_frameskip=1``; EnvPool's own frame skip is its default).

Sample Factory 2.1.1 never updates the counter behind ``--train_for_seconds``, so an observer
stops training after ``warmup + seconds`` of collected steps. The last stdout line starting
with ``SF_RESULT`` carries a JSON object ``{"fps": ..., "env_steps": ..., "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_factory.algo.runners.runner import AlgoObserver
from sample_factory.algo.utils.context import global_model_factory
from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
from sample_factory.envs.env_utils import register_env
from sample_factory.model.encoder import Encoder
from sample_factory.train import make_runner

from explorer.core.networks import build_encoder

ENV_NAME = "bench_envpool"


class EnvPoolAgents(gym.Env):
    """One EnvPool batch of ``num_agents`` envs, as Sample Factory's batched multi-agent env.

    Discrete sub-spaces of a Dict observation become ``Box((1,), int32)`` so Sample Factory can
    buffer them; EnvPool's next-step auto-reset is kept (as our actors see it).
    """

    def __init__(self, env_id: str, num_agents: int, seed: int) -> None:
        import envpool

        self._env = envpool.make(env_id, env_type="gymnasium", num_envs=num_agents,
                                 num_threads=1, seed=seed)
        self.num_agents = num_agents
        self.is_multiagent = True
        self.action_space = self._env.action_space
        space = self._env.observation_space
        self._dict = isinstance(space, gym.spaces.Dict)
        if self._dict:
            self.observation_space = gym.spaces.Dict({
                k: (gym.spaces.Box(0, s.n - 1, (1,), np.int32)
                    if isinstance(s, gym.spaces.Discrete) else s)
                for k, s in space.spaces.items()})
        else:
            self.observation_space = space

    def _obs(self, obs):
        if not self._dict:
            return obs
        return {k: (v.reshape(self.num_agents, 1).astype(np.int32) if v.ndim == 1 else v)
                for k, v in obs.items()}

    def reset(self, **kwargs):
        obs, _ = self._env.reset()
        return self._obs(obs), [{} for _ in range(self.num_agents)]

    def step(self, actions):
        obs, rew, term, trunc, _ = self._env.step(np.asarray(actions, dtype=np.int32))
        return self._obs(obs), rew, term, trunc, [{} for _ in range(self.num_agents)]

    def render(self):
        return None

    def close(self):
        pass  # envpool 1.2.5's close() fails under gymnasium 0.29; the pool dies with the process


def make_env(full_env_name, cfg=None, env_config=None, render_mode=None) -> EnvPoolAgents:
    """Sample Factory env factory (module level: it is pickled into the worker processes)."""
    seed = 0 if env_config is None else int(env_config.worker_index)
    return EnvPoolAgents(cfg.bench_env_id, cfg.env_agents, seed)


class ProjectEncoder(Encoder):
    """Our torso (``explorer.core.networks.build_encoder``) as Sample Factory's Encoder."""

    def __init__(self, cfg, obs_space) -> None:
        super().__init__(cfg)
        spaces = obs_space.spaces if isinstance(obs_space, gym.spaces.Dict) else {"obs": obs_space}
        spec = {k: (tuple(s.shape), np.dtype(s.dtype).name) for k, s in spaces.items()}
        self.body = build_encoder(spec, cfg.bench_model_kind, cfg.bench_hidden_size)

    def forward(self, obs_dict):
        return self.body(obs_dict)

    def get_out_size(self) -> int:
        return self.body.out_size


class StopAfter(AlgoObserver):
    """Counts steps from ``warmup`` s after the first collected step; stops after ``seconds``."""

    def __init__(self, warmup: float, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.first: float | None = None
        self.base: tuple[float, int] | None = None
        self.done = False

    def on_training_step(self, runner, training_iteration_since_resume: int) -> None:
        steps = runner.total_env_steps_since_resume or 0
        now = time.monotonic()
        if self.done or steps == 0:
            return
        if self.first is None:
            self.first = now
        if self.base is None:
            if now - self.first >= self.warmup:
                self.base = (now, steps)
            return
        elapsed = now - self.base[0]
        if elapsed >= self.seconds:
            counted = steps - self.base[1]
            result = {"fps": counted / elapsed, "env_steps": counted, "seconds": elapsed}
            print("SF_RESULT " + json.dumps(result), flush=True)
            self.done = True
            runner._stop_training()


def sf_argv(args: argparse.Namespace, train_dir: str) -> list[str]:
    batch = args.num_workers * args.envs_per_worker * args.rollout
    return [
        f"--env={ENV_NAME}", "--experiment=throughput", f"--train_dir={train_dir}",
        "--restart_behavior=overwrite", "--with_wandb=False", f"--device={args.device}",
        f"--num_workers={args.num_workers}", "--num_envs_per_worker=1",
        "--worker_num_splits=1", "--batched_sampling=True", f"--env_agents={args.envs_per_worker}",
        f"--rollout={args.rollout}", f"--batch_size={batch}", "--num_batches_per_epoch=1",
        "--num_epochs=1", "--use_rnn=False", f"--recurrence={args.rollout}", "--env_frameskip=1",
        f"--with_vtrace={args.vtrace}", "--async_rl=True", "--serial_mode=False",
        f"--learning_rate={args.lr}", f"--gamma={args.gamma}",
        "--normalize_input=False", "--normalize_returns=False",
        "--save_every_sec=100000", "--save_best_every_sec=100000",
        "--experiment_summaries_interval=100000", "--decoder_mlp_layers", "--seed=0",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-Empty-8x8-v0")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--envs-per-worker", type=int, default=16)
    parser.add_argument("--rollout", type=int, default=32)
    parser.add_argument("--model-kind", default="auto")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--vtrace", choices=("True", "False"), default="False")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args()

    register_env(ENV_NAME, make_env)
    global_model_factory().register_encoder_factory(ProjectEncoder)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as train_dir:
        argv = sf_argv(args, train_dir)
        sf_parser, _ = parse_sf_args(argv=argv)
        sf_parser.add_argument("--bench_env_id", default=args.env)
        sf_parser.add_argument("--env_agents", type=int, default=args.envs_per_worker)
        sf_parser.add_argument("--bench_model_kind", default=args.model_kind)
        sf_parser.add_argument("--bench_hidden_size", type=int, default=args.hidden_size)
        cfg = parse_full_cfg(sf_parser, argv)
        cfg, runner = make_runner(cfg)
        runner.register_observer(StopAfter(args.warmup, args.seconds))
        status = runner.init()
        if status == 0:
            status = runner.run()
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
