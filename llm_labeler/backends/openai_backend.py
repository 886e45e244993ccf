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
                      batch_size: 20, max_concurrency: 4, timeout_s: 30}

Error kinds (``stats()["errors"]``, one count per failed request or reply): ``timeout``,
``connection``, ``http_4xx``, ``http_429``, ``http_5xx``, ``parse``, ``refusal``,
``wrong_count``. Texts not sent because the breaker was open fail with ``breaker_open``
(``closed`` after :meth:`OpenAILabeler.close`, ``internal`` for a bug, logged with its
traceback).

A silent (hanging) server costs a batch at most ``timeout_s * (max_retries + 1)`` plus the
back-off delays (each at most ``backoff_max_s``); chunks of one batch run in parallel.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from llm_labeler.protocol import Label, LabelerError
from llm_labeler.registry import register_labeler
from llm_labeler.store import normalize_text

__all__ = ["DEFAULT_COMPARE_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "DEFAULT_USER_TEMPLATE",
           "BatchResult", "CircuitBreaker",
           "OpenAILabeler", "OpenAILabelerConfig", "ParseError", "format_messages",
           "parse_answers", "prompt_hash"]

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful and honest judge of good gameplay and progress in the game NetHack. "
    "Always answer as helpfully as possible, while being truthful. If you are not sure "
    "whether a message shows progress, answer no rather than inventing information.")

DEFAULT_USER_TEMPLATE = (
    "I will show you {n} messages from the game NetHack, numbered 1 to {n}. For each message, "
    "tell me whether it indicates that the player made progress, or that something happened "
    "that an expert player would want to seek (for example killing a monster, acquiring a "
    "valuable item, finding the stairs down). Prompts, menus, failed actions and flavour text "
    "are not progress.\n\n"
    "Messages:\n{messages}\n\n"
    'Answer with exactly {n} lines and nothing else, one per message, in the form "N: yes" or '
    '"N: no".')

DEFAULT_COMPARE_TEMPLATE = (
    "I will show you {n} pairs of messages from the game NetHack, numbered 1 to {n}. For each "
    "pair, tell me whether message A shows more progress, or something an expert player would "
    "rather seek, than message B.\n\n"
    "Pairs:\n{messages}\n\n"
    'Answer with exactly {n} lines and nothing else, one per pair, in the form "N: yes" (A is '
    'better) or "N: no".')

#: Version of the way texts are put into the prompt; part of :func:`prompt_hash`.
_FORMAT_VERSION = "numbered-lines-v1"

#: Error kinds worth a retry: the same request may succeed later.
RETRYABLE = frozenset({"timeout", "connection", "http_5xx", "http_429"})


# -- prompt ----------------------------------------------------------------------------------

def format_messages(texts: Sequence[str], max_chars: int) -> str:
    """Render texts as the numbered list the prompt shows, one line each.

    Args:
        texts: (n,) texts (valid Unicode).
        max_chars: longest text kept; longer ones are cut and end with ``"…"``.

    Returns:
        ``"1. text\\n2. text..."``; line breaks and control characters inside a text become
        spaces so that each message stays on its own line.
    """
    lines = []
    for i, text in enumerate(texts, start=1):
        flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
        if len(flat) > max_chars:
            flat = flat[:max_chars - 1] + "…"
        lines.append(f"{i}. {flat or '(empty message)'}")
    return "\n".join(lines)


def prompt_hash(system_prompt: str, user_template: str) -> str:
    """Short hash identifying a prompt; stored with each label (``LabelStore.put_many``)."""
    blob = "\0".join((system_prompt, user_template, _FORMAT_VERSION)).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# -- reply parsing ---------------------------------------------------------------------------

class ParseError(ValueError):
    """A reply that does not give one yes/no answer per message.

    Attributes:
        kind: ``"parse"`` (unreadable or empty), ``"refusal"`` (the model declined) or
            ``"wrong_count"`` (readable, but not one answer per message).
        sample: the start of the offending reply, for the log.
    """

    def __init__(self, message: str, *, kind: str, sample: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.sample = sample


_TRUE = frozenset({"yes", "y", "true", "1", "positive", "interesting"})
_FALSE = frozenset({"no", "n", "false", "0", "negative", "uninteresting"})
_WORD = r"(yes|no|true|false|y|n|1|0)"
_STRONG = r"(yes|no|true|false)"  # answer words that may be followed by an explanation
_PREFIX = r"^[\s>*_#-]*(?:message|msg|answer)?\s*#?[\[(]?\s*(\d{1,4})\s*[\])]?"
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_NUMBERED = re.compile(  # "1: yes", "2) No - a prompt", "**3.** true", "[4] n", "Message 5: 0"
    _PREFIX + r"\s*[:.)\-=]?[\s*_\"']*(?:" + _STRONG + r"\b|(y|n|1|0)[\s*_\"'.!]*$)",
    re.IGNORECASE)
_NUMBERED_TAIL = re.compile(  # the model repeats the message: "1. You kill the newt! -> yes"
    _PREFIX + r"\s*[:.)\-=]\s*.*?(?:->|=>|:|-|\||—)\s*[*_\"']*" + _STRONG + r"\W*$",
    re.IGNORECASE)
_BARE = re.compile(  # one answer per line: "yes", "- No, a prompt.", "1"
    r"^[\s>*_#•-]*[\"']?(?:" + _STRONG + r"\b[\"']?(?:$|[\s.,;:!)(-].*$)|(y|n|1|0)\W*$)",
    re.IGNORECASE)
_TOKENS_ONLY = re.compile(r"^[\s\[\](),;\"'`]*(?:" + _WORD + r"[\s\[\](),;\"'`]*)+$",
                          re.IGNORECASE)
_REFUSAL = re.compile(r"\b(I\s+(?:cannot|can ?not|can't|won't|am unable|'m unable|am not able|"
                      r"'m not able)|I'm sorry|I am sorry|as an AI|I apologi[sz]e|"
                      r"not able to (?:help|assist|comply))", re.IGNORECASE)


def _to_answer(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        word = value.strip().strip(".!\"'*").lower()
        if word in _TRUE:
            return 1
        if word in _FALSE:
            return 0
    if isinstance(value, dict):  # {"id": 1, "answer": "yes"} or {"1": "yes"}
        for key in ("answer", "label", "interesting", "progress", "value", "result"):
            if key in value:
                return _to_answer(value[key])
        if len(value) == 1:
            return _to_answer(next(iter(value.values())))
    return None


def _from_json(text: str, n: int) -> list[int] | None:
    """Answers from a JSON array or object somewhere in ``text``; ``None`` if there is none."""
    for opener, closer in (("[", "]"), ("{", "}")):
        start, stop = text.find(opener), text.rfind(closer)
        if start < 0 or stop <= start:
            continue
        try:
            data = json.loads(text[start:stop + 1])
        except (json.JSONDecodeError, RecursionError):  # not JSON, or absurdly nested
            continue
        if isinstance(data, dict):
            for key in ("answers", "labels", "results", "messages"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if isinstance(data, dict):  # {"1": "yes", "2": "no"}
            try:
                items = sorted((int(k), v) for k, v in data.items())
            except ValueError:
                continue
            data = [v for _, v in items]
            if [k for k, _ in items] != list(range(1, len(items) + 1)):
                raise ParseError(f"JSON object keys {[k for k, _ in items]} are not 1..{n}",
                                 kind="wrong_count", sample=text[:200])
        if not isinstance(data, list):
            continue
        answers = [_to_answer(v) for v in data]
        if any(a is None for a in answers):
            bad = next(v for v, a in zip(data, answers, strict=True) if a is None)
            raise ParseError(f"JSON answer {bad!r} is not yes/no", kind="parse",
                             sample=text[:200])
        return answers  # type: ignore[return-value]
    return None


def _from_numbered(lines: list[str], n: int) -> dict[int, int] | None:
    found: dict[int, int] = {}
    for line in lines:
        match = _NUMBERED_TAIL.match(line) or _NUMBERED.match(line)
        if match is None:
            continue
        num = int(match.group(1))
        answer = _to_answer(next(g for g in match.groups()[1:] if g is not None))
        if answer is None:
            continue
        if num in found and found[num] != answer:
            raise ParseError(f"message {num} answered both yes and no", kind="parse",
                             sample="\n".join(lines)[:200])
        found[num] = answer
    return found or None


def parse_answers(reply: str | None, n: int) -> list[int]:
    """Read one 0/1 answer per message from an LLM reply.

    Accepted: numbered lines (``"1: yes"``, ``"2) No"``, ``"**3.** true"``, ``"4. <message>
    -> no"``), JSON (``["yes", "no"]``, ``[1, 0]``, ``{"1": "yes"}``, ``{"answers": [...]}``,
    ``[{"id": 1, "answer": "yes"}]``), one bare answer per line, or a single line of answers
    (``"yes, no, yes"``); code fences and chatter around the answers are ignored. Numbering
    from 0 is accepted too.

    Args:
        reply: the model's message content.
        n: number of messages asked about (>= 1).

    Returns:
        (n,) answers, 1 = yes.

    Raises:
        ParseError: ``kind="parse"`` for an empty or unreadable reply, ``"refusal"`` when the
            model declined, ``"wrong_count"`` when the answers are readable but not one per
            message.
    """
    text = (reply or "").strip()
    sample = text[:200]
    if not text:
        raise ParseError("empty reply", kind="parse", sample=sample)
    fenced = _FENCE.findall(text)
    body = "\n".join(fenced) if fenced else text.replace("```", "")

    answers = _from_json(body, n)
    if answers is None:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        numbered = _from_numbered(lines, n)
        if numbered is not None:
            keys = sorted(numbered)
            if keys == list(range(n)):  # numbered from 0
                numbered = {k + 1: v for k, v in numbered.items()}
                keys = sorted(numbered)
            if keys != list(range(1, n + 1)):
                raise ParseError(f"answers for messages {keys}, expected 1..{n}",
                                 kind="wrong_count", sample=sample)
            return [numbered[k] for k in keys]
        bare = [m.group(1) or m.group(2) for m in map(_BARE.match, lines) if m]
        if len(lines) == 1 and _TOKENS_ONLY.match(lines[0]):
            bare = re.findall(_WORD, lines[0], flags=re.IGNORECASE)
        if bare:
            answers = [_to_answer(word) for word in bare]  # type: ignore[misc]
    if answers is None:
        kind = "refusal" if _REFUSAL.search(text) else "parse"
        raise ParseError("no answers found in the reply" if kind == "parse" else
                         "the model refused", kind=kind, sample=sample)
    if len(answers) != n:
        raise ParseError(f"{len(answers)} answers for {n} messages", kind="wrong_count",
                         sample=sample)
    return answers


# -- circuit breaker -------------------------------------------------------------------------

class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``cooldown_s`` (exactly one probe request allowed) → closed on the probe's success, open
    again on its failure. Thread-safe.

    Every :meth:`allow` that returns true must be followed by one :meth:`record_success` or
    :meth:`record_failure`.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Create a closed breaker.

        Args:
            failure_threshold: consecutive failures that open it (>= 1).
            cooldown_s: time open before a probe is allowed, seconds.
            clock: monotonic time source (tests pass a fake).
        """
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (a probe may be or is being sent)."""
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return self.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a request may be sent now (claims the probe slot when half-open)."""
        with self._lock:
            if self._state == self.CLOSED:
                return True
            if self._state == self.OPEN:
                if self._clock() - self._opened_at < self.cooldown_s:
                    return False
                self._state = self.HALF_OPEN
            if self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        """The server answered (any 2xx reply): close."""
        with self._lock:
            self._state, self._failures, self._probing = self.CLOSED, 0, False

    def record_failure(self) -> None:
        """The request failed at the transport or HTTP level."""
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or (self._state == self.CLOSED and
                                                 self._failures >= self.failure_threshold):
                self.opens += self._state == self.CLOSED
                self._state, self._opened_at, self._probing = self.OPEN, self._clock(), False

    def stats(self) -> dict[str, Any]:
        """``state``, ``opens`` (closed → open transitions) and ``consecutive_failures``."""
        state = self.state
        with self._lock:
            return {"state": state, "opens": self.opens, "consecutive_failures": self._failures}


# -- labeler ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenAILabelerConfig:
    """Configuration of :class:`OpenAILabeler`."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root including the API prefix; requests go to ``{base_url}/chat/completions``."""
    model: str = "default"
    """Model name sent with each request (vLLM and Ollama need the served name)."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token; ``None`` reads the environment variable ``api_key_env`` (may be unset)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key when ``api_key`` is ``None``."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System message."""
    user_template: str = DEFAULT_USER_TEMPLATE
    """User message; ``{messages}`` becomes the numbered list, ``{n}`` its length."""
    compare_template: str = DEFAULT_COMPARE_TEMPLATE
    """User message of :meth:`OpenAILabeler.compare` (ranking reward model); ``{messages}``
    becomes the numbered pairs ``"N. A: ... | B: ..."``."""
    batch_size: int = 20
    """Texts per request."""
    max_concurrency: int = 4
    """Requests in flight at once."""
    timeout_s: float = 30.0
    """Per-request limit, seconds: on connecting and on each wait for reply bytes; a reply
    still trickling in after ``2 * timeout_s`` is abandoned as a timeout too."""
    max_retries: int = 2
    """Retries of a request after a timeout, connection error, HTTP 5xx or 429."""
    backoff_base_s: float = 0.5
    """First retry delay before jitter, seconds; doubles each retry."""
    backoff_max_s: float = 8.0
    """Longest retry delay, seconds (also caps a server's ``Retry-After``)."""
    breaker_failures: int = 5
    """Consecutive failed requests that open the circuit breaker."""
    breaker_cooldown_s: float = 30.0
    """Time the breaker stays open before one probe request, seconds."""
    max_prompt_chars: int = 512
    """Longest text shown to the model, characters (the label covers the full text)."""
    temperature: float = 0.0
    """Sampling temperature."""
    max_tokens_per_text: int = 16
    """Reply budget: ``max_tokens = 64 + max_tokens_per_text * batch length``."""
    max_response_bytes: int = 1_000_000
    """Longest HTTP response body read, bytes."""
    seed: int | None = None
    """Seed of the back-off jitter generator."""

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: one line per problem.
        """
        errors = []
        if not self.base_url.startswith(("http://", "https://")):
            errors.append(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            errors.append("model must be non-empty")
        if "{messages}" not in self.user_template:
            errors.append("user_template must contain {messages}")
        for name in ("batch_size", "max_concurrency", "breaker_failures", "max_prompt_chars",
                     "max_tokens_per_text", "max_response_bytes"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_retries < 0:
            errors.append(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("timeout_s", "backoff_max_s", "breaker_cooldown_s"):
            if not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_base_s < 0 or self.temperature < 0:
            errors.append("backoff_base_s and temperature must be >= 0")
        if errors:
            raise ValueError("openai labeler config:\n  " + "\n  ".join(errors))


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
    def __init__(self, kind: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retry_after = retry_after


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
                        "max_in_flight": 0}
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
        raise LabelerError(f"openai labeler {self.config.base_url} ({self.model}): "
                           f"{len(result.failed)}/{len(texts)} texts unlabelled "
                           f"({dict(kinds)})", reason=reason)

    def stats(self) -> dict[str, Any]:
        """Counters for logging under ``labeler/openai/``.

        Returns:
            ``requests`` (HTTP attempts), ``replies`` (2xx), ``retries``, ``labelled`` /
            ``failed`` (texts), ``errors`` (by kind), ``decode_errors``, ``truncated`` (texts
            cut in the prompt), ``in_flight``, ``max_in_flight``, ``latency_p50_s`` /
            ``latency_p95_s`` (of 2xx replies, ``None`` before the first), ``breaker``
            (:meth:`CircuitBreaker.stats`), ``parse_samples`` (recent unreadable replies).
        """
        with self._lock:
            lat = sorted(self._latencies)
            out: dict[str, Any] = {**self._counts, "errors": dict(self._errors),
                                   "parse_samples": list(self._samples)}
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
        cut = sum(len(t) > cfg.max_prompt_chars for t in texts)
        self._count(truncated=cut)
        user = (cfg.user_template.replace("{n}", str(len(texts)))
                .replace("{messages}", format_messages(texts, cfg.max_prompt_chars)))
        return {"model": cfg.model, "temperature": cfg.temperature, "stream": False,
                "max_tokens": 64 + cfg.max_tokens_per_text * len(texts),
                "messages": [{"role": "system", "content": cfg.system_prompt},
                             {"role": "user", "content": user}]}

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
        if self.breaker.state == CircuitBreaker.OPEN:
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
        width = max(8, cfg.max_prompt_chars // 2)
        shown = [f"A: {format_messages([a], width)[3:]} | B: {format_messages([b], width)[3:]}"
                 for a, b in pairs]
        user = (cfg.compare_template.replace("{n}", str(len(pairs)))
                .replace("{messages}", "\n".join(f"{i}. {line}" for i, line in
                                                 enumerate(shown, start=1))))
        body = {"model": cfg.model, "temperature": cfg.temperature, "stream": False,
                "max_tokens": 64 + cfg.max_tokens_per_text * len(pairs),
                "messages": [{"role": "system", "content": cfg.system_prompt},
                             {"role": "user", "content": user}]}
        answers = self._ask(body, len(pairs))
        if isinstance(answers, str):
            return [None] * len(pairs)
        return [float(a) for a in answers]

    def _ask(self, body: dict[str, Any], n: int) -> list[int] | str:
        """One request with retries: ``n`` yes/no answers, or the error kind."""
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            if self._closed.is_set() or not self.breaker.allow():
                return "breaker_open" if not self._closed.is_set() else "closed"
            try:
                content = self._post(body)
            except ParseError as err:  # a 2xx reply whose body is not a chat completion
                self.breaker.record_success()
                self._error(err.kind, err.sample)
                return err.kind
            except _RequestError as err:
                self.breaker.record_failure()
                self._error(err.kind)
                if err.kind not in RETRYABLE or attempt == cfg.max_retries:
                    return err.kind
                delay = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** attempt)
                with self._lock:
                    delay = delay / 2 + self._rng.uniform(0, delay / 2)
                if err.retry_after is not None:
                    delay = min(cfg.backoff_max_s, max(delay, err.retry_after))
                self._count(retries=1)
                self._closed.wait(delay)
                continue
            self.breaker.record_success()
            try:
                return parse_answers(content, n)
            except ParseError as err:
                self._error(err.kind, err.sample)
                return err.kind
        raise AssertionError("unreachable")  # pragma: no cover

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
            raise _RequestError("http_429", "rate limited", retry_after)
        if 400 <= status < 500:
            raise _RequestError("http_4xx", f"HTTP {status}: {bytes(raw[:200])!r}")
        if status >= 500:
            raise _RequestError("http_5xx", f"HTTP {status}")
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
