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


def _first_object(text: str) -> tuple[Any, bool]:
    """The JSON value of the whole text, or else the first JSON object found inside it."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        return json.loads(stripped), False
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj, True
    raise AnswerInvalid("no JSON object found in the answer")


def parse_answer(text: str | None) -> tuple[Decision, bool]:
    """The decision in `text`, and whether it had to be extracted from surrounding prose."""
    if text is None or not text.strip():
        raise AnswerInvalid("the answer was empty")
    obj, extracted = _first_object(text)
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
