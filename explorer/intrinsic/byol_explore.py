"""BYOL-Explore (Guo et al. 2022, arXiv:2206.08332): curiosity from a latent world model.

An online encoder ``f`` embeds observations; a target encoder is its EMA (decay ``tau``). A
closed-loop GRU summarises the episode so far, ``h_p = GRU_c(h_{p-1}, [f(o_p), a_{p-1}])``
(zeroed at episode starts); from it an open-loop GRU rolls the actions forward,
``u_{p,k} = GRU_o(u_{p,k-1}, a_{p+k-1})`` with ``u_{p,0} = h_p``, and a predictor ``g``
guesses the target embedding of ``o_{p+k}`` for k = 1..K. Each prediction's BYOL loss is

    L(p, k) = || g(u_{p,k}) / |g(u_{p,k})| - sg(f_target(o_{p+k})) / |...| ||^2

(2 - 2 cosine), and is defined only if no episode starts in ``o_{p+1..p+k}``. The raw bonus of
transition t is the sum of the losses of the predictions targeting ``o_{t+1}``,
``sum_k L(t+1-k, k)``, divided by an EMA estimate of the raw bonus's standard deviation.
Predictions do not reach across batches: every batch starts from a zero closed-loop state.

Shapes: T = time steps, B = envs, K = ``horizon``, E = ``embed_dim``, H = ``core_size``,
A = actions.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explorer.core.networks import ObsSpec, build_embedding_net, mlp_layers
from explorer.core.running_stats import EmaMeanStd
from explorer.core.seeding import seeded_init
from explorer.core.shapes import flatten_obs, flatten_time_batch, unflatten_time_batch
from explorer.intrinsic.base import TransitionBatch, register_intrinsic

__all__ = ["BYOLExploreBonus", "byol_loss", "ema_update"]


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``||p/|p| - t/|t|||^2`` = 2 - 2 cos(p, t) over the last dim: ``(..., E)`` -> ``(...)``."""
    return (F.normalize(prediction, dim=-1) - F.normalize(target, dim=-1)).square().sum(-1)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """``target <- decay * target + (1 - decay) * online``, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, 1.0 - decay)


def _reward_std_state(state: dict[str, Any], decay: float) -> dict[str, Any]:
    """``reward_std`` state as :class:`EmaMeanStd` loads it; converts the layout that checkpoints
    written before it (``mean``, ``square``, ``steps``) hold."""
    if "steps" not in state:
        return state
    return {"first": state["mean"], "second": state["square"],
            "weight": 1.0 - decay ** int(state["steps"])}


class _WorldModel(nn.Module):
    """Closed-loop GRU, open-loop GRU and predictor."""

    def __init__(self, num_actions: int, embed_dim: int, core_size: int) -> None:
        """Builds the cells (A actions, E embedding width, H = ``core_size``)."""
        super().__init__()
        self.num_actions = num_actions
        self.closed = nn.GRUCell(embed_dim + num_actions, core_size)
        self.open = nn.GRUCell(num_actions, core_size)
        self.predictor = nn.Sequential(*mlp_layers(core_size, core_size, embed_dim))

    def forward(self, embeddings: Tensor, actions: Tensor, start: Tensor,
                horizon: int) -> Tensor:
        """Predicts ``o_{p+k}``'s target embedding for p < T, k = 1..K.

        Args:
            embeddings: ``(T, B, E)`` online embeddings of ``o_0..o_{T-1}``.
            actions: ``(T, B)`` int64.
            start: ``(T, B)`` bool, ``o_p`` opens an episode.
            horizon: K.

        Returns:
            ``(K, T, B, E)`` predictions, entry ``[k-1, p]`` targeting ``o_{p+k}``.
        """
        steps, envs = actions.shape
        onehot = F.one_hot(actions, self.num_actions).float()  # (T, B, A)
        previous = torch.cat([torch.zeros_like(onehot[:1]), onehot[:-1]])  # a_{p-1}
        keep = (~start).unsqueeze(-1).float()  # (T, B, 1)
        state = embeddings.new_zeros(envs, self.closed.hidden_size)
        closed = []
        for p in range(steps):
            state = self.closed(torch.cat([embeddings[p], previous[p] * keep[p]], -1),
                                state * keep[p])
            closed.append(state)
        state = flatten_time_batch(torch.stack(closed))  # (T*B, H)
        padded = torch.cat([onehot, onehot.new_zeros(horizon, envs, self.num_actions)])
        predictions = []
        for k in range(1, horizon + 1):
            # a_{p+k-1}
            state = self.open(flatten_time_batch(padded[k - 1:k - 1 + steps]), state)
            predictions.append(unflatten_time_batch(self.predictor(state), steps, envs))
        return torch.stack(predictions)


@register_intrinsic("byol_explore")
class BYOLExploreBonus:
    """BYOL-Explore multi-step latent prediction error; non-episodic.

    Attributes:
        online: Online encoder, obs -> ``(N, E)``.
        target: EMA of ``online`` (never trained by gradient).
        world_model: Closed-/open-loop GRUs and predictor.
        reward_std: EMA standard deviation of the raw bonus.
    """

    def __init__(
        self,
        obs_spec: ObsSpec,
        num_actions: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        lr: float = 3e-4,
        embed_dim: int = 128,
        encoder: str = "auto",
        hidden_size: int = 256,
        core_size: int = 256,
        horizon: int = 4,
        target_decay: float = 0.99,
        reward_decay: float = 0.99,
        epochs: int = 1,
    ) -> None:
        """Builds the networks with a seeded init (the global RNG is left untouched).

        Args:
            obs_spec: Observation spec.
            num_actions: A, number of discrete actions.
            seed: Seeds the network init.
            device: Where networks live.
            lr: Adam learning rate of encoder and world model.
            embed_dim: E.
            encoder: Encoder kind for ``explorer.core.networks.build_encoder``.
            hidden_size: Encoder output width.
            core_size: H, GRU width.
            horizon: K, open-loop prediction steps.
            target_decay: tau, EMA decay of the target encoder (paper: 0.99).
            reward_decay: EMA decay of the reward standard deviation.
            epochs: Gradient steps per ``update``.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1; got {horizon}")
        self.device = torch.device(device)
        self.horizon, self.target_decay, self.epochs = horizon, target_decay, epochs
        with seeded_init(seed):
            self.online = build_embedding_net(obs_spec, encoder, hidden_size, embed_dim)
            self.world_model = _WorldModel(num_actions, embed_dim, core_size)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        for module in (self.online, self.target, self.world_model):
            module.to(self.device)
        self.in_keys: tuple[str, ...] = self.online.in_keys
        params = [*self.online.parameters(), *self.world_model.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self.reward_std = EmaMeanStd(reward_decay)

    def _losses(self, batch: TransitionBatch) -> tuple[Tensor, Tensor]:
        """BYOL losses of all predictions and where they are defined.

        Returns:
            ``(K, T, B)`` losses ``L(p, k)`` at ``[k-1, p]`` (with grad) and ``(K, T, B)`` bool
            validity.
        """
        steps, envs = batch.mask.shape
        obs = flatten_obs(batch.obs, self.in_keys, self.device)
        with torch.no_grad():
            targets = unflatten_time_batch(self.target(obs), steps + 1, envs)  # (T+1, B, E)
        first = {k: v[:steps * envs] for k, v in obs.items()}  # o_0..o_{T-1}
        embeddings = unflatten_time_batch(self.online(first), steps, envs)  # (T, B, E)
        start = batch.episode_start.to(self.device).bool()  # (T+1, B)
        real = batch.mask.to(self.device) > 0  # (T, B)
        # actions of masked (auto-reset) steps may be anything, even -1: they feed no valid
        # prediction, so any in-range value will do
        actions = torch.where(real, batch.actions.to(self.device), 0)
        predictions = self.world_model(embeddings, actions, start[:steps], self.horizon)
        # transition t is real and stays in its episode
        step_ok = real & ~start[1:]  # (T, B)
        step_ok = torch.cat([step_ok, step_ok.new_zeros(self.horizon, envs)])
        padded = torch.cat([targets, targets.new_zeros(self.horizon, envs, targets.shape[-1])])
        losses, valid = [], []
        run = torch.ones(steps, envs, dtype=torch.bool, device=self.device)
        for k in range(1, self.horizon + 1):
            run = run & step_ok[k - 1:k - 1 + steps]  # transitions p..p+k-1 all ok
            losses.append(byol_loss(predictions[k - 1], padded[k:k + steps]))
            valid.append(run)
        return torch.stack(losses), torch.stack(valid)

    def _raw_bonus(self, losses: Tensor, valid: Tensor) -> Tensor:
        """``(K, T, B)`` losses -> ``(T, B)`` sum of the valid losses targeting ``o_{t+1}``."""
        steps = losses.shape[1]
        masked = torch.where(valid, losses, torch.zeros_like(losses))
        bonus = torch.zeros_like(masked[0])
        for k in range(1, self.horizon + 1):  # prediction (p, k) targets o_{p+k}: t = p+k-1
            if k - 1 < steps:
                bonus[k - 1:] += masked[k - 1, :steps - k + 1]
        return bonus

    def raw_bonus(self, batch: TransitionBatch) -> Tensor:
        """Unnormalised bonus ``(T, B)`` float32 on ``device`` (0 where ``mask == 0``)."""
        with torch.no_grad():
            bonus = self._raw_bonus(*self._losses(batch))
        return bonus * (batch.mask.to(self.device) > 0)

    def compute(self, batch: TransitionBatch) -> Tensor:
        """Raw bonus divided by its EMA standard deviation.

        Args:
            batch: Transitions.

        Returns:
            ``(T, B)`` float32 on ``batch.mask``'s device; 0 where ``mask == 0``.
        """
        bonus = self.raw_bonus(batch) / max(self.reward_std.std, 1e-8)
        return bonus.to(batch.mask.device)

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Folds the batch's raw bonuses into the reward std, then trains encoder and world
        model on the mean valid loss and moves the target encoder towards the online one.

        Returns:
            ``{"loss": mean BYOL loss, "reward_std": std estimate}``.
        """
        loss_value = 0.0
        real = batch.mask.to(self.device) > 0
        for epoch in range(self.epochs):
            losses, valid = self._losses(batch)
            if epoch == 0:
                self.reward_std.update(self._raw_bonus(losses.detach(), valid)[real])
            count = valid.sum()
            if count == 0:
                break
            loss = torch.where(valid, losses, torch.zeros_like(losses)).sum() / count
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            ema_update(self.target, self.online, self.target_decay)
            loss_value = float(loss.detach())
        return {"loss": loss_value, "reward_std": self.reward_std.std}

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "world_model": self.world_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reward_std": self.reward_std.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.world_model.load_state_dict(state["world_model"])
        # deep copy: torch would otherwise share state tensors with the source optimiser
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.reward_std.load_state_dict(
            _reward_std_state(state["reward_std"], self.reward_std.decay))
