"""CleanRL-faithful PPO in one file: ``ppo.py``'s algorithm and defaults, on EnvPool envs.

The opponent of ``benchmarks/time_to_solve.py`` (and row e' of ``benchmarks/throughput.py``).
Written for this project in CleanRL's style (an ``Args`` dataclass, a seeding block, an
``Agent``, one loop to read top to bottom), not copied from it. What is CleanRL's ``ppo.py``:

* separate actor and critic MLPs, 64x64, tanh, orthogonal init (std sqrt(2); actor head 0.01,
  critic head 1.0), Adam (eps 1e-5), lr 2.5e-4 annealed linearly to 0 over
  ``--total-timesteps``;
* rollouts of 128 steps, GAE (gamma 0.99, lambda 0.95), 4 epochs x 4 minibatches of flat
  samples shuffled over all T*B transitions, advantages normalised per minibatch, clipped
  surrogate (0.2), clipped value loss, entropy 0.01, value 0.5, grad norm 0.5;
* ``terminated or truncated`` ends an episode (no bootstrap from truncation), as ``ppo.py``.

What differs, because the envs come from EnvPool (``envpool.make(id, env_type="gymnasium",
num_envs=N, seed=seed)``, the ids our system uses) instead of gym's vector env:

* EnvPool resets a finished env on its *next* ``step`` (the action is ignored, reward 0). Gym's
  vector env resets within the same step, so ``ppo.py`` never sees that transition: here it is
  dropped from the update (the flat minibatches are drawn from the real transitions only) and
  from the episode statistics. It still counts as an env step, as it does in our actors.
* MiniGrid observations are a dict (image 7x7x3 uint8, direction, mission bytes): the MLP gets
  the flattened image as float (unscaled) plus a one-hot direction; the mission is ignored.
* ``--num-envs`` defaults to 16 (``ppo.py``: 4), ``--torch-threads`` sets torch's thread
  count (default 1; 1 vs 2 is to be measured on the quiet machine).

Race options: training stops when the mean return of the last 100 finished episodes (a full
window, as our learner's ``target_return``) reaches ``--target-return``, after ``--budget-s``
seconds since the process started, or after ``--max-env-steps`` (default: the annealing
horizon ``--total-timesteps``). Times are seconds since this *process* started (read from
``/proc``, so interpreter start-up and imports count); ``startup_s`` is the time of the first
env step. Prints a table and, as its LAST stdout line, one JSON object (with the epoch time of
the process start, so a parent can put the points on its own clock)::

    python benchmarks/cleanrl_ppo_faithful.py --env-id CartPole-v1 --target-return 475
    python benchmarks/cleanrl_ppo_faithful.py --env-id MiniGrid-DoorKey-5x5-v0 \
        --target-return 0.9 --total-timesteps 2000000 --budget-s 300
"""

from __future__ import annotations

import argparse
import ast
import collections
import copy
import dataclasses
import inspect
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import envpool
import gymnasium as gym
import numpy as np
import torch
from torch import nn, optim
from torch.distributions.categorical import Categorical

_IMPORTED_AT = time.time()  # the process start where /proc cannot tell it


@dataclass
class Args:
    exp_name: str = "cleanrl_ppo_faithful"
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (EnvPool, numpy, random, torch)"""
    torch_deterministic: bool = True
    """sets `torch.backends.cudnn.deterministic`"""
    cuda: bool = True
    """use CUDA when it is available"""

    # Algorithm arguments (CleanRL ppo.py's defaults, but num_envs)
    env_id: str = "CartPole-v1"
    """the EnvPool task id"""
    total_timesteps: int = 500_000
    """horizon of the learning-rate annealing (ppo.py: total timesteps of the experiment)"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 16
    """the number of parallel envs (ppo.py: 4; 16 for the race)"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over total_timesteps"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """use a clipped loss for the value function"""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: float | None = None
    """the target KL divergence threshold (None: no early stop)"""

    # Race arguments
    target_return: float | None = None
    """stop when the mean return of the last 100 finished episodes reaches this"""
    budget_s: float | None = None
    """stop this many seconds after the process started"""
    max_env_steps: int | None = None
    """stop after this many env steps (default: total_timesteps)"""
    torch_threads: int = 1
    """torch.set_num_threads (1 or 2 on the 2-core machine: to be measured)"""
    envpool_threads: int | None = None
    """EnvPool's num_threads (None: EnvPool's default)"""
    quiet: bool = False
    """no progress lines on stderr"""

    # Ablation arguments (off: CleanRL's ppo.py): one difference of our system at a time
    shared_torso: bool = False
    """one 64x64 torso under both heads (ours before learner.model.separate_critic)"""
    scalar_direction: bool = False
    """MiniGrid's direction as one float instead of one-hot (our MLP before the fix)"""
    policy_lag: int = 0
    """act with the weights from this many updates ago (our actors run one update behind)"""
    lag_correction: bool = False
    """decoupled PPO: clip around the current policy, weight by pi/pi_actor, GAE from the
    current critic (our learner.ppo_lag_correction)"""

    # filled in at runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


def parse_args(argv: list[str] | None = None) -> Args:
    """``--kebab-case`` flags from the fields of :class:`Args` (``--no-x`` turns a bool off),
    each with the docstring under its field as help, as tyro gives CleanRL."""
    body = ast.parse(inspect.getsource(Args)).body[0].body
    docs = {a.target.id: b.value.value for a, b in itertools.pairwise(body)
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
            and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    hints = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float}
    for f in dataclasses.fields(Args):
        if f.name in ("batch_size", "minibatch_size", "num_iterations"):
            continue
        flag, text = "--" + f.name.replace("_", "-"), f"{docs.get(f.name, '')} (%(default)s)"
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=docs.get(f.name))
        else:
            parser.add_argument(flag, type=hints[f.type], default=f.default, help=text)
    return Args(**vars(parser.parse_args(argv)))


def process_start_time() -> float:
    """Epoch seconds at which this process was started (``/proc``, ~10 ms resolution)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            now_uptime = float(uptime.read().split()[0])
        return time.time() - (now_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT


def flatten_obs(obs: Any, scalar_direction: bool = False) -> np.ndarray:
    """EnvPool observations as one float32 vector per env (MiniGrid: image + one-hot dir)."""
    if isinstance(obs, dict):
        image = obs["image"].reshape(len(obs["image"]), -1).astype(np.float32)
        direction = (obs["direction"].astype(np.float32)[:, None] if scalar_direction
                     else np.eye(4, dtype=np.float32)[obs["direction"]])
        return np.concatenate([image, direction], axis=1)
    return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)


def obs_size(space: gym.Space, scalar_direction: bool = False) -> int:
    if isinstance(space, gym.spaces.Dict):
        return int(np.prod(space["image"].shape)) + (1 if scalar_direction else 4)
    return int(np.prod(space.shape))


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, n_obs: int, n_actions: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(n_obs, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(n_obs, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, n_actions), std=0.01),
        )

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


class SharedTorsoAgent(nn.Module):
    """Ablation: one torso, two heads (not ppo.py)."""

    def __init__(self, n_obs: int, n_actions: int) -> None:
        super().__init__()
        self.torso = nn.Sequential(
            layer_init(nn.Linear(n_obs, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
        )
        self.critic_head = layer_init(nn.Linear(64, 1), std=1.0)
        self.actor_head = layer_init(nn.Linear(64, n_actions), std=0.01)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic_head(self.torso(x))

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        hidden = self.torso(x)
        probs = Categorical(logits=self.actor_head(hidden))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic_head(hidden)


def train(args: Args, t0: float | None = None) -> dict[str, Any]:
    """Train until target, budget or step cap; return the figures (times: seconds since t0).

    ``t0`` is the epoch time the clock starts from (default: this process's start).
    """
    t0 = process_start_time() if t0 is None else t0
    args.batch_size = args.num_envs * args.num_steps
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    max_env_steps = args.max_env_steps or args.total_timesteps

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # env setup
    extra = {} if args.envpool_threads is None else {"num_threads": args.envpool_threads}
    envs = envpool.make(args.env_id, env_type="gymnasium", num_envs=args.num_envs,
                        seed=args.seed, **extra)
    assert isinstance(envs.action_space, gym.spaces.Discrete), "only discrete actions"

    n_obs = obs_size(envs.observation_space, args.scalar_direction)
    agent_class = SharedTorsoAgent if args.shared_torso else Agent
    agent = agent_class(n_obs, int(envs.action_space.n)).to(device)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    # ablation: the envs are stepped by weights `policy_lag` updates old (ppo.py: 0, the agent)
    acting = agent
    past_weights: collections.deque[dict] = collections.deque(maxlen=args.policy_lag + 1)
    if args.policy_lag:
        acting = agent_class(n_obs, int(envs.action_space.n)).to(device)
        acting.load_state_dict(agent.state_dict())
        past_weights.append(copy.deepcopy(agent.state_dict()))

    # storage
    obs = torch.zeros((args.num_steps, args.num_envs, n_obs)).to(device)
    actions = torch.zeros((args.num_steps, args.num_envs)).to(device)
    logprobs = torch.zeros((args.num_steps, args.num_envs)).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)
    # False on EnvPool's auto-reset steps: those transitions are not trained on
    real = np.zeros((args.num_steps, args.num_envs), dtype=bool)

    # episode statistics (RecordEpisodeStatistics' job) and the race's record
    episode_return = np.zeros(args.num_envs)
    recent_returns: collections.deque[float] = collections.deque(maxlen=100)
    episodes = 0
    points: list[tuple[float, int, float | None]] = []  # (s since t0, env steps, mean-100)
    first_step_at: float | None = None
    solved_at: tuple[float, int] | None = None
    reason = "total_timesteps"

    def mean100() -> float | None:
        return float(np.mean(recent_returns)) if recent_returns else None

    # start the game
    global_step = 0
    next_obs_np, _ = envs.reset()
    next_obs = torch.Tensor(flatten_obs(next_obs_np, args.scalar_direction)).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    resetting = np.zeros(args.num_envs, dtype=bool)  # EnvPool resets these on the next step
    iteration, last_print = 0, 0.0
    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(0, args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done
            real[step] = ~resetting

            # ALGO LOGIC: action logic
            with torch.no_grad():
                action, logprob, _, value = acting.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            # TRY NOT TO MODIFY: execute the game and log data.
            if first_step_at is None:
                first_step_at = time.time() - t0
            next_obs_np, reward, terminations, truncations, _ = envs.step(
                action.cpu().numpy().astype(np.int32))
            next_done_np = np.logical_or(terminations, truncations) & ~resetting
            rewards[step] = torch.tensor(reward, dtype=torch.float32).to(device).view(-1)
            next_obs = torch.Tensor(flatten_obs(next_obs_np, args.scalar_direction)).to(device)
            next_done = torch.Tensor(next_done_np.astype(np.float32)).to(device)

            episode_return += np.where(resetting, 0.0, reward)
            for i in np.flatnonzero(next_done_np):
                recent_returns.append(float(episode_return[i]))
                episode_return[i] = 0.0
                episodes += 1
            resetting = next_done_np

            now = time.time() - t0
            if (args.target_return is not None and next_done_np.any()
                    and len(recent_returns) == recent_returns.maxlen
                    and mean100() >= args.target_return):
                solved_at, reason = (now, global_step), "target"
            elif args.budget_s is not None and now >= args.budget_s:
                reason = "budget"
            elif global_step >= max_env_steps:
                reason = "max_env_steps"
            else:
                continue
            break
        if reason != "total_timesteps":
            points.append((time.time() - t0, global_step, mean100()))
            break

        # bootstrap value if not done
        with torch.no_grad():
            if args.lag_correction:  # ablation: GAE from the current critic
                values = agent.get_value(obs.reshape(-1, n_obs)).reshape(values.shape)
            next_value = (agent if args.lag_correction else acting).get_value(
                next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards).to(device)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = (
                    delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam)
            returns = advantages + values

        # flatten the batch
        b_obs = obs.reshape((-1, n_obs))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # Optimizing the policy and value network, on the real transitions only
        b_inds = np.flatnonzero(real.reshape(-1))
        b_centre = b_logprobs  # ppo.py clips around the policy that acted
        if args.lag_correction:  # ablation: decoupled PPO, clipped around the current policy
            with torch.no_grad():
                _, b_centre, _, _ = agent.get_action_and_value(b_obs, b_actions.long())
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for mb_inds in np.array_split(b_inds, args.num_minibatches):
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions.long()[mb_inds])
                logratio = newlogprob - b_centre[mb_inds]
                ratio = logratio.exp()
                weight = (b_centre[mb_inds] - b_logprobs[mb_inds]).exp().clamp(max=5.0)

                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = ((mb_advantages - mb_advantages.mean())
                                     / (mb_advantages.std() + 1e-8))

                # Policy loss
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef,
                                                        1 + args.clip_coef)
                pg_loss = (torch.max(pg_loss1, pg_loss2) * weight).mean()

                # Value loss
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(
                        newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        if args.policy_lag:
            past_weights.append(copy.deepcopy(agent.state_dict()))
            acting.load_state_dict(past_weights[0])
        now = time.time() - t0
        points.append((now, global_step, mean100()))
        if not args.quiet and now - last_print >= 5.0:
            last_print = now
            ret = mean100()
            print(f"[cleanrl] t={now:7.1f}s  steps={global_step:>10,}  "
                  f"mean100={'n/a' if ret is None else f'{ret:.3f}'}  "
                  f"sps={int(global_step / max(now - (first_step_at or 0.0), 1e-9))}",
                  file=sys.stderr, flush=True)

    envs.close()
    end = time.time() - t0
    return {
        "system": "cleanrl_ppo_faithful", "env_id": args.env_id, "seed": args.seed,
        "num_envs": args.num_envs, "num_steps": args.num_steps,
        "torch_threads": args.torch_threads, "device": str(device),
        "total_timesteps": args.total_timesteps, "max_env_steps": max_env_steps,
        "target_return": args.target_return, "budget_s": args.budget_s,
        "reason": reason, "solved": solved_at is not None,
        "wall_s_to_target": None if solved_at is None else solved_at[0],
        "env_steps_to_target": None if solved_at is None else solved_at[1],
        "startup_s": first_step_at, "wall_s": end, "env_steps": global_step,
        "iterations": iteration, "episodes": episodes, "final_mean100": mean100(),
        "sps_after_startup": global_step / max(end - (first_step_at or 0.0), 1e-9),
        "t0_epoch": t0, "points": [[round(t, 3), s, r] for t, s, r in points],
    }


def throughput(env_id: str, seconds: float, warmup: float = 3.0, num_envs: int = 16,
               torch_threads: int = 1, seed: int = 1,
               envpool_threads: int | None = None) -> tuple[int, float]:
    """Train for ``warmup + seconds``; return (env steps, seconds) of whole iterations after
    the warm-up (warm-up counted from the first env step). No target: throughput only."""
    args = Args(env_id=env_id, num_envs=num_envs, torch_threads=torch_threads, seed=seed,
                envpool_threads=envpool_threads, quiet=True, total_timesteps=10**12,
                budget_s=warmup + seconds + 2.0)
    res = train(args, t0=time.time())
    # the budget counts from this call (env creation included, well under the 2 s allowed);
    # the window starts ``warmup`` s after the first env step
    begin = res["startup_s"] + warmup
    inside = [(t, s) for t, s, _ in res["points"] if begin <= t <= begin + seconds]
    if len(inside) < 2:
        raise RuntimeError(f"too few iterations after the warm-up ({len(inside)}); "
                           "give more seconds")
    (t_a, s_a), (t_b, s_b) = inside[0], inside[-1]
    return s_b - s_a, t_b - t_a


def print_table(res: dict[str, Any]) -> None:
    """A few points of the learning curve, then the summary."""
    pts = res["points"]
    keep = pts if len(pts) <= 20 else [pts[int(i * (len(pts) - 1) / 19)] for i in range(20)]
    print(f"{'wall s':>9} {'env steps':>12} {'mean-100 return':>16}")
    for t, steps, ret in keep:
        print(f"{t:9.1f} {steps:12,} {'n/a' if ret is None else f'{ret:.3f}':>16}")
    to_target = ("not reached" if not res["solved"] else
                 f"{res['wall_s_to_target']:.1f} s, {res['env_steps_to_target']:,} env steps")
    print(f"{res['env_id']} seed {res['seed']}: stopped by {res['reason']} after "
          f"{res['wall_s']:.1f} s, {res['env_steps']:,} env steps, {res['episodes']:,} "
          f"episodes; first env step at {res['startup_s']:.2f} s; target "
          f"{res['target_return']}: {to_target}")


if __name__ == "__main__":
    args = parse_args()
    result = train(args)
    print_table(result)
    print(json.dumps(result))
