"""Which env ids each backend knows: the config check for ``env.id`` and backend choice.

EnvPool registers every env family when it is imported, and one family (jumanji) pulls in
matplotlib: most of a second of CPU in the launcher and in every actor, at start-up, for tasks
that are never made. :func:`envpool_knows` imports envpool with its registrations deferred and
registers families one at a time, the common and light ones first, until the id is known; only
the error path (an unknown id, to suggest the nearest ones) registers them all.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["env_id_problems", "envpool_ids", "envpool_knows", "nle_ids"]

#: Families tried first (what runs here most), and last (slow to import: matplotlib, jax-ish
#: renderers); the rest in EnvPool's own order.
_FIRST_FAMILIES = ("minigrid", "atari", "classic_control")
_LAST_FAMILIES = ("jumanji", "mujoco.playground", "mujoco.dmc")
_FAMILY_IMPORT = re.compile(r"^import envpool\.([\w.]+)\.registration", re.MULTILINE)


@functools.cache
def _envpool_families() -> tuple[str, ...] | None:
    """EnvPool's env families (``minigrid``, ``atari``, ...) in the order to try them, or
    ``None`` when envpool is not installed. Read from ``envpool/entry.py`` without running it."""
    spec = importlib.util.find_spec("envpool")
    if spec is None or not spec.submodule_search_locations:
        return None
    entry = Path(next(iter(spec.submodule_search_locations))) / "entry.py"
    try:
        found = _FAMILY_IMPORT.findall(entry.read_text())
    except OSError:
        found = []
    if not found:  # an EnvPool laid out differently: let it register everything itself
        return ()
    first = [name for name in _FIRST_FAMILIES if name in found]
    last = [name for name in _LAST_FAMILIES if name in found]
    return tuple(first + [n for n in found if n not in first and n not in last] + last)


@functools.cache
def _envpool() -> Any:
    """The envpool module, imported with its family registrations deferred where envpool has
    not been imported yet in this process; ``None`` when envpool is not installed."""
    families = _envpool_families()
    if families is None:
        return None
    deferred = bool(families) and "envpool" not in sys.modules
    if deferred:
        sys.modules["envpool.entry"] = types.ModuleType("envpool.entry")
    try:
        import envpool
    except ImportError:
        return None
    finally:
        if deferred and "envpool" not in sys.modules:
            sys.modules.pop("envpool.entry", None)
    return envpool


def _register_family(name: str) -> None:
    importlib.import_module(f"envpool.{name}.registration")  # a no-op once imported


def envpool_knows(env_id: str) -> bool | None:
    """Whether EnvPool has ``env_id`` (registering its family on the way), or ``None`` when
    envpool cannot be imported. After ``True``, ``envpool.make(env_id, ...)`` works."""
    envpool = _envpool()
    if envpool is None:
        return None
    if env_id in envpool.list_all_envs():
        return True
    for name in _envpool_families() or ():
        _register_family(name)
        if env_id in envpool.list_all_envs():
            return True
    return False


@functools.cache
def envpool_ids() -> frozenset[str] | None:
    """All of EnvPool's task ids (every family registered), or ``None`` without envpool."""
    envpool = _envpool()
    if envpool is None:
        return None
    for name in _envpool_families() or ():
        _register_family(name)
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


def _gymnasium_module_id(env_id: str) -> bool:
    """Whether ``env_id`` is gymnasium's ``module.path:Name-v0`` form (``gym.make`` imports the
    module, then looks up ``Name-v0``) and importing the module registers ``Name-v0``."""
    module, _, name = env_id.rpartition(":")
    if not module:
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return name in _gymnasium_ids()


def env_id_problems(cfg: Any) -> list[str]:
    """``env.id`` must be known to the backend(s) that ``env.backend`` allows (a config check:
    one line per problem, naming the key and the nearest known ids)."""
    env_id, backend = cfg.env.id, cfg.env.backend
    in_pool = envpool_knows(env_id)
    if backend == "envpool" and in_pool is None:
        return ["env.backend: 'envpool' requested but envpool is not installed"]
    if backend == "nle" and nle_ids() is None:
        return ["env.backend: 'nle' requested but nle is not installed"]
    if in_pool and backend in ("envpool", "auto"):
        return []
    pool_ids = envpool_ids()
    nethack = nle_ids() or frozenset()  # NLE ids go to the nle backend, not to gymnasium's
    per_backend = {"envpool": pool_ids or frozenset(), "nle": nethack,
                   "gymnasium": (_gymnasium_ids() - nethack)
                   | ({env_id} if _gymnasium_module_id(env_id) else set())}
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
