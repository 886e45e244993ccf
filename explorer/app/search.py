"""``explorer search``: novelty search / SERENE / STAX with evaluation on worker processes.

One loop, top to bottom: ``genomes = scheduler.ask()`` -> workers evaluate them ->
descriptors (final positions, or STAX latents of final frames) -> ``scheduler.tell`` ->
coverage, TensorBoard, checkpoint. Checkpoints are taken between a ``tell`` and the next
``ask`` and hold every generator state, so ``--resume`` asks exactly the genomes an
uninterrupted run would have asked.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.hardmaze import make_search_env, normalise_position
from explorer.app.progress import ProgressReporter
from explorer.app.search_pool import EvaluationPool, WorkersFailed
from explorer.novelty.build import build_scheduler
from explorer.novelty.config import SearchConfig
from explorer.novelty.controller import MLPController
from explorer.novelty.coverage import CoverageGrid

__all__ = ["SearchResult", "SearchRun"]


@dataclass
class SearchResult:
    """How a search ended: ``done`` (budget spent), ``stopped`` (Ctrl-C) or
    ``workers_failed``."""

    reason: str
    run_dir: Path
    checkpoint: Path | None
    evaluations: int = 0
    best_fitness: float = float("-inf")
    coverage: float = 0.0
    goal_evals: int = 0
    events: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.reason == "workers_failed" else 0


class _SearchProgress(ProgressReporter):
    """The run progress line with search figures."""

    def update(self, status: dict[str, Any]) -> None:
        if not self.enabled:
            return
        best = status["best_fitness"]
        line = (f"gen {status['generation']:>5}  evals {status['evaluations']:>9,}  "
                f"evals/s {status['evals_per_s']:7.1f}  archive {status['archive_size']:>7,}  "
                f"coverage {100 * status['coverage']:5.1f}%  "
                f"best {'n/a' if not math.isfinite(best) else f'{best:.3f}'}")
        if self._progress is not None:
            self._progress.update(self._task, completed=status["evaluations"], line=line)
        elif time.monotonic() - self._last_plain > 10.0:
            self._last_plain = time.monotonic()
            self.console.print(line, highlight=False)


class SearchRun:
    """One ``explorer search`` run in ``run_dir``.

    Args:
        cfg: The resolved search config.
        run_dir: ``runs/<name>``: config.yaml, tb/, checkpoints/.
        resume_path: Checkpoint to continue from, or None.
        quiet: No progress line.
    """

    def __init__(self, cfg: SearchConfig, run_dir: Path, resume_path: Path | None = None,
                 quiet: bool = False) -> None:
        self.cfg, self.run_dir, self.resume_path = cfg, Path(run_dir), resume_path
        self.reporter = _SearchProgress(enabled=not quiet)
        self.events: list[str] = []
        env = make_search_env(cfg.env.id, cfg.env.max_episode_steps)
        hidden = (cfg.controller.hidden_size,) * cfg.controller.hidden_layers
        self.genome_size = MLPController(env.observation_space.shape[0],
                                         env.action_space.shape[0], hidden).genome_size
        env.close()
        self.stax = None
        descriptor_dim = 2
        if cfg.stax.enabled:
            from explorer.novelty.stax import StaxDescriber

            self.stax = StaxDescriber(cfg.stax, frame_size=cfg.env.frame_size, seed=cfg.seed)
            descriptor_dim = cfg.stax.latent_dim
        self.scheduler = build_scheduler(cfg, self.genome_size, descriptor_dim)
        self.coverage = CoverageGrid(cfg.env.coverage_bins)
        self.generation = 0
        self.best_fitness = float("-inf")
        self.goal_evals = 0
        self.first_goal_eval: int | None = None
        self.env_steps = 0
        self._stop = False
        self._writer: Any = None

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        from explorer.core.checkpoint import capture_rng_state
        from explorer.novelty.state import to_checkpoint

        return {"scheduler": to_checkpoint(self.scheduler.state_dict()),
                "coverage": to_checkpoint(self.coverage.state_dict()),
                "stax": self.stax.state_dict() if self.stax else None,
                "generation": self.generation, "best_fitness": self.best_fitness,
                "goal_evals": self.goal_evals, "first_goal_eval": self.first_goal_eval,
                "env_steps": self.env_steps, "rng": capture_rng_state()}

    def _restore(self, path: Path) -> None:
        from explorer.core.checkpoint import load_checkpoint, restore_rng_state
        from explorer.novelty.state import from_checkpoint

        state = load_checkpoint(path)
        self.scheduler.load_state_dict(from_checkpoint(state["scheduler"]))
        self.coverage.load_state_dict(from_checkpoint(state["coverage"]))
        if self.stax is not None:
            self.stax.load_state_dict(state["stax"])
        self.generation = int(state["generation"])
        self.best_fitness = float(state["best_fitness"])
        self.goal_evals = int(state["goal_evals"])
        self.first_goal_eval = state["first_goal_eval"]
        self.env_steps = int(state["env_steps"])
        restore_rng_state(state["rng"])

    def _checkpoint(self) -> Path:
        from explorer.core.checkpoint import save_checkpoint

        return save_checkpoint(self.run_dir / "checkpoints", self.scheduler.evaluations,
                               self._state())

    # -- logging -------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        self.events.append(text)
        self.reporter.event(text)

    def _status(self, evals_per_s: float) -> dict[str, Any]:
        return {"generation": self.generation, "evaluations": self.scheduler.evaluations,
                "evals_per_s": evals_per_s, "archive_size": len(self.scheduler.archive),
                "coverage": self.coverage.coverage, "best_fitness": self.best_fitness}

    def _log(self, status: dict[str, Any], pool: EvaluationPool) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            from explorer.core.dashboard import write_layout

            self._writer = SummaryWriter(str(self.run_dir / "tb"))
            write_layout(self._writer)  # the custom-scalars page (novelty category)
        w, step = self._writer, self.scheduler.evaluations
        w.add_scalar("novelty/archive_size", status["archive_size"], step)
        w.add_scalar("novelty/coverage_pct", 100 * status["coverage"], step)
        w.add_image("novelty/coverage_map", self.coverage.image(), step)
        if math.isfinite(self.best_fitness):
            w.add_scalar("novelty/best_reward", self.best_fitness, step)
        w.add_scalar("novelty/goal_evals", self.goal_evals, step)
        w.add_scalar("novelty/generation", self.generation, step)
        w.add_scalar("perf/evals_per_s", status["evals_per_s"], step)
        w.add_scalar("perf/env_steps", self.env_steps, step)
        w.add_scalar("perf/worker_restarts", pool.restarts, step)
        w.add_scalar("wire/dropped", pool.dropped.total, step)
        for key, value in getattr(self.scheduler, "emitter_stats", dict)().items():
            w.add_scalar(f"novelty/emitters/{key}", value, step)
        if self.stax is not None:
            for key, value in self.stax.stats().items():
                w.add_scalar(f"novelty/stax/{key}", value, step)
        w.flush()

    # -- loop ----------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop:
            raise KeyboardInterrupt
        self._stop = True
        self._event("Ctrl-C: finishing this generation, then writing a checkpoint")

    def _step(self, pool: EvaluationPool) -> None:
        genomes = self.scheduler.ask()  # (B, G)
        batch = pool.evaluate(genomes)
        positions = np.stack([normalise_position(p) for p in batch.positions])  # (B, 2)
        if self.stax is not None:
            descriptors = self.stax.describe(batch.frames, self.scheduler)
        else:
            descriptors = positions
        self.scheduler.tell(batch.fitness, descriptors)
        if self.stax is not None:
            self.stax.after_tell(batch.frames, self.scheduler, genomes)
        self.coverage.update(positions)
        self.best_fitness = max(self.best_fitness, float(batch.fitness.max()))
        if batch.reached.any() and self.first_goal_eval is None:
            self.first_goal_eval = self.scheduler.evaluations - len(genomes) + int(
                np.argmax(batch.reached)) + 1
        self.goal_evals += int(batch.reached.sum())
        self.env_steps += batch.env_steps
        self.generation += 1

    def run(self) -> SearchResult:
        """Searches until the budget is spent, Ctrl-C, or no worker is left."""
        if self.resume_path is not None:
            self._restore(self.resume_path)
        pool = EvaluationPool(self.cfg, self.genome_size, frames=self.stax is not None,
                              on_event=self._event)
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        reason, ckpt = "done", None
        try:
            pool.start()
            self.reporter.start(self.cfg.budget)
            last_log = last_ckpt = time.monotonic()
            window_t, window_evals = time.monotonic(), self.scheduler.evaluations
            while self.scheduler.evaluations < self.cfg.budget and not self._stop:
                self._step(pool)
                now = time.monotonic()
                rate = (self.scheduler.evaluations - window_evals) / max(now - window_t, 1e-9)
                status = self._status(rate)
                self.reporter.update(status)
                if now - last_log >= self.cfg.log_interval_s:
                    self._log(status, pool)
                    last_log, window_t, window_evals = now, now, self.scheduler.evaluations
                if now - last_ckpt >= self.cfg.checkpoint_interval_s:
                    self._checkpoint()
                    last_ckpt = now
            reason = "stopped" if self._stop else "done"
            self._log(self._status(0.0), pool)
            ckpt = self._checkpoint()
        except WorkersFailed as err:
            self._event(str(err))
            reason = "workers_failed"
        finally:
            self.reporter.stop()
            pool.close()
            if self._writer is not None:
                self._writer.close()
            signal.signal(signal.SIGINT, previous)
        return SearchResult(reason=reason, run_dir=self.run_dir, checkpoint=ckpt,
                            evaluations=self.scheduler.evaluations,
                            best_fitness=self.best_fitness, coverage=self.coverage.coverage,
                            goal_evals=self.goal_evals, events=self.events)
