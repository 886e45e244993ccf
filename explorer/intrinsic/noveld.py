"""NovelD (Zhang et al. 2021, arXiv:2111.10081): reward crossing into more novel states.

With ``N`` the RND novelty (prediction error) of an observation, transition t earns

    max(N(s_{t+1}) - alpha * N(s_t), 0) * 1[s_{t+1} is visited for the first time this episode]

The first-visit gate (episodic restriction on intrinsic reward, ERIR) counts hashed
observations per env id within the current episode (``counts.VisitCounter``): the episode's
first observation counts as visited, and ``obs[0]`` of a batch continues the episode of the same
env id from the previous batch unless ``episode_start[0]``. ``compute`` reads the visit tables;
``update`` commits the batch to them and trains the RND predictor.

Shapes: T = time steps, B = envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from explorer.core.networks import ObsSpec
from explorer.intrinsic.base import TransitionBatch, register_intrinsic
from explorer.intrinsic.counts import VisitCounter, env_ids_list, hash_observations
from explorer.intrinsic.rnd import RNDBonus

__all__ = ["NovelDBonus"]


@register_intrinsic("noveld")
class NovelDBonus:
    """NovelD bonus on top of an owned :class:`~explorer.intrinsic.rnd.RNDBonus`; episodic.

    Attributes:
        rnd: Novelty estimator (its networks, optimiser and observation statistics).
        visits: Per-env, per-episode visit counts of hashed observations.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 1e-4,
        embed_dim: int = 128,
        encoder: str = "auto",
        hidden_size: int = 256,
        alpha: float = 0.5,
        update_proportion: float = 0.25,
        obs_clip: float = 5.0,
        warmup_updates: int = 1,
        epochs: int = 1,
        hash_keys: Sequence[str] | None = None,
    ) -> None:
        """Builds the RND novelty estimator and empty visit tables.

        Args:
            obs_spec: Observation spec.
            num_actions: Number of actions (unused).
            seed: Seeds the RND networks and sampling.
            device: Where the RND networks live.
            lr: RND predictor learning rate.
            embed_dim: RND output width.
            encoder: Encoder kind (``"auto"``: by spec).
            hidden_size: Encoder output width.
            alpha: Weight of the current state's novelty (paper: 0.5).
            update_proportion: RND predictor's sampled fraction of transitions.
            obs_clip: RND observation clip bound.
            warmup_updates: RND statistics-only updates (bonus 0 until done).
            epochs: RND predictor steps per update.
            hash_keys: Observation keys identifying a state for the first-visit gate (default:
                every key of the spec).
        """
        self.alpha = alpha
        self.rnd = RNDBonus(
            obs_spec, num_actions, seed=seed, device=device, lr=lr, embed_dim=embed_dim,
            encoder=encoder, hidden_size=hidden_size, update_proportion=update_proportion,
            obs_clip=obs_clip, warmup_updates=warmup_updates, epochs=epochs,
        )
        self.hash_keys = tuple(sorted(obs_spec) if hash_keys is None else hash_keys)
        self.visits = VisitCounter(episodic=True)

    def _episode_counts(self, batch: TransitionBatch, commit: bool) -> Tensor:
        """``(T, B)`` int64 count of ``obs[t+1]`` in its episode, this visit included."""
        hashes = hash_observations(batch.obs, self.hash_keys)  # (T+1, B)
        counts = self.visits.scan(hashes, batch.episode_start.cpu().numpy(),
                                  env_ids_list(batch.env_ids), commit)
        return torch.from_numpy(counts)

    def compute(self, batch: TransitionBatch) -> Tensor:
        """NovelD bonus of each transition; the visit tables are left unchanged.

        Args:
            batch: Transitions.

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0``, on revisits
            within the episode and while RND warms up.
        """
        mask = batch.mask
        if self.rnd.warming_up:
            return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        first_visit = (self._episode_counts(batch, commit=False) == 1).to(mask.device)
        novelty = self.rnd.novelty({k: batch.obs[k] for k in self.rnd.in_keys})  # (T+1, B)
        gain = (novelty[1:] - self.alpha * novelty[:-1]).clamp(min=0.0).to(mask.device)
        return torch.where((mask > 0) & first_visit, gain, torch.zeros_like(gain))

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Commits the batch's visits and trains RND on it.

        Returns:
            RND metrics (``loss``).
        """
        self._episode_counts(batch, commit=True)
        return self.rnd.update(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"rnd": self.rnd.state_dict(), "visits": self.visits.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rnd.load_state_dict(state["rnd"])
        self.visits.load_state_dict(state["visits"])
