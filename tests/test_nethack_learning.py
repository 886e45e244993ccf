"""NetHack learns: a short seeded NetHackScore-v0 run raises the in-game score over random play.

The run is ``configs/nethack_score_small.yaml`` (a small CPU model; NetHackScore-v0's own
reward: score change, -0.01 on steps that freeze game time) through the real launcher: 2 actor
processes x 16 NLE envs, the learner, ZeroMQ in between, 400k env steps. Then the final
checkpoint's policy (sampled actions, as the actors act) and a uniform-random policy each play
480 episodes of the same envs, task kwargs, step limit and seed (``explorer/app/evaluate.py``). The
trained mean score must beat the random one by three standard errors of the difference (and
at least 3 points), so a policy that did not learn cannot pass by luck; NetHack scores are
heavy-tailed (std ~12 on a mean of ~5).

Measured on the quiet 2-core machine (benchmarks/RESULTS.md): random 5.14 +- 12.5 (std);
trained 10.60, 11.70, 16.21 for seeds 0, 1, 2 (margin ~3.1), ~160-175 s of training each.
The seed does not fix the outcome: APPO's actors and learner run asynchronously, so policy lag
and batch make-up follow process timing, and a fresh-clone CI run of seed 0 once ended at 7.09
(the learner's own last-100 window 7.91: a run that learnt less, not an unlucky evaluation).
The test therefore gets one rerun (pytest-rerunfailures) before it counts as failed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actors.envs import probe_env_spec
from explorer.app.evaluate import evaluate_policy
from explorer.app.rundir import create_run_dir
from explorer.app.supervisor import Supervisor
from explorer.core.config import load_config
from explorer.core.networks import ActorCritic, build_encoder

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "nethack_score_small.yaml"
EVAL_EPISODES = 480
EVAL_SEED = 12345
MIN_MARGIN = 3.0


def test_small_nethack_model_config() -> None:
    cfg = load_config(CONFIG)
    spec = probe_env_spec(cfg.env)
    model = ActorCritic(spec.obs_spec, spec.num_actions, cfg.learner.model)
    assert model.encoder.map_cnn is None and model.encoder.in_keys == ("glyphs", "blstats")
    full = ActorCritic(spec.obs_spec, spec.num_actions, load_config(
        CONFIG.with_name("nethack_score.yaml")).learner.model)
    def size(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert size(model.encoder) < size(full.encoder) / 4
    obs = {k: torch.zeros(2, 3, *shape, dtype=getattr(torch, dtype))
           for k, (shape, dtype) in spec.obs_spec.items()}
    logits, values, _ = model(obs, model.initial_state(3), torch.zeros(2, 3, dtype=torch.bool))
    assert logits.shape == (2, 3, spec.num_actions) and values.shape == (2, 3)
    with pytest.raises(ValueError, match=r"takes no \['glyph_dim'\].*'embed_dim'"):
        build_encoder(spec.obs_spec, "nethack", 8, {"glyph_dim": 4})


@pytest.mark.flaky(reruns=1)  # asynchronous training: see the module docstring
@pytest.mark.timeout(900)
def test_nethack_score_training_beats_random_policy(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}"])
    result = Supervisor(cfg, probe_env_spec(cfg.env), create_run_dir(cfg, ["t"])).run()
    status = result.last_status
    assert result.reason == "done" and status["dropped"] == 0 and result.checkpoint is not None

    trained = evaluate_policy(cfg, result.checkpoint, EVAL_EPISODES, EVAL_SEED)
    random = evaluate_policy(cfg, None, EVAL_EPISODES, EVAL_SEED)
    trained_scores, random_scores = trained.info_values("score"), random.info_values("score")
    assert len(trained_scores) == len(random_scores) == EVAL_EPISODES
    stderr = np.sqrt(trained_scores.var() / EVAL_EPISODES + random_scores.var() / EVAL_EPISODES)
    margin = max(MIN_MARGIN, 3 * stderr)
    summary = (f"trained mean score {trained_scores.mean():.2f} +- {trained_scores.std():.2f} "
               f"vs random {random_scores.mean():.2f} +- {random_scores.std():.2f} over "
               f"{EVAL_EPISODES} episodes each; margin {margin:.2f}; learner's last-100 window "
               f"{status['episode_stats']['score']:.2f}")
    print(summary)
    assert trained_scores.mean() >= random_scores.mean() + margin, summary
