"""Random Network Distillation (Burda et al. 2018, arXiv:1810.12894).

A fixed, randomly initialised target network ``f`` embeds observations; a predictor ``f_hat`` is
trained to match it on visited observations. The bonus of transition t is the prediction error
on the observation it leads to, ``||f_hat(s_{t+1}) - f(s_{t+1})||^2`` (mean over features):
large where the predictor has seen few similar observations.

Both networks see normalised observations: each floating-point or image key (per-env shape with
2+ dims) is whitened per element with running statistics and clipped to ``[-obs_clip,
obs_clip]``; other keys (e.g. MiniGrid's integer ``direction``) pass through raw. The first
``warmup_updates`` calls to ``update`` only fit these statistics (the bonus is 0 until then), as
RND initialises them before training.

Shapes: T = time steps, B = envs, N = flattened transitions, E = ``embed_dim``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from explorer.core.networks import ObsSpec, build_embedding_net, select_encoder_kind
from explorer.core.running_stats import RunningMeanStd
from explorer.core.seeding import seeded_generator, seeded_init
from explorer.core.shapes import flatten_obs, flatten_time_batch, unflatten_time_batch
from explorer.intrinsic.base import TransitionBatch, register_intrinsic

__all__ = ["RNDBonus", "normalized_keys"]

# Encoders that divide their input by 255 themselves: undo it for whitened inputs.
_INPUT_SCALE = {"nature_cnn": 255.0}


def normalized_keys(obs_spec: ObsSpec, keys: tuple[str, ...]) -> list[str]:
    """The keys RND whitens: floating-point dtype, or an image (2+ dims per env).

    Args:
        obs_spec: Observation spec.
        keys: Candidate keys (those the encoder reads).

    Returns:
        The subset of ``keys`` to normalise, in order.
    """
    return [k for k in keys
            if np.issubdtype(np.dtype(obs_spec[k][1]), np.floating) or len(obs_spec[k][0]) >= 2]


@register_intrinsic("rnd")
class RNDBonus:
    """RND bonus on next observations; non-episodic.

    Attributes:
        target: Fixed random network, obs -> ``(N, E)``.
        predictor: Trained network, obs -> ``(N, E)``.
        obs_stats: Key -> running statistics of the normalised keys.
        updates: Number of ``update`` calls so far.
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
        update_proportion: float = 0.25,
        obs_clip: float = 5.0,
        warmup_updates: int = 1,
        epochs: int = 1,
    ) -> None:
        """Builds target and predictor with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: Number of actions (unused: RND looks at observations only).
            seed: Seeds the network init and the predictor's transition sampling.
            device: Where networks and statistics live.
            lr: Adam learning rate of the predictor.
            embed_dim: E, width of the target / predictor output.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder`` ("auto": by spec).
            hidden_size: Encoder output width.
            update_proportion: Fraction of valid transitions in each predictor loss (RND: 0.25,
                so that the predictor does not learn too fast with many envs).
            obs_clip: Whitened observations are clipped to ``[-obs_clip, obs_clip]``.
            warmup_updates: Leading ``update`` calls that only fit observation statistics.
            epochs: Predictor gradient steps per ``update`` (each on a fresh subsample).
        """
        del num_actions
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1]; got {update_proportion}")
        self.device = torch.device(device)
        self.update_proportion = update_proportion
        self.obs_clip = obs_clip
        self.warmup_updates = warmup_updates
        self.epochs = epochs
        kind = select_encoder_kind(obs_spec) if encoder == "auto" else encoder
        self.input_scale = _INPUT_SCALE.get(kind, 1.0)
        with seeded_init(seed):
            self.target = build_embedding_net(obs_spec, kind, hidden_size, embed_dim)
            # one hidden layer more than the target, so that it can fit it
            self.predictor = build_embedding_net(obs_spec, kind, hidden_size, embed_dim,
                                                 hidden_layers=1)
        self.target.to(self.device).requires_grad_(False)
        self.predictor.to(self.device)
        self.in_keys: tuple[str, ...] = self.target.in_keys
        self.obs_stats = {k: RunningMeanStd(obs_spec[k][0], device=self.device)
                          for k in normalized_keys(obs_spec, self.in_keys)}
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.generator = seeded_generator(seed, self.device)
        self.updates = 0

    @property
    def warming_up(self) -> bool:
        """True while observation statistics are still being initialised (bonus is 0)."""
        return self.updates < self.warmup_updates

    def _inputs(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw ``(N, *shape)`` observations -> network inputs on ``device``."""
        out = {}
        for key in self.in_keys:
            x = obs[key].to(self.device)
            if key in self.obs_stats:
                x = self.obs_stats[key].normalize(x, clip=self.obs_clip) * self.input_scale
            out[key] = x
        return out

    def _errors(self, obs: dict[str, Tensor]) -> Tensor:
        """Per-sample squared prediction error ``(N,)`` (mean over the E features)."""
        inputs = self._inputs(obs)
        with torch.no_grad():
            target = self.target(inputs)  # (N, E)
        return (self.predictor(inputs) - target).square().mean(dim=1)

    def novelty(self, obs: dict[str, Tensor]) -> Tensor:
        """Prediction error of each observation, without gradients.

        Args:
            obs: Key -> ``(T', B, *shape)`` raw observations.

        Returns:
            ``(T', B)`` float32 errors on ``device``.
        """
        lead = obs[self.in_keys[0]].shape[:2]
        with torch.no_grad():
            errors = self._errors(flatten_obs(obs, self.in_keys))  # (N,)
        return unflatten_time_batch(errors, *lead)

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Bonus ``novelty(obs[t+1])`` of each transition.

        Args:
            batch: Transitions (``obs`` (T+1, B, ...), ``mask`` (T, B)).

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0`` or while
            warming up.
        """
        mask = batch.mask
        if self.warming_up:
            return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        bonus = self.novelty({k: batch.obs[k][1:] for k in self.in_keys}).to(mask.device)
        return torch.where(mask > 0, bonus, torch.zeros_like(bonus))

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Fits the observation statistics to ``obs[1:]``, then (after warm-up) trains the
        predictor on a seeded ``update_proportion`` sample of the valid transitions.

        Args:
            batch: Transitions.

        Returns:
            ``{"loss": mean predictor loss}`` (0 while warming up or with nothing sampled).
        """
        obs = flatten_obs({k: batch.obs[k][1:] for k in self.in_keys}, self.in_keys,
                          self.device)  # (N, ...)
        for key, stats in self.obs_stats.items():
            stats.update(obs[key])
        warming_up = self.warming_up
        self.updates += 1
        if warming_up:
            return {"loss": 0.0}
        valid = flatten_time_batch(batch.mask).to(self.device) > 0  # (N,)
        losses = []
        for _ in range(self.epochs):
            draw = torch.rand(valid.shape, generator=self.generator, device=self.device)
            index = (valid & (draw < self.update_proportion)).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            loss = self._errors({k: v[index] for k, v in obs.items()}).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses)) if losses else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.state_dict(),
            "predictor": self.predictor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_stats": {k: s.state_dict() for k, s in self.obs_stats.items()},
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        # deep copy: torch would otherwise share state tensors with the source optimiser
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        for key, stats in self.obs_stats.items():
            stats.load_state_dict(state["obs_stats"][key])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
