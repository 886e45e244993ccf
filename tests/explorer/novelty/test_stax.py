"""STAX: latent descriptors of final frames, surprise, re-description after retraining."""

import numpy as np
import torch

from actors.hardmaze import TopDownRenderer, make_search_env
from explorer.novelty import NoveltyArchive, NoveltySearchEmitter, Scheduler
from explorer.novelty.config import StaxConfig
from explorer.novelty.stax import StaxDescriber


def frames_at(renderer, xs, y):
    return np.stack([renderer.frame((x, y)) for x in xs])


def test_surprise_is_higher_for_frames_unlike_the_training_ones():
    torch.set_num_threads(1)
    renderer = TopDownRenderer(make_search_env("HardMaze-v0", 10), 64)
    cfg = StaxConfig(enabled=True, epochs=300, buffer_size=500, batch_size=20)
    stax = StaxDescriber(cfg, 64, seed=0)
    seen = frames_at(renderer, np.linspace(170, 260, 40), 390.0)  # bottom-left corridor
    stax.buffer = seen
    stax.train()
    latents, seen_surprise = stax.encode(seen)
    _, new_surprise = stax.encode(frames_at(renderer, np.linspace(300, 410, 20), 130.0))
    assert latents.shape == (40, 10) and np.isfinite(latents).all()
    assert new_surprise.mean() > 1.5 * seen_surprise.mean(), (new_surprise.mean(),
                                                             seen_surprise.mean())


def test_retraining_redescribes_archive_and_population():
    torch.set_num_threads(1)
    renderer = TopDownRenderer(make_search_env("HardMaze-v0", 10), 64)
    rng = np.random.default_rng(0)
    archive = NoveltyArchive(solution_dim=6, descriptor_dim=10, seed=0)
    scheduler = Scheduler(archive, [NoveltySearchEmitter(archive, solution_dim=6, pop_size=8,
                                                         seed=0)])
    stax = StaxDescriber(StaxConfig(enabled=True, epochs=1, chunk_size=24), 64, seed=0)
    for _ in range(3):
        genomes = scheduler.ask()
        positions = rng.uniform([170, 120], [410, 400], (len(genomes), 2))
        frames = np.stack([renderer.frame(p) for p in positions])
        scheduler.tell(np.zeros(len(genomes)), stax.describe(frames, scheduler))
        stax.after_tell(frames, scheduler, genomes)
    assert stax.trainings >= 2  # first batch, then after chunk 1
    want = stax.encode(stax._frames(archive.solutions))[0]
    np.testing.assert_allclose(archive.descriptors, want, rtol=1e-6, atol=1e-6)
    assert set(stax.frames_of) == ({g.tobytes() for g in archive.solutions}
                                   | {g.tobytes() for g in scheduler.emitters[0].population})
