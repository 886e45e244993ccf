"""The config checks that need the registries of the layers below: env ids (actors), labeler
names (llm_labeler), bonus names (explorer.intrinsic) and text sources (actors).

``explorer.core.config`` checks the schema only, since the core imports no other package; every
command that starts a run loads its config through :func:`load_run_config`, so a typo in any
of these is one ``error:`` line at load time, not a traceback inside a process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.env_ids import env_id_problems
from actors.texts import text_source_problems
from explorer.core.config import Config, ConfigCheck, ConfigError, config_from_dict, load_config
from llm_labeler.registry import labeler_problems

__all__ = ["ENV_CHECKS", "RUN_CHECKS", "check_env", "load_run_config", "run_config_from_dict"]

def _intrinsic_problems(cfg: Config) -> list[str]:
    """The bonus registry imports torch: read it only for a config that has bonuses, so a
    plain run's command reaches its process spawns without it."""
    if not cfg.intrinsic:
        return []
    from explorer.intrinsic import intrinsic_problems

    return intrinsic_problems(cfg)


def _curve_key_problems(cfg: Config) -> list[str]:
    """The key files ``wire.curve_keys`` names (pyzmq's auth is imported only when set)."""
    if cfg.wire.curve_keys is None:
        return []
    from explorer.core.curve import curve_key_problems

    return curve_key_problems(cfg)


#: The checks that read the env registries: importing envpool takes most of a second, which
#: ``explorer run`` spends while its processes start (:func:`check_env`).
ENV_CHECKS: tuple[ConfigCheck, ...] = (env_id_problems,)

#: Every registry check a run's config must pass.
RUN_CHECKS: tuple[ConfigCheck, ...] = (*ENV_CHECKS, text_source_problems, _intrinsic_problems,
                                       labeler_problems, _curve_key_problems)


def load_run_config(path: str | Path | None, overrides: Sequence[str] = (),
                    env_checks: bool = True) -> Config:
    """:func:`~explorer.core.config.load_config` plus :data:`RUN_CHECKS` (without
    :data:`ENV_CHECKS` when ``env_checks`` is False: the caller runs :func:`check_env`).

    Raises:
        ConfigError: every problem found, one line each.
    """
    checks = RUN_CHECKS if env_checks else tuple(c for c in RUN_CHECKS if c not in ENV_CHECKS)
    return load_config(path, overrides, checks=checks)


def check_env(cfg: Config) -> None:
    """:data:`ENV_CHECKS` of a loaded config.

    Raises:
        ConfigError: every problem found, one line each.
    """
    problems = [p for check in ENV_CHECKS for p in check(cfg)]
    if problems:
        raise ConfigError(problems)


def run_config_from_dict(data: Mapping[str, Any]) -> Config:
    """:func:`~explorer.core.config.config_from_dict` plus :data:`RUN_CHECKS`."""
    return config_from_dict(data, checks=RUN_CHECKS)
