"""The retrieval-augmented agent uses its memory in the real system; a feed-forward one cannot.

Task: ``actors/cue_recall.py`` (a cue, -1 or +1, at an episode's first step; reward 1 for
naming it at the 8th and last step). Without memory the decision is a coin flip (expected
return 0.5); with it, 1.0. Both arms are seeded runs of the whole system (supervisor, learner
and an actor process over ZeroMQ, PPO, ``configs/cue_recall_ra.yaml``) with the same budget of
env steps: the retrieval arm (k=4 of 2-step chunks, the whole episode in its window) and the
feed-forward arm (``learner.model.retrieval.k=0``: the same MLP, no core), and a control: the
retrieval core with a window of 3 chunks (6 steps), from which the cue step has left when the
agent decides -- the same network, only what it can retrieve differs. A run stops as soon as
its last 100 episodes average ``TARGET``.

Trials that picked budget and margins (2-core machine, return = mean of the last 100 episodes;
a seed fixes a distribution, not a trajectory: actors and learner run asynchronously): the
retrieval arm reached 0.95 at 7.7k-9.2k env steps (about 17 PPO updates, ~5 s of training) in
every run (seeds 1-8 and 11-13, seeds 1-3 five times), and 1.0 by 11k when left running; the
feed-forward arm stayed at 0.41-0.57 through 30k-100k, the 6-step window at 0.44-0.57 through
30k-50k. A GRU core (``learner.model.core=gru``, k=0) also reached 0.95, at 8.2k-9.2k (seeds
1-3), and retrieval (k=8 of 8 chunks) at 12k on 16-step episodes. The budget, ``STEPS``, is
over 3x what retrieval needed; the whole file runs in ~40 s.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from actors.cue_recall import CueRecallEnv
from actors.env_ids import env_id_problems
from actors.envs import make_vec_env, probe_env_spec
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import RunResult, Supervisor
from explorer.core.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cue_recall_ra.yaml"
STEPS = 30_000
SEEDS = (1, 2, 3)
#: A run stops as soon as its last 100 episodes average this.
TARGET = 0.95
#: The feed-forward arm must stay at or below this (chance is 0.5; 100 episodes: std 0.05).
CHANCE_BOUND = 0.7


def test_env_cue_decides_the_reward_and_only_memory_can_see_it() -> None:
    env = CueRecallEnv(length=8, noise=0.1)
    rewards: dict[str, list[float]] = {"memory": [], "feed_forward": []}
    cues = []
    for episode in range(400):
        obs, _ = env.reset(seed=episode)
        cue, steps, terminated = int(obs[0] > 0), 0, False
        assert obs[1] == 1.0 and abs(obs[0]) == 1.0 and obs[2] == 0.0
        cues.append(cue)
        while not terminated:
            decide = obs[2] == 1.0
            assert obs[0] == 0.0 or steps == 0
            # feed-forward: its action at the decide step is a function of that step's obs
            # alone, which is the same for both cues up to the noise entry
            action = cue if episode % 2 == 0 else int(obs[3] > 0)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps += 1
            assert reward == 0.0 or decide
            assert not truncated
        rewards["memory" if episode % 2 == 0 else "feed_forward"].append(reward)
        assert steps == 8
    assert np.mean(rewards["memory"]) == 1.0
    assert 0.35 < np.mean(rewards["feed_forward"]) < 0.65
    assert 0.4 < np.mean(cues) < 0.6


def test_module_id_is_a_known_env_and_builds_in_a_fresh_registry() -> None:
    env_cfg = SimpleNamespace(id="actors.cue_recall:CueRecall-v0", backend="gymnasium",
                              max_episode_steps=None, envpool_kwargs={"length": 10},
                              noisy_tv=False)
    assert env_id_problems(SimpleNamespace(env=env_cfg)) == []
    bad = SimpleNamespace(env=SimpleNamespace(id="actors.cue_recall:CueRecal-v0",
                                              backend="gymnasium"))
    assert env_id_problems(bad) and "unknown env" in env_id_problems(bad)[0]
    spec = probe_env_spec(env_cfg)
    assert spec.num_actions == 2 and spec.obs_spec == {"obs": ((4,), "float32")}
    env = make_vec_env(env_cfg, 3, seed=0)
    try:
        env.reset()
        for _ in range(9):
            result = env.step(np.zeros(3, np.int64))
            assert not result.terminated.any()
        assert env.step(np.zeros(3, np.int64)).terminated.all()  # the 10th step decides
    finally:
        env.close()


def _train(tmp_path: Path, name: str, seed: int, *overrides: str) -> RunResult:
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", f"name={name}", f"seed={seed}",
                               f"total_env_steps={STEPS}", f"target_return={TARGET}",
                               *overrides])
    result = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["test"])).run()
    assert result.reason == "done", result
    assert result.last_status["dropped"] == 0
    return result


@pytest.mark.timeout(300)
def test_retrieval_agent_recalls_the_cue_where_feed_forward_stays_at_chance(
        tmp_path: Path) -> None:
    arms = {"retrieval": [], "feed_forward": ["learner.model.retrieval.k=0"],
            "window_without_cue": ["learner.model.retrieval.window_chunks=3"]}
    returns: dict[str, list[tuple[float, int]]] = {arm: [] for arm in arms}
    for seed in SEEDS:
        for arm, overrides in arms.items():
            result = _train(tmp_path, f"{arm}_s{seed}", seed, *overrides)
            returns[arm].append((result.last_status["episode_return"], result.env_steps))
    print(f"(return of the last 100 episodes, env steps) per seed {SEEDS}: {returns}")
    assert all(ret >= 0.9 for ret, _ in returns["retrieval"]), returns
    for arm in ("feed_forward", "window_without_cue"):
        assert all(ret <= CHANCE_BOUND for ret, _ in returns[arm]), (arm, returns)
        assert all(steps >= STEPS for _, steps in returns[arm]), (arm, returns)  # full budget
