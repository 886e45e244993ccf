"""STAX (Paolo et al.): the behaviour space is learned, not hand-designed.

A convolutional autoencoder compresses each final frame ``(64, 64)`` uint8 into a
``latent_dim`` descriptor; novelty is measured between latents; *surprise* is the
reconstruction error (high on frames unlike those it was trained on). The autoencoder is
trained on the first generation, then retrained on the newest ``buffer_size`` frames after
chunks 1, 3, 6, 10, 15, ... (gaps grow by ``retrain_gap_growth``); after each retraining the
archive and the population are re-described with the new encoder, so every novelty compares
latents of the same encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from explorer.core.seeding import seeded_generator, seeded_init

__all__ = ["ConvAutoencoder", "StaxDescriber"]


class ConvAutoencoder(nn.Module):
    """``(B, 1, 64, 64)`` in ``[0, 1]`` -> ``(B, latent_dim)`` -> ``(B, 1, 64, 64)`` logits."""

    def __init__(self, latent_dim: int = 10) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(),  # (B, 16, 32, 32)
            nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),  # (B, 32, 16, 16)
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # (B, 32, 8, 8)
            nn.Flatten(), nn.Linear(32 * 8 * 8, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 32 * 8 * 8), nn.ReLU(), nn.Unflatten(1, (32, 8, 8)),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # (B, 32, 16, 16)
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),  # (B, 16, 32, 32)
            nn.ConvTranspose2d(16, 1, 4, 2, 1))  # (B, 1, 64, 64) logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


def _to_input(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(frames, np.float32) / 255.0)[:, None]  # (B, 1, H, W)


class StaxDescriber:
    """Turns final frames into latent descriptors and keeps the encoder current.

    Args:
        cfg: ``StaxConfig`` (latent_dim, chunk_size, epochs, buffer_size, lr, batch_size).
        frame_size: H (= W).
        seed: Seed of the model init and of the training shuffles.
    """

    def __init__(self, cfg: Any, frame_size: int, seed: int) -> None:
        self.cfg, self.frame_size = cfg, int(frame_size)
        with seeded_init(seed):
            self.model = ConvAutoencoder(cfg.latent_dim)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self._gen = seeded_generator(seed + 1)
        self.buffer = np.zeros((0, frame_size, frame_size), np.uint8)  # (N, H, W) newest last
        self.frames_of: dict[bytes, np.ndarray] = {}  # genome bytes -> final frame
        self.trainings, self.next_retrain_chunk, self.gap = 0, 1, 2
        self.last_surprise, self.last_loss = 0.0, 0.0
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    # -- encoder --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, H, W)`` uint8 -> latents ``(B, latent_dim)`` and surprise ``(B,)``."""
        self.model.eval()
        x = _to_input(frames)
        z, logits = self.model(x)
        err = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return z.double().numpy(), err.mean(dim=(1, 2, 3)).double().numpy()

    def train(self) -> float:
        """Fits the autoencoder to the buffer; returns the last epoch's mean loss."""
        self.model.train()
        data = _to_input(self.buffer)
        loss_sum = 0.0
        for _ in range(self.cfg.epochs):
            order = torch.randperm(len(data), generator=self._gen)
            loss_sum, batches = 0.0, 0
            for start in range(0, len(data), self.cfg.batch_size):
                x = data[order[start: start + self.cfg.batch_size]]
                _, logits = self.model(x)
                loss = nn.functional.binary_cross_entropy_with_logits(logits, x)
                self.optim.zero_grad()
                loss.backward()
                self.optim.step()
                loss_sum, batches = loss_sum + loss.item(), batches + 1
            loss_sum /= max(batches, 1)
        self.trainings += 1
        self.last_loss = loss_sum
        return loss_sum

    # -- driver hooks ---------------------------------------------------------------------
    def describe(self, frames: np.ndarray, scheduler: Any) -> np.ndarray:
        """Descriptors of a just-evaluated batch (trains first on the very first batch)."""
        self._remember(frames)
        if self.trainings == 0:
            self.train()
        latents, surprise = self.encode(frames)
        self.last_surprise = float(surprise.mean())
        return latents

    def after_tell(self, frames: np.ndarray, scheduler: Any, genomes: np.ndarray) -> None:
        """Records frames of what was kept; retrains on schedule and re-describes."""
        for genome, frame in zip(genomes, frames, strict=True):
            self.frames_of[np.asarray(genome, np.float64).tobytes()] = frame
        chunks = scheduler.evaluations // self.cfg.chunk_size
        if chunks >= self.next_retrain_chunk:
            self.next_retrain_chunk += self.gap
            self.gap += self.cfg.retrain_gap_growth
            self.train()
            self._redescribe(scheduler)
        self._forget(scheduler)

    def _remember(self, frames: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, frames])[-self.cfg.buffer_size:]

    def _frames(self, genomes: np.ndarray) -> np.ndarray:
        return np.stack([self.frames_of[np.asarray(g, np.float64).tobytes()] for g in genomes])

    def _redescribe(self, scheduler: Any) -> None:
        archive = scheduler.archive
        if len(archive):
            archive.redescribe(self.encode(self._frames(archive.solutions))[0])
        ns = getattr(scheduler, "ns", None) or scheduler.emitters[0]
        if getattr(ns, "population", None) is not None:
            ns.redescribe(self.encode(self._frames(ns.population))[0])

    def _forget(self, scheduler: Any) -> None:
        """Keeps frames only of archived individuals and the population."""
        keep = {np.asarray(g, np.float64).tobytes() for g in scheduler.archive.solutions}
        ns = getattr(scheduler, "ns", None) or scheduler.emitters[0]
        if getattr(ns, "population", None) is not None:
            keep |= {np.asarray(g, np.float64).tobytes() for g in ns.population}
        self.frames_of = {k: v for k, v in self.frames_of.items() if k in keep}

    def stats(self) -> dict[str, float]:
        return {"surprise": self.last_surprise, "ae_loss": self.last_loss,
                "trainings": float(self.trainings)}

    # -- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values (goes into a checkpoint as is)."""
        keys = sorted(self.frames_of)
        frames = (np.stack([self.frames_of[k] for k in keys]) if keys
                  else np.zeros((0, self.frame_size, self.frame_size), np.uint8))
        genomes = np.stack([np.frombuffer(k, np.float64) for k in keys]) if keys else \
            np.zeros((0, 0))
        return {"model": self.model.state_dict(), "optim": self.optim.state_dict(),
                "gen": self._gen.get_state(), "buffer": torch.from_numpy(self.buffer.copy()),
                "frame_genomes": torch.from_numpy(genomes), "frames": torch.from_numpy(frames),
                "trainings": self.trainings, "next_retrain_chunk": self.next_retrain_chunk,
                "gap": self.gap}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self._gen.set_state(state["gen"])
        self.buffer = state["buffer"].numpy().astype(np.uint8)
        self.frames_of = {np.asarray(g, np.float64).tobytes(): f.astype(np.uint8)
                          for g, f in zip(state["frame_genomes"].numpy(),
                                          state["frames"].numpy(), strict=True)}
        self.trainings = int(state["trainings"])
        self.next_retrain_chunk, self.gap = int(state["next_retrain_chunk"]), int(state["gap"])
