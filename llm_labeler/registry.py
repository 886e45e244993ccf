"""Build a labeler from a config string: a short name, an import path or an entry point.

Resolution order for ``make_labeler(spec)``:

1. a name registered with :func:`register_labeler` (built-ins: ``embedding``, ``rules``,
   ``callable``, and ``openai`` when its backend is installed);
2. an import path ``package.module:Attr`` where ``Attr`` is a class or a factory function;
3. an entry point named ``spec`` in the group ``explorer.labelers`` of any installed
   distribution (``[project.entry-points."explorer.labelers"] mine = "pkg.mod:Factory"``).

Whatever is found is called with the keyword arguments given to :func:`make_labeler`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

from explorer.core.loading import import_object, unknown_name_problem

__all__ = ["ENTRY_POINT_GROUP", "labeler_problems", "make_labeler", "register_labeler",
           "registered_labelers"]

ENTRY_POINT_GROUP = "explorer.labelers"

_REGISTRY: dict[str, Callable[..., Any]] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_labeler(name: str) -> Callable[[F], F]:
    """Decorator: make a labeler class (or factory) constructible by short name.

    Args:
        name: the name configs use, e.g. ``"embedding"``.

    Raises:
        ValueError: ``name`` is empty, contains ``:``, or is already taken by another object.
    """
    if not name or ":" in name:
        raise ValueError(f"labeler name must be non-empty and without ':', got {name!r}")

    def wrap(factory: F) -> F:
        previous = _REGISTRY.get(name)
        if previous is not None and _qualname(previous) != _qualname(factory):
            raise ValueError(f"labeler name {name!r} is already registered to "
                             f"{_qualname(previous)}")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _load_builtins() -> None:
    importlib.import_module("llm_labeler.backends")


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered_labelers() -> list[str]:
    """Names usable as a spec: built-in registrations plus installed entry points."""
    _load_builtins()
    return sorted(set(_REGISTRY) | set(_entry_points()))


def labeler_problems(cfg: Any) -> list[str]:
    """A config check: ``llm_labeler.labeler`` is registered, an entry point, or a findable
    import path (found without importing it: a labeler module may load a model)."""
    spec = cfg.llm_labeler.labeler
    if spec is None:
        return []
    if ":" in spec:
        module = spec.partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return [] if found else [f"llm_labeler.labeler: cannot find module {module!r} of "
                                 f"{spec!r}"]
    return unknown_name_problem("llm_labeler.labeler", spec, registered_labelers(), "labeler")


def _import_path(spec: str) -> Callable[..., Any]:
    obj = import_object(spec, "labeler")
    if not callable(obj):
        raise ValueError(f"labeler {spec!r} is a {type(obj).__name__}, not a class or factory")
    return obj


def make_labeler(spec: str, **kwargs: Any) -> Any:
    """Construct a labeler.

    Args:
        spec: registered name (``"embedding"``), import path (``"pkg.mod:MyLabeler"``) or
            entry-point name in group ``explorer.labelers``.
        **kwargs: passed to the class or factory.

    Returns:
        The labeler: an object with ``label(texts)`` or ``async def alabel(texts)``; wrap it
        with :func:`llm_labeler.protocol.as_sync` for a synchronous interface.

    Raises:
        ValueError: unknown name (the message lists the known ones), unimportable path, or
            the factory returned something that is not a labeler.
    """
    if ":" in spec:
        factory = _import_path(spec)
    else:
        _load_builtins()
        if spec in _REGISTRY:
            factory = _REGISTRY[spec]
        else:
            entry_points = _entry_points()
            if spec not in entry_points:
                known = ", ".join(sorted(set(_REGISTRY) | set(entry_points)))
                raise ValueError(f"unknown labeler {spec!r}; known: {known} (or an import "
                                 "path package.module:Class, or an entry point in group "
                                 f"{ENTRY_POINT_GROUP!r})")
            try:
                factory = entry_points[spec].load()
            except (ImportError, AttributeError) as err:
                raise ValueError(f"cannot load labeler entry point {spec!r}: {err}") from None
    labeler = factory(**kwargs)
    if not (callable(getattr(labeler, "label", None)) or callable(getattr(labeler, "alabel",
                                                                           None))):
        raise ValueError(f"labeler {spec!r} built a {type(labeler).__name__}, which has neither "
                         "`label(texts)` nor `alabel(texts)`")
    return labeler
