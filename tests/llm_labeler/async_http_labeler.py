"""A user's asynchronous labeler written the way httpx recommends: one ``httpx.AsyncClient``
for the labeler's whole life (pooled keep-alive connections), closed by ``aclose()``. Loaded
by import path in service tests; it asks an OpenAI-compatible server (the fake one) per batch."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from llm_labeler.backends.openai_prompt import label_messages, parse_answers
from llm_labeler.protocol import Label


class AsyncHTTPLabeler:
    name = "async-http"

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=10.0)
        self.batches = 0

    async def alabel(self, texts: Sequence[str]) -> list[Label]:
        messages = label_messages(texts, system_prompt="Judge NetHack messages.",
                                  user_template="{messages}", max_chars=200)
        response = await self.client.post("chat/completions",
                                          json={"model": "fake", "messages": messages})
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        answers = parse_answers(content, len(texts))
        self.batches += 1
        return [Label(text=t, label=a, score=float(a), backend=self.name)
                for t, a in zip(texts, answers, strict=True)]

    async def aclose(self) -> None:
        await self.client.aclose()
