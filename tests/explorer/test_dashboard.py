"""The TensorBoard custom-scalars page: every category is there, and its charts draw tags that
real runs log (a run with actors, learner, labeler and an NGU memory bonus; a novelty search)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from actors.envs import probe_env_spec
from explorer.app.cli import main
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import load_config
from explorer.core.dashboard import EVENT_CHARTS, LAYOUT

ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = {"learner", "actors", "labeler", "memory", "novelty"}
_LAYOUT_TAG = "custom_scalars__config__"


def _read(tb: Path) -> tuple[layout_pb2.Layout | None, set[str]]:
    """The custom-scalars layout and every scalar tag of a run's event files."""
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    layout = None
    if _LAYOUT_TAG in acc.Tags()["tensors"]:
        layout = layout_pb2.Layout()
        layout.ParseFromString(acc.Tensors(_LAYOUT_TAG)[-1].tensor_proto.string_val[0])
    return layout, set(acc.Tags()["scalars"])


def _charts(layout: layout_pb2.Layout) -> dict[tuple[str, str], list[str]]:
    return {(category.title, chart.title): list(chart.multiline.tag)
            for category in layout.category for chart in category.chart}


def _matched(regexes: list[str], tags: set[str]) -> list[str]:
    return sorted(t for t in tags if any(re.match(rx, t) for rx in regexes))


@pytest.mark.timeout(600)
def test_layout_groups_the_whole_system_on_tags_real_runs_log(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "keycorridor_oni.yaml", [
        f"runs_dir={tmp_path}", "env.id=MiniGrid-DoorKey-5x5-v0", "actors.num_procs=1",
        "env.envs_per_actor=8", "total_env_steps=8192", "log_interval_s=0.5",
        "llm_labeler.labeler=rules", "llm_labeler.backend={}", "llm_labeler.reward_model=retrieval",
        "llm_labeler.publish_interval_s=0.3", "intrinsic=[{name: ngu, coef: 0.01}]"])
    sup = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"]))
    result = sup.run()
    assert result.reason == "done", (result, sup.events)
    layout, run_tags = _read(sup.run_dir / "tb")
    assert layout is not None, "the learner wrote no custom-scalars layout"
    charts = _charts(layout)
    assert {category for category, _ in charts} == CATEGORIES
    assert charts == {(c, title): spec[1] for c, group in LAYOUT.items()
                      for title, spec in group.items()}

    assert main(["search", "--quiet", str(ROOT / "configs" / "hardmaze_ns.yaml"),
                 f"runs_dir={tmp_path}", "name=search", "novelty.pop_size=10", "budget=40",
                 "env.max_episode_steps=60", "workers.num_procs=1", "log_interval_s=0.2"]) == 0
    search_layout, search_tags = _read(tmp_path / "search" / "tb")
    assert search_layout == layout  # the same page in both kinds of run

    empty = []
    for (category, title), regexes in charts.items():
        tags = run_tags if category != "novelty" else search_tags
        if (category, title) not in EVENT_CHARTS and not _matched(regexes, tags):
            empty.append((category, title, regexes))
    assert not empty, f"charts no run fills: {empty}; tags logged: {sorted(run_tags)}"
    # one line per actor; the labeler's queue and the NGU memory are real tags of this run
    assert _matched(charts["actors", "env steps per second, per actor"], run_tags) == [
        "perf/actor_0/fps"]
    assert "labeler/queue_depth" in run_tags and "intrinsic/0_ngu/dist_mean" in run_tags
    # the event charts match the tags their events log (supervisor, labeler, learner)
    for category, title, tag in [("actors", "restarts", "perf/actor_restarts"),
                                 ("labeler", "errors, by kind", "labeler/errors/store_full"),
                                 ("learner", "intrinsic rewards", "intrinsic/0_rnd/reward_mean"),
                                 ("memory", "episodic counts", "intrinsic/1_counts/raw_mean")]:
        assert _matched(charts[category, title], {tag}), (category, title)
