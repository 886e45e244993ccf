"""Configuration of the OpenAI-compatible labeler: every option, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_labeler.backends.openai_prompt import (
    DEFAULT_COMPARE_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_USER_TEMPLATE,
)

__all__ = ["STRUCTURED_OUTPUT_MODES", "OpenAILabelerConfig"]

#: Values of :attr:`OpenAILabelerConfig.structured_output`.
STRUCTURED_OUTPUT_MODES = ("auto", "on", "off")


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
    structured_output: str = "auto"
    """Ask for JSON-schema structured output (``response_format``): ``"auto"`` while the server
    honours it, falling back for good to the plain prompt and the tolerant parser once it
    refuses or ignores it; ``"on"`` always (a server that refuses it has a configuration
    error); ``"off"`` never (the plain prompt only)."""
    config_retry_s: float = 60.0
    """After a configuration error (HTTP 4xx other than 408/429: wrong model name, bad key),
    time before one request checks whether it was fixed, seconds; none is sent meanwhile."""

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
        for name in ("timeout_s", "backoff_max_s", "breaker_cooldown_s", "config_retry_s"):
            if not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_base_s < 0 or self.temperature < 0:
            errors.append("backoff_base_s and temperature must be >= 0")
        if self.structured_output not in STRUCTURED_OUTPUT_MODES:
            errors.append(f"structured_output must be one of {STRUCTURED_OUTPUT_MODES}, got "
                          f"{self.structured_output!r}")
        if errors:
            raise ValueError("openai labeler config:\n  " + "\n  ".join(errors))
