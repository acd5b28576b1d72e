"""Policies: given the brief, answer a decision. Python has computed every number.

Every policy answers in the same public format (engine.decision.Decision) and goes
through the same checks, sizing and guardrails afterwards. The LLM policy plugs in here
by implementing :class:`Policy`: ``decide`` returns the parsed decision together with
the raw answer, the model and the usage to record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.config import Config
from engine.decision import Action, Brief, Cut, Decision


@dataclass(frozen=True)
class PolicyAnswer:
    decision: Decision
    raw: Any = None  # what the policy literally answered (text for an LLM)
    model: str | None = None
    usage: dict[str, Any] | None = None  # tokens, cost, calls, cache hits, the messages sent
    notes: list[str] = field(default_factory=list)  # fallbacks, repairs: shown in the record
    fallback: str | None = None  # set when the answer was replaced by an explicit HOLD, and why
    cuts: list[Cut] = field(default_factory=list)  # entries of the answer dropped while parsing it


class Policy(Protocol):
    name: str

    def decide(self, brief: Brief) -> PolicyAnswer: ...


class HoldPolicy:
    """Never trades: the control that shows what costs and guardrails alone do."""

    name = "hold"

    def decide(self, brief: Brief) -> PolicyAnswer:
        d = Decision(decisions=(), summary="Hold everything: this policy never trades.")
        return PolicyAnswer(decision=d)


class RulesPolicy:
    """The offline default: the experiment's principles as plain rules.

    * Trend: own an asset only while it trades above its 200-day average, and buy it
      only when the 50-day average is above the 200-day one too.
    * Loss aversion (prospect theory, losses weigh ``loss_aversion`` x gains): close a
      position that breaks its trend or has lost ``stop_loss`` of its cost, rather than
      hope; among candidates prefer those whose recent return distribution has the best
      prospect value (the least painful to a loss-averse holder); do not chase an
      overbought asset (RSI above ``rsi_overbought``), and take part of the gain on an
      extreme one.
    * CVaR-budgeted sizing: target weights inversely proportional to each asset's
      CVaR 95, summing to the exposure cap (already tightened by the drawdown
      multiplier) times the share of slots filled, each capped by the maximum weight and
      the half-Kelly fraction. The guardrails then check the portfolio CVaR as a whole.
    """

    name = "rules"

    def __init__(self, config: Config):
        self.cfg = config.rules
        self.max_weight = config.guardrails.max_weight
        self.loss_aversion = config.risk.loss_aversion
        self.min_order_eur = config.portfolio.min_order_eur

    def decide(self, brief: Brief) -> PolicyAnswer:
        c = self.cfg
        a = brief.assets
        actions: list[Action] = []
        sold: set[str] = set()

        for t, pos in brief.positions.items():
            if t not in brief.tradable or t not in a:
                continue
            r = a[t]
            if _lt(r["close"], r["sma_200"]):
                actions.append(Action(ticker=t, action="sell", percent=100, reason=(
                    f"Closed at {r['close']:.2f}, below its 200-day average {r['sma_200']:.2f}: the trend is "
                    f"broken, and a loss weighs {self.loss_aversion:g}x a gain. Exit.")))
                sold.add(t)
            elif pos.pnl_pct <= -c.stop_loss:
                actions.append(Action(ticker=t, action="sell", percent=100, reason=(
                    f"Down {-pos.pnl_pct:.1%} on its cost, past the {c.stop_loss:.0%} stop: cut the loss before it grows.")))
                sold.add(t)
            elif _gt(r["rsi_14"], min(c.rsi_overbought + 10, 95)) and pos.pnl_pct > 0:
                actions.append(Action(ticker=t, action="sell", percent=25, reason=(
                    f"RSI {r['rsi_14']:.0f} is extreme with a {pos.pnl_pct:.1%} gain: bank a quarter of it.")))
                sold.add(t)

        cands = []
        for t in brief.tradable:
            if t in sold or t not in a:
                continue
            r = a[t]
            figures = [r["close"], r["sma_50"], r["sma_200"], r["rsi_14"], r["cvar_95"], r["prospect_20d"]]
            if not all(_finite(x) for x in figures) or r["cvar_95"] <= 0:
                continue
            trending = r["close"] > r["sma_200"] and r["sma_50"] > r["sma_200"]
            if trending and (t in brief.positions or r["rsi_14"] < c.rsi_overbought):
                cands.append(t)
        # Positions still in their trend keep their slot (no churn); the free slots go to
        # the best prospect values.
        kept = [t for t in cands if t in brief.positions]
        new = sorted((t for t in cands if t not in brief.positions), key=lambda t: (-a[t]["prospect_20d"], t))
        free = c.max_positions - len(set(brief.positions) - sold)
        chosen = kept + new[: max(free, 0)]
        cands.sort(key=lambda t: (-a[t]["prospect_20d"], t))

        targets: dict[str, float] = {}
        if chosen:
            inv = {t: 1.0 / a[t]["cvar_95"] for t in chosen}
            total = brief.limits["exposure_cap"] * len(chosen) / c.max_positions
            s = sum(inv.values())
            for t in chosen:
                hk = a[t]["half_kelly"]
                cap = min(self.max_weight, hk) if _finite(hk) else self.max_weight
                targets[t] = max(0.0, min(total * inv[t] / s, cap))

        wants: dict[str, float] = {}
        for t, w in targets.items():
            cur = brief.held_qty(t) * brief.prices_eur[t] / brief.nav_eur
            if cur < w * (1 - c.rebalance_band):
                wants[t] = (w - cur) * brief.nav_eur
        cash = brief.cash_available_eur
        total_want = sum(wants.values())
        scale = min(1.0, cash / total_want) if total_want > 0 else 0.0
        for t, amount in sorted(wants.items(), key=lambda kv: -kv[1]):
            # Too small to be worth an order (or a single share): do not ask for it.
            if amount * scale < max(self.min_order_eur, brief.prices_eur[t] * 1.01):
                continue
            pct = 100 * amount * scale / cash
            r = a[t]
            actions.append(Action(ticker=t, action="buy", percent=round(min(pct, 100.0), 4), reason=(
                f"Uptrend (close {r['close']:.2f} > SMA50 {r['sma_50']:.2f} > SMA200 {r['sma_200']:.2f}), "
                f"RSI {r['rsi_14']:.0f}, prospect value rank {cands.index(t) + 1}/{len(cands)}; "
                f"target {targets[t]:.1%} of NAV sized by CVaR 95 {r['cvar_95']:.2%}.")))

        n_buy = sum(1 for x in actions if x.action == "buy")
        n_sell = len(actions) - n_buy
        summary = (
            f"{len(cands)} assets in an uptrend; targeting {len(chosen)} of at most {c.max_positions}. "
            f"{n_buy} buy(s), {n_sell} sell(s). Drawdown {brief.drawdown:.1%}, multiplier "
            f"{brief.drawdown_multiplier:.2f}, exposure cap {brief.limits['exposure_cap']:.0%}."
        )
        return PolicyAnswer(decision=Decision(decisions=tuple(actions), summary=summary))


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _lt(a: Any, b: Any) -> bool:
    return _finite(a) and _finite(b) and float(a) < float(b)


def _gt(a: Any, b: Any) -> bool:
    return _finite(a) and _finite(b) and float(a) > float(b)


POLICIES = ("rules", "hold", "llm")


def make_policy(name: str, config: Config) -> Policy:
    if name == "rules":
        return RulesPolicy(config)
    if name == "hold":
        return HoldPolicy()
    from engine.errors import ConfigError

    if name == "llm":
        raise ConfigError("the llm policy needs a client: build it with engine.llm.policy.LLMPolicy")

    raise ConfigError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
