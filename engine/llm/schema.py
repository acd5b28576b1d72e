"""The answer the model must give, and how its text becomes a :class:`Decision`.

The format is the public audit format (engine.decision), asked for with strict
structured outputs where the server supports them. Parsing is the first line of
defence: what is not a JSON object of that shape is an error shown to the model in one
repair round. What parses but cannot be executed as asked (unknown tickers, 250% of
cash, sells of what is not held) is handled afterwards by ``check_decision``, with a
reason per cut, like any policy's answer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.decision import Action, Decision

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "ticker": {"type": "string"},
                    "action": {"type": "string", "enum": ["buy", "sell", "hold"]},
                    "percent": {"type": "number"},
                    "reason": {"type": "string"},
                },
                "required": ["ticker", "action", "percent", "reason"],
                "additionalProperties": False,
            },
        },
        "summary": {"type": "string"},
    },
    "required": ["decisions", "summary"],
    "additionalProperties": False,
}

RESPONSE_MODES = ("json_schema", "json_object", "text")


def response_format(mode: str) -> dict[str, Any] | None:
    """The Chat Completions ``response_format`` for a mode (None: plain text)."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "decision", "strict": True, "schema": ANSWER_SCHEMA}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


class AnswerInvalid(ValueError):
    """The text is not a usable answer; the message is shown to the model to repair it."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ticker: str = Field(min_length=1)
    action: Literal["buy", "sell", "hold"]
    percent: float = 0.0
    reason: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("ticker", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @field_validator("percent", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if v is None:
            return 0.0
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("percent must be a number")
        if not math.isfinite(v):
            raise ValueError("percent must be finite")
        return v


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    decisions: list[_Entry]
    summary: str = ""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_CLOSE_THINK = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(the answer, the reasoning) of a content that may hold ``<think>`` blocks.

    The reasoning is kept for the record and never parsed. An unclosed ``<think>`` (an
    answer cut inside its reasoning) leaves no answer; a lone ``</think>`` (a template that
    opened the block in the prompt) ends the reasoning there.
    """
    parts = [m.group(0) for m in _THINK.finditer(text)]
    rest = _THINK.sub("", text)
    opened = _OPEN_THINK.search(rest)
    if opened:
        parts.append(rest[opened.start():])
        rest = rest[: opened.start()]
    closed = list(_CLOSE_THINK.finditer(rest))
    if closed:
        parts.insert(0, rest[: closed[-1].end()])
        rest = rest[closed[-1].end():]
    return rest, ("\n".join(parts) if parts else None)


def _top_level_objects(text: str) -> list[Any]:
    """The JSON objects of `text` that are not inside another one, in order."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    return found


def _the_object(text: str, mode: str) -> tuple[Any, bool]:
    """The JSON value of the whole text; in text mode only, else the LAST complete
    top-level object found in it (a draft before the final answer is never taken)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        return json.loads(stripped), False
    except json.JSONDecodeError:
        pass
    if mode != "text":
        raise AnswerInvalid(f"in {mode} mode the whole answer must be one JSON object, and it is not")
    found = _top_level_objects(text)
    if not found:
        raise AnswerInvalid("no JSON object found in the answer")
    return found[-1], True


def parse_answer(text: str | None, mode: str = "text") -> tuple[Decision, bool]:
    """The decision in `text`, and whether it had to be extracted from surrounding prose.

    ``<think>`` blocks are removed first. `mode` is the response format the answer was asked
    with: in json_schema and json_object modes the whole content must be the object.
    """
    if text is None or not text.strip():
        raise AnswerInvalid("the answer was empty")
    text, _ = split_reasoning(text)
    if not text.strip():
        raise AnswerInvalid("the answer held only reasoning, no final answer")
    obj, extracted = _the_object(text, mode)
    if not isinstance(obj, dict):
        raise AnswerInvalid("the answer must be a JSON object with 'decisions' and 'summary'")
    try:
        ans = _Answer.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise AnswerInvalid(f"the JSON does not match the format: {problems}") from None
    actions = tuple(Action(ticker=e.ticker, action=e.action, percent=e.percent, reason=e.reason) for e in ans.decisions)
    return Decision(decisions=actions, summary=ans.summary), extracted
