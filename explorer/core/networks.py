"""Actor-critic networks for dict observations.

An observation spec maps each observation key to its per-env shape and numpy dtype name, e.g.
``{"image": ((7, 7, 3), "uint8"), "direction": ((), "int32"), "mission": ((96,), "uint8")}``.
The encoder is chosen once, at construction, from ``cfg.kind`` and the spec; an optional GRU
core sits between the encoder and the policy / value heads.

Shapes used below: T = time steps, B = envs, N = T * B, A = actions, H = core size.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from explorer.core.retrieval import RetrievalCore
from explorer.core.shapes import flatten_obs, flatten_time_batch, unflatten_time_batch
from explorer.core.specs import ObsSpec

__all__ = [
    "ENCODER_KINDS",
    "ActorCritic",
    "MiniGridEncoder",
    "MlpEncoder",
    "ModelConfig",
    "NatureCnnEncoder",
    "NetHackEncoder",
    "ObsSpec",
    "build_embedding_net",
    "build_encoder",
    "make_actor_critic",
    "mlp_layers",
    "obs_to_torch",
    "select_encoder_kind",
]


ENCODER_KINDS = ("auto", "mlp", "minigrid_cnn", "nature_cnn", "nethack")
CORE_KINDS = ("none", "gru")

# Keys that no encoder consumes (MiniGrid's mission is raw text bytes).
IGNORED_KEYS = frozenset({"mission"})

MINIGRID_NUM_DIRECTIONS = 4

# Integer scalar keys the MLP encoder reads one-hot: key -> number of categories.
ONE_HOT_KEYS = {"direction": MINIGRID_NUM_DIRECTIONS}

# nle.nethack.MAX_GLYPH (NLE 1.x); glyph id MAX_GLYPH itself is NO_GLYPH (blank, crop padding).
NETHACK_MAX_GLYPH = 5976


class ModelConfig(Protocol):
    """The model fields of the run config (any object with these attributes works)."""

    kind: str
    hidden_size: int
    core: str
    core_size: int


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant bias, as in CleanRL.

    Args:
        layer: An ``nn.Linear`` or ``nn.Conv2d``.
        gain: Orthogonal gain.
        bias: Constant bias value.

    Returns:
        The same layer, initialised in place.
    """
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def _used_keys(obs_spec: ObsSpec) -> list[str]:
    """Sorted spec keys that encoders may consume."""
    return sorted(k for k in obs_spec if k not in IGNORED_KEYS)


class MlpEncoder(nn.Module):
    """Flattens and concatenates all used keys (cast to float; ``ONE_HOT_KEYS`` one-hot),
    then 2 tanh layers.

    Input: dict of ``(N, *shape)`` tensors. Output: ``(N, hidden_size)``.
    """

    def __init__(self, obs_spec: ObsSpec, hidden_size: int) -> None:
        """Builds the layers for ``obs_spec``.

        Args:
            obs_spec: Observation spec.
            hidden_size: Output width.

        Raises:
            ValueError: The spec has no key / shape this encoder can take.
        """
        super().__init__()
        self.in_keys = tuple(_used_keys(obs_spec))
        if not self.in_keys:
            raise ValueError(
                f"mlp encoder needs at least one observation key besides {sorted(IGNORED_KEYS)}; "
                f"got spec {obs_spec}"
            )
        # small integer categories (MiniGrid's direction) enter one-hot, not as one number:
        # a scalar direction cost 1.2x the env steps on DoorKey-5x5 (benchmarks/RESULTS.md)
        self.one_hot = {k: n for k, n in ONE_HOT_KEYS.items()
                        if k in self.in_keys and tuple(obs_spec[k][0]) in ((), (1,))
                        and np.issubdtype(np.dtype(obs_spec[k][1]), np.integer)}
        in_size = sum(self.one_hot.get(k) or math.prod(obs_spec[k][0]) for k in self.in_keys)
        self.out_size = hidden_size
        self.net = nn.Sequential(
            layer_init(nn.Linear(in_size, hidden_size)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden_size, hidden_size)),
            nn.Tanh(),
        )

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Encodes a flat batch.

        Args:
            obs: Key -> ``(N, *shape)`` tensor, any dtype.

        Returns:
            ``(N, hidden_size)`` features.
        """
        parts = [self._flat(k, obs[k]) for k in self.in_keys]  # each (N, width of k)
        return self.net(torch.cat(parts, dim=1))

    def _flat(self, key: str, x: Tensor) -> Tensor:
        """One key as ``(N, width)`` floats: one-hot for the category keys, else flattened."""
        if key in self.one_hot:
            return nn.functional.one_hot(x.reshape(-1).long(), self.one_hot[key]).float()
        return x.reshape(len(x), -1).float()


class MiniGridEncoder(nn.Module):
    """rl-starter-files MiniGrid conv net on the HWC id image, plus one-hot direction.

    Conv 2x2 (16) -> ReLU -> MaxPool 2x2 -> Conv 2x2 (32) -> ReLU -> Conv 2x2 (64) -> ReLU,
    flattened, concatenated with the one-hot ``direction`` (if in the spec), then
    Linear -> ReLU to ``hidden_size``. Needs an ``image`` of shape (H, W, C) with H, W >= 7.

    Input: dict with ``image`` ``(N, H, W, C)`` and optionally ``direction`` ``(N,)``.
    Output: ``(N, hidden_size)``.
    """

    MIN_SIZE = 7

    def __init__(self, obs_spec: ObsSpec, hidden_size: int) -> None:
        """Builds the layers for ``obs_spec``.

        Args:
            obs_spec: Observation spec.
            hidden_size: Output width.

        Raises:
            ValueError: The spec has no key / shape this encoder can take.
        """
        super().__init__()
        if "image" not in obs_spec:
            raise ValueError(
                f"minigrid_cnn encoder needs an 'image' key; got keys {list(obs_spec)}"
            )
        image_shape = obs_spec["image"][0]
        if len(image_shape) != 3 or min(image_shape[:2]) < self.MIN_SIZE:
            raise ValueError(
                f"minigrid_cnn encoder needs 'image' of shape (H, W, C) with H, W >= "
                f"{self.MIN_SIZE}; got {image_shape}"
            )
        extra = set(_used_keys(obs_spec)) - {"image", "direction"}
        if extra:
            raise ValueError(f"minigrid_cnn encoder cannot use keys {sorted(extra)}")
        self.use_direction = "direction" in obs_spec
        if self.use_direction and obs_spec["direction"][0] not in ((), (1,)):
            raise ValueError(
                f"minigrid_cnn encoder needs a scalar 'direction'; got shape "
                f"{obs_spec['direction'][0]}"
            )
        self.in_keys = ("image", "direction") if self.use_direction else ("image",)

        height, width, channels = image_shape
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(channels, 16, 2)),
            nn.ReLU(),
            nn.MaxPool2d(2),
            layer_init(nn.Conv2d(16, 32, 2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 2)),
            nn.ReLU(),
            nn.Flatten(),
        )
        conv_h, conv_w = (height - 1) // 2 - 2, (width - 1) // 2 - 2
        in_size = 64 * conv_h * conv_w + (MINIGRID_NUM_DIRECTIONS if self.use_direction else 0)
        self.out_size = hidden_size
        self.fc = nn.Sequential(layer_init(nn.Linear(in_size, hidden_size)), nn.ReLU())

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Encodes a flat batch.

        Args:
            obs: ``image`` ``(N, H, W, C)`` integer ids; ``direction`` ``(N,)`` in 0..3.

        Returns:
            ``(N, hidden_size)`` features.
        """
        image = obs["image"].permute(0, 3, 1, 2).float()  # (N, C, H, W)
        features = [self.conv(image)]  # (N, 64 * h * w)
        if self.use_direction:
            direction = obs["direction"].reshape(-1).long()  # (N,)
            features.append(nn.functional.one_hot(direction, MINIGRID_NUM_DIRECTIONS).float())
        return self.fc(torch.cat(features, dim=1))


class NatureCnnEncoder(nn.Module):
    """Nature DQN conv stack on a single CHW uint8 observation, scaled by 1/255.

    Conv 8x8/4 (32) -> Conv 4x4/2 (64) -> Conv 3x3/1 (64), ReLU after each, then
    Linear -> 512 -> ReLU -> Linear -> ``hidden_size`` -> ReLU. Needs exactly one used key,
    of shape (C, H, W) with H, W >= 36.

    Input: dict with that key ``(N, C, H, W)``. Output: ``(N, hidden_size)``.
    """

    MIN_SIZE = 36

    def __init__(self, obs_spec: ObsSpec, hidden_size: int) -> None:
        """Builds the layers for ``obs_spec``.

        Args:
            obs_spec: Observation spec.
            hidden_size: Output width.

        Raises:
            ValueError: The spec has no key / shape this encoder can take.
        """
        super().__init__()
        keys = _used_keys(obs_spec)
        if len(keys) != 1:
            raise ValueError(f"nature_cnn encoder needs exactly one observation key; got {keys}")
        (key,) = keys
        shape = obs_spec[key][0]
        if len(shape) != 3 or min(shape[1:]) < self.MIN_SIZE:
            raise ValueError(
                f"nature_cnn encoder needs {key!r} of shape (C, H, W) with H, W >= "
                f"{self.MIN_SIZE}; got {shape}"
            )
        self.in_keys = (key,)

        channels, height, width = shape
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(channels, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        conv_h = ((height - 8) // 4 + 1 - 4) // 2 + 1 - 2
        conv_w = ((width - 8) // 4 + 1 - 4) // 2 + 1 - 2
        self.out_size = hidden_size
        self.fc = nn.Sequential(
            layer_init(nn.Linear(64 * conv_h * conv_w, 512)),
            nn.ReLU(),
            layer_init(nn.Linear(512, hidden_size)),
            nn.ReLU(),
        )

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Encodes a flat batch.

        Args:
            obs: The image key -> ``(N, C, H, W)`` uint8.

        Returns:
            ``(N, hidden_size)`` features.
        """
        image = obs[self.in_keys[0]].float() / 255.0  # (N, C, H, W)
        return self.fc(self.conv(image))


def _conv_out(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


class NetHackEncoder(nn.Module):
    """NLE-baselines-style torso: glyph embedding, full map + egocentric crop CNNs, blstats, text.

    With the default sizes:

    * glyphs ``(N, 21, 79)`` -> ``nn.Embedding(MAX_GLYPH + 1, 32)`` -> full-map CNN
      (Conv 3x3/2 (16) -> Conv 3x3/2 (32) -> Conv 3x3/2 (32), ELU; 21x79 -> 3x10) and a 9x9
      crop centred on the agent at blstats ``(x, y)`` -> crop CNN (Conv 3x3/1 (16) ->
      Conv 3x3/2 (32), ELU; 9x9 -> 5x5); the crop is padded with ``NO_GLYPH`` off the map.
    * blstats ``(N, 27)`` -> symmetric log ``sign(v) * log1p(|v|)`` (scores and turn counters
      grow without bound, so no fixed scale fits) -> Linear 64 -> ELU -> Linear 64 -> ELU.
    * message ``(N, 256)`` bytes (optional key) -> ``nn.Embedding(256, 32)`` with 0 as padding
      -> Conv1d 4/4 (64, one filter per 4-byte chunk), ELU -> max over positions.

    The parts are concatenated -> Linear -> ``hidden_size`` -> ELU. Other keys (tty_*) are
    ignored. About 5M multiply-adds per sample: cheap enough for CPU actors (~2 ms per forward
    of 8 envs on one thread). The sizes are keyword arguments (``learner.model.encoder_kwargs``
    in a config), so that tests and CPU-only runs can use a much smaller torso: the full-map
    CNN is ~80% of the multiply-adds and ``full_map=False`` drops it.

    Input: dict of ``(N, *shape)`` tensors. Output: ``(N, hidden_size)``.
    """

    def __init__(self, obs_spec: ObsSpec, hidden_size: int, *, embed_dim: int = 32,
                 full_map: bool = True, crop_size: int = 9, blstats_dim: int = 64,
                 message_dim: int = 64) -> None:
        """Builds the layers for ``obs_spec``.

        Args:
            obs_spec: Observation spec with ``glyphs`` (H, W), ``blstats`` (K >= 2,) and
                optionally ``message`` (L,).
            hidden_size: Output width.
            embed_dim: Width E of the glyph (and message byte) embeddings.
            full_map: Encode the whole glyph map with a CNN (else only the crop).
            crop_size: Side of the egocentric glyph crop (odd, >= 3).
            blstats_dim: Width of the blstats MLP.
            message_dim: Width of the message encoder; 0 ignores the message.

        Raises:
            ValueError: The spec has no key / shape this encoder can take, or a size is invalid.
        """
        super().__init__()
        if "glyphs" not in obs_spec or "blstats" not in obs_spec:
            raise ValueError(f"nethack encoder needs 'glyphs' and 'blstats'; got {list(obs_spec)}")
        (height, width), (num_stats,) = obs_spec["glyphs"][0], obs_spec["blstats"][0]
        if num_stats < 2 or min(height, width) < 1:
            raise ValueError(f"nethack encoder needs glyphs (H, W) and blstats (K >= 2,); got "
                             f"{obs_spec['glyphs'][0]} and {obs_spec['blstats'][0]}")
        if embed_dim < 1 or blstats_dim < 1 or message_dim < 0 or crop_size < 3 or \
                crop_size % 2 == 0:
            raise ValueError(f"nethack encoder sizes: embed_dim, blstats_dim >= 1, message_dim "
                             f">= 0, odd crop_size >= 3; got {embed_dim}, {blstats_dim}, "
                             f"{message_dim}, {crop_size}")
        self.crop_size = crop_size
        self.use_message = "message" in obs_spec and message_dim > 0
        self.in_keys = ("glyphs", "blstats", "message") if self.use_message else ("glyphs",
                                                                                  "blstats")
        dim = embed_dim
        self.glyph_embed = nn.Embedding(NETHACK_MAX_GLYPH + 1, dim)
        self.map_cnn: nn.Module | None = None
        map_size = 0
        if full_map:
            self.map_cnn = nn.Sequential(
                nn.Conv2d(dim, 16, 3, stride=2, padding=1), nn.ELU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ELU(),
                nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ELU(), nn.Flatten(),
            )
            map_size = 32 * _conv_out(_conv_out(_conv_out(height))) * _conv_out(
                _conv_out(_conv_out(width)))
        self.crop_cnn = nn.Sequential(
            nn.Conv2d(dim, 16, 3, padding=1), nn.ELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ELU(), nn.Flatten(),
        )
        self.blstats_mlp = nn.Sequential(
            nn.Linear(num_stats, blstats_dim), nn.ELU(),
            nn.Linear(blstats_dim, blstats_dim), nn.ELU(),
        )
        crop_out = 32 * _conv_out(crop_size) ** 2
        in_size = map_size + crop_out + blstats_dim
        if self.use_message:
            self.message_embed = nn.Embedding(256, dim, padding_idx=0)
            self.message_cnn = nn.Sequential(nn.Conv1d(dim, message_dim, 4, stride=4), nn.ELU())
            in_size += message_dim
        self.out_size = hidden_size
        self.fc = nn.Sequential(layer_init(nn.Linear(in_size, hidden_size)), nn.ELU())

    def crop(self, glyphs: Tensor, blstats: Tensor) -> Tensor:
        """The ``crop_size x crop_size`` glyph ids centred on the agent.

        Args:
            glyphs: ``(N, H, W)`` glyph ids (long).
            blstats: ``(N, K)``; columns 0 and 1 are the agent's x (column) and y (row).

        Returns:
            ``(N, C, C)`` glyph ids (C = ``crop_size``), ``NO_GLYPH`` outside the map.
        """
        size = self.crop_size
        half = size // 2
        padded = nn.functional.pad(glyphs, (half, half, half, half), value=NETHACK_MAX_GLYPH)
        x = blstats[:, 0].long().clamp(0, glyphs.shape[2] - 1)  # (N,)
        y = blstats[:, 1].long().clamp(0, glyphs.shape[1] - 1)  # (N,)
        offsets = torch.arange(size, device=glyphs.device)  # (C,)
        rows = (y[:, None] + offsets)[:, :, None]  # (N, C, 1), padded coordinates
        cols = (x[:, None] + offsets)[:, None, :]  # (N, 1, C)
        batch = torch.arange(len(glyphs), device=glyphs.device)[:, None, None]  # (N, 1, 1)
        return padded[batch, rows, cols]  # (N, C, C)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Encodes a flat batch.

        Args:
            obs: ``glyphs`` ``(N, H, W)`` ints, ``blstats`` ``(N, K)`` ints, ``message``
                ``(N, L)`` uint8 (if in the spec).

        Returns:
            ``(N, hidden_size)`` features.
        """
        glyphs = obs["glyphs"].long()  # (N, H, W)
        blstats = obs["blstats"]  # (N, K)
        crop = self.glyph_embed(self.crop(glyphs, blstats)).permute(0, 3, 1, 2)  # (N, E, C, C)
        stats = blstats.float()
        stats = torch.sign(stats) * torch.log1p(stats.abs())  # (N, K)
        parts = [self.crop_cnn(crop), self.blstats_mlp(stats)]
        if self.map_cnn is not None:
            full = self.glyph_embed(glyphs).permute(0, 3, 1, 2)  # (N, E, H, W)
            parts.insert(0, self.map_cnn(full))
        if self.use_message:
            text = self.message_embed(obs["message"].long()).transpose(1, 2)  # (N, E, L)
            parts.append(self.message_cnn(text).amax(dim=2))  # (N, message_dim)
        return self.fc(torch.cat(parts, dim=1))


_ENCODERS: dict[str, type[nn.Module]] = {
    "mlp": MlpEncoder,
    "minigrid_cnn": MiniGridEncoder,
    "nature_cnn": NatureCnnEncoder,
    "nethack": NetHackEncoder,
}


def select_encoder_kind(obs_spec: ObsSpec) -> str:
    """Picks an encoder kind for ``kind="auto"``.

    ``glyphs`` and ``blstats`` keys (NLE) give ``"nethack"``; an ``image`` key of HWC shape with
    H, W <= 32 gives ``"minigrid_cnn"``; a 3-d uint8 key (CHW) with H, W >= 64 gives
    ``"nature_cnn"``; anything else gives ``"mlp"``.

    Args:
        obs_spec: Observation spec.

    Returns:
        One of ``"mlp"``, ``"minigrid_cnn"``, ``"nature_cnn"``, ``"nethack"``.
    """
    if "glyphs" in obs_spec and "blstats" in obs_spec:
        return "nethack"
    if "image" in obs_spec:
        shape = obs_spec["image"][0]
        if len(shape) == 3 and max(shape[:2]) <= 32 and shape[2] < min(shape[:2]):
            return "minigrid_cnn"
    for key in _used_keys(obs_spec):
        shape, dtype = obs_spec[key]
        if len(shape) == 3 and np.dtype(dtype) == np.uint8 and min(shape[1:]) >= 64:
            return "nature_cnn"
    return "mlp"


def build_encoder(obs_spec: ObsSpec, kind: str, hidden_size: int,
                  kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Builds the encoder for ``kind`` (resolving ``"auto"``).

    Args:
        obs_spec: Observation spec.
        kind: One of ``ENCODER_KINDS``.
        hidden_size: Encoder output width.
        kwargs: Extra keyword arguments of the encoder class (its size knobs).

    Returns:
        An encoder with ``in_keys`` and ``out_size`` attributes.

    Raises:
        ValueError: Unknown kind, a keyword the encoder does not take, or a spec the encoder
            cannot take.
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; valid kinds are {list(ENCODER_KINDS)}")
    if kind == "auto":
        kind = select_encoder_kind(obs_spec)
    cls = _ENCODERS[kind]
    kwargs = dict(kwargs or {})
    accepted = [name for name, param in inspect.signature(cls.__init__).parameters.items()
                if param.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"encoder {kind!r} takes no {unknown}; its encoder_kwargs are "
                         f"{accepted or 'none'}")
    return cls(obs_spec, hidden_size, **kwargs)


def mlp_layers(in_size: int, hidden_size: int, out_size: int, *, hidden_layers: int = 1,
               gain: float = 1.0) -> list[nn.Module]:
    """``hidden_layers`` x (``Linear`` + ``ReLU``), then a ``Linear`` with orthogonal ``gain``.

    The small heads of the exploration bonuses. A list, not a module, so that the caller's
    ``nn.Sequential`` keeps flat parameter names (``0.weight``, ``2.weight``), as checkpoints
    hold them.

    Args:
        in_size: Input width.
        hidden_size: Width of the hidden layers.
        out_size: Output width.
        hidden_layers: Number of hidden layers (0: one linear layer).
        gain: Orthogonal gain of the output layer (hidden layers: ``sqrt(2)``, for ReLU).
    """
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [layer_init(nn.Linear(in_size, hidden_size)), nn.ReLU()]
        in_size = hidden_size
    return [*layers, layer_init(nn.Linear(in_size, out_size), gain=gain)]


def build_embedding_net(obs_spec: ObsSpec, kind: str, hidden_size: int, embed_dim: int, *,
                        hidden_layers: int = 0, layer_norm: bool = False,
                        gain: float = 1.0) -> nn.Sequential:
    """obs -> ``(N, embed_dim)``: an encoder, optional ReLU layers, then a linear projection.

    Exploration bonuses embed observations with networks of their own (RND's target and
    predictor, ICM / E3B / NGU features, BYOL encoders); one builder keeps their layout, and so
    their parameter names in checkpoints, alike.

    Args:
        obs_spec: Observation spec.
        kind: Encoder kind (``ENCODER_KINDS``, ``"auto"`` resolved by spec).
        hidden_size: Encoder output width, and width of the hidden layers.
        embed_dim: Output width.
        hidden_layers: ``Linear + ReLU`` layers between encoder and projection (RND's
            predictor: 1, so that it can fit the fixed target).
        layer_norm: End with a LayerNorm without affine parameters (features of fixed scale).
        gain: Orthogonal gain of the projection.

    Returns:
        An ``nn.Sequential`` with ``in_keys`` (the keys its encoder reads).
    """
    body = build_encoder(obs_spec, kind, hidden_size)
    layers = [body, *mlp_layers(body.out_size, hidden_size, embed_dim,
                                hidden_layers=hidden_layers, gain=gain)]
    if layer_norm:
        layers.append(nn.LayerNorm(embed_dim, elementwise_affine=False))
    net = nn.Sequential(*layers)
    net.in_keys = tuple(body.in_keys)
    return net


class ActorCritic(nn.Module):
    """Encoder -> optional GRU or retrieval core -> policy logits and value.

    Attributes:
        encoder: The observation encoder.
        critic_encoder: The value head's own encoder (``separate_critic``), else ``None``.
        core: ``nn.GRUCell``, ``RetrievalCore`` (``cfg.retrieval.k > 0``) or ``None``.
        core_size: Core state width (0 without a core; the window for retrieval).
    """

    def __init__(self, obs_spec: ObsSpec, num_actions: int, cfg: ModelConfig,
                 num_value_heads: int = 1) -> None:
        """Builds the network.

        Args:
            obs_spec: Observation spec.
            num_actions: Number of discrete actions A.
            cfg: Has ``kind``, ``hidden_size``, ``core`` and ``core_size`` (and optionally
                ``encoder_kwargs``).
            num_value_heads: V >= 1; head 0 is the main (extrinsic or combined) value, the
                others are separate intrinsic-reward streams.

        Raises:
            ValueError: Unknown encoder or core kind, or a spec the encoder cannot take.
        """
        super().__init__()
        if cfg.core not in CORE_KINDS:
            raise ValueError(f"unknown core {cfg.core!r}; valid cores are {list(CORE_KINDS)}")
        self.encoder = build_encoder(obs_spec, cfg.kind, cfg.hidden_size,
                                     getattr(cfg, "encoder_kwargs", None))
        features = self.encoder.out_size
        self.core: nn.GRUCell | RetrievalCore | None = None
        self.core_size = 0
        retrieval = getattr(cfg, "retrieval", None)
        if retrieval is not None and retrieval.k > 0:
            if cfg.core != "none":
                raise ValueError(f"retrieval is a core of its own: needs core 'none', not "
                                 f"{cfg.core!r}")
            source = getattr(retrieval, "source", "episode")
            self.core = RetrievalCore(
                features, k=retrieval.k, chunk_len=retrieval.chunk_len,
                window_chunks=retrieval.window_chunks, key_dim=retrieval.key_dim,
                cross_episode=source == "run",
                memory_chunks=getattr(retrieval, "memory_chunks", 0) if source == "run" else 0)
            self.core_size = self.core.state_size  # the state is the window, not the width
            features = self.core.out_size
        elif cfg.core == "gru":
            self.core = nn.GRUCell(features, cfg.core_size)
            for name, param in self.core.named_parameters():
                if name.startswith("weight"):
                    nn.init.orthogonal_(param, 1.0)
                else:
                    nn.init.zeros_(param)
            self.core_size = features = cfg.core_size
        self.policy = layer_init(nn.Linear(features, num_actions), gain=0.01)
        self.num_value_heads = num_value_heads
        # CleanRL's PPO gives the critic its own torso: the value loss then cannot pull the
        # policy's features around (fewer env steps to solve small tasks with an MLP)
        self.critic_encoder: nn.Module | None = None
        if getattr(cfg, "separate_critic", False):
            if self.core is not None:
                raise ValueError("separate_critic needs a feed-forward model (core 'none')")
            self.critic_encoder = build_encoder(obs_spec, cfg.kind, cfg.hidden_size,
                                                getattr(cfg, "encoder_kwargs", None))
        self.value = layer_init(nn.Linear(features, num_value_heads), gain=1.0)
        # Running statistics of value targets per head: the head predicts normalised values and
        # forward() returns them on the return scale. Buffers, so actors get them with weights.
        self.register_buffer("value_mean", torch.zeros(num_value_heads))
        self.register_buffer("value_std", torch.ones(num_value_heads))

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero core state.

        Args:
            batch_size: B.

        Returns:
            ``(B, core_size)`` zeros on the model's device.
        """
        return torch.zeros(batch_size, self.core_size, device=self.policy.weight.device)

    @torch.no_grad()
    def remember(self, obs: dict[str, Tensor], episode_start: Tensor, valid: Tensor,
                 count: int) -> int:
        """Writes up to ``count`` chunks of a training batch into the retrieval core's run
        memory (``RetrievalCore.remember``), encoded with the current weights.

        Args:
            obs: Key -> ``(T or T+1, B, *shape)``; the first T steps are used.
            episode_start: ``(T or T+1, B)`` bool.
            valid: ``(T, B)``, nonzero for steps that belong to an episode.
            count: Chunks to write at most.

        Returns:
            Chunks written (0 without a run memory).
        """
        if not isinstance(self.core, RetrievalCore) or not self.core.memory_chunks:
            return 0
        steps, batch = valid.shape
        flat = flatten_obs({k: v[:steps] for k, v in obs.items()}, self.encoder.in_keys)
        x = unflatten_time_batch(self.encoder(flat), steps, batch)  # (T, B, F)
        return self.core.remember(x, episode_start[:steps], valid, count)

    def forward(
        self, obs: dict[str, Tensor], core_state: Tensor, episode_start: Tensor,
        in_place: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Runs T steps for B envs; returns the main value head only (see ``forward_all``)."""
        logits, values, core_state = self.forward_all(obs, core_state, episode_start, in_place)
        return logits, values[..., 0], core_state

    def forward_all(
        self, obs: dict[str, Tensor], core_state: Tensor, episode_start: Tensor,
        in_place: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Runs T steps for B envs, with every value head.

        Args:
            obs: Key -> ``(T, B, *shape)``; keys the encoder does not use are ignored.
            core_state: ``(B, H)`` state before step 0.
            episode_start: ``(T, B)`` bool; the core state is zeroed before step t where True.
            in_place: The core may write the next state into ``core_state``'s memory and
                return it (the retrieval core's actor step: no copy of the window per step);
                for callers that drop the old state, as an actor's step loop does.

        Returns:
            logits ``(T, B, A)``, values ``(T, B, V)``, next core state ``(B, H)``.
        """
        steps, batch = episode_start.shape
        flat = flatten_obs(obs, self.encoder.in_keys)
        x = self.encoder(flat)  # (T*B, F)
        value_x = x if self.critic_encoder is None else self.critic_encoder(flat)  # (T*B, F)
        if isinstance(self.core, RetrievalCore):
            if (in_place and steps == 1 and value_x is x
                    and self.core.runs_compiled(x, core_state)):
                # an actor's step: straight to the compiled step (no module call, no views)
                x = value_x = self.core.actor_step(x.numpy(), core_state,
                                                   episode_start.numpy()[0])  # (B, H)
            else:
                out, core_state = self.core(unflatten_time_batch(x, steps, batch), core_state,
                                            episode_start, in_place)  # (T, B, H)
                x = value_x = flatten_time_batch(out)  # (T*B, H)
        elif self.core is not None:
            x = unflatten_time_batch(x, steps, batch)  # (T, B, F)
            keep = (~episode_start.bool()).unsqueeze(-1).to(x.dtype)  # (T, B, 1)
            state = core_state
            outputs = []
            for t in range(steps):
                state = self.core(x[t], state * keep[t])  # (B, H)
                outputs.append(state)
            core_state = state
            x = value_x = flatten_time_batch(torch.stack(outputs))  # (T*B, H)
        logits = unflatten_time_batch(self.policy(x), steps, batch)  # (T, B, A)
        values = unflatten_time_batch(self.value(value_x), steps, batch)  # (T, B, V) normalised
        values = values * self.value_std + self.value_mean
        return logits, values, core_state


def make_actor_critic(cfg: Any, env_spec: Any) -> ActorCritic:
    """The model of a run: actors and learner build it the same way from the root config."""
    heads = 1 + sum(1 for bonus in cfg.intrinsic if bonus.separate_value_head)
    return ActorCritic(env_spec.obs_spec, env_spec.num_actions, cfg.learner.model, heads)


def obs_to_torch(obs: dict[str, np.ndarray], device: torch.device | str) -> dict[str, Tensor]:
    """Wraps numpy observations as tensors on ``device``.

    Uses ``torch.from_numpy`` so CPU tensors share memory with the arrays; arrays torch cannot
    share (read-only, negative strides) are copied first.

    Args:
        obs: Key -> array of any shape.
        device: Target device.

    Returns:
        Key -> tensor with the same shape and dtype.
    """
    tensors = {}
    for key, value in obs.items():
        array = np.asarray(value)
        if not array.flags.writeable or any(s < 0 for s in array.strides):
            array = array.copy()
        tensors[key] = torch.from_numpy(array).to(device)
    return tensors
