"""Prompt building and reply parsing for the ``openai`` labeler: texts in, 0/1 answers out.

Kept apart from the HTTP client so that prompts and the tolerant parser can be read, tested
and reused (e.g. by evaluation scripts) without a server. The prompts are in the style of ONI's
annotator (a judge of NetHack progress answers yes/no per numbered message); the parser accepts
the many shapes real models answer in and never turns an unreadable reply into a default label.
Servers that support structured output are asked for a JSON object that follows
:func:`answers_schema` instead (:func:`response_format`, read by :func:`parse_structured`); the
tolerant parser stays the fallback for the servers that do not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_COMPARE_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "DEFAULT_USER_TEMPLATE",
           "STRUCTURED_DIALECTS", "ParseError", "answers_schema", "compare_messages",
           "format_messages", "label_messages", "parse_answers", "parse_structured",
           "prompt_hash", "response_format"]

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



def label_messages(texts: Sequence[str], *, system_prompt: str, user_template: str,
                   max_chars: int) -> list[dict[str, str]]:
    """Chat messages asking for one yes/no answer per text.

    Args:
        texts: (n,) texts.
        system_prompt: the system message.
        user_template: the user message; ``{messages}`` becomes the numbered list, ``{n}`` its
            length (plain replacement, so other braces stay as written).
        max_chars: longest text shown (see :func:`format_messages`).
    """
    user = (user_template.replace("{n}", str(len(texts)))
            .replace("{messages}", format_messages(texts, max_chars)))
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def compare_messages(pairs: Sequence[tuple[str, str]], *, system_prompt: str,
                     compare_template: str, max_chars: int) -> list[dict[str, str]]:
    """Chat messages asking, per pair, whether text A shows more progress than text B.

    Each pair is one numbered line ``"N. A: ... | B: ..."``, each text cut to half of
    ``max_chars`` (at least 8 characters) so that a pair takes one text's room.
    """
    width = max(8, max_chars // 2)
    shown = [f"A: {format_messages([a], width)[3:]} | B: {format_messages([b], width)[3:]}"
             for a, b in pairs]
    user = (compare_template.replace("{n}", str(len(pairs)))
            .replace("{messages}", "\n".join(f"{i}. {line}" for i, line in
                                             enumerate(shown, start=1))))
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]

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


# -- structured output -----------------------------------------------------------------------

#: Ways of asking a server for a reply that follows :func:`answers_schema`, in the order the
#: labeler tries them: OpenAI's ``json_schema`` (which vLLM and Ollama accept too) and
#: llama-cpp-python's ``json_object`` with a ``schema`` (its server refuses ``json_schema``).
STRUCTURED_DIALECTS = ("json_schema", "json_object")


def answers_schema(n: int) -> dict[str, Any]:
    """JSON schema of one yes/no answer per numbered message: ``{"1": "yes", "2": "no"}``.

    Numbered required keys fix the count without ``minItems``/``maxItems``, which OpenAI's
    strict mode does not accept, and read back with the same numbering as the prompt.
    """
    keys = [str(i) for i in range(1, n + 1)]
    return {"type": "object",
            "properties": {key: {"type": "string", "enum": ["yes", "no"]} for key in keys},
            "required": keys, "additionalProperties": False}


def response_format(n: int, dialect: str) -> dict[str, Any]:
    """The request's ``response_format`` asking for :func:`answers_schema` (``n`` answers).

    Args:
        n: number of messages asked about.
        dialect: one of :data:`STRUCTURED_DIALECTS`.

    Raises:
        ValueError: unknown dialect.
    """
    if dialect == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "answers", "strict": True, "schema": answers_schema(n)}}
    if dialect == "json_object":
        return {"type": "json_object", "schema": answers_schema(n)}
    raise ValueError(f"unknown structured-output dialect {dialect!r}; "
                     f"known: {STRUCTURED_DIALECTS}")


def parse_structured(reply: str | None, n: int) -> list[int]:
    """Read a reply that follows :func:`answers_schema`, strictly.

    Strict on purpose: a server that honoured the schema always passes, so a failure means it
    ignored or mangled the request and the caller should stop asking for structured output.

    Returns:
        (n,) answers, 1 = yes.

    Raises:
        ParseError: ``kind="parse"`` when the reply is not such a JSON object,
            ``"wrong_count"`` when its keys are not ``"1"`` .. ``"n"``.
    """
    text = (reply or "").strip()
    sample = text[:200]
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ParseError("structured reply is not JSON", kind="parse", sample=sample) from None
    if not isinstance(data, dict):
        raise ParseError("structured reply is not a JSON object", kind="parse", sample=sample)
    keys = [str(i) for i in range(1, n + 1)]
    if sorted(data, key=str) != sorted(keys):
        raise ParseError(f"structured reply has keys {sorted(data)[:10]}, expected 1..{n}",
                         kind="wrong_count", sample=sample)
    answers = [data[key].strip().lower() if isinstance(data[key], str) else None
               for key in keys]
    if not all(a in ("yes", "no") for a in answers):
        raise ParseError("structured reply has an answer other than yes/no", kind="parse",
                         sample=sample)
    return [int(a == "yes") for a in answers]
