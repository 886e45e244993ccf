"""A custom labeler loaded by import path in run tests: NetHack rules, plus a log of every
text it was asked to label (one JSON string per line), so tests can prove nothing is labelled
twice across labeler restarts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from llm_labeler.backends.rules import RuleLabeler
from llm_labeler.protocol import Label


class RecordingLabeler:
    name = "recording"

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.rules = RuleLabeler()

    def label(self, texts: Sequence[str]) -> list[Label]:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.writelines(json.dumps(t) + "\n" for t in texts)
        return self.rules.label(texts)
