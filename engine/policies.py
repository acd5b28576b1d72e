"""Policies: given the brief, answer a decision. Python has computed every number.

The arms of the experiment add the passive baselines (:class:`BuyAndHoldPolicy`,
:class:`EqualWeightPolicy`) and the luck calibrator (:class:`RandomPolicy`): portfolios
run through the very same step, ledger, execution and costs as the strategy.

Every policy answers in the same public format (engine.decision.Decision) and goes
through the same checks, sizing and guardrails afterwards. The LLM policy plugs in here
by implementing :class:`Policy`: ``decide`` returns the parsed decision together with
the raw answer, the model and the usage to record.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.config import ArmConfig, Config
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
        tradable = set(brief.tradable)

        for t, pos in brief.positions.items():
            if t not in tradable or t not in a:
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


# --- the baselines and the luck calibrator -------------------------------------------

# The rebalanced equal weight keeps this share of NAV in cash: with 21 small orders the
# commission minimum and the gap from the decision's close to the fill's open would
# otherwise clip a purchase at every rebalance. (Buy-and-hold buys with all the cash: a
# purchase the open makes too dear is clipped to what the cash pays, and logged.)
BASELINE_CASH_BUFFER = 0.005


class BuyAndHoldPolicy:
    """Buy the target weights once, at the first session, then hold (dividends stay cash)."""

    name = "buy_and_hold"

    def __init__(self, weights: Mapping[str, float]):
        self.weights = dict(weights)

    def decide(self, brief: Brief) -> PolicyAnswer:
        if brief.positions or brief.pending_orders or brief.previous is not None:
            return PolicyAnswer(decision=Decision(summary="Buy and hold: holding."))
        actions = tuple(
            Action(ticker=t, action="buy", percent=round(100 * w, 6), reason=f"buy-and-hold target {w:.1%} of NAV")
            for t, w in self.weights.items()
            if w > 0 and t in brief.tradable
        )
        missing = sorted(t for t in self.weights if t not in brief.tradable)
        note = f" Not tradable today, never bought: {', '.join(missing)}." if missing else ""
        return PolicyAnswer(decision=Decision(decisions=actions, summary="Buy and hold: the initial purchase." + note))


class EqualWeightPolicy:
    """An equal weight of every tradable asset of the universe, rebalanced monthly.

    At a month's first session it sells what stands above its target by more than
    ``band`` (relative); at every session it buys what stands below its target by more
    than ``band`` with the cash available, in proportion to the shortfall (so the proceeds
    of a rebalancing sale are reinvested at the next session, once they are cash). The
    band keeps orders large enough for the commission minimum not to matter."""

    name = "equal_weight"

    def __init__(self, universe: Sequence[str], band: float):
        self.universe = tuple(universe)
        self.band = band

    def decide(self, brief: Brief) -> PolicyAnswer:
        tradable = set(brief.tradable)
        names = [t for t in self.universe if t in tradable]
        if not names or brief.nav_eur <= 0:
            return PolicyAnswer(decision=Decision(summary="Equal weight: nothing tradable."))
        target = (1 - BASELINE_CASH_BUFFER) / len(names)
        nav = brief.nav_eur
        weight = {t: brief.held_qty(t) * brief.prices_eur[t] / nav for t in names}
        new_month = brief.previous is not None and brief.previous["date"][:7] != brief.date.isoformat()[:7]
        actions: list[Action] = []
        if new_month:
            for t in names:
                if weight[t] > target * (1 + self.band):
                    pct = 100 * (weight[t] - target) / weight[t]
                    actions.append(Action(ticker=t, action="sell", percent=round(pct, 6),
                                          reason=f"monthly rebalance: {weight[t]:.2%} of NAV, target {target:.2%}"))
        short = {t: (target - weight[t]) * nav for t in names if weight[t] < target * (1 - self.band)}
        cash = brief.cash_available_eur - BASELINE_CASH_BUFFER * nav
        total = sum(short.values())
        if short and cash > 0:
            scale = min(1.0, cash / total)
            for t, amount in short.items():
                if amount * scale < self.band * target * nav:
                    continue  # too small once the cash is shared out: the commission minimum would bite
                actions.append(Action(ticker=t, action="buy", percent=round(100 * amount * scale / brief.cash_available_eur, 6),
                                      reason=f"equal weight: {weight[t]:.2%} of NAV, target {target:.2%}"))
        return PolicyAnswer(decision=Decision(
            decisions=tuple(actions), summary=f"Equal weight of {len(names)} assets, {len(actions)} order(s)."))


@dataclass(frozen=True)
class Turnover:
    """What a reference arm traded at one session: (side, value as a fraction of its NAV)."""

    trades: tuple[tuple[str, float], ...]


class RandomPolicy:
    """Random trades matched in turnover to a reference arm: the luck calibrator.

    At each session the reference arm's orders (sides and sizes as fractions of its NAV)
    are replayed on assets drawn at random: a sale on a random holding, a purchase of a
    random tradable asset, each the same fraction of NAV. Without a reference for the
    session, it trades with probability ``trade_probability``: one random purchase of 10%
    of NAV or one random sale of a whole position. The draws are seeded by (seed, date),
    so a session re-run decides the same."""

    name = "random"

    def __init__(self, seed: int, trade_probability: float = 0.1):
        self.seed = seed
        self.trade_probability = trade_probability
        self.reference: dict[dt.date, Turnover] = {}  # filled by the arms runner, session by session

    def decide(self, brief: Brief) -> PolicyAnswer:
        rng = np.random.default_rng([self.seed, brief.date.toordinal()])
        ref = self.reference.pop(brief.date, None)
        if ref is None:
            if rng.random() >= self.trade_probability:
                return PolicyAnswer(decision=Decision(summary="Random: no trade drawn today."))
            side = "sell" if brief.positions and rng.random() < 0.5 else "buy"
            trades: tuple[tuple[str, float], ...] = ((side, 1.0 if side == "sell" else 0.10),)
            source = f"p = {self.trade_probability:g}"
        else:
            trades, source = ref.trades, "matched to the reference arm"
        held = sorted(t for t in brief.positions if t in brief.tradable and brief.held_qty(t) > 0)
        free = sorted(t for t in brief.tradable if t not in held)
        rng.shuffle(held)
        rng.shuffle(free)
        actions: list[Action] = []
        nav, cash = brief.nav_eur, brief.cash_available_eur
        for side, fraction in trades:
            if side == "sell":
                owed = fraction * nav  # spread over random holdings until the value is matched
                while held and owed > 0:
                    t = held.pop()
                    value = brief.held_qty(t) * brief.prices_eur[t]
                    pct = 100.0 if ref is None else min(100.0, 100 * owed / value)
                    owed -= value * pct / 100
                    actions.append(Action(ticker=t, action="sell", percent=round(pct, 6), reason=f"random sale ({source})"))
            elif free and cash > 0:
                t = free.pop()
                actions.append(Action(ticker=t, action="buy", percent=round(min(100.0, 100 * fraction * nav / cash), 6),
                                      reason=f"random purchase ({source})"))
        return PolicyAnswer(decision=Decision(decisions=tuple(actions), summary=f"Random: {len(actions)} trade(s), {source}."))


POLICIES = ("rules", "hold", "llm", "equal_weight")


def make_policy(name: str, config: Config) -> Policy:
    if name == "rules":
        return RulesPolicy(config)
    if name == "hold":
        return HoldPolicy()
    if name == "equal_weight":  # without an equal_weight arm in the configuration: the arm's default band
        from engine.config import ArmConfig

        return EqualWeightPolicy(config.tickers, ArmConfig.model_fields["rebalance_band"].default)
    from engine.errors import ConfigError

    if name == "llm":
        raise ConfigError("the llm policy needs a client: build it with engine.llm.policy.LLMPolicy")

    raise ConfigError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")


def make_arm_policy(arm: ArmConfig, config: Config) -> Policy:
    """The policy of an offline arm (an llm arm needs a client: engine.arms builds it)."""
    if arm.policy == "buy_and_hold":
        return BuyAndHoldPolicy(arm.weights)
    if arm.policy == "equal_weight":
        return EqualWeightPolicy(config.tickers, arm.rebalance_band)
    if arm.policy == "random":
        return RandomPolicy(arm.seed, arm.trade_probability)
    return make_policy(arm.policy, config)
