"""Registry (names, import paths, entry points), the callable backend and the protocol."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from async_http_labeler import AsyncHTTPLabeler
from fake_openai_server import FakeOpenAIServer, rule

from llm_labeler.backends.callable_backend import CallableLabeler
from llm_labeler.backends.rules import RuleLabeler
from llm_labeler.evaluate import evaluate
from llm_labeler.protocol import Label, Labeler, LabelerError, as_sync
from llm_labeler.registry import (
    ENTRY_POINT_GROUP,
    make_labeler,
    register_labeler,
    registered_labelers,
)


def has_key(texts: list[str]) -> list[bool]:
    """A user labelling function, importable as ``test_registry:has_key``."""
    return ["key" in t for t in texts]


class KeywordLabeler:
    """A user labeler class, importable as ``test_registry:KeywordLabeler``."""

    name = "keyword"

    def __init__(self, word: str = "key") -> None:
        self.word = word

    def label(self, texts: Sequence[str]) -> list[Label]:
        return [Label(text=t, label=int(self.word in t), score=float(self.word in t),
                      backend=self.name) for t in texts]


class AsyncKeywordLabeler:
    """An asynchronous labeler (``async def alabel``)."""

    name = "async-keyword"

    async def alabel(self, texts: Sequence[str]) -> list[Label]:
        await asyncio.sleep(0)
        return [Label(text=t, label=int("key" in t), score=float("key" in t),
                      backend=self.name) for t in texts]


MODULE = __name__


def test_builtin_names_are_registered() -> None:
    assert {"embedding", "rules", "callable"} <= set(registered_labelers())
    assert isinstance(make_labeler("rules"), RuleLabeler)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown labeler 'rulez'; known: .*callable.*rules"):
        make_labeler("rulez")


def test_import_path_to_class_gets_kwargs() -> None:
    labeler = make_labeler(f"{MODULE}:KeywordLabeler", word="door")
    assert isinstance(labeler, KeywordLabeler)
    assert [lab.label for lab in labeler.label(["open the door", "get the key"])] == [1, 0]


def test_import_path_to_factory_function() -> None:
    labeler = make_labeler("llm_labeler.backends.rules:RuleLabeler.from_config",
                           config={"positive": ["door"]})
    assert labeler.label(["the door"])[0].label == 1


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:Thing", "cannot import labeler"),
    (f"{__name__}:NoSuchThing", "cannot import labeler"),
    (f"{__name__}:MODULE", "not a class or factory"),
    (f"{__name__}:has_key", "neither"),  # a labelling function is not a factory
])
def test_bad_import_path(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_labeler(spec, texts=[])


def test_callable_backend_by_name_and_import_path() -> None:
    labeler = make_labeler("callable", fn=f"{MODULE}:has_key")
    out = labeler.label(["pick up the key", "go to the ball"])
    assert [(lab.label, lab.score) for lab in out] == [(1, 1.0), (0, 0.0)]
    assert out[0].backend == "callable" and out[0].model.endswith("has_key")


def test_callable_backend_scores_and_threshold() -> None:
    labeler = CallableLabeler(lambda texts: [0.2, 0.7, 1], threshold=0.6)
    assert [(lab.label, lab.score) for lab in labeler.label(["a", "b", "c"])] == \
        [(0, 0.2), (1, 0.7), (1, 1.0)]


@pytest.mark.parametrize("output", [[0.5], [1.5, 0], ["1", 0], [float("nan"), 0], [None, 1]])
def test_callable_backend_bad_output(output: list) -> None:
    labeler = CallableLabeler(lambda texts: output)
    with pytest.raises(LabelerError) as info:
        labeler.label(["a", "b"])
    assert info.value.reason == "bad_output"


def test_callable_backend_bad_fn() -> None:
    with pytest.raises(ValueError, match="cannot import"):
        CallableLabeler("no_such_module_xyz:f")
    with pytest.raises(ValueError, match=r"package\.module:function"):
        CallableLabeler("not a path")


def test_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A labeler another distribution declares in group ``explorer.labelers``."""
    (tmp_path / "third_party_labelers.py").write_text(textwrap.dedent("""
        from llm_labeler.protocol import Label

        class Shouty:
            name = "shouty"

            def label(self, texts):
                return [Label(text=t, label=int(t.isupper()), score=float(t.isupper()),
                              backend=self.name) for t in texts]
    """))
    dist = tmp_path / "third_party_labelers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-labelers\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n"
                                           "shouty = third_party_labelers:Shouty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "third_party_labelers", raising=False)
    assert "shouty" in registered_labelers()
    labeler = make_labeler("shouty")
    assert [lab.label for lab in labeler.label(["HELLO", "hello"])] == [1, 0]


def test_register_labeler_rejects_bad_and_taken_names() -> None:
    with pytest.raises(ValueError, match="without ':'"):
        register_labeler("a:b")
    with pytest.raises(ValueError, match="already registered"):
        register_labeler("rules")(KeywordLabeler)


def test_register_labeler_makes_name_usable() -> None:
    register_labeler("test-keyword")(KeywordLabeler)
    assert isinstance(make_labeler("test-keyword", word="x"), KeywordLabeler)


def test_as_sync_wraps_async_labelers() -> None:
    sync = as_sync(AsyncKeywordLabeler())
    assert isinstance(sync, Labeler)
    assert sync.name == "async-keyword"
    assert [lab.label for lab in sync.label(["key", "ball"])] == [1, 0]


def test_as_sync_works_inside_a_running_loop() -> None:
    async def main() -> list[Label]:
        return as_sync(AsyncKeywordLabeler()).label(["key"])

    assert asyncio.run(main())[0].label == 1


def test_as_sync_keeps_one_event_loop_for_an_async_http_labeler() -> None:
    # keep-alive connections of the labeler's AsyncClient belong to the loop of its first
    # batch: a loop per batch fails the second batch with "Event loop is closed"
    batches = [["You kill the newt!", "It's a wall."], ["g - a wand of digging."],
               ["You see here a rock.", "You kill it!"]]
    with FakeOpenAIServer(keep_alive=True) as server:
        labeler = AsyncHTTPLabeler(server.url)
        sync = as_sync(labeler)
        for batch in batches:
            assert [lab.label for lab in sync.label(batch)] == [rule(t) == "yes" for t in batch]
        records = [{"text": "You kill the jackal!", "label": 1}, {"text": "A wall.", "label": 0}]
        for _ in range(2):  # evaluate wraps the same labeler again: same loop, same client
            assert evaluate(labeler, records, batch_size=1).accuracy == 1.0
        assert labeler.batches == 7 and server.requests == 7
        sync.close()
        assert labeler.client.is_closed  # aclose() ran on the labeler's loop
        sync.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            sync.label(["x"])


def test_as_sync_passes_sync_labelers_through_and_rejects_others() -> None:
    labeler = KeywordLabeler()
    assert as_sync(labeler) is labeler
    with pytest.raises(TypeError, match="not a labeler"):
        as_sync(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"label": 2, "score": 1.0}, {"label": 1, "score": 1.5},
                                    {"label": 0, "score": float("nan")}])
def test_label_validates_fields(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Label(text="x", **kwargs)


def test_labeler_error_has_reason() -> None:
    err = LabelerError("server down", reason="http")
    assert err.reason == "http" and str(err) == "server down"
