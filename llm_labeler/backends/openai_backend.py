"""LLM labeler over any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp, Ollama).

Texts are sent in numbered batches with a classification prompt in the style of ONI's (a judge
of NetHack progress answers yes/no per message). Unlike ONI's annotator, a dead or slow server
never stalls the caller: requests run concurrently, each with a timeout and a bounded number
of retries (exponential back-off with jitter, for timeouts, connection errors, HTTP 5xx and
429), and a circuit breaker stops calling a server that keeps failing until a cool-down has
passed and one probe request succeeds. Replies that cannot be read are never turned into a
default label: they are counted by kind with a sample, and the texts are reported as failed.

Config::

    labeler: openai
    labeler_options: {base_url: "http://127.0.0.1:8000/v1", model: "Qwen/Qwen2.5-7B-Instruct",
                      batch_size: 20, max_concurrency: 4, timeout_s: 30,
                      structured_output: auto, config_retry_s: 60}

Every option is a field of :class:`OpenAILabelerConfig`, documented there.

Structured output (``structured_output``, default ``auto``): requests carry a
``response_format`` asking for a JSON object that follows
:func:`~llm_labeler.backends.openai_prompt.answers_schema` (``{"1": "yes", "2": "no"}``), first
as OpenAI's ``json_schema``, then as llama-cpp-python's ``json_object`` with a ``schema``. A
server that refuses one (an HTTP 4xx, or the 500 llama-cpp-python's server answers, whose
message names ``response_format``) or answers something else is asked the next way, and
finally with the plain prompt read by the tolerant parser; the labeler
remembers the step for good (``stats()["structured_output"]``) and counts each request that
had to fall back (``stats()["structured_fallbacks"]``), logging each step once.

Error kinds (``stats()["errors"]``, one count per failed request or reply): ``timeout``
(also HTTP 408), ``connection``, ``config``, ``http_429``, ``http_5xx``, ``parse``,
``refusal``, ``wrong_count``. Texts not sent because the breaker was open fail with
``breaker_open`` (``closed`` after :meth:`OpenAILabeler.close`, ``internal`` for a bug, logged
with its traceback).

Configuration errors: any other HTTP 4xx (400 bad request, 401/403 bad key, 404 unknown model,
422 rejected option) says the server is up but refuses *this* configuration, which no retry
fixes. It is not counted against the server (the circuit breaker stays closed) and not
retried; it is logged once, with the server's own message, counted as ``config`` and kept in
``stats()["config_error"]``; then no request is sent for ``config_retry_s`` and texts fail fast
with ``config`` (the labeler service keeps them queued, not failed, and keeps serving cached
labels). One request per ``config_retry_s`` then checks whether the server was fixed (the
model loaded, the key changed); the first reply that is not a configuration error resumes
labelling.

A silent (hanging) server costs a batch at most ``timeout_s * (max_retries + 1)`` plus the
back-off delays (each at most ``backoff_max_s``); chunks of one batch run in parallel.

This module is the HTTP client; its options are in :mod:`llm_labeler.backends.openai_config`,
the prompts and the reply parser in :mod:`llm_labeler.backends.openai_prompt`, the circuit
breaker in :mod:`llm_labeler.backends.breaker` (their public names are re-exported here).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from llm_labeler.backends.breaker import CircuitBreaker, ConfigErrorGate
from llm_labeler.backends.openai_config import OpenAILabelerConfig
from llm_labeler.backends.openai_prompt import (
    DEFAULT_COMPARE_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_USER_TEMPLATE,
    STRUCTURED_DIALECTS,
    ParseError,
    compare_messages,
    format_messages,
    label_messages,
    parse_answers,
    parse_structured,
    prompt_hash,
    response_format,
)
from llm_labeler.protocol import Label, LabelerError
from llm_labeler.registry import register_labeler
from llm_labeler.store import normalize_text

# Prompt, parser and breaker live in their own modules; their names stay importable from here.
__all__ = ["DEFAULT_COMPARE_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "DEFAULT_USER_TEMPLATE",
           "BatchResult", "CircuitBreaker",
           "OpenAILabeler", "OpenAILabelerConfig", "ParseError", "format_messages",
           "parse_answers", "prompt_hash"]

log = logging.getLogger(__name__)

#: Error kinds worth a retry: the same request may succeed later.
RETRYABLE = frozenset({"timeout", "connection", "http_5xx", "http_429"})

@dataclass
class BatchResult:
    """Outcome of :meth:`OpenAILabeler.label_batch`.

    Attributes:
        labels: labels of the texts that got one, in input order (one per input occurrence).
        failed: ``{input text: error kind}`` for the others.
    """

    labels: list[Label]
    failed: dict[str | bytes, str]

    @property
    def ok(self) -> bool:
        """Every text got a label."""
        return not self.failed


class _RequestError(Exception):
    """A request that got no usable reply: ``kind`` is the error kind; ``status`` and
    ``detail`` the HTTP status and the server's message, when it answered."""

    def __init__(self, kind: str, detail: str, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.status = status


@register_labeler("openai")
class OpenAILabeler:
    """Labels texts with an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Call sequence: construct (no request is sent), then :meth:`label_batch` (never raises for
    server or reply failures) or :meth:`label` (protocol: all labels or :class:`LabelerError`)
    as often as needed from any thread; :meth:`stats` for counters; :meth:`close` at the end.
    """

    name = "openai"

    def __init__(self, config: OpenAILabelerConfig | None = None, **overrides: Any) -> None:
        """Build the client.

        Args:
            config: full configuration; defaults to :class:`OpenAILabelerConfig` ().
            **overrides: config fields to replace (what ``labeler_options`` gives).

        Raises:
            TypeError: unknown option.
            ValueError: invalid option values.
        """
        base = config or OpenAILabelerConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.config.validate()
        cfg = self.config
        self.model = cfg.model
        self.prompt_hash = prompt_hash(cfg.system_prompt, cfg.user_template)
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self.config_gate = ConfigErrorGate(cfg.config_retry_s)
        self._dialects = STRUCTURED_DIALECTS if cfg.structured_output != "off" else ()
        self._dialect = 0  # index into _dialects; past the end: the plain prompt
        key = cfg.api_key if cfg.api_key is not None else os.environ.get(cfg.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=cfg.base_url.rstrip("/") + "/", headers=headers,
            timeout=httpx.Timeout(cfg.timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_concurrency,
                                max_keepalive_connections=cfg.max_concurrency))
        self._pool = concurrent.futures.ThreadPoolExecutor(cfg.max_concurrency,
                                                           thread_name_prefix="openai-labeler")
        self._rng = random.Random(cfg.seed)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._errors: collections.Counter[str] = collections.Counter()
        self._counts = {"requests": 0, "replies": 0, "retries": 0, "labelled": 0, "failed": 0,
                        "decode_errors": 0, "truncated": 0, "in_flight": 0,
                        "max_in_flight": 0, "structured_replies": 0,
                        "structured_fallbacks": 0}
        self._latencies: collections.deque[float] = collections.deque(maxlen=2048)
        self._samples: collections.deque[dict[str, str]] = collections.deque(maxlen=8)

    # -- public API --------------------------------------------------------------------

    def label_batch(self, texts: Sequence[str | bytes]) -> BatchResult:
        """Label texts with concurrent requests of up to ``batch_size`` distinct texts each.

        Args:
            texts: (N,) texts, ``str`` or ``bytes`` (decoded as UTF-8, invalid bytes replaced
                and counted); duplicates are sent once.

        Returns:
            Labels for what could be labelled and the error kind of each failed text (see the
            module docstring). Never raises for server, network or reply failures.

        Raises:
            RuntimeError: called after :meth:`close`.
        """
        normalized = [normalize_text(query) for query in texts]
        self._count(decode_errors=sum(repaired for _, repaired in normalized))
        unique = list(dict.fromkeys(text for text, _ in normalized))
        size = self.config.batch_size
        chunks = [unique[i:i + size] for i in range(0, len(unique), size)]
        outcome: dict[str, int | str] = {}  # text -> answer or error kind
        if self.breaker.state == CircuitBreaker.OPEN:  # fail fast, no thread hand-off
            outcome = dict.fromkeys(unique, "breaker_open")
        elif self.config_gate.held:
            outcome = dict.fromkeys(unique, "config")
        else:
            futures = {self._pool.submit(self._label_chunk, chunk): chunk for chunk in chunks}
            for future, chunk in futures.items():
                try:
                    outcome.update(future.result())
                except Exception:  # a bug, not a server fault: keep the caller running
                    log.exception("openai labeler: unexpected error labelling a batch")
                    outcome.update(dict.fromkeys(chunk, "internal"))
        labels, failed = [], {}
        for query, (text, _) in zip(texts, normalized, strict=True):
            value = outcome[text]
            if isinstance(value, str):
                failed[query] = value
            else:
                labels.append(Label(text=text, label=value, score=float(value),
                                    backend=self.name, model=self.model))
        self._count(labelled=len(labels), failed=len(failed))
        return BatchResult(labels=labels, failed=failed)

    def label(self, texts: Sequence[str]) -> list[Label]:
        """Label a batch (:class:`~llm_labeler.protocol.Labeler` protocol).

        Args:
            texts: (N,) texts.

        Returns:
            (N,) labels in the order of ``texts``.

        Raises:
            LabelerError: some text got no label; ``reason`` is ``"breaker_open"`` when the
                circuit breaker is open, else the most frequent error kind. Use
                :meth:`label_batch` to keep the labels that did succeed.
        """
        result = self.label_batch(texts)
        if result.ok:
            return result.labels
        kinds = collections.Counter(result.failed.values())
        reason = ("breaker_open" if "breaker_open" in kinds or self.breaker.state != "closed"
                  else kinds.most_common(1)[0][0])
        config_error = self.config_gate.error
        said = (f"; configuration error, the server said HTTP {config_error[0]}: "
                f"{config_error[1]}" if config_error and "config" in kinds else "")
        raise LabelerError(f"openai labeler {self.config.base_url} ({self.model}): "
                           f"{len(result.failed)}/{len(texts)} texts unlabelled "
                           f"({dict(kinds)}){said}", reason=reason)

    def stats(self) -> dict[str, Any]:
        """Counters for logging under ``labeler/openai/``.

        Returns:
            ``requests`` (HTTP attempts), ``replies`` (2xx), ``retries``, ``labelled`` /
            ``failed`` (texts), ``errors`` (by kind), ``decode_errors``, ``truncated`` (texts
            cut in the prompt), ``in_flight``, ``max_in_flight``, ``latency_p50_s`` /
            ``latency_p95_s`` (of 2xx replies, ``None`` before the first), ``breaker``
            (:meth:`CircuitBreaker.stats`), ``config_error`` (:meth:`ConfigErrorGate.stats`:
            the active configuration error's HTTP status and server message, None when there
            is none), ``structured_output`` (what requests ask for now: ``"json_schema"``,
            ``"json_object"`` or ``"off"``), ``structured_replies`` (replies read as
            structured output), ``structured_fallbacks`` (requests whose structured output was
            refused or unreadable), ``parse_samples`` (recent unreadable replies).
        """
        with self._lock:
            lat = sorted(self._latencies)
            out: dict[str, Any] = {**self._counts, "errors": dict(self._errors),
                                   "parse_samples": list(self._samples)}
            dialect = self._dialects[self._dialect] if self._dialect < len(self._dialects) \
                else "off"
        out["structured_output"] = dialect
        out["config_error"] = self.config_gate.stats()
        out["latency_p50_s"] = lat[int(0.50 * (len(lat) - 1))] if lat else None
        out["latency_p95_s"] = lat[round(0.95 * (len(lat) - 1))] if lat else None
        out["breaker"] = self.breaker.stats()
        return out

    def close(self) -> None:
        """Stop retries in progress, wait for requests in flight, close connections."""
        self._closed.set()
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> OpenAILabeler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAILabeler(base_url={self.config.base_url!r}, model={self.model!r})"

    # -- internals ---------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._counts[key] += delta

    def _error(self, kind: str, sample: str | None = None) -> None:
        with self._lock:
            self._errors[kind] += 1
            if sample is not None:
                self._samples.append({"kind": kind, "sample": sample})
        if sample is not None:
            log.warning("openai labeler: %s reply from %s (%s): %r", kind, self.config.base_url,
                        self.model, sample)

    def _build_request(self, texts: list[str]) -> dict[str, Any]:
        cfg = self.config
        self._count(truncated=sum(len(t) > cfg.max_prompt_chars for t in texts))
        return {"model": cfg.model, "temperature": cfg.temperature, "stream": False,
                "max_tokens": 64 + cfg.max_tokens_per_text * len(texts),
                "messages": label_messages(texts, system_prompt=cfg.system_prompt,
                                           user_template=cfg.user_template,
                                           max_chars=cfg.max_prompt_chars)}

    def _label_chunk(self, texts: list[str]) -> dict[str, int | str]:
        """One request (with retries) for ``texts``: ``{text: answer}`` or ``{text: kind}``."""
        answers = self._ask(self._build_request(texts), len(texts))
        if isinstance(answers, str):
            return dict.fromkeys(texts, answers)
        return dict(zip(texts, answers, strict=True))

    def compare(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """Judge pairs for the ranking reward model: P(first text is better), None if unknown.

        Pairs go ``batch_size`` to a request, requests run concurrently; failures (counted
        like labelling failures) leave ``None`` for the pairs concerned.
        """
        cfg = self.config
        if self.breaker.state == CircuitBreaker.OPEN or self.config_gate.held:
            return [None] * len(pairs)
        chunks = [list(pairs[i:i + cfg.batch_size]) for i in range(0, len(pairs), cfg.batch_size)]
        futures = [self._pool.submit(self._compare_chunk, chunk) for chunk in chunks]
        out: list[float | None] = []
        for future, chunk in zip(futures, chunks, strict=True):
            try:
                out.extend(future.result())
            except Exception:  # a bug, not a server fault: keep the caller running
                log.exception("openai labeler: unexpected error comparing pairs")
                out.extend([None] * len(chunk))
        return out

    def _compare_chunk(self, pairs: list[tuple[str, str]]) -> list[float | None]:
        cfg = self.config
        body = {"model": cfg.model, "temperature": cfg.temperature, "stream": False,
                "max_tokens": 64 + cfg.max_tokens_per_text * len(pairs),
                "messages": compare_messages(pairs, system_prompt=cfg.system_prompt,
                                             compare_template=cfg.compare_template,
                                             max_chars=cfg.max_prompt_chars)}
        answers = self._ask(body, len(pairs))
        if isinstance(answers, str):
            return [None] * len(pairs)
        return [float(a) for a in answers]

    def _ask(self, body: dict[str, Any], n: int) -> list[int] | str:
        """One request, with retries and the structured-output fallback: ``n`` yes/no
        answers, or the error kind."""
        cfg = self.config
        attempt = 0
        while True:
            if self._closed.is_set():
                return "closed"
            if not self.config_gate.allow():
                return "config"
            if not self.breaker.allow():
                self.config_gate.record_other()
                return "breaker_open"
            dialect = self._structured_dialect()
            request = body if dialect is None else {
                **body, "response_format": response_format(n, dialect)}
            try:
                content = self._post(request)
            except ParseError as err:  # a 2xx reply whose body is not a chat completion
                self._server_answered()
                self._error(err.kind, err.sample)
                return err.kind
            except _RequestError as err:
                refused = (dialect is not None and err.kind in ("config", "http_5xx")
                           and _names_response_format(err.detail))
                if refused or err.kind == "config":  # the server is up, refuses this request
                    self.breaker.record_success()
                    if refused and self._fall_back(dialect, f"HTTP {err.status}: {err.detail}"):
                        self.config_gate.record_other()
                        continue  # ask again without it: not an attempt, not a failure
                    self._config_error(err)
                    return "config"
                self.breaker.record_failure()
                self.config_gate.record_other()
                self._error(err.kind)
                if err.kind not in RETRYABLE or attempt == cfg.max_retries:
                    return err.kind
                delay = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** attempt)
                with self._lock:
                    delay = delay / 2 + self._rng.uniform(0, delay / 2)
                if err.retry_after is not None:
                    delay = min(cfg.backoff_max_s, max(delay, err.retry_after))
                self._count(retries=1)
                attempt += 1
                self._closed.wait(delay)
                continue
            self._server_answered()
            ask_again = False
            if dialect is not None:
                try:
                    answers = parse_structured(content, n)
                except ParseError as err:  # the server ignored or mangled the schema
                    ask_again = self._fall_back(dialect, f"unreadable reply {err.sample!r}")
                else:
                    self._count(structured_replies=1)
                    return answers
            try:
                return parse_answers(content, n)
            except ParseError as err:
                if ask_again:
                    continue
                self._error(err.kind, err.sample)
                return err.kind

    def _structured_dialect(self) -> str | None:
        """How requests ask for structured output now; None: the plain prompt."""
        with self._lock:
            return self._dialects[self._dialect] if self._dialect < len(self._dialects) else None

    def _fall_back(self, dialect: str, why: str) -> bool:
        """A request asking for structured output as ``dialect`` was refused or answered
        otherwise: count it, and stop asking that way (for good, for every thread).

        Returns:
            Whether asking again another way may help: False only with
            ``structured_output="on"`` once every structured dialect has failed.
        """
        index = self._dialects.index(dialect)
        with self._lock:
            self._counts["structured_fallbacks"] += 1
            if self._dialect != index:  # another request already moved on
                return True
            if index + 1 >= len(self._dialects) and self.config.structured_output == "on":
                return False
            self._dialect = index + 1
            following = (self._dialects[self._dialect] if self._dialect < len(self._dialects)
                         else None)
        log.warning("openai labeler %s (%s): structured output as %r did not work (%s); "
                    "asking %s from now on", self.config.base_url, self.model, dialect, why,
                    f"as {following!r}" if following else
                    "with the plain prompt, read by the tolerant parser")
        return True

    def _server_answered(self) -> None:
        """A 2xx reply: the server is up and accepts this configuration."""
        self.breaker.record_success()
        cleared = self.config_gate.record_success()
        if cleared is not None:
            log.warning("openai labeler %s (%s): the configuration error (HTTP %d) is gone; "
                        "labelling resumes", self.config.base_url, self.model, cleared[0])

    def _config_error(self, err: _RequestError) -> None:
        """Count a configuration error, hold requests, and log it once (not per batch)."""
        status = err.status if err.status is not None else 400
        new = self.config_gate.record_config_error(status, err.detail)
        self._error("config")
        if new:
            log.error("openai labeler %s (model %r): the server refused the request with HTTP "
                      "%d: %s -- a configuration error (model name, API key, options), not a "
                      "server outage. No request is sent for %.0f s, then one checks whether "
                      "it was fixed; texts wait meanwhile (labeler/errors/config).",
                      self.config.base_url, self.model, status, err.detail,
                      self.config.config_retry_s)

    def _post(self, body: dict[str, Any]) -> str:
        """Send one request; return the reply's message content.

        Raises:
            _RequestError: timeout, connection or HTTP status failure.
            ParseError: a 2xx response that is not a chat completion (``kind="parse"``).
        """
        cfg = self.config
        self._count(requests=1, in_flight=1)
        with self._lock:
            self._counts["max_in_flight"] = max(self._counts["max_in_flight"],
                                                self._counts["in_flight"])
        start = time.monotonic()
        try:
            with self._client.stream("POST", "chat/completions", json=body) as response:
                raw, oversize = bytearray(), False
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > cfg.max_response_bytes:
                        oversize = True
                        break
                    if time.monotonic() - start > 2 * cfg.timeout_s:  # a trickling server
                        raise _RequestError("timeout", "reply still arriving after "
                                            f"{2 * cfg.timeout_s:.1f} s")
                status = response.status_code
                retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException as err:
            raise _RequestError("timeout", repr(err)) from None
        except httpx.HTTPError as err:  # connect refused/reset, protocol errors
            raise _RequestError("connection", repr(err)) from None
        finally:
            self._count(in_flight=-1)
        if status == 429:
            raise _RequestError("http_429", "rate limited", retry_after, status)
        if status == 408:  # the server gave up waiting for us: transient, like a timeout
            raise _RequestError("timeout", "HTTP 408", retry_after, status)
        if 400 <= status < 500:
            raise _RequestError("config", _server_message(bytes(raw)), status=status)
        if status >= 500:
            raise _RequestError("http_5xx", _server_message(bytes(raw)), status=status)
        if not 200 <= status < 300:
            raise _RequestError("connection", f"unexpected HTTP {status}")
        with self._lock:
            self._latencies.append(time.monotonic() - start)
            self._counts["replies"] += 1
        sample = bytes(raw[:200]).decode("utf-8", "replace")
        if oversize:
            raise ParseError(f"response over {cfg.max_response_bytes} bytes", kind="parse",
                             sample=sample)
        try:
            content = json.loads(bytes(raw))["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ParseError("response is not a chat completion", kind="parse",
                             sample=sample) from None
        return "" if content is None else str(content)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _server_message(raw: bytes) -> str:
    """The server's own words from an error body (OpenAI ``{"error": {"message"}}``, FastAPI
    ``{"detail"}``, or plain text), on one line and at most 300 characters."""
    try:
        data: Any = json.loads(raw)
    except ValueError:  # not JSON (invalid UTF-8 included)
        data = raw.decode("utf-8", "replace")
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        data = message or data.get("detail") or data.get("message") or data
    text = data if isinstance(data, str) else json.dumps(data)
    return " ".join(text.split())[:300] or "(empty body)"


def _names_response_format(message: str) -> bool:
    """Whether a refusal is about structured output (so dropping it may help)."""
    lowered = message.lower()
    return "response_format" in lowered or "json_schema" in lowered
