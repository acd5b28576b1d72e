"""The ``llm`` policy: the model decides, Python checks and records everything.

One decision is one request (plus, at most, one repair round): the system prompt and
the brief go in; the answer must be the JSON of engine.llm.schema. Every way this can
go wrong ends in an explicit, logged HOLD with its reason, never in a silent default:
the server does not answer (after the client's retries), the answer is a refusal, the
answer does not parse even after the model was shown why, or the next call would
exceed the daily budget. The daily run still marks to market and writes its state.

The record (``usage`` in the decision file) holds the exact messages sent, the
parameters, the tokens and the cost, so that any decision can be replayed; the
response cache makes a replay free.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import openai

from engine.config import Config
from engine.errors import BudgetExceeded
from engine.decision import Brief, Decision
from engine.llm.brief import estimate_tokens, render_brief
from engine.llm.cache import ResponseCache, request_key
from engine.llm.client import ChatClient, Completion
from engine.llm.prompt import prompt_for, prompt_sha256
from engine.llm.schema import AnswerInvalid, parse_answer
from engine.policies import PolicyAnswer

log = logging.getLogger(__name__)

REPAIR_TEMPLATE = (
    "Your answer could not be used: {error}. Reply again with only the JSON object described in "
    'the instructions: {{"decisions": [{{"ticker": ..., "action": "buy"|"sell"|"hold", '
    '"percent": 0-100, "reason": ...}}], "summary": ...}}. Nothing before or after it.'
)
MAX_QUOTED = 500  # characters of a refusal or server error kept in a reason


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
        self.prompt = prompt  # the prompt family: "behavioural" (treatment) or "neutral" (control)
        self.system, self.prompt_version = prompt_for(prompt, config)
        self.system_sha256 = prompt_sha256(self.system)

    def decide(self, brief: Brief) -> PolicyAnswer:
        user = render_brief(brief, self.cfg)
        if self.scrub is not None:
            user = self.scrub(user)
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        s = self.cfg.llm
        usage: dict[str, Any] = {
            "model": self.model,
            "prompt_version": self.prompt_version,
            "prompt_sha256": self.system_sha256,
            "temperature": s.temperature,
            "seed": s.seed,
            "max_tokens": s.max_tokens,
            "response_format": None,
            "brief_chars": len(user),
            "brief_tokens_est": estimate_tokens(user),
            "calls": 0,
            "cache_hits": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            "budget_usd": s.daily_budget_usd,
            "messages": messages,
        }
        notes: list[str] = []
        raw: str | None = None
        try:
            first = self._ask(messages, usage, notes)
            raw = first.content
            try:
                decision, extracted = self._parse(first)
            except AnswerInvalid as exc:
                notes.append(f"the answer did not parse ({exc}): the model was shown the error once")
                messages = messages + [
                    {"role": "assistant", "content": first.content or ""},
                    {"role": "user", "content": REPAIR_TEMPLATE.format(error=exc)},
                ]
                usage["messages"] = messages
                second = self._ask(messages, usage, notes)
                raw = second.content
                try:
                    decision, extracted = self._parse(second)
                except AnswerInvalid as exc2:
                    raise _Stop(f"the answer did not parse after one repair round: {exc2}") from None
            if extracted:
                notes.append("the JSON was extracted from text around it")
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
    def _parse(c: Completion) -> tuple[Decision, bool]:
        if c.refusal:
            raise _Stop(f"the model refused: {c.refusal[:MAX_QUOTED]}")
        return parse_answer(c.content)

    def _ask(self, messages: list[dict[str, str]], usage: dict[str, Any], notes: list[str]) -> Completion:
        """One answer, from the cache or the server, counted against the budget."""
        key = request_key(self.model, messages, self.client.params(self.model))
        cached = self.cache.get(key)
        if cached is not None:
            usage["cache_hits"] += 1
            c = Completion.from_dict(cached)
            usage["response_format"] = c.response_format
            return c

        s = self.cfg.llm
        est_in = sum(estimate_tokens(m["content"]) for m in messages)
        est_cost = s.cost_usd(self.model, est_in, s.max_tokens)
        if est_cost is None:
            note = f"no price for model {self.model} in the config: its cost is not counted and the budget not enforced"
            if note not in notes:
                notes.append(note)
        elif self.run_budget_usd is not None and self.spent_usd + est_cost > self.run_budget_usd:
            raise BudgetExceeded(
                f"the run's LLM budget of {self.run_budget_usd:g} USD would be exceeded "
                f"(spent {self.spent_usd:.4f}, the next call may cost up to {est_cost:.4f}): stopped before it"
            )
        elif usage["cost_usd"] + est_cost > s.daily_budget_usd:
            raise _Stop(
                f"the daily LLM budget of {s.daily_budget_usd:.2f} USD would be exceeded "
                f"(spent {usage['cost_usd']:.4f}, the next call may cost up to {est_cost:.4f})"
            )
        usage["calls"] += 1
        try:
            c = self.client.complete(self.model, messages)
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            detail = str(body.get("message") or exc.message)[:MAX_QUOTED]
            raise _Stop(f"the LLM server answered HTTP {exc.status_code}: {detail}") from None
        except openai.APIError as exc:  # timeouts and connection errors, after the client's retries
            raise _Stop(f"the LLM server did not answer ({type(exc).__name__}: {str(exc)[:MAX_QUOTED]}) "
                        f"after {s.max_retries} retries") from None
        usage["prompt_tokens"] += c.prompt_tokens
        usage["completion_tokens"] += c.completion_tokens
        cost = s.cost_usd(self.model, c.prompt_tokens, c.completion_tokens)
        usage["cost_usd"] = round(usage["cost_usd"] + (cost or 0.0), 6)
        self.spent_usd += cost or 0.0
        usage["response_format"] = c.response_format
        usage["answer_model"] = c.model
        self.cache.put(key, c.as_dict())
        return c
