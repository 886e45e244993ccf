"""One TensorBoard page for a whole run: a custom-scalars layout over the tags it logs.

TensorBoard's *Custom Scalars* tab groups charts by category; each chart draws every scalar
whose tag matches one of its regular expressions (one line per tag, e.g. one per actor). The
categories follow the processes and parts of the system: ``learner``, ``actors``, ``labeler``,
``memory`` (episodic-memory bonuses and the retrieval memory) and ``novelty`` (``explorer
search``). The tags are the ones the processes log:

- learner (``learner/worker.py``, ``learner/algo.py``): ``perf/fps``, ``losses/*``,
  ``perf/policy_lag_*``, ``episode/*``, ``wire/dropped/<reason>``, ``perf/checkpoint_failures``;
- actors (their rollouts' meta, logged by the learner; restarts by the supervisor):
  ``perf/actor_<i>/fps``, ``perf/actor_<i>/send_blocked_frac``, ``text/actor_<i>/*``,
  ``perf/actor_restarts``, ``perf/labeler_restarts``;
- labeler (its publications' meta, logged by the learner; ``learner/text_rewards.py``):
  ``labeler/queue_depth``, ``labeler/latency_p95_s``, ``labeler/errors/<kind>``, ...;
- memory: ``intrinsic/<i>_ngu/*`` (NGU's episodic kNN memory), ``intrinsic/<i>_e3b/*``
  (E3B's elliptical episodic memory), ``intrinsic/<i>_counts/*``, and ``memory/*``;
- novelty (``explorer/app/search.py``): ``novelty/*``, ``perf/evals_per_s``.

A chart whose tags do not appear (no labeler in this run, no restart yet) is simply empty.
The learner writes the layout once when it opens its event file (each start or resume of a
run), ``explorer search`` once per run.

Example::

    writer = SummaryWriter(run_dir / "tb")
    write_layout(writer)
"""

from __future__ import annotations

from typing import Any

__all__ = ["EVENT_CHARTS", "LAYOUT", "write_layout"]

_ACTOR = r"perf/actor_\d+"
_BONUS = r"intrinsic/\d+_"


def _lines(*tags: str) -> list[Any]:
    return ["Multiline", list(tags)]


#: category -> chart title -> ``["Multiline", [tag regexes]]`` (TensorBoard's format).
LAYOUT: dict[str, dict[str, list[Any]]] = {
    "learner": {
        "env steps per second": _lines(r"perf/fps$"),
        "episode return": _lines(r"episode/return$"),
        "episode length": _lines(r"episode/length$"),
        "policy and value loss": _lines(r"losses/policy$", r"losses/value$"),
        "entropy": _lines(r"losses/entropy$"),
        "approx KL, clip fraction": _lines(r"losses/approx_kl$", r"losses/clipfrac$"),
        "learning rate": _lines(r"losses/lr$"),
        "policy lag (versions)": _lines(r"perf/policy_lag_(mean|min|max)$"),
        "rollouts waiting": _lines(r"perf/rollout_queue_depth$"),
        "messages dropped, by reason": _lines(r"wire/dropped$", r"wire/dropped/.+"),
        "stale env steps (dropped, too old)": _lines(r"perf/stale_env_steps$"),
        "checkpoint failures (full disk)": _lines(r"perf/checkpoint_failures$"),
        "intrinsic rewards": _lines(rf"{_BONUS}[a-z0-9_]+/reward_mean$"),
    },
    "actors": {
        "env steps per second, per actor": _lines(rf"{_ACTOR}/fps$"),
        "time blocked on send (fraction)": _lines(rf"{_ACTOR}/send_blocked_frac$"),
        "restarts": _lines(r"perf/actor_restarts$", r"perf/labeler_restarts$"),
        "texts sent": _lines(r"text/actor_\d+/(sent|hot_sent)$"),
        "texts known to the actor": _lines(r"text/actor_\d+/known$"),
    },
    "labeler": {
        "queue": _lines(r"labeler/queue_(depth|inflight)$"),
        "queue drops": _lines(r"labeler/queue_(dropped|abandoned)$"),
        "labels stored": _lines(r"labeler/labelled_total$"),
        "positive rate": _lines(r"labeler/positive_rate$"),
        "latency (s)": _lines(r"labeler/latency_p(50|95)_s$"),
        "throughput (texts/s)": _lines(r"labeler/throughput_texts_per_s$"),
        "errors, by kind": _lines(r"labeler/errors/.+", r"labeler/dropped_messages$"),
        "rows waiting for disk space": _lines(r"labeler/store_held$"),
        "breaker (0 closed, 1 half open, 2 open)": _lines(r"labeler/breaker_state$"),
        "reward table": _lines(r"labeler/table_size$"),
        "cache hit rate": _lines(r"labeler/cache_hit_rate$"),
        "intrinsic reward": _lines(r"labeler/intrinsic_reward_mean$"),
    },
    "memory": {
        "episodic memory bonus (NGU kNN, E3B)": _lines(
            rf"{_BONUS}(ngu|e3b)/(raw_mean|reward_mean)$"),
        "episodic distance scale (NGU)": _lines(rf"{_BONUS}ngu/dist_mean$"),
        "embedding losses": _lines(rf"{_BONUS}(ngu|e3b)/loss$"),
        "episodic counts": _lines(rf"{_BONUS}counts/(raw_mean|reward_mean)$"),
        "retrieval memory": _lines(r"memory/.+"),
    },
    "novelty": {
        "archive size": _lines(r"novelty/archive_size$"),
        "coverage (%)": _lines(r"novelty/coverage_pct$"),
        "best reward, goal evaluations": _lines(r"novelty/best_reward$", r"novelty/goal_evals$"),
        "evaluations per second": _lines(r"perf/evals_per_s$"),
        "emitters": _lines(r"novelty/emitters/.+"),
        "STAX autoencoder": _lines(r"novelty/stax/.+"),
    },
}

#: Charts only filled when something happens (a restart, an error) or with an option (any
#: intrinsic bonus, the counts bonus, a retrieval memory that logs, emitters, STAX); every other
#: chart of a category has data in any run that has that category's process (memory: with an
#: NGU bonus).
EVENT_CHARTS = frozenset({
    ("actors", "restarts"),
    ("learner", "intrinsic rewards"),
    ("labeler", "errors, by kind"),
    ("memory", "episodic counts"),
    ("memory", "retrieval memory"),
    ("novelty", "emitters"),
    ("novelty", "STAX autoencoder"),
})


def write_layout(writer: Any) -> None:
    """Write :data:`LAYOUT` to a ``torch.utils.tensorboard.SummaryWriter`` (once per file)."""
    writer.add_custom_scalars(LAYOUT)
