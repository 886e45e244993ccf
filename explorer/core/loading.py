"""Plug-ins by import path (``package.module:attr``) and by registered short name.

One loader for every kind of plug-in (bonuses, labelers, text sources, callables), built on
:func:`pkgutil.resolve_name`, so each reports a bad path the same way, and one message for an
unknown short name that names the config key and the nearest registered names.
"""

from __future__ import annotations

import difflib
import pkgutil
from collections.abc import Iterable
from typing import Any

__all__ = ["import_object", "import_path_problem", "unknown_name_problem"]


def import_object(spec: str, what: str) -> Any:
    """The object named by ``package.module:attr`` (``attr`` may be dotted).

    Args:
        spec: The import path.
        what: What it should be, for the message (``"text source"``).

    Raises:
        ValueError: ``spec`` has no ``:``, or the module or attribute cannot be imported.
    """
    if ":" not in spec:
        raise ValueError(f"{what} {spec!r} is not an import path package.module:attr")
    try:
        return pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {what} {spec!r}: {err}") from None


def import_path_problem(key: str, spec: str, what: str) -> list[str]:
    """A config check: ``[]`` when ``spec`` imports, else one line naming ``key``."""
    try:
        import_object(spec, what)
    except ValueError as err:
        return [f"{key}: {err}"]
    return []


def unknown_name_problem(key: str, name: str, known: Iterable[str], what: str) -> list[str]:
    """A config check for a short name: ``[]`` when registered, else one line naming ``key``,
    the nearest registered name and the rest."""
    known = sorted(known)
    if name in known:
        return []
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return [f"{key}: unknown {what} {name!r}; {hint}known: {', '.join(known)} "
            "(or an import path package.module:Class)"]
