"""Pictures of an env as a person watches it, for evaluation videos (``explorer eval --video``).

EnvPool (MiniGrid, Atari, ...) and gymnasium envs draw themselves when built with
``render_mode="rgb_array"`` (``make_vec_env(..., render=True)``): Atari gives the full 210x160
colour screen, not the agent's 84x84 grey stack. NetHack is drawn from its terminal, the
``tty_chars`` / ``tty_colors`` observations, in a fixed 6x11 bitmap font with the curses
16-colour palette, as NLE's own tty rendering shows it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["render_frame", "tty_to_rgb"]

#: NetHack's colours 0-15 (CLR_BLACK .. CLR_WHITE) as a terminal shows them; black text is
#: drawn dark grey so it stays visible on the black background, as terminals do for NLE.
_TTY_PALETTE = np.array([
    (85, 85, 85), (170, 0, 0), (0, 170, 0), (170, 85, 0), (0, 0, 170), (170, 0, 170),
    (0, 170, 170), (170, 170, 170), (85, 85, 85), (255, 85, 85), (85, 255, 85),
    (255, 255, 85), (85, 85, 255), (255, 85, 255), (85, 255, 255), (255, 255, 255),
], dtype=np.uint8)  # (16, 3)


@functools.cache
def _glyph_masks() -> np.ndarray:
    """(256, 11, 6) bool: the bitmap of every byte value in PIL's built-in fixed font."""
    from PIL import ImageFont

    font = ImageFont.load_default_imagefont()
    masks = np.zeros((256, 11, 6), dtype=bool)
    for code in range(33, 127):  # printable ASCII; space and the rest stay blank
        mask = font.getmask(chr(code))
        width, height = mask.size
        bitmap = np.asarray(mask, dtype=np.uint8).reshape(height, width) > 127
        masks[code, :min(height, 11), :min(width, 6)] = bitmap[:11, :6]
    return masks


def tty_to_rgb(chars: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Draw a terminal screen.

    Args:
        chars: (R, C) uint8 character codes (NLE: R=24, C=80).
        colors: (R, C) int colour indices 0-15 (others are drawn white).

    Returns:
        (R * 11, C * 6, 3) uint8 image.
    """
    rows, cols = chars.shape
    masks = _glyph_masks()[chars.astype(np.uint8)]  # (R, C, 11, 6)
    index = np.where((colors >= 0) & (colors < 16), colors, 15).astype(np.int64)
    rgb = _TTY_PALETTE[index]  # (R, C, 3)
    cells = masks[..., None] * rgb[:, :, None, None, :]  # (R, C, 11, 6, 3)
    return cells.transpose(0, 2, 1, 3, 4).reshape(rows * 11, cols * 6, 3).astype(np.uint8)


def render_frame(env: Any, obs: dict[str, np.ndarray], index: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 picture of env ``index`` of a vec env, after the step that gave ``obs``.

    Raises:
        ValueError: the env cannot draw itself (not built with ``render=True``, or a wrapper
            that does not pass drawing through).
    """
    if "tty_chars" in obs and "tty_colors" in obs:
        return tty_to_rgb(obs["tty_chars"][index], obs["tty_colors"][index])
    draw = getattr(env, "render_rgb", None)
    if draw is None:
        raise ValueError(f"{type(env).__name__} cannot draw frames for a video")
    frame = np.asarray(draw(index))
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"{type(env).__name__} drew a frame of shape {frame.shape}, "
                         "expected (H, W, 3)")
    return np.ascontiguousarray(frame, dtype=np.uint8)
