"""The paper ledger: cash, positions and their cost basis, in EUR.

Accounting conventions (chosen so that every figure can be checked by hand):

* Cash is EUR and every cash movement is booked to the cent.
* A position's ``cost_eur`` is its cost basis, *including* the buy-side costs
  (slippage, commission, tax, FX fee): what the shares really cost, to the cent.
  ``avg_cost_eur`` is derived from it. A split changes the quantity, not the cost.
* Selling ``q`` of ``n`` shares removes ``cost * q / n`` (to the cent) from the basis and
  books ``realised_pnl = net proceeds - removed cost``: the average cost of what
  remains is unchanged.
* Hence, exactly to the cent: ``nav - starting capital = realised + unrealised +
  dividends``, where ``unrealised = sum(qty * price_eur) - sum(cost)``.

Everything here is pure: functions take a :class:`Portfolio` and return a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.portfolio.costs import cents

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # No unknown keys, no NaN or infinity: a state file holding one is corrupt, not a value.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Position(_Model):
    ticker: str
    qty: float = Field(gt=0)
    cost_eur: float = Field(ge=0)  # the cost basis of the whole position, buy costs included

    @property
    def avg_cost_eur(self) -> float:
        return self.cost_eur / self.qty


class Order(_Model):
    """An order decided after the close of ``decided_on``, to fill at its exchange's next open."""

    id: str
    ticker: str
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0)
    decided_on: dt.date
    reason: str = ""


FillKind = Literal["buy", "sell", "dividend", "split"]


class Fill(_Model):
    """One booked event: a fill, a dividend or a split. A row of trades.parquet."""

    date: dt.date
    ticker: str
    side: FillKind
    qty: float
    price_local: float
    currency: str
    fx_eurusd: float
    gross_eur: float
    slippage_eur: float = 0.0
    commission_eur: float = 0.0
    tax_eur: float = 0.0
    fx_fee_eur: float = 0.0
    cash_flow_eur: float
    realised_pnl_eur: float = 0.0
    order_id: str = ""
    note: str = ""

    @property
    def costs_eur(self) -> float:
        return self.slippage_eur + self.commission_eur + self.tax_eur + self.fx_fee_eur


class CostTotals(_Model):
    slippage_eur: float = 0.0
    commission_eur: float = 0.0
    tax_eur: float = 0.0
    fx_fee_eur: float = 0.0

    @property
    def total_eur(self) -> float:
        return self.slippage_eur + self.commission_eur + self.tax_eur + self.fx_fee_eur

    def add(self, f: Fill) -> CostTotals:
        return CostTotals(
            slippage_eur=cents(self.slippage_eur + f.slippage_eur),
            commission_eur=cents(self.commission_eur + f.commission_eur),
            tax_eur=cents(self.tax_eur + f.tax_eur),
            fx_fee_eur=cents(self.fx_fee_eur + f.fx_fee_eur),
        )


class BenchmarkHolding(_Model):
    """An untradable index line: units bought at inception's close, without costs. (States
    written before the arms existed hold their buy-and-hold lines here too.)"""

    ticker: str
    units: float
    cash_eur: float = 0.0


class LastDecision(_Model):
    """What the policy decided at the previous session, shown to it at the next one."""

    date: dt.date
    summary: str = ""
    orders: tuple[Order, ...] = ()
    fallback: str | None = None  # why the answer became an explicit HOLD, if it did
    cuts: tuple[dict[str, str], ...] = ()  # what the checks and guardrails changed, and why


class LLMTotals(_Model):
    """Cumulative LLM usage (a backtest with a warm cache adds calls=0, cache_hits>0)."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # part of completion_tokens
    http_attempts: int = 0  # requests sent, retries and negotiation included
    cost_usd: float = 0.0


class ChurnMemory(_Model):
    """What the churn guardrails remember: the date each ticker was last sold (the sale's
    decision) and
    the dates of the recent buy orders (one entry per order)."""

    last_sold: dict[str, dt.date] = {}
    buys: tuple[dt.date, ...] = ()


class Portfolio(_Model):
    schema_version: int = SCHEMA_VERSION
    # Where the prices come from ("yahoo", "demo seed=42"): a state is never fed two sources.
    source: str = ""
    as_of: dt.date | None = None
    # The last date of the price data the quantities are expressed in. Split-adjusted
    # history (Yahoo) is in the units of its download day; a state saved from an older
    # download is converted once, at load, for the splits since (engine/step.py).
    units_as_of: dt.date | None = None
    # The close each held position was last marked at (local currency, in the units of
    # that day's data): a fresh download that disagrees by a split ratio reveals a split
    # missing from the events.
    marks_local: dict[str, float] = {}
    inception: dt.date | None = None
    starting_capital_eur: float = Field(gt=0)
    cash_eur: float = Field(ge=0)
    positions: dict[str, Position] = {}
    pending_orders: tuple[Order, ...] = ()
    nav_peak_eur: float = 0.0
    realised_pnl_eur: float = 0.0
    dividends_eur: float = 0.0
    costs: CostTotals = CostTotals()
    benchmarks: dict[str, BenchmarkHolding] = {}
    last_decision: LastDecision | None = None
    llm: LLMTotals = LLMTotals()
    churn: ChurnMemory = ChurnMemory()

    @classmethod
    def initial(cls, capital_eur: float, source: str = "") -> Portfolio:
        return cls(source=source, starting_capital_eur=capital_eur, cash_eur=cents(capital_eur), nav_peak_eur=capital_eur)

    def qty(self, ticker: str) -> float:
        p = self.positions.get(ticker)
        return p.qty if p else 0.0


def book(p: Portfolio, f: Fill) -> tuple[Portfolio, Fill]:
    """Apply one fill/dividend/split; returns the new portfolio and the fill as booked
    (sells gain their realised P&L)."""
    positions = dict(p.positions)
    cash = cents(p.cash_eur + f.cash_flow_eur)
    realised_total = p.realised_pnl_eur
    dividends = p.dividends_eur
    if cash < 0:
        raise ValueError(f"booking {f.side} {f.ticker} would make cash negative ({cash:.2f} EUR)")
    pos = positions.get(f.ticker)
    if f.side == "buy":
        old_qty, old_cost = (pos.qty, pos.cost_eur) if pos else (0.0, 0.0)
        positions[f.ticker] = Position(
            ticker=f.ticker, qty=round(old_qty + f.qty, 6), cost_eur=cents(old_cost - f.cash_flow_eur)
        )
    elif f.side == "sell":
        if pos is None or f.qty > pos.qty + 1e-9:
            raise ValueError(f"cannot sell {f.qty} {f.ticker}: holding {pos.qty if pos else 0}")
        left = round(pos.qty - f.qty, 6)
        removed = cents(pos.cost_eur * f.qty / pos.qty) if left > 0 else pos.cost_eur
        realised = cents(f.cash_flow_eur - removed)
        f = f.model_copy(update={"realised_pnl_eur": realised})
        realised_total = cents(realised_total + realised)
        if left > 0:
            positions[f.ticker] = Position(ticker=f.ticker, qty=left, cost_eur=cents(pos.cost_eur - removed))
        else:
            del positions[f.ticker]
    elif f.side == "dividend":
        dividends = cents(dividends + f.cash_flow_eur)
    elif f.side == "split":
        if pos is not None:
            ratio = f.price_local  # for a split, the ratio is carried in price_local
            positions[f.ticker] = pos.model_copy(update={"qty": round(pos.qty * ratio, 6)})
    marks = p.marks_local
    if f.side == "split" and f.ticker in marks:  # the last mark, in the new units
        marks = {**marks, f.ticker: marks[f.ticker] / f.price_local}
    new = p.model_copy(
        update={
            "marks_local": marks,
            "cash_eur": cash,
            "positions": dict(sorted(positions.items())),
            "realised_pnl_eur": realised_total,
            "dividends_eur": dividends,
            "costs": p.costs.add(f),
        }
    )
    return new, f


@dataclass(frozen=True)
class Valuation:
    """The portfolio marked at a set of EUR prices."""

    nav_eur: float
    cash_eur: float
    invested_eur: float
    unrealised_pnl_eur: float
    values_eur: dict[str, float]

    @property
    def weights(self) -> dict[str, float]:
        return {t: v / self.nav_eur for t, v in self.values_eur.items()} if self.nav_eur > 0 else {}

    @property
    def gross_exposure(self) -> float:
        return self.invested_eur / self.nav_eur if self.nav_eur > 0 else 0.0


def mark(p: Portfolio, prices_eur: Mapping[str, float]) -> Valuation:
    """Value every position at `prices_eur`; a held ticker without a price is an error."""
    values: dict[str, float] = {}
    unrealised = 0.0
    for t, pos in p.positions.items():
        price = prices_eur.get(t)
        if price is None or not price == price:  # NaN check without numpy
            raise ValueError(f"no price to value the position in {t}")
        values[t] = pos.qty * price
        unrealised += pos.qty * price - pos.cost_eur
    invested = sum(values.values())
    return Valuation(
        nav_eur=p.cash_eur + invested,
        cash_eur=p.cash_eur,
        invested_eur=invested,
        unrealised_pnl_eur=unrealised,
        values_eur=values,
    )
