"""``explorer eval RUN --video``: real envs drawn, encoded to mp4 (or GIF) and logged to
TensorBoard, for MiniGrid, Atari and NetHack (tty)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import explorer.app.video as video
from actors.envs import probe_env_spec
from actors.render import tty_to_rgb
from explorer.app.cli import main
from explorer.app.evaluate import evaluate_policy
from explorer.app.rundir import create_run_dir
from explorer.app.video import VideoRecorder
from explorer.core.checkpoint import save_checkpoint
from explorer.core.config import load_config
from explorer.core.networks import make_actor_critic

ROOT = Path(__file__).resolve().parents[2]


def _run_dir(tmp_path: Path, *overrides: str) -> tuple[Path, object]:
    """A run directory with a checkpoint of a freshly initialised policy at 4,096 env steps."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", [f"runs_dir={tmp_path}", *overrides])
    model = make_actor_critic(cfg, probe_env_spec(cfg.env))
    run_dir = create_run_dir(cfg, ["test"])
    save_checkpoint(run_dir / "checkpoints", 4096, {"learner": {"model": model.state_dict()}})
    return run_dir, cfg


def _tb_gifs(run_dir: Path) -> list:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    acc.Reload()
    return acc.Images("eval/video")


def test_tty_draws_each_character_in_its_cell_and_colour() -> None:
    chars = np.full((24, 80), ord(" "), dtype=np.uint8)
    colors = np.zeros((24, 80), dtype=np.int8)
    chars[3, 10], colors[3, 10] = ord("@"), 1  # red
    image = tty_to_rgb(chars, colors)
    assert image.shape == (24 * 11, 80 * 6, 3)
    lit = np.argwhere(image.any(-1))
    assert lit.size and (lit[:, 0] // 11 == 3).all() and (lit[:, 1] // 6 == 10).all()
    assert {tuple(p) for p in image[image.any(-1)]} == {(170, 0, 0)}


def test_recorder_streams_mp4_and_keeps_a_bounded_sample(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "v", fps=10, sample_frames=16, encoder="mp4")
    for i in range(101):
        rec.append(np.full((21, 13, 3), i, dtype=np.uint8))  # odd sizes: padded to even
    path = rec.close()
    assert path.suffix == ".mp4" and iio.imread(path, index=None).shape == (101, 22, 14, 3)
    assert len(rec.sample) < 16 and rec.sample[1][0, 0, 0] == rec.sample[0][0, 0, 0] + 8
    gif = VideoRecorder(tmp_path / "w", encoder="gif")
    gif.append(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        gif.append(np.zeros((6, 4, 3), np.uint8))


def test_eval_video_minigrid_mp4_in_run_dir_and_tensorboard(tmp_path: Path) -> None:
    run_dir, cfg = _run_dir(tmp_path, "env.id=MiniGrid-Empty-5x5-v0",
                            "env.max_episode_steps=12")
    assert main(["eval", str(run_dir), "--video", "--episodes", "2", "--seed", "1"]) == 0
    (path,) = (run_dir / "videos").iterdir()
    assert path.suffix == ".mp4"
    frames = iio.imread(path, index=None)
    result = evaluate_policy(cfg, run_dir / "checkpoints" / "ckpt_000000004096.pt", 2, 1,
                             num_envs=1)
    # the reset frame, every step of both episodes and the auto-reset step between them
    assert frames.shape == (1 + int(result.lengths.sum()) + 1, 160, 160, 3)
    (gif,) = _tb_gifs(run_dir)
    assert gif.step == 4096 and gif.encoded_image_string[:6] == b"GIF89a"
    assert (gif.width, gif.height) == (160, 160)


def test_eval_video_falls_back_to_gif_without_an_encoder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(video, "ffmpeg_available", lambda: False)  # as on a bare platform
    run_dir, _ = _run_dir(tmp_path, "env.id=MiniGrid-Empty-5x5-v0", "env.max_episode_steps=5")
    assert main(["eval", str(run_dir), "--video", "--episodes", "1"]) == 0
    (path,) = (run_dir / "videos").iterdir()
    assert path.suffix == ".gif" and iio.imread(path, index=None).shape[1:] == (160, 160, 3)
    assert len(_tb_gifs(run_dir)) == 1


def test_atari_frames_are_the_colour_screen() -> None:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml",
                      ["env.id=Pong-v5", "env.max_episode_steps=30",
                       "learner.model.kind=nature_cnn"])
    frames: list[np.ndarray] = []
    evaluate_policy(cfg, None, episodes=1, seed=0, on_frame=frames.append)
    assert len(frames) >= 2 and frames[0].shape == (210, 160, 3)
    assert (frames[0][..., 0] != frames[0][..., 1]).any()  # colour, not the agent's grey


def test_nethack_frames_are_the_tty() -> None:
    cfg = load_config(ROOT / "configs" / "nethack_score_small.yaml",
                      ["env.max_episode_steps=8"])
    frames: list[np.ndarray] = []
    evaluate_policy(cfg, None, episodes=1, seed=0, on_frame=frames.append)
    assert len(frames) == 9 and frames[0].shape == (24 * 11, 80 * 6, 3)
    first = frames[0]  # welcome message, the map, and the status lines "Dlvl:1 $:0 HP:..."
    assert first[:11].any() and first[11:22 * 11].any() and first[22 * 11:].any()
    assert not np.array_equal(frames[1], frames[-1])  # it moves (the last: the end screen)
