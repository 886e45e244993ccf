"""Stack received rollouts into one time-major training batch.

Rollouts from different actors share T and differ only in which envs they cover, so a batch is
their concatenation along the env axis B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.core.shapes import flatten_time_batch
from explorer.core.wire import Message

__all__ = ["Batch", "stack_rollouts", "take_transitions"]


@dataclass
class Batch:
    """Tensors of one training batch (T steps, B envs)."""

    obs: dict[str, torch.Tensor]  # (T+1, B, *obs_shape)
    actions: torch.Tensor  # (T, B) int64
    behaviour_logp: torch.Tensor  # (T, B)
    behaviour_values: torch.Tensor  # (T+1, B)
    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) float 0/1
    ended: torch.Tensor  # (T, B) float 0/1: terminated or truncated
    mask: torch.Tensor  # (T, B) float 0/1: valid (non auto-reset) steps
    episode_start: torch.Tensor  # (T+1, B) bool, incl. the bootstrap observation
    core_state: torch.Tensor  # (B, H)
    env_ids: torch.Tensor  # (B,) int64: actor_id * envs_per_actor + env index, stable
    text_hash: torch.Tensor | None = None  # (T, B, U) int64 ids of the text units after step t
    text_count: torch.Tensor | None = None  # (T, B, U) int32: their counts so far in the episode
    #: (T, B) log-probs under the learner's policy at the start of the update (decoupled PPO)
    proximal_logp: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        return int(self.actions.numel())

    def select_envs(self, index: torch.Tensor) -> Batch:
        """The sub-batch of env columns ``index`` (minibatches keep whole sequences)."""
        return Batch(
            obs={k: v[:, index] for k, v in self.obs.items()},
            actions=self.actions[:, index], behaviour_logp=self.behaviour_logp[:, index],
            behaviour_values=self.behaviour_values[:, index], rewards=self.rewards[:, index],
            terminated=self.terminated[:, index], ended=self.ended[:, index],
            mask=self.mask[:, index], episode_start=self.episode_start[:, index],
            core_state=self.core_state[index], env_ids=self.env_ids[index],
            text_hash=None if self.text_hash is None else self.text_hash[:, index],
            text_count=None if self.text_count is None else self.text_count[:, index],
            proximal_logp=None if self.proximal_logp is None else self.proximal_logp[:, index],
        )

    def select_samples(self, index: torch.Tensor) -> Batch:
        """The transitions ``index`` of the flattened (T*B) batch as a batch of one step
        (T=1, B=len(index)); only for feed-forward models and targets computed beforehand
        (PPO's GAE): nothing here links a transition to the next one."""
        steps, envs = self.actions.shape

        def pick(x: torch.Tensor) -> torch.Tensor:
            return take_transitions(x, index, steps)

        return Batch(
            obs={k: pick(v) for k, v in self.obs.items()},
            actions=pick(self.actions), behaviour_logp=pick(self.behaviour_logp),
            behaviour_values=pick(self.behaviour_values), rewards=pick(self.rewards),
            terminated=pick(self.terminated), ended=pick(self.ended), mask=pick(self.mask),
            episode_start=pick(self.episode_start),
            core_state=self.core_state.new_zeros((len(index), self.core_state.shape[1])),
            env_ids=self.env_ids[index % envs],
            text_hash=None if self.text_hash is None else pick(self.text_hash),
            text_count=None if self.text_count is None else pick(self.text_count),
            proximal_logp=None if self.proximal_logp is None else pick(self.proximal_logp),
        )

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        moved = {k: ({n: t.to(device, non_blocking=True) for n, t in v.items()}
                     if isinstance(v, dict) else
                     None if v is None else v.to(device, non_blocking=True))
                 for k, v in fields.items()}
        return Batch(**moved)


def take_transitions(x: torch.Tensor, index: torch.Tensor, steps: int) -> torch.Tensor:
    """``(T[+1], B, ...)`` -> ``(1, n, ...)``: the transitions ``index`` of the first ``steps``
    rows, flattened time-major (row ``t * B + b``), as a batch of one step."""
    return flatten_time_batch(x[:steps])[index].unsqueeze(0)


def _cat(messages: Sequence[Message], name: str, axis: int = 1) -> np.ndarray:
    return np.concatenate([m.arrays[name] for m in messages], axis=axis)


def stack_rollouts(messages: Sequence[Message], reward_clip: float | None) -> Batch:
    """Concatenate ``messages`` (validated rollouts) along B into one :class:`Batch`."""
    obs_keys = [n for n in messages[0].arrays if n.startswith("obs/")]
    valid = _cat(messages, "valid")  # (T, B)
    rewards = _cat(messages, "rewards")
    if reward_clip is not None:
        rewards = np.clip(rewards, -reward_clip, reward_clip)
    terminated = _cat(messages, "terminated")
    ended = terminated | _cat(messages, "truncated")
    start = _cat(messages, "episode_start")
    # obs[T] starts an episode when step T-1 was an auto-reset step
    start_full = np.concatenate([start, ~valid[-1:]], axis=0)  # (T+1, B)
    texts = "text_hash" in messages[0].arrays
    return Batch(
        obs={k[4:]: torch.from_numpy(_cat(messages, k)) for k in obs_keys},
        actions=torch.from_numpy(_cat(messages, "actions")),
        behaviour_logp=torch.from_numpy(_cat(messages, "logp")),
        behaviour_values=torch.from_numpy(_cat(messages, "values")),
        rewards=torch.from_numpy(rewards),
        terminated=torch.from_numpy(terminated.astype(np.float32)),
        ended=torch.from_numpy(ended.astype(np.float32)),
        mask=torch.from_numpy(valid.astype(np.float32)),
        episode_start=torch.from_numpy(start_full),
        core_state=torch.from_numpy(_cat(messages, "core_state", axis=0)),
        env_ids=torch.from_numpy(np.concatenate([
            m.actor_id * m.arrays["valid"].shape[1] + np.arange(m.arrays["valid"].shape[1])
            for m in messages])),
        text_hash=torch.from_numpy(_cat(messages, "text_hash")) if texts else None,
        text_count=torch.from_numpy(_cat(messages, "text_count")) if texts else None,
    )
