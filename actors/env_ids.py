"""Which env ids each backend knows: the config check for ``env.id`` and backend choice."""

from __future__ import annotations

import difflib
import functools
from typing import Any

__all__ = ["env_id_problems", "envpool_ids", "nle_ids"]


@functools.cache
def envpool_ids() -> frozenset[str] | None:
    """EnvPool's task ids, or ``None`` when envpool cannot be imported."""
    try:
        import envpool
    except ImportError:
        return None
    return frozenset(envpool.list_all_envs())


@functools.cache
def nle_ids() -> frozenset[str] | None:
    """NetHack task ids (NLE's and ``actors.nethack_tasks``'), or ``None`` without nle."""
    try:
        from actors.nethack_tasks import nle_task_ids

        return nle_task_ids()
    except ImportError:
        return None


def _gymnasium_ids() -> frozenset[str]:
    """Ids in the gymnasium registry (not cached: plugins may register more at any time)."""
    import gymnasium

    return frozenset(gymnasium.registry)


def env_id_problems(cfg: Any) -> list[str]:
    """``env.id`` must be known to the backend(s) that ``env.backend`` allows (a config check:
    one line per problem, naming the key and the nearest known ids)."""
    env_id, backend = cfg.env.id, cfg.env.backend
    pool_ids = envpool_ids()
    if backend == "envpool" and pool_ids is None:
        return ["env.backend: 'envpool' requested but envpool is not installed"]
    if backend == "nle" and nle_ids() is None:
        return ["env.backend: 'nle' requested but nle is not installed"]
    nethack = nle_ids() or frozenset()  # NLE ids go to the nle backend, not to gymnasium's
    per_backend = {"envpool": pool_ids or frozenset(), "nle": nethack,
                   "gymnasium": _gymnasium_ids() - nethack}
    allowed = [backend] if backend in per_backend else list(per_backend)
    known = frozenset().union(*(per_backend[name] for name in allowed))
    if env_id in known:
        return []
    nearest = difflib.get_close_matches(env_id, known, n=3, cutoff=0)
    message = f"env.id: unknown env {env_id!r}; nearest: {', '.join(nearest)}"
    if nethack & set(nearest) and "nle" in allowed:
        message += f" (NetHack tasks: {', '.join(sorted(nethack))})"
    other = [name for name, ids in per_backend.items() if name not in allowed and env_id in ids]
    if other:
        message += f" ({other[0]} knows it: set env.backend to {other[0]} or auto)"
    return [message]
