"""Intrinsic rewards (exploration bonuses) behind one protocol; see ``base.py``."""

from explorer.intrinsic.base import (
    IntrinsicReward,
    TransitionBatch,
    make_intrinsic,
    register_intrinsic,
    registered_intrinsics,
)

__all__ = ["IntrinsicReward", "TransitionBatch", "make_intrinsic", "register_intrinsic",
           "registered_intrinsics"]
