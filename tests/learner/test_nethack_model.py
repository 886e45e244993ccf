"""NetHackEncoder: shapes, auto-selection, egocentric crop, and GRU resets on episode starts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from explorer.core.networks import (
    NETHACK_MAX_GLYPH,
    ActorCritic,
    NetHackEncoder,
    ObsSpec,
    select_encoder_kind,
)

T, B, A = 4, 3, 28
NETHACK: ObsSpec = {
    "glyphs": ((21, 79), "int16"),
    "blstats": ((27,), "int64"),
    "message": ((256,), "uint8"),
    "tty_chars": ((24, 80), "uint8"),
    "tty_colors": ((24, 80), "int8"),
}


@dataclass
class Cfg:
    """Stand-in for the run config's model section."""

    kind: str = "nethack"
    hidden_size: int = 32
    core: str = "none"
    core_size: int = 16


def make_obs(steps: int, batch: int, seed: int = 0, spec: ObsSpec = NETHACK) -> dict[str, Tensor]:
    """Random NetHack-like observations ``(steps, batch, *shape)``."""
    rng = np.random.default_rng(seed)
    size = (steps, batch)
    obs = {
        "glyphs": rng.integers(0, NETHACK_MAX_GLYPH + 1, (*size, 21, 79)).astype(np.int16),
        "blstats": rng.integers(0, 30, (*size, 27)),
        "message": rng.integers(0, 128, (*size, 256)).astype(np.uint8),
        "tty_chars": rng.integers(0, 256, (*size, 24, 80)).astype(np.uint8),
        "tty_colors": rng.integers(0, 16, (*size, 24, 80)).astype(np.int8),
    }
    obs["blstats"][..., 0] = rng.integers(0, 79, size)  # x
    obs["blstats"][..., 1] = rng.integers(0, 21, size)  # y
    obs["message"][..., 40:] = 0  # NUL padding after the text
    return {k: torch.from_numpy(v) for k, v in obs.items() if k in spec}


def test_max_glyph_matches_nle() -> None:
    from nle import nethack
    assert nethack.MAX_GLYPH == NETHACK_MAX_GLYPH


def test_auto_selects_nethack_encoder() -> None:
    assert select_encoder_kind(NETHACK) == "nethack"
    model = ActorCritic(NETHACK, A, Cfg(kind="auto"))
    assert type(model.encoder) is NetHackEncoder
    assert model.encoder.in_keys == ("glyphs", "blstats", "message")  # tty_* are not used


@pytest.mark.parametrize("core", ["none", "gru"])
@pytest.mark.parametrize("with_message", [True, False])
def test_output_shapes(core: str, with_message: bool) -> None:
    spec = NETHACK if with_message else {k: NETHACK[k] for k in ("glyphs", "blstats")}
    model = ActorCritic(spec, A, Cfg(core=core))
    logits, values, state = model(make_obs(T, B, spec=spec), model.initial_state(B),
                                  torch.zeros(T, B, dtype=torch.bool))
    assert logits.shape == (T, B, A) and values.shape == (T, B)
    assert state.shape == (B, 16 if core == "gru" else 0)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()


def test_crop_is_centred_on_the_agent_and_padded() -> None:
    encoder = NetHackEncoder(NETHACK, 8)
    glyphs = torch.arange(21 * 79).view(1, 21, 79).repeat(2, 1, 1)
    blstats = torch.zeros(2, 27, dtype=torch.long)
    blstats[0, :2] = torch.tensor([40, 10])  # x, y in the middle
    blstats[1, :2] = torch.tensor([0, 0])  # top-left corner
    crop = encoder.crop(glyphs, blstats)  # (2, 9, 9)
    assert crop.shape == (2, 9, 9)
    torch.testing.assert_close(crop[0], glyphs[0, 6:15, 36:45])
    assert crop[1, 4, 4] == glyphs[1, 0, 0]
    assert (crop[1, :4] == NETHACK_MAX_GLYPH).all() and (crop[1, :, :4] == NETHACK_MAX_GLYPH).all()
    torch.testing.assert_close(crop[1, 4:, 4:], glyphs[1, :5, :5])


def test_gradients_reach_all_parameters() -> None:
    torch.manual_seed(0)
    model = ActorCritic(NETHACK, A, Cfg(core="gru"))
    logits, values, _ = model(make_obs(T, B), model.initial_state(B),
                              torch.zeros(T, B, dtype=torch.bool))
    (logits.logsumexp(-1).sum() + values.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_gru_state_resets_on_episode_start() -> None:
    torch.manual_seed(0)
    steps, batch, reset_t = 5, 2, 2
    model = ActorCritic(NETHACK, A, Cfg(core="gru"))
    obs = make_obs(steps, batch, seed=1)
    state0 = torch.randn(batch, model.core_size)  # a state carried over from a past rollout
    episode_start = torch.zeros(steps, batch, dtype=torch.bool)
    episode_start[reset_t, 0] = True

    with torch.no_grad():
        logits, values, final = model(obs, state0, episode_start)
        fresh_logits, fresh_values, fresh_final = model(
            {k: v[reset_t:] for k, v in obs.items()}, model.initial_state(batch),
            torch.zeros(steps - reset_t, batch, dtype=torch.bool))
        # Carrying the state across two rollouts equals one long rollout.
        _, _, mid = model({k: v[:reset_t] for k, v in obs.items()}, state0,
                          episode_start[:reset_t])
        split_logits, _, split_final = model({k: v[reset_t:] for k, v in obs.items()}, mid,
                                             episode_start[reset_t:])

    # Env 0 restarted at reset_t: identical to a fresh run from the zero state.
    torch.testing.assert_close(logits[reset_t:, 0], fresh_logits[:, 0])
    torch.testing.assert_close(values[reset_t:, 0], fresh_values[:, 0])
    torch.testing.assert_close(final[0], fresh_final[0])
    # Env 1 kept its history.
    assert not torch.allclose(logits[reset_t:, 1], fresh_logits[:, 1], atol=1e-6)
    torch.testing.assert_close(split_logits, logits[reset_t:])
    torch.testing.assert_close(split_final, final)


def test_bad_spec_raises() -> None:
    with pytest.raises(ValueError, match="needs 'glyphs' and 'blstats'"):
        NetHackEncoder({"glyphs": ((21, 79), "int16")}, 8)
