"""A real HTTP server speaking the OpenAI chat-completions API, with scriptable faults.

Used only for the fault cases a real model cannot produce on demand (garbage, refusals, wrong
answer counts, HTTP errors, hangs, a server that goes down and comes back). Its "model"
answers with a fixed rule: ``yes`` when a message contains ``"kill"`` or ``" - "``, else
``no``. Messages are read from the user prompt's numbered lines (``"N. text"``).

Structured output (``response_format``) is honoured like OpenAI's API does (a JSON object
with one ``"N": "yes"|"no"`` per message), ignored, refused with HTTP 400 (``reject``) or,
like llama-cpp-python's server, refused as ``json_schema`` with an HTTP 500 naming it and
honoured as ``json_object`` with a ``schema`` (``llama_cpp``), as ``structured`` says.
``keep_alive=True`` serves HTTP/1.1 persistent connections, which clients then reuse across
requests (as real servers do).

Example::

    with FakeOpenAIServer() as server:
        server.script("http_500", "http_500")      # next two requests fail, then "ok"
        labeler = OpenAILabeler(base_url=server.url)
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BEHAVIOURS", "STRUCTURED", "FakeOpenAIServer", "rule"]

#: What one request can be answered with.
BEHAVIOURS = ("ok", "json", "garbage", "empty", "refusal", "wrong_count", "malformed",
              "http_500", "http_400", "http_401", "http_404", "http_408", "http_429", "hang",
              "slow")

#: How the server treats a request's ``response_format``.
STRUCTURED = ("honour", "ignore", "reject", "llama_cpp")

_MESSAGE_LINE = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)
_PAIR = re.compile(r"^A: (.*) \| B: (.*)$")


def rule(message: str) -> str:
    """The fake model's answer for one message; for a pair ``"A: x | B: y"`` (ranking), yes
    when only A is interesting."""
    pair = _PAIR.match(message)
    if pair:
        return "yes" if rule(pair.group(1)) == "yes" and rule(pair.group(2)) == "no" else "no"
    return "yes" if "kill" in message or " - " in message else "no"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: stop() ends every connection
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        fake._enter()
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            fake._record(self.path, dict(self.headers), body)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            self._answer(fake.next_behaviour(), body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass
        finally:
            fake._leave()

    def _answer(self, behaviour: str, body: dict[str, Any]) -> None:
        fake = self.server.fake
        fmt = body.get("response_format")
        structured = fmt is not None
        if structured and fake.structured == "reject":
            self._send(400, {"error": {
                "message": "Unrecognized request argument supplied: response_format",
                "type": "invalid_request_error", "param": "response_format", "code": None}})
            return
        if structured and fake.structured == "llama_cpp" and fmt.get("type") != "json_object":
            self._send(500, {"error": {  # what llama-cpp-python 0.3 answers
                "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                           "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                           "'json_object'\"}", "type": "internal_server_error"}})
            return
        user = next((m["content"] for m in body.get("messages", []) if m["role"] == "user"), "")
        messages = [m.group(2) for m in _MESSAGE_LINE.finditer(user)]
        fake.seen_messages.append(messages)
        answers = [rule(m) for m in messages]
        if behaviour == "hang":
            fake._stopping.wait(fake.hang_s)
        elif behaviour == "slow":
            time.sleep(fake.slow_s)
        content: str | None
        if behaviour in ("ok", "hang", "slow") and structured and fake.structured in (
                "honour", "llama_cpp"):
            content = json.dumps({str(i): a for i, a in enumerate(answers, start=1)})
        elif behaviour in ("ok", "hang", "slow"):
            content = "\n".join(f"{i}: {a}" for i, a in enumerate(answers, start=1))
        elif behaviour == "json":
            content = f"Sure! Here are my answers:\n```json\n{json.dumps(answers)}\n```"
        elif behaviour == "garbage":
            content = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."
        elif behaviour == "empty":
            content = ""
        elif behaviour == "refusal":
            content = "I'm sorry, but I cannot help with that request."
        elif behaviour == "wrong_count":
            keep = answers[:-1] if len(answers) > 1 else answers * 2
            content = "\n".join(f"{i}: {a}" for i, a in enumerate(keep, start=1))
        elif behaviour == "malformed":
            self._send_raw(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        elif behaviour == "http_500":
            self._send(500, {"error": {"message": "internal error"}})
            return
        elif behaviour == "http_400":
            self._send(400, {"error": {"message": "bad request"}})
            return
        elif behaviour == "http_401":
            self._send(401, {"error": {
                "message": "Incorrect API key provided: sk-wrong. You can find your API key "
                           "at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
            return
        elif behaviour == "http_404":
            self._send(404, {"error": {
                "message": f"The model `{body.get('model')}` does not exist or you do not "
                           "have access to it.",
                "type": "invalid_request_error", "param": None, "code": "model_not_found"}})
            return
        elif behaviour == "http_408":
            self._send(408, {"error": {"message": "request timeout"}})
            return
        elif behaviour == "http_429":
            self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            return
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion",
                         "created": int(time.time()), "model": body.get("model", "fake"),
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                   "total_tokens": 0}})

    def _send(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _KeepAliveHandler(_Handler):
    protocol_version = "HTTP/1.1"  # every reply has a Content-Length: connections persist


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAIServer


class FakeOpenAIServer:
    """OpenAI-compatible server on ``127.0.0.1`` (a free port) in a background thread.

    Attributes:
        requests: POST requests received.
        max_concurrency: most requests handled at the same time.
        seen_messages: per chat request, the numbered messages parsed from its prompt.
        headers: per request, its headers.
        bodies: per request, its JSON body.
    """

    def __init__(self, *, default: str = "ok", hang_s: float = 5.0, slow_s: float = 0.2,
                 structured: str = "honour", keep_alive: bool = False) -> None:
        """Create (not yet listening).

        Args:
            default: behaviour once the script is used up.
            hang_s: how long ``"hang"`` waits before answering, seconds (cut short by stop).
            slow_s: how long ``"slow"`` waits before answering, seconds.
            structured: what a request's ``response_format`` gets (see :data:`STRUCTURED`).
            keep_alive: serve HTTP/1.1 with persistent connections instead of one request
                per connection (a stop then leaves open connections to the client).
        """
        self._check(default)
        if structured not in STRUCTURED:
            raise ValueError(f"unknown structured {structured!r}; known: {STRUCTURED}")
        self.default = default
        self.structured = structured
        self.keep_alive = keep_alive
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.port = 0
        self._lock = threading.Lock()
        self._script: collections.deque[str] = collections.deque()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self.requests = 0
        self.max_concurrency = 0
        self.seen_messages: list[list[str]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []

    @staticmethod
    def _check(behaviour: str) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {BEHAVIOURS}")

    @property
    def url(self) -> str:
        """Base URL for the client, with the ``/v1`` prefix."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: str) -> None:
        """Answer the next requests with these behaviours, in order, then with ``default``."""
        for behaviour in behaviours:
            self._check(behaviour)
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self) -> str:
        """Pop the behaviour for the request being handled."""
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def start(self) -> FakeOpenAIServer:
        """Listen (on the previous port after a :meth:`stop`, else on a free one)."""
        self._stopping.clear()
        handler = _KeepAliveHandler if self.keep_alive else _Handler
        self._httpd = _Server(("127.0.0.1", self.port), handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: close the listening socket (new connections are refused)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _enter(self) -> None:
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.headers.append(headers)
            self.bodies.append(body)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
