"""Seeded randomness that leaves everyone else's random streams alone.

Bonuses and evaluation build networks and draw samples from their own seed, so two runs with one
seed agree, while the process-wide torch RNG (seeded once per process by the actor and learner
entry points) goes on exactly as if nothing had been drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded_generator", "seeded_init"]


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Within the block torch's global CPU RNG starts from ``seed``; afterwards it is restored.

    For module construction (``nn.init`` draws from the global RNG): the same seed gives the
    same weights, and the caller's global stream is untouched. CUDA RNGs are neither seeded nor
    forked (initialisation happens on the CPU).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A private generator on ``device`` started from ``seed`` (its state goes in checkpoints)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
