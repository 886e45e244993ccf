"""CleanRL-style PPO in one process: the 1x1 single-process baseline of ``throughput.py``.

Read top to bottom like CleanRL's ``ppo_atari_envpool.py``: one EnvPool of ``num_envs`` envs,
a rollout of T steps with CPU inference, GAE, then the PPO-clip update. For a fair comparison
with our distributed trainer it uses the *same network class*
(``explorer.core.networks.ActorCritic``)
and by default the same update per batch as our APPO learner: 1 epoch x 1 minibatch over the
whole T x num_envs batch. It is therefore *not* CleanRL's PPO (``ppo.py``: its own 64x64 tanh
MLPs, T=128, 4 epochs x 4 minibatches): that one is ``benchmarks/cleanrl_ppo_faithful.py``.

Throughput only: ``run()`` trains for ``warmup + seconds`` and returns env steps per second
over the last ``seconds``. Run alone::

    python benchmarks/cleanrl_ppo.py --env MiniGrid-Empty-8x8-v0 --seconds 20
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any

import envpool
import gymnasium as gym
import numpy as np
import torch
from torch import nn

from explorer.core.networks import ActorCritic


def obs_spec_of(space: gym.Space) -> dict[str, tuple[tuple[int, ...], str]]:
    """Observation spec for ActorCritic: key -> (shape, dtype); a plain Box becomes key "obs"."""
    spaces = space.spaces if isinstance(space, gym.spaces.Dict) else {"obs": space}
    return {key: ((), "int32") if isinstance(s, gym.spaces.Discrete)
            else (tuple(s.shape), np.dtype(s.dtype).name) for key, s in spaces.items()}


def to_torch(obs: Any, spec: dict) -> dict[str, torch.Tensor]:
    """EnvPool observations (array or dict of arrays, leading dim B) as tensors of spec dtypes."""
    obs = obs if isinstance(obs, dict) else {"obs": obs}
    return {k: torch.from_numpy(np.asarray(obs[k], dtype=spec[k][1])) for k in spec}


def run(env_id: str, seconds: float, num_envs: int = 32, rollout_len: int = 32,
        model_cfg: Any = None, lr: float = 3e-4, adam_eps: float = 1e-5, gamma: float = 0.99,
        gae_lambda: float = 0.95, clip_coef: float = 0.2, ent_coef: float = 0.01,
        vf_coef: float = 0.5, max_grad_norm: float = 0.5, epochs: int = 1, minibatches: int = 1,
        num_threads: int | None = None, warmup: float = 3.0, seed: int = 0,
        env_kwargs: dict | None = None, torch_threads: int = 1) -> float:
    """Train PPO for ``warmup + seconds``; return env steps per second after the warm-up.

    ``num_threads`` is EnvPool's thread count (None: EnvPool's default); ``model_cfg`` has
    ``kind``, ``hidden_size``, ``core`` and ``core_size`` (default: auto torso, 64 wide).
    ``torch_threads`` defaults to 1: on 2 cores beside EnvPool's threads, torch's default of 2
    thrashes (measured here: 13.3k vs 9.3k env steps/s), so 1 is the baseline's best setting.
    """
    torch.set_num_threads(torch_threads)
    model_cfg = model_cfg or SimpleNamespace(kind="auto", hidden_size=64, core="none",
                                             core_size=128)
    torch.manual_seed(seed)
    extra = {} if num_threads is None else {"num_threads": num_threads}
    env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=seed,
                       **extra, **(env_kwargs or {}))
    spec = obs_spec_of(env.observation_space)
    model = ActorCritic(spec, int(env.action_space.n), model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=adam_eps)

    # Rollout storage, time-major (T, B, ...).
    t_len, b = rollout_len, num_envs
    obs_buf = {k: torch.zeros((t_len, b, *shape), dtype=getattr(torch, dtype))
               for k, (shape, dtype) in spec.items()}
    actions = torch.zeros((t_len, b), dtype=torch.long)
    logprobs = torch.zeros((t_len, b))
    rewards = torch.zeros((t_len, b))
    dones = torch.zeros((t_len, b))
    values = torch.zeros((t_len, b))

    next_obs = to_torch(env.reset()[0], spec)
    next_done = torch.zeros(b)
    core = model.initial_state(b)
    steps = 0
    begin = time.monotonic()
    measured: tuple[float, int] | None = None  # (start time, steps at start)
    while True:
        now = time.monotonic()
        if measured is None and now - begin >= warmup:
            measured = (now, steps)
        if measured is not None and now - measured[0] >= seconds:
            break

        # 1. Collect T steps from every env with the current policy.
        core_at_start = core.clone()
        for t in range(t_len):
            for k in spec:
                obs_buf[k][t] = next_obs[k]
            dones[t] = next_done
            with torch.no_grad():
                logits, value, core = model({k: v[None] for k, v in next_obs.items()}, core,
                                            next_done[None].bool())
            dist = torch.distributions.Categorical(logits=logits[0])
            action = dist.sample()
            actions[t], logprobs[t], values[t] = action, dist.log_prob(action), value[0]
            obs, reward, terminated, truncated, _ = env.step(action.numpy().astype(np.int32))
            rewards[t] = torch.from_numpy(np.asarray(reward, dtype=np.float32))
            next_done = torch.from_numpy(np.logical_or(terminated, truncated)).float()
            next_obs = to_torch(obs, spec)
        steps += t_len * b

        # 2. GAE(lambda) advantages, bootstrapping from the value of the next observation.
        with torch.no_grad():
            next_value = model({k: v[None] for k, v in next_obs.items()}, core,
                               next_done[None].bool())[1][0]
            advantages = torch.zeros_like(rewards)
            last_gae = torch.zeros(b)
            for t in reversed(range(t_len)):
                not_done = 1.0 - (next_done if t == t_len - 1 else dones[t + 1])
                next_v = next_value if t == t_len - 1 else values[t + 1]
                delta = rewards[t] + gamma * next_v * not_done - values[t]
                advantages[t] = last_gae = delta + gamma * gae_lambda * not_done * last_gae
            returns = advantages + values

        # 3. PPO-clip update; minibatches are sets of whole env columns (sequences stay intact).
        for _ in range(epochs):
            for idx in torch.randperm(b).chunk(minibatches):
                logits, new_values, _ = model({k: v[:, idx] for k, v in obs_buf.items()},
                                              core_at_start[idx], dones[:, idx].bool())
                log_probs = torch.log_softmax(logits, dim=-1)
                new_logp = log_probs.gather(-1, actions[:, idx, None]).squeeze(-1)
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                ratio = (new_logp - logprobs[:, idx]).exp()
                adv = advantages[:, idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio,
                                    -adv * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
                v_loss = 0.5 * ((new_values - returns[:, idx]) ** 2).mean()
                loss = pg_loss - ent_coef * entropy + vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()

    start, steps_at_start = measured
    return (steps - steps_at_start) / (now - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-Empty-8x8-v0")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--rollout-len", type=int, default=32)
    parser.add_argument("--model-kind", default="auto")
    parser.add_argument("--hidden-size", type=int, default=64)
    args = parser.parse_args()
    cfg = SimpleNamespace(kind=args.model_kind, hidden_size=args.hidden_size, core="none",
                          core_size=128)
    fps = run(args.env, args.seconds, args.num_envs, args.rollout_len, cfg, warmup=args.warmup)
    print(f"cleanrl-style PPO ({args.env}, {args.num_envs} envs, T={args.rollout_len}, "
          f"1 epoch x 1 minibatch): {fps:,.0f} env steps/s")
