"""Every config in ``configs/`` loads and validates: a typo there breaks a user's first command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from explorer.core.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_are_found() -> None:
    assert len(RUN_CONFIGS) >= 5 and len(SEARCH_CONFIGS) >= 3, CONFIGS


#: configs of `explorer search` (novelty search) rather than `explorer run`
SEARCH_CONFIGS = [p for p in CONFIGS if p.name.startswith("hardmaze_")]
RUN_CONFIGS = [p for p in CONFIGS if p not in SEARCH_CONFIGS]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.total_env_steps > 0
    assert cfg.env.id


@pytest.mark.parametrize("path", SEARCH_CONFIGS, ids=lambda p: p.name)
def test_shipped_search_config_loads(path: Path) -> None:
    from explorer.novelty.config import SearchConfig, search_config_problems

    cfg = load_config(path, checks=(search_config_problems,), schema=SearchConfig)
    assert cfg.budget > 0 and cfg.env.id


def test_keycorridor_config_is_the_benchmarks_solving_arm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ready config is exactly the arm measured in benchmarks/RESULTS.md (counts_2s)."""
    spec = importlib.util.spec_from_file_location("bench_exploration", REPO / "benchmarks" /
                                                  "exploration.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look themselves up
    spec.loader.exec_module(bench)
    arm = bench.make_config(bench.parse_args([]), "MiniGrid-KeyCorridorS3R3-v0", "counts_2s",
                            seed=0, steps=10_000_000, noisy_tv=False, runs_dir=tmp_path)
    ready = load_config(REPO / "configs" / "keycorridor_counts.yaml")
    for section in ("env", "actors", "learner", "intrinsic", "seed", "total_env_steps"):
        assert getattr(ready, section) == getattr(arm, section), section
