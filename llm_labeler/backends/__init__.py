"""Labeler backends; importing this package registers each one by name.

- ``embedding``: MiniLM sentence embeddings vs anchor descriptions (the embedded default).
- ``rules``: regular-expression lists.
- ``callable``: any ``f(list[str]) -> list[int | float | bool]``.
- ``openai``: any OpenAI-compatible HTTP endpoint (registered when its module is present).
"""

import importlib.util
import logging

from llm_labeler.backends.callable_backend import CallableLabeler
from llm_labeler.backends.embedding import EmbeddingLabeler
from llm_labeler.backends.rules import NETHACK_RULES, RuleLabeler

__all__ = ["NETHACK_RULES", "CallableLabeler", "EmbeddingLabeler", "RuleLabeler"]

if importlib.util.find_spec(f"{__name__}.openai_backend") is not None:
    try:  # written separately; registers itself as "openai"
        from llm_labeler.backends import openai_backend  # noqa: F401
    except ImportError as err:  # a dependency of it is missing: say so, keep the others
        logging.getLogger(__name__).warning("openai labeler backend unavailable: %s", err)
