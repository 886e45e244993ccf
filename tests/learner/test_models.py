"""Tests for explorer.core.networks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from explorer.core.networks import (
    ActorCritic,
    MiniGridEncoder,
    MlpEncoder,
    NatureCnnEncoder,
    ObsSpec,
    build_embedding_net,
    mlp_layers,
    obs_to_torch,
    select_encoder_kind,
)

T, B, A = 5, 3, 6

MINIGRID: ObsSpec = {
    "image": ((7, 7, 3), "uint8"),
    "direction": ((), "int32"),
    "mission": ((96,), "uint8"),
}
ATARI: ObsSpec = {"obs": ((4, 84, 84), "uint8")}
CARTPOLE: ObsSpec = {"obs": ((4,), "float32")}
SPECS = {"minigrid": MINIGRID, "atari": ATARI, "cartpole": CARTPOLE}


@dataclass
class Cfg:
    """Stand-in for the run config's model section."""

    kind: str = "auto"
    hidden_size: int = 32
    core: str = "none"
    core_size: int = 16
    separate_critic: bool = False


def make_obs(spec: ObsSpec, steps: int, batch: int, seed: int = 0) -> dict[str, Tensor]:
    """Random observations shaped (steps, batch, *shape) matching ``spec``."""
    rng = np.random.default_rng(seed)
    obs = {}
    for key, (shape, dtype) in spec.items():
        size = (steps, batch, *shape)
        if key == "direction":
            array = rng.integers(0, 4, size)
        elif key == "image":
            array = rng.integers(0, 11, size)
        elif np.dtype(dtype) == np.uint8:
            array = rng.integers(0, 256, size)
        else:
            array = rng.standard_normal(size)
        obs[key] = torch.from_numpy(array.astype(dtype))
    return obs


def slice_obs(obs: dict[str, Tensor], start: int, stop: int) -> dict[str, Tensor]:
    """Time slice [start, stop) of every key."""
    return {k: v[start:stop] for k, v in obs.items()}


# (spec name, encoder kind) pairs that must build and run.
VALID_PAIRS = [
    ("minigrid", "mlp"),
    ("minigrid", "minigrid_cnn"),
    ("minigrid", "auto"),
    ("atari", "mlp"),
    ("atari", "nature_cnn"),
    ("atari", "auto"),
    ("cartpole", "mlp"),
    ("cartpole", "auto"),
]


@pytest.mark.parametrize("core", ["none", "gru"])
@pytest.mark.parametrize(("spec_name", "kind"), VALID_PAIRS)
def test_output_shapes(spec_name: str, kind: str, core: str) -> None:
    spec = SPECS[spec_name]
    model = ActorCritic(spec, A, Cfg(kind=kind, core=core))
    state = model.initial_state(B)
    episode_start = torch.zeros(T, B, dtype=torch.bool)
    logits, values, next_state = model(make_obs(spec, T, B), state, episode_start)
    expected_core = 16 if core == "gru" else 0
    assert model.core_size == expected_core
    assert state.shape == (B, expected_core)
    assert logits.shape == (T, B, A)
    assert values.shape == (T, B)
    assert next_state.shape == (B, expected_core)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()


def test_no_core_passes_state_through() -> None:
    model = ActorCritic(CARTPOLE, A, Cfg(core="none"))
    state = model.initial_state(B)
    _, _, next_state = model(make_obs(CARTPOLE, T, B), state, torch.zeros(T, B, dtype=torch.bool))
    assert next_state is state


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(MINIGRID, MiniGridEncoder), (ATARI, NatureCnnEncoder), (CARTPOLE, MlpEncoder)],
)
def test_auto_selection(spec: ObsSpec, expected: type) -> None:
    assert type(ActorCritic(spec, A, Cfg(kind="auto")).encoder) is expected


def test_auto_selection_edge_cases() -> None:
    # Large HWC "image" is not MiniGrid; a small uint8 CHW stack is not Atari-sized.
    assert select_encoder_kind({"image": ((64, 64, 3), "uint8")}) == "mlp"
    assert select_encoder_kind({"obs": ((4, 32, 32), "uint8")}) == "mlp"
    assert select_encoder_kind({"obs": ((4, 84, 84), "float32")}) == "mlp"
    assert select_encoder_kind({"pixels": ((1, 64, 64), "uint8")}) == "nature_cnn"


def test_explicit_kind_is_used() -> None:
    assert type(ActorCritic(MINIGRID, A, Cfg(kind="mlp")).encoder) is MlpEncoder


def test_mlp_ignores_mission() -> None:
    model = ActorCritic(MINIGRID, A, Cfg(kind="mlp"))
    assert model.encoder.in_keys == ("direction", "image")
    obs = make_obs(MINIGRID, T, B)
    episode_start = torch.zeros(T, B, dtype=torch.bool)
    logits, _, _ = model(obs, model.initial_state(B), episode_start)
    obs["mission"] = torch.randint(0, 256, (T, B, 96), dtype=torch.uint8)
    logits2, _, _ = model(obs, model.initial_state(B), episode_start)
    torch.testing.assert_close(logits, logits2)


def test_mlp_reads_direction_one_hot() -> None:
    """Direction 3 is not "three times direction 1": each direction has its own weights."""
    encoder = MlpEncoder(MINIGRID, hidden_size=8)
    first = encoder.net[0]
    assert first.in_features == 7 * 7 * 3 + 4
    image = torch.zeros(4, 7, 7, 3, dtype=torch.uint8)
    direction = torch.arange(4, dtype=torch.int32)
    parts = encoder._flat("direction", direction)
    torch.testing.assert_close(parts, torch.eye(4))
    out = encoder({"image": image, "direction": direction})
    assert out.shape == (4, 8)
    # with a zero image, each direction's features come from its own column of the first layer
    expected = torch.tanh(encoder.net[2](torch.tanh(first.weight[:, :4].T + first.bias)))
    torch.testing.assert_close(out, expected)


def test_separate_critic_has_its_own_torso() -> None:
    """The value loss must not move the policy's features, and the policy loss not the
    critic's: each torso gets gradients from its own head only."""
    torch.manual_seed(0)
    model = ActorCritic(MINIGRID, A, Cfg(kind="mlp", separate_critic=True))
    assert model.critic_encoder is not None and model.critic_encoder is not model.encoder
    obs, start = make_obs(MINIGRID, T, B), torch.zeros(T, B, dtype=torch.bool)
    _, values, _ = model(obs, model.initial_state(B), start)
    values.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.critic_encoder.parameters())
    model.zero_grad(set_to_none=True)
    logits, _, _ = model(obs, model.initial_state(B), start)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is None for p in model.critic_encoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_shared_torso_is_the_default() -> None:
    model = ActorCritic(MINIGRID, A, Cfg(kind="mlp"))
    assert model.critic_encoder is None


def test_separate_critic_refuses_a_core() -> None:
    with pytest.raises(ValueError, match="separate_critic needs a feed-forward model"):
        ActorCritic(MINIGRID, A, Cfg(kind="mlp", core="gru", separate_critic=True))


def test_gru_reset_matches_fresh_run() -> None:
    torch.manual_seed(0)
    steps, batch, reset_t = 6, 2, 2
    model = ActorCritic(MINIGRID, A, Cfg(kind="minigrid_cnn", core="gru"))
    obs = make_obs(MINIGRID, steps, batch, seed=1)
    state0 = torch.randn(batch, model.core_size)
    episode_start = torch.zeros(steps, batch, dtype=torch.bool)
    episode_start[reset_t, 0] = True

    with torch.no_grad():
        logits, values, _ = model(obs, state0, episode_start)
        fresh_logits, fresh_values, _ = model(
            slice_obs(obs, reset_t, steps),
            model.initial_state(batch),
            torch.zeros(steps - reset_t, batch, dtype=torch.bool),
        )

    # Env 0 was reset at t=2: identical to a fresh run from a zero state.
    torch.testing.assert_close(logits[reset_t:, 0], fresh_logits[:, 0])
    torch.testing.assert_close(values[reset_t:, 0], fresh_values[:, 0])
    # Env 1 kept its history, so it must differ from the fresh run.
    assert not torch.allclose(values[reset_t:, 1], fresh_values[:, 1], atol=1e-4)
    assert not torch.allclose(logits[reset_t:, 1], fresh_logits[:, 1], atol=1e-6)


@pytest.mark.parametrize("spec_name", ["minigrid", "cartpole"])
def test_chunked_equals_single_call(spec_name: str) -> None:
    torch.manual_seed(0)
    spec = SPECS[spec_name]
    model = ActorCritic(spec, A, Cfg(core="gru"))
    obs = make_obs(spec, T, B, seed=2)
    episode_start = torch.zeros(T, B, dtype=torch.bool)
    episode_start[1, 2] = episode_start[3, 0] = True
    state0 = torch.randn(B, model.core_size)

    with torch.no_grad():
        logits, values, final_state = model(obs, state0, episode_start)
        state = state0
        step_logits, step_values = [], []
        for t in range(T):
            lg, v, state = model(slice_obs(obs, t, t + 1), state, episode_start[t : t + 1])
            step_logits.append(lg)
            step_values.append(v)

    torch.testing.assert_close(logits, torch.cat(step_logits))
    torch.testing.assert_close(values, torch.cat(step_values))
    torch.testing.assert_close(final_state, state)


@pytest.mark.parametrize("core", ["none", "gru"])
@pytest.mark.parametrize(("spec_name", "kind"), [p for p in VALID_PAIRS if p[1] != "auto"])
def test_gradients_reach_all_parameters(spec_name: str, kind: str, core: str) -> None:
    torch.manual_seed(0)
    spec = SPECS[spec_name]
    model = ActorCritic(spec, A, Cfg(kind=kind, core=core))
    state = model.initial_state(B)
    logits, values, _ = model(make_obs(spec, T, B), state, torch.zeros(T, B, dtype=torch.bool))
    (logits.logsumexp(-1).sum() + values.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_orthogonal_head_init() -> None:
    model = ActorCritic(CARTPOLE, A, Cfg(hidden_size=64))
    policy_w = model.policy.weight  # (A, F), rows orthogonal with norm 0.01
    torch.testing.assert_close(policy_w @ policy_w.T, 0.01**2 * torch.eye(A))
    value_w = model.value.weight  # (1, F)
    torch.testing.assert_close(value_w.norm(), torch.tensor(1.0))
    assert (model.policy.bias == 0).all() and (model.value.bias == 0).all()


def test_bad_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown encoder kind 'resnet'") as info:
        ActorCritic(CARTPOLE, A, Cfg(kind="resnet"))
    for kind in ("auto", "mlp", "minigrid_cnn", "nature_cnn"):
        assert kind in str(info.value)


def test_bad_core_raises() -> None:
    with pytest.raises(ValueError, match=r"unknown core 'lstm'.*gru"):
        ActorCritic(CARTPOLE, A, Cfg(core="lstm"))


@pytest.mark.parametrize(
    ("spec", "kind", "pattern"),
    [
        (CARTPOLE, "minigrid_cnn", r"needs an 'image' key; got keys \['obs'\]"),
        ({"image": ((4, 4, 3), "uint8")}, "minigrid_cnn", r"'image' of shape .* got \(4, 4, 3\)"),
        ({"image": ((7, 7), "uint8")}, "minigrid_cnn", r"'image' of shape .* got \(7, 7\)"),
        (
            {"image": ((7, 7, 3), "uint8"), "direction": ((2,), "int32")},
            "minigrid_cnn",
            r"scalar 'direction'; got shape \(2,\)",
        ),
        ({**MINIGRID, "carrying": ((3,), "int32")}, "minigrid_cnn", r"keys \['carrying'\]"),
        (CARTPOLE, "nature_cnn", r"'obs' of shape \(C, H, W\).* got \(4,\)"),
        (MINIGRID, "nature_cnn", r"exactly one observation key; got \['direction', 'image'\]"),
        ({"obs": ((4, 20, 20), "uint8")}, "nature_cnn", r"H, W >= 36; got \(4, 20, 20\)"),
        ({"mission": ((96,), "uint8")}, "mlp", r"at least one observation key"),
    ],
)
def test_bad_spec_raises(spec: ObsSpec, kind: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ActorCritic(spec, A, Cfg(kind=kind))


def test_obs_to_torch_shares_memory() -> None:
    obs = {
        "image": np.zeros((B, 7, 7, 3), dtype=np.uint8),
        "direction": np.arange(B, dtype=np.int32),
    }
    tensors = obs_to_torch(obs, "cpu")
    assert tensors["image"].dtype == torch.uint8 and tensors["image"].shape == (B, 7, 7, 3)
    assert tensors["direction"].dtype == torch.int32
    obs["direction"][0] = 3
    assert tensors["direction"][0].item() == 3  # no copy


def test_obs_to_torch_copies_read_only() -> None:
    array = np.arange(6, dtype=np.float32)
    array.flags.writeable = False
    tensor = obs_to_torch({"obs": array, "rev": np.arange(4)[::-1]}, torch.device("cpu"))
    torch.testing.assert_close(tensor["obs"], torch.arange(6, dtype=torch.float32))
    assert tensor["rev"].tolist() == [3, 2, 1, 0]


def test_mlp_layers_are_flat_and_orthogonal() -> None:
    layers = mlp_layers(6, 8, 3, hidden_layers=2, gain=0.5)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    head = nn.Sequential(*layers)
    assert [n for n, _ in head.named_parameters()] == [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    out = head[4].weight  # (3, 8): orthogonal rows of norm gain
    torch.testing.assert_close(out @ out.T, 0.25 * torch.eye(3), atol=1e-5, rtol=0)
    assert len(mlp_layers(6, 8, 3, hidden_layers=0)) == 1


@pytest.mark.parametrize("hidden_layers", [0, 1])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_embedding_net_layout(hidden_layers: int, layer_norm: bool) -> None:
    net = build_embedding_net(MINIGRID, "auto", 32, 16, hidden_layers=hidden_layers,
                              layer_norm=layer_norm)
    assert isinstance(net[0], MiniGridEncoder) and net.in_keys == net[0].in_keys
    assert len(net) == 2 + 2 * hidden_layers + int(layer_norm)
    obs = {k: torch.zeros(T * B, *shape, dtype=torch.int64) for k, (shape, _) in MINIGRID.items()}
    out = net(obs)
    assert out.shape == (T * B, 16)
    if layer_norm:  # unit-scale features: ||phi||^2 = E
        torch.testing.assert_close(out.square().sum(-1), torch.full((T * B,), 16.0),
                                   atol=0, rtol=1e-2)  # LayerNorm eps
