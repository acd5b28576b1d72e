"""The edge to the model: the official ``openai`` client, Chat Completions.

Chat Completions is the API every OpenAI-compatible server speaks (OpenAI, Azure,
OpenRouter, Ollama, vLLM, llama.cpp). What a request carries comes from the model
registry (engine/llm/models.toml): the token parameter, whether temperature and seed
are allowed, the reasoning effort, the response format. What a server then rejects is
negotiated *from its error*, never guessed: an error naming ``max_tokens`` gets
``max_completion_tokens``, one naming ``temperature``, ``seed`` or ``reasoning_effort``
gets the request without it, one about ``response_format`` (HTTP 400, 422 or 500, as
llama-cpp-python answers) gets the next format (json_schema -> json_object -> text).
Any other error is not a format problem and changes no format. What worked is
remembered per server and model for the rest of the process.

Retries are done here, not by the openai client, so that a 500 about ``response_format``
is negotiated at once instead of being retried: 429, 5xx and timeouts are retried
with exponential backoff honouring ``Retry-After``. Every HTTP attempt is counted.

The API key is handed to the openai client and nowhere else: not to logs, records,
the cache or the site.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from engine.config import LLMConfig
from engine.llm.registry import ModelInfo
from engine.llm.schema import RESPONSE_MODES, response_format

# Parameters the client can drop when a server names them in an error.
_DROPPABLE = ("temperature", "seed", "reasoning_effort", "top_p")
_BACKOFF_CAP_SECONDS = 8.0


@dataclass(frozen=True)
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    response_format: str
    reasoning: str | None = None  # reasoning_content / reasoning fields: kept, never executed
    reasoning_tokens: int = 0
    system_fingerprint: str | None = None
    attempts: int = 1  # HTTP requests this answer took (retries and negotiation included)
    sent: dict[str, Any] = field(default_factory=dict)  # the parameters of the request that answered

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]


@dataclass
class Plan:
    """What is sent to one server and model: starts from the registry, learns from errors."""

    token_param: str
    mode: int
    dropped: set[str] = field(default_factory=set)
    reasons: bool = False  # learnt from an answer that spent reasoning tokens


class Rejected(Exception):
    """The server will not take this request, whatever is retried (a permanent error)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def error_detail(exc: openai.APIStatusError) -> tuple[str, str, str]:
    """(param, code, message) of an error body, in the OpenAI shape, FastAPI's 422 shape
    (``detail[].loc``, as Mistral and llama-cpp-python answer) or a bare message."""
    body = exc.body
    err = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(err, dict):
        err = {"message": err}
    param = str(err.get("param") or "")
    code = str(err.get("code") or "")
    message = err.get("message") or exc.message
    details = err.get("detail") or (message.get("detail") if isinstance(message, dict) else None)
    if not param and isinstance(details, list):
        for d in details:
            loc = d.get("loc") if isinstance(d, dict) else None
            if isinstance(loc, list) and len(loc) >= 2 and loc[0] == "body":
                param = str(loc[1])
                break
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    return param, code, message


def _names(param: str, message: str, name: str) -> bool:
    return param == name or f"'{name}'" in message or f'"{name}"' in message or f"`{name}`" in message


@dataclass
class ChatClient:
    api_key: str = field(repr=False)
    base_url: str | None
    settings: LLMConfig
    notes: list[str] = field(default_factory=list)
    sleep: Any = time.sleep

    def __post_init__(self) -> None:
        # The openai client does not retry: this class does (see the module docstring).
        self._client = openai.OpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0,
                                     timeout=self.settings.timeout_seconds)
        self._plans: dict[str, Plan] = {}

    # --- what is sent ---------------------------------------------------------------

    def info(self, model: str) -> ModelInfo:
        return self.settings.info(model)

    def plan(self, model: str) -> Plan:
        if model not in self._plans:
            info = self.info(model)
            first = self.settings.response_format
            if first == "json_schema" and not info.json_schema:
                first = "json_object"
            self._plans[model] = Plan(token_param=info.token_param, mode=RESPONSE_MODES.index(first))
        return self._plans[model]

    def mode(self, model: str) -> str:
        return RESPONSE_MODES[self.plan(model).mode]

    def effort(self, model: str) -> str | None:
        return self.info(model).effort(self.settings.reasoning_effort)

    def budget(self, model: str, effort: str | None) -> int:
        """Completion tokens asked for: the answer, plus the headroom when the model reasons."""
        info = self.info(model)
        reasons = info.reasons(effort) or self.plan(model).reasons
        n = self.settings.max_tokens + (self.settings.reasoning_headroom_tokens if reasons else 0)
        return min(n, info.max_output) if info.max_output else n

    def params(self, model: str, max_out: int | None = None, effort: str | None = "auto") -> dict[str, Any]:
        """The parameters of a request (recorded, and part of the cache key), messages aside."""
        info = self.info(model)
        plan = self.plan(model)
        if effort == "auto":
            effort = self.effort(model)
        s = self.settings
        out: dict[str, Any] = {"model": model, plan.token_param: max_out or self.budget(model, effort)}
        if info.sends_sampling(effort):
            out["temperature"] = s.temperature
            if s.seed is not None and info.seed:
                out["seed"] = s.seed
        if effort is not None:
            out["reasoning_effort"] = effort
        for name in plan.dropped:
            out.pop(name, None)
        fmt = response_format(RESPONSE_MODES[plan.mode])
        if fmt is not None:
            out["response_format"] = fmt
        return out

    def timeout(self, model: str, effort: str | None) -> float:
        s = self.settings
        return s.reasoning_timeout_seconds if self.info(model).reasons(effort) else s.timeout_seconds

    # --- negotiation ----------------------------------------------------------------

    def _negotiate(self, model: str, exc: openai.APIStatusError) -> bool:
        """Change the plan from what the error names; False when it names nothing we can change."""
        if exc.status_code not in (400, 422, 500):
            return False
        param, code, message = error_detail(exc)
        plan = self.plan(model)
        status = exc.status_code
        if _names(param, message, "response_format") or "json_schema" in message:
            if plan.mode + 1 >= len(RESPONSE_MODES):
                return False
            before = RESPONSE_MODES[plan.mode]
            plan.mode += 1
            self.notes.append(f"the server rejected response_format {before} (HTTP {status}): "
                              f"asking with {RESPONSE_MODES[plan.mode]}")
            return True
        if _names(param, message, "max_tokens") and plan.token_param == "max_tokens":
            plan.token_param = "max_completion_tokens"
            self.notes.append(f"the server rejected max_tokens (HTTP {status}): sending max_completion_tokens")
            return True
        for name in _DROPPABLE:
            if _names(param, message, name) and name not in plan.dropped:
                plan.dropped.add(name)
                self.notes.append(f"the server rejected {name} (HTTP {status}, {code or 'no code'}): sent without it")
                return True
        return False

    # --- one answer -----------------------------------------------------------------

    def complete(self, model: str, messages: list[dict[str, str]], *, max_out: int | None = None,
                 effort: str | None = "auto") -> Completion:
        """One answer. Raises :class:`Rejected` for what no retry can fix, the openai
        exception for what is transient after the retries."""
        info = self.info(model)
        if info.api == "responses":
            raise Rejected(f"{model} is served on the Responses API only ({info.source}): "
                           "choose a Chat Completions model")
        if effort == "auto":
            effort = self.effort(model)
        attempts = 0
        retries = 0
        negotiations = 0
        while True:
            kwargs = self.params(model, max_out, effort)
            attempts += 1
            try:
                resp = self._client.with_options(timeout=self.timeout(model, effort)).chat.completions.create(
                    messages=messages, **kwargs)
            except openai.APIStatusError as exc:
                if negotiations < 6 and self._negotiate(model, exc):
                    negotiations += 1
                    continue
                if _transient(exc) and retries < self.settings.max_retries:
                    self.sleep(_backoff(retries, exc.response))
                    retries += 1
                    continue
                raise
            except (openai.APITimeoutError, openai.APIConnectionError):
                if retries < self.settings.max_retries:
                    self.sleep(_backoff(retries, None))
                    retries += 1
                    continue
                raise
            return _completion(resp, model, RESPONSE_MODES[self.plan(model).mode], attempts, kwargs)

    def check_model(self, model: str) -> str | None:
        """Before a live run: raise Rejected for a bad key or a model the server does not
        serve; a note (or None) when the check could not be made."""
        try:
            listed = [m.id for m in self._client.models.list()]
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise Rejected(f"the LLM server refused the key (HTTP {exc.status_code}): check OPENAI_API_KEY",
                           exc.status_code) from None
        except openai.APIStatusError as exc:
            return f"the server does not list its models (HTTP {exc.status_code}): the model was not checked"
        except openai.APIError as exc:
            return f"the server did not answer the model check ({type(exc).__name__}): the model was not checked"
        wanted = self.settings.deployments.get(model, model)
        if listed and model not in listed and wanted not in listed:
            shown = ", ".join(sorted(listed)[:8]) + (" ..." if len(listed) > 8 else "")
            raise Rejected(f"the LLM server does not serve model {model!r} (it lists {shown}): "
                           "use --model or llm.model")
        return None


def _transient(exc: openai.APIStatusError) -> bool:
    if exc.response is not None and exc.response.headers.get("x-should-retry") == "false":
        return False
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def _backoff(retries: int, response: Any) -> float:
    """Seconds before the next attempt: the server's Retry-After(-ms) when given, else 0.5 * 2^n."""
    if response is not None:
        h = response.headers
        try:
            if "retry-after-ms" in h:
                return min(float(h["retry-after-ms"]) / 1000, 60.0)
            if "retry-after" in h:
                return min(float(h["retry-after"]), 60.0)
        except ValueError:
            pass
    return min(0.5 * 2**retries, _BACKOFF_CAP_SECONDS)


def _completion(resp: Any, model: str, mode: str, attempts: int, sent: dict[str, Any]) -> Completion:
    choice = resp.choices[0] if resp.choices else None
    msg = choice.message if choice is not None else None
    usage = resp.usage
    details = getattr(usage, "completion_tokens_details", None) if usage else None
    extra = (getattr(msg, "model_extra", None) or {}) if msg is not None else {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    return Completion(
        content=msg.content if msg is not None else None,
        refusal=getattr(msg, "refusal", None) if msg is not None else None,
        finish_reason=choice.finish_reason if choice is not None else None,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        model=resp.model or model,
        response_format=mode,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        reasoning_tokens=int(getattr(details, "reasoning_tokens", 0) or 0) if details else 0,
        system_fingerprint=getattr(resp, "system_fingerprint", None),
        attempts=attempts,
        sent={k: v for k, v in sent.items() if k != "response_format"} | {"response_format": mode},
    )
