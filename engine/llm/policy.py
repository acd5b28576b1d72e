"""The ``llm`` policy: the model decides, Python checks and records everything.

One decision is one request, plus at most one retry with a bigger budget when the answer
was cut by the token limit (``finish_reason: length``; never a repair prompt), or one
repair round when it does not parse. Every transient way this can go wrong ends in an
explicit, logged HOLD with its reason, never in a silent default: the server does not
answer (after the client's retries), the answer is a refusal or was stopped by a content
filter, it was cut twice, it does not parse even after the model was shown why, or the
next call would exceed the daily budget. What no retry can fix (a bad key, a model not
served or shut down, a parameter still rejected after negotiation, a prompt that does not
fit or was truncated by the server) raises :class:`~engine.errors.LLMUnusable`: the run
fails loudly instead of holding every day.

The record (``usage`` in the decision file) holds the exact messages sent, the
parameters actually sent, the HTTP attempts, the tokens (reasoning included), the
``finish_reason``, the served model and its ``system_fingerprint``, the cost, and the
model's reasoning text (kept for reading, never executed). Only answers that were used
are cached, so a re-run never replays a failure.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import openai

from engine.config import Config
from engine.errors import BudgetExceeded, ConfigError, LLMUnusable
from engine.decision import Brief, Decision
from engine.llm.brief import estimate_tokens, render_brief
from engine.llm.cache import ResponseCache, request_key
from engine.llm.client import ChatClient, Completion, Rejected, error_detail
from engine.llm.prompt import prompt_for, prompt_sha256
from engine.llm.schema import AnswerInvalid, parse_answer, split_reasoning
from engine.policies import PolicyAnswer

log = logging.getLogger(__name__)

REPAIR_TEMPLATE = (
    "Your answer could not be used: {error}. Reply again with only the JSON object described in "
    'the instructions: {{"decisions": [{{"ticker": ..., "action": "buy"|"sell"|"hold", '
    '"percent": 0-100, "reason": ...}}], "summary": ...}}. Nothing before or after it.'
)
MAX_QUOTED = 500  # characters of a refusal or server error kept in a reason
MAX_REASONING = 20_000  # characters of the model's reasoning kept in the record
# The estimate is conservative (tokenizers differ: a real count of 70-120% of it is normal). A
# server that counts under half of it dropped part of the prompt (the run stops); fewer than the
# estimate and just under a power of two (a context size such as Ollama's default 4,096) is
# flagged in the record, since a real tokenizer's count can land there too.
TRUNCATED_SHARE = 0.5


class _Stop(Exception):
    """Why this decision becomes an explicit HOLD."""


class LLMPolicy:
    name = "llm"
    wants_correlation = True

    def __init__(
        self,
        config: Config,
        client: ChatClient,
        cache: ResponseCache,
        model: str | None = None,
        scrub: Callable[[str], str] | None = None,
        run_budget_usd: float | None = None,
        prompt: str = "behavioural",
    ):
        self.cfg = config
        self.scrub = scrub  # applied to the rendered brief (blind mode)
        self.run_budget_usd = run_budget_usd  # for a whole backtest: stop before overspending
        self.spent_usd = 0.0
        self.client = client
        self.cache = cache
        self.model = model or config.llm.model
        self.info = config.llm.info(self.model)
        if config.llm.price(self.model) is None:
            raise ConfigError(
                f"model {self.model} has no price in the registry or the config, so the LLM budget cannot be "
                f'enforced: add [llm.prices_usd_per_million_tokens] "{self.model}" = {{ input = ..., output = ... }} '
                "(0 for a local model)"
            )
        self.prompt = prompt  # the prompt family: "behavioural" (treatment) or "neutral" (control)
        self.system, self.prompt_version = prompt_for(prompt, config)
        self.system_sha256 = prompt_sha256(self.system)

    def decide(self, brief: Brief) -> PolicyAnswer:
        user = render_brief(brief, self.cfg)
        if self.scrub is not None:
            user = self.scrub(user)
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        s = self.cfg.llm
        effort = self.client.effort(self.model)
        usage: dict[str, Any] = {
            "model": self.model,
            "model_family": self.info.family,
            "prompt_version": self.prompt_version,
            "prompt_sha256": self.system_sha256,
            "temperature": s.temperature,
            "seed": s.seed,
            "max_tokens": s.max_tokens,
            "reasoning_effort": effort,
            "response_format": None,
            "params_sent": None,
            "brief_chars": len(user),
            "brief_tokens_est": estimate_tokens(user),
            "calls": 0,
            "http_attempts": 0,
            "cache_hits": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "reasoning_tokens": 0,
            "finish_reason": None,
            "system_fingerprint": None,
            "cost_usd": 0.0,
            "budget_usd": s.daily_budget_usd,
            "messages": messages,
        }
        notes: list[str] = []
        raw: str | None = None
        try:
            first, key = self._answer(messages, usage, notes)
            raw = first.content
            try:
                decision, extracted = self._parse(first, usage)
            except AnswerInvalid as exc:
                notes.append(f"the answer did not parse ({exc}): the model was shown the error once")
                messages = messages + [
                    {"role": "assistant", "content": split_reasoning(first.content or "")[0]},
                    {"role": "user", "content": REPAIR_TEMPLATE.format(error=exc)},
                ]
                usage["messages"] = messages
                second, key = self._answer(messages, usage, notes)
                raw = second.content
                try:
                    decision, extracted = self._parse(second, usage)
                except AnswerInvalid as exc2:
                    raise _Stop(f"the answer did not parse after one repair round: {exc2}") from None
                first = second
            if extracted:
                notes.append("the JSON was extracted from text around it")
            if key is not None:
                self.cache.put(key, first.as_dict())  # only an answer that was used is cached
        except _Stop as stop:
            reason = str(stop)
            log.warning("llm: explicit HOLD on %s: %s", brief.date, reason)
            notes.extend(self.client.notes)
            self.client.notes.clear()
            return PolicyAnswer(
                decision=Decision(decisions=(), summary=f"HOLD (fallback): {reason}"),
                raw=raw, model=self.model, usage=usage, notes=notes, fallback=reason,
            )
        notes.extend(self.client.notes)
        self.client.notes.clear()
        return PolicyAnswer(decision=decision, raw=raw, model=usage.get("answer_model") or self.model,
                            usage=usage, notes=notes)

    @staticmethod
    def _parse(c: Completion, usage: dict[str, Any]) -> tuple[Decision, bool]:
        if c.refusal:
            raise _Stop(f"the model refused: {c.refusal[:MAX_QUOTED]}")
        _, thought = split_reasoning(c.content or "")
        reasoning = "\n".join(x for x in (c.reasoning, thought) if x)
        if reasoning:
            usage["reasoning"] = reasoning[:MAX_REASONING]  # for reading; never parsed
        return parse_answer(c.content, c.response_format)

    def _intent(self) -> dict[str, Any]:
        """What the request asks for, before any negotiation: the cache key's parameters, so
        that a re-run finds its answers whatever the server taught the client meanwhile."""
        s = self.cfg.llm
        return {"temperature": s.temperature, "seed": s.seed, "max_tokens": s.max_tokens,
                "reasoning_headroom_tokens": s.reasoning_headroom_tokens, "reasoning_effort": s.reasoning_effort,
                "response_format": s.response_format}

    def _answer(self, messages: list[dict[str, str]], usage: dict[str, Any],
                notes: list[str]) -> tuple[Completion, str | None]:
        """One usable completion (from the cache, or the server with one retry when it was
        cut by the token limit) and its cache key (None when it came from the cache)."""
        key = request_key(self.model, messages, self._intent())
        cached = self.cache.get(key)
        if cached is not None:
            usage["cache_hits"] += 1
            c = Completion.from_dict(cached)
            usage["response_format"] = c.response_format
            return c, None
        effort = self.client.effort(self.model)
        budget = self.client.budget(self.model, effort)
        c = self._call(messages, usage, notes, budget, effort)
        if c.finish_reason == "length":
            bigger = int(budget * self.cfg.llm.length_retry_factor)
            if c.reasoning_tokens and not self.client.plan(self.model).reasons:
                # A model the registry did not know to reason: it gets the headroom from now on.
                self.client.plan(self.model).reasons = True
                bigger = max(bigger, self.client.budget(self.model, effort))
            if self.info.max_output:
                bigger = min(bigger, self.info.max_output)
            lower = self.info.lower_effort(effort)
            notes.append(
                f"the answer was cut at {c.completion_tokens:,} completion tokens ({c.reasoning_tokens:,} of them "
                f"reasoning; finish_reason length): asked once more with {bigger:,}"
                + (f" and reasoning effort {lower}" if lower != effort else "")
            )
            c = self._call(messages, usage, notes, bigger, lower)
            if c.finish_reason == "length":
                raise _Stop(f"the answer was cut by the token limit twice (finish_reason length, "
                            f"{c.completion_tokens:,} completion tokens at a limit of {bigger:,})")
        if c.finish_reason == "content_filter":
            raise _Stop("the provider's content filter stopped the answer (finish_reason content_filter)")
        return c, key

    def _call(self, messages: list[dict[str, str]], usage: dict[str, Any], notes: list[str],
              max_out: int, effort: str | None) -> Completion:
        """One request to the server, counted against the budget; errors sorted into
        permanent (raised) and transient (an explicit HOLD)."""
        s = self.cfg.llm
        est_in = sum(estimate_tokens(m["content"]) for m in messages)
        window = self.info.context_window
        if window is not None and est_in + s.max_tokens > window:
            raise LLMUnusable(f"the prompt (about {est_in:,} tokens) and the answer ({s.max_tokens:,}) do not fit "
                              f"{self.model}'s context window of {window:,} tokens")
        est_cost = s.cost_usd(self.model, est_in, max_out) or 0.0
        if self.run_budget_usd is not None and self.spent_usd + est_cost > self.run_budget_usd:
            raise BudgetExceeded(
                f"the run's LLM budget of {self.run_budget_usd:g} USD would be exceeded "
                f"(spent {self.spent_usd:.4f}, the next call may cost up to {est_cost:.4f}): stopped before it"
            )
        if usage["cost_usd"] + est_cost > s.daily_budget_usd:
            raise _Stop(
                f"the daily LLM budget of {s.daily_budget_usd:.2f} USD would be exceeded "
                f"(spent {usage['cost_usd']:.4f}, the next call may cost up to {est_cost:.4f})"
            )
        usage["calls"] += 1
        try:
            c = self.client.complete(self.model, messages, max_out=max_out, effort=effort)
        except Rejected as exc:
            raise LLMUnusable(str(exc)) from None
        except openai.APIStatusError as exc:
            usage["http_attempts"] += 1
            raise self._failure(exc) from None
        except openai.APIError as exc:  # timeouts and connection errors, after the client's retries
            usage["http_attempts"] += 1
            raise _Stop(f"the LLM server did not answer ({type(exc).__name__}: {str(exc)[:MAX_QUOTED]}) "
                        f"after {s.max_retries} retries") from None
        cost = s.cost_usd(self.model, c.prompt_tokens, c.completion_tokens) or 0.0
        usage["cost_usd"] = round(usage["cost_usd"] + cost, 6)
        self.spent_usd += cost
        for k in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
            usage[k] += getattr(c, k)
        usage["http_attempts"] += c.attempts
        usage.update(response_format=c.response_format, answer_model=c.model, finish_reason=c.finish_reason,
                     system_fingerprint=c.system_fingerprint, params_sent=c.sent,
                     reasoning_effort=c.sent.get("reasoning_effort"))
        seen = _truncated(c.prompt_tokens, est_in)
        if seen == "certain":
            raise LLMUnusable(
                f"the server read {c.prompt_tokens:,} prompt tokens of about {est_in:,} sent: it truncated the prompt "
                "(its context is too small; Ollama: raise num_ctx, llama.cpp: --n_ctx)"
            )
        if seen == "suspected":  # a real tokenizer may count this too: flagged, not fatal
            note = (f"the server read {c.prompt_tokens:,} prompt tokens of about {est_in:,} sent, just under a "
                    "context size: the prompt may have been truncated (Ollama: raise num_ctx, llama.cpp: --n_ctx)")
            usage["truncation_suspected"] = True
            notes.append(note)
            log.warning("llm: %s", note)
        return c

    def _failure(self, exc: openai.APIStatusError) -> Exception:
        """A server error after negotiation and retries: permanent, or an explicit HOLD."""
        param, code, message = error_detail(exc)
        detail = f"HTTP {exc.status_code}{' ' + code if code else ''}: {message[:MAX_QUOTED]}"
        text = f"{code} {message}".lower()
        if "content_filter" in text or "content management policy" in text:
            return _Stop(f"the provider's content filter rejected the request ({detail})")
        if exc.status_code in (401, 403):
            # The server's message may quote part of the key: it is not repeated.
            return LLMUnusable(f"the LLM server refused the key (HTTP {exc.status_code} {code}): check OPENAI_API_KEY")
        if exc.status_code == 404 or "model_not_found" in text:
            return LLMUnusable(f"the LLM server does not serve model {self.model} ({detail})")
        if "context_length" in text or "maximum context length" in text:
            return LLMUnusable(f"the prompt does not fit {self.model}'s context ({detail})")
        if exc.status_code in (400, 422):
            return LLMUnusable(f"the LLM server rejects the request as configured ({detail})")
        return _Stop(f"the LLM server answered {detail}")


def _truncated(counted: int, estimated: int) -> str | None:
    """"certain" when the server counted under half the estimate; "suspected" when it counted
    fewer, just under a power of two (a context size such as Ollama's default 4,096), which
    a real tokenizer's count can also be; else None."""
    if not counted or counted >= estimated:
        return None
    if counted < TRUNCATED_SHARE * estimated:
        return "certain"
    ceiling = 1 << max(counted - 1, 1).bit_length()
    return "suspected" if ceiling >= 2048 and counted > 0.97 * ceiling else None


def preflight(config: Config, client: ChatClient, model: str, today: dt.date) -> list[str]:
    """Before a live run downloads anything: the model exists, is not shut down, speaks Chat
    Completions, and the key works. Raises LLMUnusable; returns notes for the log."""
    info = config.llm.info(model)
    if info.api == "responses":
        raise LLMUnusable(f"{model} is served on the Responses API only: choose a Chat Completions model")
    if info.shutdown is not None and info.shutdown <= today:
        raise LLMUnusable(f"{model} was shut down on {info.shutdown} ({info.source}): choose another model")
    notes = []
    if info.shutdown is not None and (info.shutdown - today).days <= 60:
        notes.append(f"{model} shuts down on {info.shutdown}: plan a replacement")
    if not info.known:
        notes.append(f"{model} is not in the model registry: parameters are negotiated from the server's errors, "
                     "and backtests are labelled in-sample")
    if config.llm.check_model:
        try:
            note = client.check_model(model)
        except Rejected as exc:
            raise LLMUnusable(str(exc)) from None
        if note:
            notes.append(note)
    return notes
