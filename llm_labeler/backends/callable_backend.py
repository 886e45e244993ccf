"""Wrap a plain function ``f(texts) -> labels or scores`` as a labeler.

Config::

    labeler: callable
    labeler_options: {fn: "mypkg.judge:is_interesting", threshold: 0.5}

The function gets a ``list[str]`` and returns one value per text: ``bool``, ``int`` 0/1, or a
``float`` score in [0, 1] (label = score >= ``threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from explorer.core.loading import import_object
from llm_labeler.protocol import Label, LabelerError
from llm_labeler.registry import register_labeler

__all__ = ["CallableLabeler"]

LabelFn = Callable[[list[str]], Sequence[int | float | bool]]


def _resolve(fn: LabelFn | str) -> LabelFn:
    if callable(fn):
        return fn
    if not isinstance(fn, str) or ":" not in fn:
        raise ValueError(f"callable labeler: fn must be a callable or 'package.module:function', "
                         f"got {fn!r}")
    try:
        obj = import_object(fn, "function")
    except ValueError as err:
        raise ValueError(f"callable labeler: {err}") from None
    if not callable(obj):
        raise ValueError(f"callable labeler: {fn!r} is a {type(obj).__name__}, not callable")
    return obj


@register_labeler("callable")
class CallableLabeler:
    """A labeler backed by any function from texts to labels or scores."""

    name = "callable"

    def __init__(self, fn: LabelFn | str, *, threshold: float = 0.5,
                 model: str | None = None) -> None:
        """Wrap ``fn``.

        Args:
            fn: the function, or its import path ``"package.module:function"``.
            threshold: float outputs at or above it are label 1.
            model: free-form identifier copied into each label (default: the function's
                qualified name).

        Raises:
            ValueError: ``fn`` cannot be imported or is not callable; bad ``threshold``.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"callable labeler: threshold must be in [0, 1], got {threshold}")
        self.fn = _resolve(fn)
        self.threshold = threshold
        self.model = model or f"{getattr(self.fn, '__module__', '?')}:" \
                              f"{getattr(self.fn, '__qualname__', type(self.fn).__name__)}"

    def _one(self, text: str, value: object) -> Label:
        try:  # bool, int, float and their NumPy scalar types
            score = float(value) if not isinstance(value, (str, bytes)) else math.nan
        except (TypeError, ValueError):
            score = math.nan
        if not 0.0 <= score <= 1.0:  # also rejects NaN
            raise LabelerError(f"callable labeler {self.model}: value {value!r} for text "
                               f"{text[:60]!r} is not a bool, 0/1 or a score in [0, 1]",
                               reason="bad_output")
        return Label(text=text, label=int(score >= self.threshold), score=score,
                     backend=self.name, model=self.model)

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch; see :class:`llm_labeler.protocol.Labeler`.

        Raises:
            LabelerError: reason ``"bad_output"`` when the function returns the wrong number
                of values or a value that is not a bool/0/1/score.
        """
        texts = list(texts)
        values = list(self.fn(texts))
        if len(values) != len(texts):
            raise LabelerError(f"callable labeler {self.model}: returned {len(values)} values "
                               f"for {len(texts)} texts", reason="bad_output")
        return [self._one(text, value) for text, value in zip(texts, values, strict=True)]
