"""Intrinsic rewards (exploration bonuses) behind one protocol; see ``base.py``."""

# Built-in bonuses register themselves on import.
from explorer.intrinsic import (  # noqa: F401
    byol_explore,
    byol_hindsight,
    counts,
    e3b,
    icm,
    ngu,
    noveld,
    rnd,
)
from explorer.intrinsic.base import (
    IntrinsicReward,
    TransitionBatch,
    intrinsic_problems,
    make_intrinsic,
    register_intrinsic,
    registered_intrinsics,
)

__all__ = ["IntrinsicReward", "TransitionBatch", "intrinsic_problems", "make_intrinsic",
           "register_intrinsic", "registered_intrinsics"]
