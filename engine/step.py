"""The daily step: the one code path shared by live runs, the demo and backtests.

For session D, after both markets have closed:

1. book corporate actions (dividends with ex-date D, splits) on what was held;
2. fill the pending orders at D's open of each asset's own exchange (an exchange closed
   on D keeps its orders pending);
3. mark to market at D's close, in EUR (USD assets at the EURUSD of D);
4. read the indicators and risk figures as of D (computed once for the whole panel,
   from data up to D only), build the brief and ask the policy;
5. check the answer, size it into orders, apply the guardrails (they only shrink risk),
   queue the orders for the next open, and return the new portfolio with the records
   to append: fills, one equity row and the decision record.

``step`` is pure given its inputs: same portfolio, data up to D and policy -> same
result. Nothing after D is read. ``run`` is ``step`` in a loop; a backtest and a live
run differ only in the data source and the dates they pass.

A date is a session when at least one of the two exchanges trades. On a day only Paris
trades (US Thanksgiving), US assets keep their last close and their orders wait.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config import Asset, Benchmark, Config
from engine.data.market import MarketData
from engine.decision import Brief, PositionView, check_decision, size_orders
from engine.errors import DataUnavailable
from engine.indicators import Indicators
from engine.policies import Policy
from engine.portfolio.costs import CostModel
from engine.portfolio.execution import corporate_actions, execute_pending
from engine.portfolio.ledger import Fill, LastDecision, LLMTotals, Portfolio, mark
from engine.risk.cvar import portfolio_cvar
from engine.risk.prospect import prospect_value
from engine.risk.guardrails import Book, Limits, apply_churn, apply_guardrails, churn_view, remember_churn

RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StepContext:
    """What stays the same from one session to the next."""

    config: Config
    policy: Policy
    source: str
    synthetic: bool
    guarded: bool = True  # False for a passive baseline: no guardrails, no churn limits
    costs: CostModel = field(init=False)
    instruments: dict[str, Asset | Benchmark] = field(init=False)
    buy_cost_factor: dict[str, float] = field(init=False)
    sell_net_factor: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        costs = CostModel.from_config(self.config.costs)
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "instruments", self.config.instruments)
        buy = {a.ticker: costs.buy_cost_factor(a.ftt, a.currency) for a in self.config.assets}
        c = self.config.costs
        sell = {
            a.ticker: 1 - (c.slippage_bps + c.commission_bps + (c.fx_fee_bps if a.currency != "EUR" else 0)) / 10_000
            for a in self.config.assets
        }
        object.__setattr__(self, "buy_cost_factor", buy)
        object.__setattr__(self, "sell_net_factor", sell)


@dataclass(frozen=True)
class StepResult:
    date: pd.Timestamp
    portfolio: Portfolio
    fills: list[Fill]
    equity: dict[str, Any]
    record: dict[str, Any]


def step(p: Portfolio, d: pd.Timestamp, market: MarketData, ind: Indicators, ctx: StepContext) -> StepResult:
    cfg = ctx.config
    try:
        i = int(market.index.get_loc(d))
    except KeyError:
        raise DataUnavailable(f"{d.date()} is not in the market data ({market.index[0].date()}..{market.index[-1].date()})") from None
    day = d.date()
    rows = market.rows
    fx = float(rows.fx_eurusd[i])
    if not (math.isfinite(fx) and fx > 0):
        raise DataUnavailable(f"no EURUSD rate for {day}: cannot value USD assets")

    # 1-2. corporate actions before the open, then the fills at the open.
    p, ca_fills = corporate_actions(p, day, rows.at("dividends", i), rows.at("splits", i), fx, ctx.instruments)
    ex = execute_pending(p, day, rows.at("open", i), fx, ctx.instruments, ctx.costs, cfg.portfolio.whole_shares)
    p = ex.portfolio
    fills = ca_fills + ex.fills

    # 3. mark to market at the close (last close for an exchange closed today).
    names = ind.names
    fig = ind.values_at(d).tolist()
    figures = {t: dict(zip(names, row, strict=True)) for t, row in zip(ind.tickers, fig, strict=True)}
    close_local = {t: f["close"] for t, f in figures.items()}
    prices_eur: dict[str, float] = {}
    for t, px in close_local.items():
        inst = ctx.instruments.get(t)
        if inst is not None and px == px:
            prices_eur[t] = px / fx if inst.currency == "USD" else px
    val = mark(p, prices_eur)
    nav = val.nav_eur

    inception = p.inception if p.inception is not None else day
    peak = max(p.nav_peak_eur * cfg.guardrails.peak_fade if p.as_of is not None else p.nav_peak_eur, nav)
    drawdown = nav / peak - 1 if peak > 0 else 0.0

    # 4. risk figures as of D and the brief.
    lookback = cfg.risk.lookback_sessions
    # The risk window ending at D (rows of the indicators are the market's dates).
    j = ind.row_position(d)
    returns = ind.returns_matrix[max(0, j - lookback + 1) : j + 1]
    r_tickers = ind.tickers
    weights = np.array([val.values_eur.get(t, 0.0) / nav for t in r_tickers]) if nav > 0 else np.zeros(len(r_tickers))
    cvar_now = float(portfolio_cvar(returns, weights, cfg.risk.cvar_level)) if len(returns) >= 20 else float("nan")
    limits = Limits.for_drawdown(cfg.guardrails, drawdown)
    rc = cfg.risk
    since = _sessions_since(market.index, i)
    churn = churn_view(p.churn.last_sold, p.churn.buys, since, cfg.churn) if ctx.guarded else None

    def pt(x: float) -> float:
        return prospect_value(x, rc.alpha, rc.beta, rc.loss_aversion)

    pending_cost = sum(
        o.qty * prices_eur.get(o.ticker, 0.0) * ctx.buy_cost_factor.get(o.ticker, 1.0)
        for o in p.pending_orders
        if o.side == "buy"
    )
    pending_proceeds = sum(
        o.qty * prices_eur.get(o.ticker, 0.0) * ctx.sell_net_factor.get(o.ticker, 1.0)
        for o in p.pending_orders
        if o.side == "sell"
    )
    tradable = tuple(t for t in cfg.tickers if t in prices_eur and t in market.close.columns)
    positions = {}
    for t, pos in p.positions.items():
        price = prices_eur[t]
        positions[t] = PositionView(
            ticker=t,
            qty=pos.qty,
            avg_cost_eur=pos.avg_cost_eur,
            price_local=close_local[t],
            currency=ctx.instruments[t].currency,
            price_eur=price,
            value_eur=pos.qty * price,
            weight=pos.qty * price / nav,
            pnl_eur=pos.qty * price - pos.cost_eur,
            pnl_pct=price / pos.avg_cost_eur - 1 if pos.avg_cost_eur > 0 else 0.0,
            prospect_value=float(pt(price / pos.avg_cost_eur - 1 if pos.avg_cost_eur > 0 else 0.0)),
        )
    assets = {t: figures[t] for t in cfg.tickers if t in figures}
    for t, rec in _recent(returns, r_tickers).items():
        if t in assets:
            assets[t].update(rec)
    previous = None
    if p.last_decision is not None:
        previous = {
            "date": p.last_decision.date.isoformat(),
            "summary": p.last_decision.summary,
            "fallback": p.last_decision.fallback,
            "cuts": list(p.last_decision.cuts),
            "orders": [
                {"ticker": o.ticker, "side": o.side, "qty": o.qty} for o in p.last_decision.orders
            ],
            "fills_today": [
                {"ticker": f.ticker, "side": f.side, "qty": f.qty, "price_local": round(f.price_local, 4),
                 "currency": f.currency, "cash_flow_eur": f.cash_flow_eur}
                for f in fills
            ],
            "execution_notes": [n.as_dict() for n in ex.notes],
        }
    correlation = None
    if getattr(ctx.policy, "wants_correlation", False):
        corr = ind.correlation(d, lookback)
        keep = [t for t in tradable if t in corr.index]
        correlation = corr.loc[keep, keep]
    brief = Brief(
        date=day,
        source=ctx.source,
        synthetic=ctx.synthetic,
        nav_eur=nav,
        cash_eur=p.cash_eur,
        cash_available_eur=max(p.cash_eur - pending_cost, 0.0),
        invested_eur=val.invested_eur,
        gross_exposure=val.gross_exposure,
        nav_peak_eur=peak,
        drawdown=drawdown,
        drawdown_multiplier=limits.multiplier,
        cvar_95=cvar_now,
        limits=limits.as_dict(),
        positions=positions,
        assets=assets,
        prices_eur=prices_eur,
        pending_orders=p.pending_orders,
        data_issues=tuple(x.as_dict() for x in market.issues),
        tradable=tradable,
        starting_capital_eur=p.starting_capital_eur,
        inception=inception,
        prospect_value=float(pt(nav / p.starting_capital_eur - 1)),
        previous=previous,
        correlation=correlation,
        churn=churn.as_dict() if churn is not None else None,
    )

    # 5. decide, check, size, guard, queue.
    answer = ctx.policy.decide(brief)
    actions, cuts = check_decision(answer.decision, brief, set(cfg.tickers))
    cuts = list(answer.cuts) + cuts
    orders, sizing_cuts = size_orders(
        actions, brief, ctx.buy_cost_factor, cfg.portfolio.min_order_eur, cfg.portfolio.whole_shares
    )
    cuts += sizing_cuts
    book = Book(
        nav_eur=nav,
        cash_eur=p.cash_eur - pending_cost + pending_proceeds,
        qty={t: brief.held_qty(t) for t in set(p.positions) | {o.ticker for o in p.pending_orders}},
        prices_eur=prices_eur,
        buy_cost_factor=ctx.buy_cost_factor,
        sell_net_factor=ctx.sell_net_factor,
        returns=returns,
        returns_tickers=r_tickers,
        cvar_level=cfg.risk.cvar_level,
    )
    if churn is not None:
        orders, churn_cuts = apply_churn(day, orders, churn, prices_eur)
        final, guard_cuts = apply_guardrails(
            day, orders, book, limits, cfg.guardrails, cfg.portfolio.min_order_eur, cfg.portfolio.whole_shares
        )
        cuts += churn_cuts + guard_cuts
    else:  # a passive baseline: the guardrails would make it another portfolio
        final = orders
    sold = sorted({o.ticker for o in final if o.side == "sell"})  # a sale counts from its decision
    memory = remember_churn(p.churn, day, sold, sum(o.side == "buy" for o in final), since, cfg.churn)

    llm = p.llm
    if answer.usage:
        u = answer.usage
        llm = LLMTotals(
            calls=llm.calls + int(u.get("calls", 0)),
            cache_hits=llm.cache_hits + int(u.get("cache_hits", 0)),
            prompt_tokens=llm.prompt_tokens + int(u.get("prompt_tokens", 0)),
            completion_tokens=llm.completion_tokens + int(u.get("completion_tokens", 0)),
            cost_usd=round(llm.cost_usd + float(u.get("cost_usd") or 0.0), 6),
        )
    p = p.model_copy(
        update={
            "as_of": day,
            "inception": inception,
            "nav_peak_eur": peak,
            "churn": memory,
            "pending_orders": p.pending_orders + tuple(final),
            "last_decision": LastDecision(
                date=day, summary=answer.decision.summary, orders=tuple(final), fallback=answer.fallback,
                cuts=tuple(c.as_dict() for c in cuts[:MAX_CUTS_CARRIED]),
            ),
            "llm": llm,
        }
    )

    equity = {
        "date": d,
        "nav_eur": round(nav, 2),
        "cash_eur": round(p.cash_eur, 2),
        "invested_eur": round(val.invested_eur, 2),
        "gross_exposure": val.gross_exposure,
        "drawdown": drawdown,
        "cvar_95": cvar_now,
        "realised_pnl_eur": p.realised_pnl_eur,
        "unrealised_pnl_eur": round(val.unrealised_pnl_eur, 2),
        "dividends_eur": p.dividends_eur,
        "costs_eur": round(p.costs.total_eur, 2),
        "n_positions": len(p.positions),
        "llm_tokens": p.llm.prompt_tokens + p.llm.completion_tokens,
        "llm_cost_usd": p.llm.cost_usd,
    }
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "date": day.isoformat(),
        "source": ctx.source,
        "synthetic": ctx.synthetic,
        "policy": ctx.policy.name,
        "model": answer.model,
        "fills": [f.model_dump(mode="json") for f in fills],
        "execution_notes": [n.as_dict() for n in ex.notes],
        "valuation": {
            "nav_eur": round(nav, 2),
            "cash_eur": round(p.cash_eur, 2),
            "invested_eur": round(val.invested_eur, 2),
            "drawdown": round(drawdown, 6),
            "cvar_95": None if not math.isfinite(cvar_now) else round(cvar_now, 6),
        },
        "brief": brief.as_dict(),
        "answer": {
            "raw": answer.raw,
            "parsed": answer.decision.model_dump(mode="json"),
            "fallback": answer.fallback,
            "notes": list(answer.notes),
        },
        "cuts": [c.as_dict() for c in cuts],
        "orders": [o.model_dump(mode="json") for o in final],
        "usage": answer.usage,
    }
    return StepResult(date=d, portfolio=p, fills=fills, equity=equity, record=record)


def _sessions_since(index: pd.DatetimeIndex, i: int) -> Callable[[dt.date], int]:
    """Sessions from a past date to session `i` of `index` (the session before: 1)."""

    def since(x: dt.date) -> int:
        return i - int(index.searchsorted(pd.Timestamp(x)))

    return since


RECENT_SESSIONS = 30
MAX_CUTS_CARRIED = 10  # of a decision's cuts, shown with it at the next session


def _recent(returns: np.ndarray, tickers: list[str]) -> dict[str, dict[str, float]]:
    """The last ~30 sessions of each asset in brief (EUR): return, volatility, worst day, drawdown."""
    r = returns[-RECENT_SESSIONS:]
    if len(r) < 2:
        return {}
    path = np.cumprod(1 + r, axis=0)
    dd = (path / np.maximum.accumulate(path, axis=0) - 1).min(axis=0)
    ret = path[-1] - 1
    vol = r.std(axis=0, ddof=1) * math.sqrt(252)
    worst = r.min(axis=0)
    return {
        t: {"ret_30s_eur": float(ret[j]), "vol_30s_ann": float(vol[j]), "worst_day_30s": float(worst[j]),
            "max_dd_30s": float(dd[j])}
        for j, t in enumerate(tickers)
    }


def run(
    p: Portfolio,
    sessions: Iterable[pd.Timestamp],
    market: MarketData,
    ind: Indicators,
    ctx: StepContext,
    on_step: Callable[[StepResult], None] | None = None,
) -> tuple[Portfolio, list[StepResult]]:
    """`step` over `sessions` in order, skipping those already done (idempotent)."""
    results: list[StepResult] = []
    for d in sessions:
        if p.as_of is not None and d.date() <= p.as_of:
            continue
        res = step(p, d, market, ind, ctx)
        p = res.portfolio
        results.append(res)
        if on_step is not None:
            on_step(res)
    return p, results


def required_tickers(p: Portfolio, config: Config) -> set[str]:
    """Tickers the run cannot do without: held, with a pending order, or a benchmark."""
    return set(p.positions) | {o.ticker for o in p.pending_orders} | {b.ticker for b in config.benchmarks}


def check_data(market: MarketData, p: Portfolio, config: Config) -> None:
    """Stop when a ticker the run needs failed validation; otherwise proceed without the
    failed ones (they are listed in the market's issues and in every decision record)."""
    needed = required_tickers(p, config)
    bad: dict[str, str] = {}
    for issue in market.issues:
        if issue.fatal_for_ticker and issue.ticker in needed and issue.ticker not in bad:
            bad[issue.ticker] = f"{issue.ticker} ({issue.kind}: {issue.detail})"
    missing = sorted(t for t in needed if t not in market.close.columns and t not in bad)
    for t in missing:
        bad[t] = f"{t} (absent from the data)"
    if bad:
        raise DataUnavailable("cannot run safely without " + "; ".join(bad[t] for t in sorted(bad)))

