"""The real-LLM fixture's readiness check, against a tiny real HTTP server process that lists
its models like llama.cpp's server and then crashes (or errs) on its first completion, as a
llama.cpp compiled for another CPU does. Needs no llama.cpp: it runs everywhere."""

from __future__ import annotations

import sys

import pytest
from llama_server import LlamaServer

#: ``python -c`` program: ``/v1/models`` answers; a completion writes to stderr, then dies by
#: SIGSEGV (``crash``) or answers HTTP 500 and keeps running (``error``).
FAKE_LLAMA = """
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, b'{"object": "list", "data": [{"id": "smollm2"}]}')

    def do_POST(self):
        sys.stderr.write("ggml_compute_forward_mul_mat: illegal instruction (AMX tile)\\n")
        sys.stderr.flush()
        if sys.argv[2] == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        self.reply(500, b'{"error": {"message": "kernel failed"}}')

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class FakeLlamaServer(LlamaServer):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, "-c", FAKE_LLAMA, str(self.port), self.mode]


def test_a_server_that_dies_on_its_first_completion_fails_the_fixture_with_the_reason() -> None:
    server = FakeLlamaServer("crash")
    with pytest.raises(RuntimeError) as info:
        server.start(timeout=60)
    message = str(info.value)
    assert "killed by signal SIGSEGV on its first completion" in message
    assert "illegal instruction (AMX tile)" in message  # the tail of its stderr
    assert server.process is None


def test_a_server_that_refuses_its_first_completion_is_not_ready() -> None:
    server = FakeLlamaServer("error")
    with pytest.raises(RuntimeError, match=r"first completion got HTTP 500: .*kernel failed"):
        server.start(timeout=60)
    assert server.process is None  # killed, not left running


def test_a_server_that_exits_while_starting_says_so() -> None:
    class Exits(LlamaServer):
        def command(self) -> list[str]:
            return [sys.executable, "-c",
                    "import sys; sys.stderr.write('model file not found'); sys.exit(3)"]

    server = Exits()
    with pytest.raises(RuntimeError,
                       match=r"(?s)exited with code 3 while starting.*model file not found"):
        server.start(timeout=60)
