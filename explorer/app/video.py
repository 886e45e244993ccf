"""Evaluation videos: an mp4 in the run directory (a GIF where no H.264 encoder exists) and an
animated GIF in TensorBoard's Images tab.

Frames are streamed to the mp4 encoder (imageio-ffmpeg), so a 5,000-step NetHack episode never
sits in memory; what TensorBoard gets is a bounded sample of them (every k-th frame, k doubling
whenever the sample is full), which is also the GIF written when there is no encoder.
TensorBoard's own ``add_video`` needs moviepy only to make this GIF, so the GIF is made here
with imageio and logged the way ``add_video`` logs it (an image summary holding the GIF).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoRecorder", "ffmpeg_available", "log_gif"]


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg is installed and its ffmpeg binary runs here."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width: H.264 in yuv420p needs both even."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def _gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    import imageio.v3 as iio

    buffer = io.BytesIO()
    iio.imwrite(buffer, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    return buffer.getvalue()


class VideoRecorder:
    """Streams (H, W, 3) uint8 frames to ``stem.mp4``, or to ``stem.gif`` without an encoder.

    Args:
        stem: Output path without suffix (e.g. ``runs/x/videos/eval_000000020480``).
        fps: Frames per second of the video.
        sample_frames: Most frames kept for TensorBoard (and the GIF fallback).
        encoder: ``"auto"`` (mp4 when imageio-ffmpeg works, else GIF), ``"mp4"`` or ``"gif"``.
    """

    def __init__(self, stem: str | Path, fps: float = 15.0, sample_frames: int = 256,
                 encoder: str = "auto") -> None:
        if encoder not in ("auto", "mp4", "gif"):
            raise ValueError(f"encoder must be auto, mp4 or gif, got {encoder!r}")
        self.fps = fps
        self.sample_frames = max(2, sample_frames)
        self.use_mp4 = encoder == "mp4" or (encoder == "auto" and ffmpeg_available())
        self.path = Path(stem).with_suffix(".mp4" if self.use_mp4 else ".gif")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self.sample: list[np.ndarray] = []
        self._stride = 1
        self._writer: Any = None
        self._shape: tuple[int, ...] | None = None

    def append(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 frame; every frame must have the first frame's shape."""
        frame = _even(np.asarray(frame, dtype=np.uint8))
        if self._shape is None:
            self._shape = frame.shape
            if self.use_mp4:
                import imageio.v2 as imageio

                self._writer = imageio.get_writer(self.path, fps=self.fps, codec="libx264",
                                                  macro_block_size=1, quality=7,
                                                  pixelformat="yuv420p")
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self.frames} has shape {frame.shape}, the video "
                             f"{self._shape}")
        if self._writer is not None:
            self._writer.append_data(frame)
        if self.frames % self._stride == 0:
            self.sample.append(frame)
            if len(self.sample) >= self.sample_frames:  # keep every other: stride doubles
                self.sample = self.sample[::2]
                self._stride *= 2
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and return its path.

        Raises:
            ValueError: no frame was appended.
        """
        if not self.frames:
            raise ValueError("no frames recorded")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        else:
            self.path.write_bytes(_gif_bytes(self.sample, self.fps / self._stride))
        return self.path

    @property
    def sample_fps(self) -> float:
        """Frame rate at which the sample plays in real time."""
        return self.fps / self._stride


def log_gif(writer: Any, tag: str, frames: list[np.ndarray], fps: float, step: int) -> None:
    """Log ``frames`` (each (H, W, 3) uint8) to a ``SummaryWriter`` as an animated GIF.

    It shows in TensorBoard's Images tab, as ``SummaryWriter.add_video`` would log it.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = frames[0].shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3,
                          encoded_image_string=_gif_bytes(frames, fps))
    # the public add_* methods have no raw-summary entry; add_video itself writes this way
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]),
                                          step)
