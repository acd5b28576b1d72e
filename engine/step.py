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
import logging
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config import Asset, Benchmark, Config
from engine.data.calendars import sessions_per_year
from engine.data.market import MarketData
from engine.decision import AssetTable, Brief, BriefRecord, PositionView, check_decision, size_orders
from engine.errors import DataUnavailable
from engine.indicators import Indicators
from engine.policies import Policy
from engine.portfolio.costs import CostModel
from engine.portfolio.execution import ExecutionResult, corporate_actions, execute_pending
from engine.portfolio.ledger import Fill, LastDecision, LLMTotals, Portfolio, mark
from engine.risk.cvar import portfolio_cvar
from engine.risk.prospect import prospect_value_of
from engine.risk.guardrails import Book, Limits, apply_churn, apply_guardrails, churn_view, remember_churn

RECORD_SCHEMA_VERSION = 1  # the shape readers get; engine.records writes it in layout 2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepContext:
    """What stays the same from one session to the next."""

    config: Config
    policy: Policy
    source: str
    synthetic: bool
    # Which engine made the records: its version and the digest of the locked dependencies
    # (engine.ops.build_info); None leaves it out (tests, library use).
    build: dict[str, Any] | None = None
    guarded: bool = True  # False for a passive baseline: no guardrails, no churn limits
    costs: CostModel = field(init=False)
    instruments: dict[str, Asset | Benchmark] = field(init=False)
    sell_net_factor: dict[str, float] = field(init=False)
    sessions_per_year: float = field(init=False)  # of the union calendar: annualises the EUR figures
    tickers: tuple[str, ...] = field(init=False)  # the tradable assets, in universe order (config.tickers)
    universe: frozenset[str] = field(init=False)  # the same, as a set
    _buy_by_rate: dict[float, dict[str, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        costs = CostModel.from_config(self.config.costs)
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "instruments", self.config.instruments)
        c = self.config.costs
        sell = {
            a.ticker: 1 - (c.slippage_bps + c.commission_bps + (c.fx_fee_bps if a.currency != "EUR" else 0)) / 10_000
            for a in self.config.assets
        }
        object.__setattr__(self, "sell_net_factor", sell)
        object.__setattr__(self, "sessions_per_year", sessions_per_year({i.calendar for i in self.instruments.values()}))
        object.__setattr__(self, "tickers", tuple(self.config.tickers))
        object.__setattr__(self, "universe", frozenset(self.tickers))

    def buy_cost_factor(self, d: dt.date) -> dict[str, float]:
        """Ticker -> all-in cost of 1 EUR bought on `d` (the FTT rate depends on the date)."""
        rate = self.costs.tax.rate_on(d)
        if rate not in self._buy_by_rate:
            self._buy_by_rate[rate] = {
                a.ticker: self.costs.buy_cost_factor(a.ftt, a.currency, d) for a in self.config.assets
            }
        return self._buy_by_rate[rate]


@dataclass(frozen=True)
class StepResult:
    date: pd.Timestamp
    portfolio: Portfolio
    fills: list[Fill]
    equity: dict[str, Any]
    record: dict[str, Any]


def session_row(market: MarketData, d: pd.Timestamp) -> tuple[int, float]:
    """The row of session `d` in the panel and its EURUSD rate, or DataUnavailable."""
    try:
        i = market.rows.row_of.get(d)
        if i is None:  # not a session of the panel as given (or another kind of date)
            i = int(market.index.get_loc(d))
    except (KeyError, TypeError):
        raise DataUnavailable(f"{d.date()} is not in the market data ({market.index[0].date()}..{market.index[-1].date()})") from None
    fx = float(market.rows.fx_eurusd[i])
    if not (math.isfinite(fx) and fx > 0):
        raise DataUnavailable(f"no EURUSD rate for {d.date()}: cannot value USD assets")
    return i, fx


def book_corporate_actions(
    p: Portfolio, day: dt.date, market: MarketData, i: int, fx: float, ctx: StepContext
) -> tuple[Portfolio, list[Fill]]:
    """Dividends with ex-date D, and splits when the prices are as traded (unadjusted).

    Quantities follow the data: on split-adjusted prices (Yahoo's history) a position
    bought before a split is already in post-split units, so the split is not applied
    again (an 11:10 split would add 10% to the position from nothing).
    """
    rows = market.rows
    split = not market.split_adjusted and rows.splitting[i]
    if not (split or rows.paying[i]):
        return p, []  # most sessions: nothing to book for any ticker
    return corporate_actions(p, day, rows.at("dividends", i), rows.at("splits", i) if split else {}, fx,
                             ctx.instruments)


def fill_pending(p: Portfolio, day: dt.date, market: MarketData, i: int, fx: float, ctx: StepContext):
    """The pending orders filled at D's open; an order on a bar that did not trade waits."""
    if not p.pending_orders:  # most sessions: nothing was decided the session before
        return ExecutionResult(p, [], [])
    rows = market.rows
    opens = rows.at("open", i)
    pending = {o.ticker for o in p.pending_orders}
    not_traded = {
        t: f"the bar of {day} did not trade (carried forward or repeated): the order waits"
        for j, t in enumerate(rows.tickers)
        if t in pending and not rows.traded[i, j] and opens[t] == opens[t]
    }
    return execute_pending(
        p, day, opens, fx, ctx.instruments, ctx.costs, ctx.config.portfolio.whole_shares, not_traded
    )


# A recorded close and a fresh one agree within this (Yahoo revises a few cents);
# beyond it, a ratio this close to a whole number (or its inverse) is a split.
MARK_TOLERANCE = 0.02


def reconcile_units(p: Portfolio, market: MarketData, ctx: StepContext) -> tuple[Portfolio, list[Fill]]:
    """Put the quantities in the units of this panel, once per panel (at load).

    1. On split-adjusted prices, a state saved from an older download holds pre-split
       quantities (and pending orders): convert them for the splits after its
       ``units_as_of`` and book each conversion (a ``split`` row of trades.parquet).
    2. Compare the close each held position was last marked at with this panel's close
       of that session (after step 1): a ratio near a whole number or its inverse is a
       split missing from the events, booked with a note; any other disagreement stops
       the run (DataUnavailable), since the state and the data no longer describe the
       same shares.
    """
    end = market.rows.last_day
    if p.units_as_of == end:
        return p, []
    fills: list[Fill] = []
    base = p.units_as_of or p.as_of
    if market.split_adjusted and base is not None:
        events = market.splits.loc[(market.splits.index.date > base)]
        for ts, row in events.iterrows():
            ratios = {t: float(r) for t, r in row.items() if r == r and r > 0 and r != 1.0}
            if ratios:
                fx = float(market.fx_eurusd.get(ts, float("nan")))
                p, booked = corporate_actions(p, ts.date(), {}, ratios, fx, ctx.instruments)
                fills += [f.model_copy(update={"note": f.note + ", converted at load (split-adjusted prices)"})
                          for f in booked]
    if p.as_of is not None:
        p, found = _unbooked_splits(p, market, ctx)
        fills += found
    return p.model_copy(update={"units_as_of": end}), fills


def _unbooked_splits(p: Portfolio, market: MarketData, ctx: StepContext) -> tuple[Portfolio, list[Fill]]:
    assert p.as_of is not None
    upto = market.close.loc[: pd.Timestamp(p.as_of)]
    fills: list[Fill] = []
    for t in sorted(p.positions):
        recorded = p.marks_local.get(t)
        if recorded is None or t not in upto.columns:
            continue
        col = upto[t].dropna()
        if col.empty:
            continue
        fresh = float(col.iloc[-1])
        ratio = recorded / fresh  # > 1: today's data is in more, smaller shares
        if abs(ratio - 1.0) <= MARK_TOLERANCE:
            continue
        n = round(ratio) if ratio >= 1 else 1.0 / round(1.0 / ratio)
        if n == 1.0 or abs(ratio / n - 1.0) > MARK_TOLERANCE:
            raise DataUnavailable(
                f"{t}: the close of {col.index[-1].date()} was {recorded:.4f} when the state was "
                f"saved and is {fresh:.4f} in this data (ratio {ratio:.4f}, not a split): the state and the "
                "data disagree, check the data"
            )
        fx = float(market.fx_eurusd.loc[: pd.Timestamp(p.as_of)].dropna().iloc[-1])
        p, booked = corporate_actions(p, p.as_of, {}, {t: float(n)}, fx, ctx.instruments)
        fills += [f.model_copy(update={"note": f"split {n:g}-for-1 found in the prices (recorded close "
                                               f"{recorded:.4f}, now {fresh:.4f}), not in the events"})
                  for f in booked]
        log.warning("%s: a %g-for-1 split missing from the events was found in the prices and booked", t, n)
    return p, fills


def record_marks(p: Portfolio, close_local: dict[str, float]) -> Portfolio:
    """Remember the close each position is marked at (for :func:`reconcile_units`), to 6
    significant digits as the decision records show it: the check allows 2%
    (MARK_TOLERANCE), and the state's daily diff does not carry 17 digits a price."""
    return p.model_copy(update={"marks_local": {t: float("%.6g" % close_local[t])
                                                for t in p.positions if t in close_local}})


def step(p: Portfolio, d: pd.Timestamp, market: MarketData, ind: Indicators, ctx: StepContext) -> StepResult:
    cfg = ctx.config
    day = d.date()
    lookback = cfg.risk.lookback_sessions
    at = at_session(market, ind, d, lookback, ctx.sessions_per_year)
    i, fx = at.row, at.fx

    # 0-2. quantities in this panel's units, corporate actions before the open, then
    # the fills at the open.
    p, unit_fills = reconcile_units(p, market, ctx)
    p, ca_fills = book_corporate_actions(p, day, market, i, fx, ctx)
    ex = fill_pending(p, day, market, i, fx, ctx)
    p = ex.portfolio
    fills = unit_fills + ca_fills + ex.fills

    # 3. mark to market at the close (last close for an exchange closed today).
    close_local = at.close_local
    prices_eur: dict[str, float] = {}
    for t, px in close_local.items():
        inst = ctx.instruments.get(t)
        if inst is not None and px == px:
            prices_eur[t] = px / fx if inst.currency == "USD" else px
    val = mark(p, prices_eur)
    nav = val.nav_eur
    p = record_marks(p, close_local)

    inception = p.inception if p.inception is not None else day
    peak = max(p.nav_peak_eur * cfg.guardrails.peak_fade if p.as_of is not None else p.nav_peak_eur, nav)
    drawdown = nav / peak - 1 if peak > 0 else 0.0

    # 4. risk figures as of D and the brief.
    returns = at.returns
    r_tickers = ind.tickers
    weights = np.array([val.values_eur.get(t, 0.0) / nav for t in r_tickers]) if nav > 0 else np.zeros(len(r_tickers))
    cvar_now = float(portfolio_cvar(returns, weights, cfg.risk.cvar_level)) if len(returns) >= 20 else float("nan")
    limits = Limits.for_drawdown(cfg.guardrails, drawdown)
    rc = cfg.risk
    since = _sessions_since(market.rows.dates_ns, i)
    churn = churn_view(p.churn.last_sold, p.churn.buys, since, cfg.churn) if ctx.guarded else None

    pt = prospect_value_of(rc.alpha, rc.beta, rc.loss_aversion)  # a float's v(x), the parameters checked once

    buy_factor = ctx.buy_cost_factor(day)
    pending_cost = sum(
        o.qty * prices_eur.get(o.ticker, 0.0) * buy_factor.get(o.ticker, 1.0)
        for o in p.pending_orders
        if o.side == "buy"
    )
    pending_proceeds = sum(
        o.qty * prices_eur.get(o.ticker, 0.0) * ctx.sell_net_factor.get(o.ticker, 1.0)
        for o in p.pending_orders
        if o.side == "sell"
    )
    blocked = market.blocked_on(day)
    priced = market.rows.ticker_set
    tradable = tuple(t for t in ctx.tickers if t in prices_eur and t in priced and t not in blocked)
    sell_only = tuple(t for t in sorted(p.positions) if t in blocked and t in prices_eur)
    positions = {}
    for t, pos in p.positions.items():
        price, qty, avg = prices_eur[t], pos.qty, pos.avg_cost_eur
        value = qty * price
        pnl_pct = price / avg - 1 if avg > 0 else 0.0
        # ticker, qty, avg_cost_eur, price_local, currency, price_eur, value_eur, weight,
        # pnl_eur, pnl_pct, prospect_value (positional: 11 keywords cost more than the tuple)
        positions[t] = PositionView(t, qty, avg, close_local[t], ctx.instruments[t].currency, price, value,
                                    value / nav, value - pos.cost_eur, pnl_pct, pt(pnl_pct))
    assets = at.assets(ctx.tickers)
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
        data_issues=tuple(x.as_dict() for x in market.issues_on(day)),
        tradable=tradable,
        sell_only=sell_only,
        starting_capital_eur=p.starting_capital_eur,
        inception=inception,
        prospect_value=pt(nav / p.starting_capital_eur - 1),
        previous=previous,
        correlation=correlation,
        churn=churn.as_dict() if churn is not None else None,
    )

    # 5. decide, check, size, guard, queue.
    answer = ctx.policy.decide(brief)
    actions, cuts = check_decision(answer.decision, brief, ctx.universe)
    cuts = list(answer.cuts) + cuts
    orders, sizing_cuts = size_orders(
        actions, brief, buy_factor, cfg.portfolio.min_order_eur, cfg.portfolio.whole_shares
    )
    cuts += sizing_cuts
    book = Book(
        nav_eur=nav,
        cash_eur=p.cash_eur - pending_cost + pending_proceeds,
        qty={t: brief.held_qty(t) for t in sorted(set(p.positions) | {o.ticker for o in p.pending_orders})},
        prices_eur=prices_eur,
        buy_cost_factor=buy_factor,
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
            reasoning_tokens=llm.reasoning_tokens + int(u.get("reasoning_tokens", 0)),
            http_attempts=llm.http_attempts + int(u.get("http_attempts", 0)),
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
        # A policy given the rendered message (kept verbatim in usage.messages) saw every figure
        # there: the structured brief beside it keeps what the readers of records use.
        "brief": BriefRecord(brief, beside_message=bool((answer.usage or {}).get("messages"))),
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
    if ctx.build is not None:
        record["engine"] = dict(ctx.build)
    return StepResult(date=d, portfolio=p, fills=fills, equity=equity, record=record)


@dataclass(frozen=True)
class AtSession:
    """What every arm reads of the market and the indicators at a session: the same for
    the arms stepping in lockstep, so computed once per session (:func:`at_session`).
    Read-only: a step copies what it changes."""

    row: int  # of the session in the market's panel
    fx: float  # EURUSD
    tickers: list[str]  # of the indicators, the rows of `figures`
    columns: list[str]  # the indicators, then the recent figures (when there are any)
    figures: np.ndarray  # ticker x column, at the close: the indicators then the recent figures
    close_local: dict[str, float]
    returns: np.ndarray  # the risk window ending at the session (rows of the indicators)

    def assets(self, tickers: Sequence[str]) -> AssetTable:
        """The brief's asset table of `tickers` (in that order; those without indicators left out)."""
        key = (tuple(self.tickers), tuple(tickers))
        order = _ORDERS.get(key)
        if order is None:
            if len(_ORDERS) > 16:
                _ORDERS.clear()
            at = {t: i for i, t in enumerate(self.tickers)}
            kept = [t for t in tickers if t in at]
            order = _ORDERS[key] = (kept, None if kept == self.tickers else np.array([at[t] for t in kept], dtype=int))
        kept, rows = order
        if rows is None:
            return AssetTable(self.tickers, self.columns, self.figures)
        figures = self.figures[rows]
        figures.flags.writeable = False  # as the shared table is: what a policy is given it only reads
        return AssetTable(kept, self.columns, figures)


# (the indicators' tickers, the brief's) -> the brief's tickers that have indicators, and
# their rows among the indicators' (None: the same order): the same pair every session.
_ORDERS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[list[str], np.ndarray | None]] = {}


_AT: list[tuple[Any, Any, pd.Timestamp, tuple[int, float], AtSession]] = []  # the last session's, at most one


def at_session(market: MarketData, ind: Indicators, d: pd.Timestamp, lookback: int,
               periods_per_year: float) -> AtSession:
    """The market and indicators at `d`; the second arm to ask for the same session gets
    the first one's (weak references: a finished run's data is not kept alive)."""
    key = (lookback, periods_per_year)
    if _AT:
        m, i, day, k, view = _AT[0]
        if m() is market and i() is ind and day == d and k == key:
            return view
    row, fx = session_row(market, d)
    j = ind.row_position(d)
    names, tickers, values = ind.names, ind.tickers, ind.values_at_row(j)
    returns = ind.returns_matrix[max(0, j - lookback + 1) : j + 1]
    recent = _recent_rows(ind, j, lookback, periods_per_year)
    columns, figures = (names, values) if recent is None else ([*names, *_RECENT_KEYS], np.hstack([values, recent]))
    figures.flags.writeable = False
    view = AtSession(row=row, fx=fx, tickers=tickers, columns=columns, figures=figures,
                     close_local=dict(zip(tickers, values[:, names.index("close")].tolist(), strict=True)),
                     returns=returns)
    _AT[:] = [(weakref.ref(market), weakref.ref(ind), d, key, view)]
    return view


def _sessions_since(dates_ns: np.ndarray, i: int) -> Callable[[dt.date], int]:
    """Sessions from a past date to session `i` of the index (`dates_ns`: its int64
    nanoseconds; the session before: 1)."""

    memo: dict[dt.date, int] = {}  # the churn memory repeats its dates (a buy per order)

    def since(x: dt.date) -> int:
        n = memo.get(x)
        if n is None:
            n = memo[x] = i - int(np.searchsorted(dates_ns, pd.Timestamp(x).value))
        return n

    return since


RECENT_SESSIONS = 30
MAX_CUTS_CARRIED = 10  # of a decision's cuts, shown with it at the next session


def _recent_block(returns: np.ndarray, periods_per_year: float) -> np.ndarray | None:
    """The last ~30 sessions of each asset in brief (EUR), one row per asset: return,
    volatility, worst day, drawdown (:data:`_RECENT_KEYS`); None when there is no window."""
    r = returns[-RECENT_SESSIONS:]
    if len(r) < 2:
        return None
    path = np.cumprod(1 + r, axis=0)
    dd = (path / np.maximum.accumulate(path, axis=0) - 1).min(axis=0)
    ret = path[-1] - 1
    vol = r.std(axis=0, ddof=1) * math.sqrt(periods_per_year)
    worst = r.min(axis=0)
    return np.stack([ret, vol, worst, dd], axis=1)


_RECENT_KEYS = ("ret_30s_eur", "vol_30s_ann", "worst_day_30s", "max_dd_30s")
_RECENT_CHUNK = 512  # windows computed at once (the temporaries stay a few MB, whatever the length)
_RECENT_TABLE: list[tuple[Any, tuple[int, float], np.ndarray]] = []  # the last run's, at most one


def _recent_rows(ind: Indicators, j: int, lookback: int, periods_per_year: float) -> np.ndarray | None:
    """:func:`_recent_block` of the risk window ending at row `j` of the indicators, from a
    table of every window computed once per run (the same figures, to the last bit)."""
    w = min(lookback, RECENT_SESSIONS)
    if w < 2 or j < w - 1:  # no window, or a shorter one than the rest (the first sessions)
        return _recent_block(ind.returns_matrix[max(0, j - lookback + 1) : j + 1], periods_per_year)
    key = (w, periods_per_year)
    if not (_RECENT_TABLE and _RECENT_TABLE[0][0]() is ind and _RECENT_TABLE[0][1] == key):
        _RECENT_TABLE[:] = [(weakref.ref(ind), key, _recent_table(ind.returns_matrix, w, periods_per_year))]
    return _RECENT_TABLE[0][2][:, j - (w - 1), :].T


def _recent_table(returns: np.ndarray, w: int, periods_per_year: float) -> np.ndarray:
    """The four figures of :func:`_recent_block` for every window of `w` rows of `returns`:
    ``[figure, window, asset]``, the window ending at row ``window + w - 1``. Each window
    is copied into a block laid out as the slice :func:`_recent_block` is given (an asset's
    returns contiguous when they are in `returns`, as pandas gives them; a session's
    otherwise), so that numpy adds, multiplies and compares in the same order and every
    figure is the one it computes (tests/test_step.py checks it bit for bit)."""
    from numpy.lib.stride_tricks import sliding_window_view

    by_asset = returns.flags.f_contiguous and not returns.flags.c_contiguous
    n = len(returns) - w + 1
    out = np.empty((len(_RECENT_KEYS), max(n, 0), returns.shape[1]))
    for a in range(0, n, _RECENT_CHUNK):
        windows = sliding_window_view(returns[a : a + _RECENT_CHUNK + w - 1], w, axis=0)  # [window, asset, row]
        r = np.ascontiguousarray(windows if by_asset else windows.transpose(0, 2, 1))
        axis = 2 if by_asset else 1  # the rows of a window
        b = a + len(r)
        path = np.cumprod(1 + r, axis=axis)
        out[3, a:b] = (path / np.maximum.accumulate(path, axis=axis) - 1).min(axis=axis)
        out[0, a:b] = path[:, :, -1] - 1 if by_asset else path[:, -1] - 1
        out[1, a:b] = r.std(axis=axis, ddof=1) * math.sqrt(periods_per_year)
        out[2, a:b] = r.min(axis=axis)
    return out


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


def check_data(market: MarketData, p: Portfolio, config: Config, on: pd.Timestamp | None = None) -> None:
    """Stop when a ticker the run needs has a fatal data issue in force on session `on`
    (default: the panel's last); otherwise proceed without the failed ones (they are
    listed in the briefs and decision records of the sessions they concern)."""
    needed = required_tickers(p, config)
    day = (on if on is not None else market.index[-1]).date()
    bad: dict[str, str] = {}
    for t, issue in market.blocked_on(day).items():
        if t in needed:
            bad[t] = f"{t} ({issue.kind}: {issue.detail})"
    missing = sorted(t for t in needed if t not in market.close.columns and t not in bad)
    for t in missing:
        bad[t] = f"{t} (absent from the data)"
    if bad:
        raise DataUnavailable("cannot run safely without " + "; ".join(bad[t] for t in sorted(bad)))

