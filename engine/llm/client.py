"""The edge to the model: the official ``openai`` client, Chat Completions.

Chat Completions is the API every OpenAI-compatible server speaks (OpenAI, Azure,
OpenRouter, Ollama, vLLM, llama.cpp). The client itself retries 429, 5xx and timeouts
with exponential backoff, honouring ``Retry-After``; each request has a timeout. A
server that rejects a response format (HTTP 400/422) is asked again with the next
one: strict JSON schema, then JSON object, then plain text. The mode that worked is
remembered for the rest of the run.

The API key is handed to the openai client and nowhere else: not to logs, records,
the cache or the site.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import openai

from engine.config import LLMConfig
from engine.llm.schema import RESPONSE_MODES, response_format


@dataclass(frozen=True)
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    response_format: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "refusal": self.refusal,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
            "response_format": self.response_format,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass
class ChatClient:
    api_key: str = field(repr=False)
    base_url: str | None
    settings: LLMConfig
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = openai.OpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.settings.timeout_seconds,
            max_retries=self.settings.max_retries,
        )
        self._mode = RESPONSE_MODES.index(self.settings.response_format)

    @property
    def mode(self) -> str:
        return RESPONSE_MODES[self._mode]

    def params(self, model: str) -> dict[str, Any]:
        """The sampling parameters sent with every request (recorded, and part of the cache key)."""
        return {
            "model": model,
            "temperature": self.settings.temperature,
            "seed": self.settings.seed,
            "max_tokens": self.settings.max_tokens,
        }

    def complete(self, model: str, messages: list[dict[str, str]]) -> Completion:
        """One answer. Raises the openai exception when the server cannot give one."""
        while True:
            mode = self.mode
            kwargs: dict[str, Any] = {**self.params(model), "messages": messages}
            fmt = response_format(mode)
            if fmt is not None:
                kwargs["response_format"] = fmt
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if self._mode + 1 >= len(RESPONSE_MODES):
                    raise
                self._mode += 1
                self.notes.append(
                    f"the server rejected response_format {mode} (HTTP {exc.status_code}): asking with {self.mode}"
                )
                continue
            choice = resp.choices[0] if resp.choices else None
            msg = choice.message if choice is not None else None
            usage = resp.usage
            return Completion(
                content=msg.content if msg is not None else None,
                refusal=getattr(msg, "refusal", None) if msg is not None else None,
                finish_reason=choice.finish_reason if choice is not None else None,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                model=resp.model or model,
                response_format=mode,
            )
