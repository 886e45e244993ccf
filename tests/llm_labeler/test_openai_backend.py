"""OpenAI-compatible labeler against a real local HTTP server with scripted faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer, rule

from llm_labeler.backends.breaker import ConfigErrorGate
from llm_labeler.backends.openai_backend import (
    DEFAULT_USER_TEMPLATE,
    CircuitBreaker,
    OpenAILabeler,
    OpenAILabelerConfig,
    ParseError,
    format_messages,
    parse_answers,
    prompt_hash,
)
from llm_labeler.backends.openai_prompt import answers_schema, parse_structured
from llm_labeler.protocol import Labeler, LabelerError
from llm_labeler.registry import make_labeler

TEXTS = ["You kill the newt!", "It's a wall.", "q - a moonstone ring.", "Really attack? [yn]"]
EXPECTED = [1, 0, 1, 0]

FAST = {"max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "timeout_s": 2.0,
        "breaker_failures": 100}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(hang_s=3.0) as srv:
        yield srv


@pytest.fixture
def make(server: FakeOpenAIServer) -> Iterator:
    made: list[OpenAILabeler] = []

    def build(**options: object) -> OpenAILabeler:
        labeler = OpenAILabeler(**{"base_url": server.url, **FAST, **options})
        made.append(labeler)
        return labeler

    yield build
    for labeler in made:
        labeler.close()


# -- happy path ------------------------------------------------------------------------------

def test_labels_follow_the_server(server: FakeOpenAIServer, make) -> None:
    labeler = make(model="fake-model", batch_size=3)
    assert isinstance(labeler, Labeler)
    labels = labeler.label(TEXTS)
    assert [lab.label for lab in labels] == EXPECTED
    assert [lab.text for lab in labels] == TEXTS
    assert {(lab.backend, lab.model) for lab in labels} == {("openai", "fake-model")}
    assert [lab.score for lab in labels] == [float(x) for x in EXPECTED]
    assert server.requests == 2                          # batch_size 3: 3 + 1
    body = server.bodies[0]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system" and "NetHack" in body["messages"][0]["content"]
    stats = labeler.stats()
    assert stats["errors"] == {} and stats["labelled"] == 4 and stats["replies"] == 2
    assert 0 < stats["latency_p50_s"] <= stats["latency_p95_s"] < 2
    assert labeler.label([]) == [] and server.requests == 2          # nothing to send


def test_json_answers_and_duplicates(server: FakeOpenAIServer, make) -> None:
    server.default = "json"
    labeler = make(batch_size=10)
    result = labeler.label_batch(TEXTS + TEXTS[:2])
    assert result.ok and [lab.label for lab in result.labels] == EXPECTED + EXPECTED[:2]
    assert server.seen_messages == [TEXTS]               # each distinct text sent once


def test_registry_and_api_key(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY_ENV", "sk-test")
    labeler = make_labeler("openai", base_url=server.url, api_key_env="FAKE_KEY_ENV")
    try:
        assert isinstance(labeler, OpenAILabeler)
        labeler.label(["hello"])
        assert server.headers[-1]["Authorization"] == "Bearer sk-test"
        assert "sk-test" not in repr(labeler.config)
    finally:
        labeler.close()


def test_prompt_hash_and_template(server: FakeOpenAIServer, make) -> None:
    default = make()
    template = "Judge these {n} NetHack messages:\n{messages}\nReply N: yes|no. {not a field}"
    custom = make(user_template=template)
    assert default.prompt_hash == prompt_hash(default.config.system_prompt, DEFAULT_USER_TEMPLATE)
    assert custom.prompt_hash != default.prompt_hash and len(custom.prompt_hash) == 16
    assert [lab.label for lab in custom.label(TEXTS)] == EXPECTED
    user = server.bodies[-1]["messages"][1]["content"]
    assert user.startswith("Judge these 4 NetHack messages:\n1. You kill the newt!")
    assert "{not a field}" in user


# -- fault cases: counted by kind, never raised from label_batch ------------------------------

@pytest.mark.parametrize(("behaviour", "kind", "requests"), [
    ("garbage", "parse", 1),
    ("empty", "parse", 1),
    ("malformed", "parse", 1),
    ("refusal", "refusal", 1),
    ("wrong_count", "wrong_count", 1),
    ("http_400", "config", 1),            # not retried
    ("http_401", "config", 1),
    ("http_404", "config", 1),
    ("http_408", "timeout", 2),           # transient: retried once (max_retries=1)
    ("http_500", "http_5xx", 2),
    ("http_429", "http_429", 2),
])
def test_fault_counted_by_kind(server: FakeOpenAIServer, make, behaviour: str, kind: str,
                               requests: int) -> None:
    server.default = behaviour
    labeler = make(structured_output="off")  # the plain prompt's parser; structured: below
    result = labeler.label_batch(TEXTS)
    assert result.labels == [] and result.failed == dict.fromkeys(TEXTS, kind)
    stats = labeler.stats()
    assert stats["errors"] == {kind: requests} and stats["failed"] == 4
    assert server.requests == requests
    if kind in ("parse", "refusal", "wrong_count"):
        assert stats["parse_samples"][-1]["kind"] == kind
    with pytest.raises(LabelerError) as info:              # the protocol call raises
        labeler.label(TEXTS)
    assert info.value.reason == kind


def test_hang_is_a_bounded_timeout(server: FakeOpenAIServer, make) -> None:
    server.default = "hang"
    timeout, retries = 0.3, 2
    labeler = make(timeout_s=timeout, max_retries=retries, backoff_base_s=0.05,
                   backoff_max_s=0.05)
    start = time.monotonic()
    result = labeler.label_batch(TEXTS)
    elapsed = time.monotonic() - start
    assert result.failed == dict.fromkeys(TEXTS, "timeout")
    assert labeler.stats()["errors"] == {"timeout": retries + 1}
    # every attempt waited its full timeout, and the hang ended (a loose upper bound: the
    # behaviour is "bounded", not a speed; a loaded machine must not fail it)
    assert timeout * (retries + 1) <= elapsed < 10 * timeout * (retries + 1) + 5.0


def test_server_down_is_a_connection_error(server: FakeOpenAIServer, make) -> None:
    labeler = make()
    server.stop()
    result = labeler.label_batch(TEXTS)
    assert result.failed == dict.fromkeys(TEXTS, "connection")
    assert labeler.stats()["errors"] == {"connection": 2}


def test_partial_failure_keeps_the_good_labels(server: FakeOpenAIServer, make) -> None:
    server.script("ok", "garbage")
    labeler = make(batch_size=2, max_concurrency=1,      # one at a time: script order holds
                   structured_output="off")
    result = labeler.label_batch(TEXTS)
    assert [lab.text for lab in result.labels] == TEXTS[:2]
    assert result.failed == dict.fromkeys(TEXTS[2:], "parse")


def test_transient_500s_are_retried(server: FakeOpenAIServer, make) -> None:
    server.script("http_500", "http_500")
    labeler = make(max_retries=2)
    labels = labeler.label(TEXTS)
    assert [lab.label for lab in labels] == EXPECTED
    stats = labeler.stats()
    assert stats["errors"] == {"http_5xx": 2} and stats["retries"] == 2
    assert server.requests == 3


# -- structured output -----------------------------------------------------------------------

def _asked_for(body: dict) -> str | None:
    fmt = body.get("response_format")
    return None if fmt is None else fmt["type"]


def test_structured_output_is_asked_for_and_read(server: FakeOpenAIServer, make) -> None:
    labeler = make(batch_size=3)
    assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    # the two batches' requests may run concurrently: match them by size, not arrival order
    formats = sorted((b["response_format"] for b in server.bodies),
                     key=lambda f: -len(f["json_schema"]["schema"]["required"]))
    assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] for f in formats)
    assert [f["json_schema"]["schema"] for f in formats] == [answers_schema(3), answers_schema(1)]
    stats = labeler.stats()
    assert stats["structured_replies"] == 2 and stats["structured_fallbacks"] == 0
    assert stats["structured_output"] == "json_schema" and stats["errors"] == {}


def test_server_refusing_structured_output_falls_back_for_good(
        caplog: pytest.LogCaptureFixture, make) -> None:
    with FakeOpenAIServer(structured="reject") as server:
        labeler = make(base_url=server.url, breaker_failures=1)
        with caplog.at_level(logging.WARNING, "llm_labeler"):
            for _ in range(3):
                assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    # json_schema refused (HTTP 400 naming response_format), then json_object, then plain;
    # the next batches go straight to the plain prompt
    assert [_asked_for(b) for b in server.bodies] == ["json_schema", "json_object", None,
                                                      None, None]
    stats = labeler.stats()
    assert stats["structured_fallbacks"] == 2 and stats["structured_output"] == "off"
    assert stats["errors"] == {} and stats["config_error"]["status"] is None
    assert labeler.breaker.state == "closed"             # a refusal is not an outage
    steps = [r for r in caplog.records if "structured output" in r.getMessage()]
    assert len(steps) == 2                               # one line per step, not per batch


def test_llama_cpp_python_server_gets_its_own_structured_dialect(make) -> None:
    # llama-cpp-python's server refuses json_schema with an HTTP 500 naming response_format
    # and takes json_object with a schema: a refusal, not an outage, and no retry of the 500
    with FakeOpenAIServer(structured="llama_cpp") as server:
        labeler = make(base_url=server.url, breaker_failures=1, max_retries=3)
        for _ in range(2):
            assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    assert [_asked_for(b) for b in server.bodies] == ["json_schema", "json_object",
                                                      "json_object"]
    stats = labeler.stats()
    assert stats["structured_output"] == "json_object" and stats["structured_replies"] == 2
    assert stats["errors"] == {} and stats["retries"] == 0 and labeler.breaker.state == "closed"


def test_server_ignoring_structured_output_is_read_by_the_tolerant_parser(make) -> None:
    with FakeOpenAIServer(structured="ignore") as server:
        labeler = make(base_url=server.url)
        for _ in range(3):                               # plain replies read at once
            assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    assert [_asked_for(b) for b in server.bodies] == ["json_schema", "json_object", None]
    stats = labeler.stats()
    assert stats["structured_fallbacks"] == 2 and stats["structured_replies"] == 0
    assert stats["errors"] == {}


def test_unreadable_structured_reply_asks_again_without_counting_a_failure(
        server: FakeOpenAIServer, make) -> None:
    server.script("garbage")                             # then "ok", honouring the schema
    labeler = make(max_concurrency=1)
    assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    assert [_asked_for(b) for b in server.bodies] == ["json_schema", "json_object"]
    stats = labeler.stats()
    assert stats["errors"] == {} and stats["structured_fallbacks"] == 1
    assert stats["structured_replies"] == 1 and stats["structured_output"] == "json_object"


def test_structured_output_on_and_off(make) -> None:
    with FakeOpenAIServer(structured="reject") as server:
        labeler = make(base_url=server.url, structured_output="on")
        result = labeler.label_batch(TEXTS)
        assert result.failed == dict.fromkeys(TEXTS, "config")  # never the plain prompt
        assert [_asked_for(b) for b in server.bodies] == ["json_schema", "json_object"]
        assert labeler.stats()["config_error"]["status"] == 400
        assert "response_format" in labeler.stats()["config_error"]["message"]
    with FakeOpenAIServer() as server:
        labeler = make(base_url=server.url, structured_output="off")
        assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
        assert [_asked_for(b) for b in server.bodies] == [None]
        assert labeler.stats()["structured_output"] == "off"
    with pytest.raises(ValueError, match="structured_output"):
        OpenAILabeler(structured_output="maybe")


def test_parse_structured() -> None:
    assert parse_structured('{"1": "yes", "2": "No"}', 2) == [1, 0]
    assert parse_structured(' {"2": "no", "1": "yes"}\n', 2) == [1, 0]
    for reply, kind in [("1: yes\n2: no", "parse"), ('["yes", "no"]', "parse"),
                        ('{"1": "yes"}', "wrong_count"), ('{"1": "yes", "2": "maybe"}', "parse"),
                        ('{"1": "yes", "3": "no"}', "wrong_count"), (None, "parse")]:
        with pytest.raises(ParseError) as info:
            parse_structured(reply, 2)
        assert info.value.kind == kind, reply


# -- configuration errors (HTTP 4xx): not an outage ------------------------------------------

def test_bad_key_is_a_configuration_error_reported_once(
        server: FakeOpenAIServer, make, caplog: pytest.LogCaptureFixture) -> None:
    server.default = "http_401"
    labeler = make(breaker_failures=2, max_retries=2)
    with caplog.at_level(logging.WARNING, "llm_labeler"):
        for _ in range(5):
            assert labeler.label_batch(TEXTS).failed == dict.fromkeys(TEXTS, "config")
        with pytest.raises(LabelerError) as info:
            labeler.label(TEXTS)
    assert info.value.reason == "config" and "Incorrect API key provided" in str(info.value)
    assert server.requests == 1                          # no retry, no request per batch
    stats = labeler.stats()
    assert stats["errors"] == {"config": 1} and stats["retries"] == 0
    assert stats["config_error"]["status"] == 401
    assert stats["config_error"]["message"].startswith("Incorrect API key provided: sk-wrong.")
    assert labeler.breaker.state == "closed" and stats["breaker"]["opens"] == 0
    reported = [r for r in caplog.records if "Incorrect API key" in r.getMessage()]
    assert len(reported) == 1 and reported[0].levelno == logging.ERROR
    assert "HTTP 401" in reported[0].getMessage()


def test_unknown_model_is_probed_once_per_hold_and_clears_when_fixed(
        server: FakeOpenAIServer, make, caplog: pytest.LogCaptureFixture) -> None:
    server.default = "http_404"
    labeler = make(model="no-such-model", config_retry_s=0.2)

    def after_hold() -> None:
        for _ in range(200):                             # bounded wait, no timing assertion
            if not labeler.config_gate.held:
                return
            time.sleep(0.01)
        raise AssertionError("the configuration hold never ended")

    with caplog.at_level(logging.WARNING, "llm_labeler"):
        assert set(labeler.label_batch(TEXTS).failed.values()) == {"config"}
        assert labeler.stats()["config_error"]["message"].startswith(
            "The model `no-such-model` does not exist")
        after_hold()
        assert set(labeler.label_batch(TEXTS).failed.values()) == {"config"}  # one probe
        assert server.requests == 2
        server.default = "ok"                            # the model got loaded
        after_hold()
        assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    stats = labeler.stats()
    assert stats["config_error"] == {"status": None, "message": None, "count": 2}
    assert stats["errors"] == {"config": 2} and labeler.breaker.state == "closed"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not exist" in m for m in messages) == 1  # the same error: logged once
    assert sum("is gone" in m for m in messages) == 1


def test_config_gate_unit() -> None:
    now = [0.0]
    gate = ConfigErrorGate(hold_s=10.0, clock=lambda: now[0])
    assert gate.allow() and not gate.held
    assert gate.record_config_error(401, "bad key") is True
    assert gate.held and not gate.allow() and gate.error == (401, "bad key")
    now[0] = 10.0
    assert not gate.held and gate.allow() and not gate.allow()  # exactly one probe
    gate.record_other()                                  # a timeout says nothing: free the probe
    assert gate.allow()
    assert gate.record_config_error(401, "bad key") is False     # same error: not new
    assert gate.record_config_error(404, "no model") is True
    now[0] = 20.0
    assert gate.allow()
    assert gate.record_success() == (404, "no model")
    assert gate.allow() and gate.record_success() is None
    assert gate.stats() == {"status": None, "message": None, "count": 3}


# -- circuit breaker -------------------------------------------------------------------------

def test_breaker_opens_then_half_open_probe_recovers(server: FakeOpenAIServer, make) -> None:
    labeler = make(breaker_failures=3, breaker_cooldown_s=0.4, max_retries=0)
    server.stop()
    for _ in range(3):
        assert set(labeler.label_batch(TEXTS[:1]).failed.values()) == {"connection"}
    assert labeler.breaker.state == "open"
    requests = labeler.stats()["requests"]
    start = time.monotonic()
    result = labeler.label_batch(TEXTS)                  # fails fast, nothing sent
    assert time.monotonic() - start < 0.5
    assert result.failed == dict.fromkeys(TEXTS, "breaker_open")
    assert labeler.stats()["requests"] == requests
    with pytest.raises(LabelerError) as info:
        labeler.label(TEXTS)
    assert info.value.reason == "breaker_open"

    time.sleep(0.45)                                     # cool-down over, server still down
    assert labeler.breaker.state == "half_open"
    assert set(labeler.label_batch(TEXTS[:1]).failed.values()) == {"connection"}  # probe
    assert labeler.breaker.state == "open"

    server.start()                                       # back on the same port
    time.sleep(0.45)
    assert [lab.label for lab in labeler.label(TEXTS[:1])] == EXPECTED[:1]  # the probe
    assert labeler.breaker.state == "closed"
    assert [lab.label for lab in labeler.label(TEXTS)] == EXPECTED
    assert labeler.stats()["breaker"]["opens"] == 1


def test_breaker_unit() -> None:
    now = [0.0]
    breaker = CircuitBreaker(2, cooldown_s=10.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    breaker.record_success()                             # resets the consecutive count
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()       # exactly one probe
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    assert breaker.stats() == {"state": "closed", "opens": 1, "consecutive_failures": 0}


# -- concurrency, odd texts, config ----------------------------------------------------------

def test_requests_run_concurrently(server: FakeOpenAIServer, make) -> None:
    server.default = "slow"
    server.slow_s = 0.3
    labeler = make(batch_size=1, max_concurrency=4)
    texts = [f"message {i} - kill" for i in range(8)]
    result = labeler.label_batch(texts)
    assert result.ok and server.requests == 8
    # 4 requests were in flight at once at the server (each held 0.3 s), never more
    assert server.max_concurrency == 4 and labeler.stats()["max_in_flight"] == 4


def test_huge_multiline_and_non_utf8_texts(server: FakeOpenAIServer, make) -> None:
    huge = "You kill the newt! " * 50_000
    bad = b"a - \xff\xfe blessed ring"
    multiline = "You see here\na scroll.\r\nIt reads: yes"
    labeler = make(max_prompt_chars=100)
    result = labeler.label_batch([huge, bad, multiline])
    assert result.ok
    by_text = {lab.text: lab.label for lab in result.labels}
    assert by_text == {huge: 1, "a - \ufffd\ufffd blessed ring": 1, multiline: 0}
    sent = server.seen_messages[0]
    assert len(sent) == 3 and len(sent[0]) == 100 and sent[0].endswith("…")
    assert sent[2] == "You see here a scroll. It reads: yes"
    stats = labeler.stats()
    assert stats["truncated"] == 1 and stats["decode_errors"] == 1

    server.default = "garbage"
    failed = labeler.label_batch([bad]).failed
    assert failed == {bad: "parse"}                      # keyed by the caller's input


def test_format_messages() -> None:
    assert format_messages(["a", "", "b\tc\x00d"], 10) == "1. a\n2. (empty message)\n3. b c d"
    assert format_messages(["x" * 20], 5) == "1. xxxx…"


def test_config_validation() -> None:
    with pytest.raises(ValueError) as info:
        OpenAILabeler(base_url="ftp://x", batch_size=0, timeout_s=0, user_template="no slot")
    message = str(info.value)
    for part in ("base_url", "batch_size", "timeout_s", "{messages}"):
        assert part in message
    with pytest.raises(TypeError):
        OpenAILabeler(no_such_option=1)
    cfg = OpenAILabelerConfig(model="m")
    labeler = OpenAILabeler(cfg, batch_size=7)
    assert labeler.config.batch_size == 7 and labeler.model == "m"
    labeler.close()


# -- reply parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "reply", "expected"), [
    (3, "1: yes\n2: no\n3: yes", [1, 0, 1]),
    (2, "1. Yes\n2. No", [1, 0]),
    (2, "1) TRUE\n2) false", [1, 0]),
    (2, "**1.** yes\n**2.** no", [1, 0]),
    (2, "Message 1: no\nMessage 2: yes", [0, 1]),
    (2, "[1] yes\n[2] no", [1, 0]),
    (2, "1 - yes\n2 - no", [1, 0]),
    (2, "1: y\n2: n", [1, 0]),
    (2, "1: 1\n2: 0", [1, 0]),
    (2, "0: yes\n1: no", [1, 0]),                                    # numbered from 0
    (2, "2: no\n1: yes", [1, 0]),                                    # any order
    (2, "Sure! Here you go:\n1: yes - a kill is progress\n2: no (a prompt)\nHope it helps!",
     [1, 0]),
    (2, "1. You kill the newt! -> yes\n2. It's a wall. -> no", [1, 0]),
    (2, "1. n - a wand of digging: yes\n2. Yes, master? -> no", [1, 0]),
    (2, "1: yes\n1: yes\n2: no", [1, 0]),                            # repeated, consistent
    (2, '["yes", "no"]', [1, 0]),
    (3, "[1, 0, 1]", [1, 0, 1]),
    (2, "[true, false]", [1, 0]),
    (2, 'Answers:\n```json\n["no", "yes"]\n```\nDone.', [0, 1]),
    (2, "```\n1: no\n2: yes\n```", [0, 1]),
    (2, '{"1": "yes", "2": "no"}', [1, 0]),
    (2, '{"answers": ["no", "no"]}', [0, 0]),
    (2, '[{"id": 1, "answer": "yes"}, {"id": 2, "answer": "no"}]', [1, 0]),
    (2, '[{"1": "yes"}, {"2": "No."}]', [1, 0]),
    (3, "yes\nno\nyes", [1, 0, 1]),
    (3, "- Yes\n- No, it is a prompt.\n- yes", [1, 0, 1]),
    (3, "yes, no, yes", [1, 0, 1]),
    (3, "1 0 1", [1, 0, 1]),
    (1, "Yes.", [1]),
    (1, "No, this is just a prompt.", [0]),
    (1, "  YES  ", [1]),
])
def test_parse_answers(n: int, reply: str, expected: list[int]) -> None:
    assert parse_answers(reply, n) == expected


@pytest.mark.parametrize(("n", "reply", "kind"), [
    (2, "", "parse"),
    (2, None, "parse"),
    (2, "  \n ", "parse"),
    (2, "Lorem ipsum dolor sit amet.", "parse"),
    (2, "I'm sorry, but I can't help with that.", "refusal"),
    (2, "As an AI language model, I cannot judge video games.", "refusal"),
    (1, "I am unable to determine that.", "refusal"),
    (3, "1: yes\n2: no", "wrong_count"),
    (2, "1: yes\n2: no\n3: yes", "wrong_count"),
    (2, "1: yes\n3: no", "wrong_count"),
    (2, '["yes"]', "wrong_count"),
    (2, '{"1": "yes", "3": "no"}', "wrong_count"),
    (2, '["yes", "maybe"]', "parse"),
    (2, "[1, 2]", "parse"),
    (2, "1: yes\n1: no\n2: no", "parse"),                           # contradiction
    (2, "yes\nno\nyes", "wrong_count"),
    (2, "yes, no, yes", "wrong_count"),
])
def test_parse_failures(n: int, reply: str | None, kind: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_answers(reply, n)
    assert info.value.kind == kind
    assert info.value.sample == (reply or "").strip()[:200]


def test_fake_server_rule() -> None:
    assert [rule(t) for t in TEXTS] == ["yes", "no", "yes", "no"]
