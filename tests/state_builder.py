"""A small state that passes the strict load, for tests that need a portfolio by hand.

Its trades.parquet books what portfolio.json holds (one buy per position, at the given
price, no costs) and its equity.parquet has every column, so the cross-checks of
engine.state see a consistent audit trail, as a real run would leave it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from engine.portfolio.costs import cents
from engine.portfolio.ledger import Fill, Order, Portfolio, Position
from engine.state import EQUITY_SCHEMA, StateStore, atomic_write_parquet


def write_state(root: Path, positions: Mapping[str, tuple[float, float]], *, cash: float, as_of: dt.date,
                nav: float | None = None, source: str = "yahoo", pending: tuple[str, ...] = ()) -> StateStore:
    """`positions` is ticker -> (qty, price in EUR), bought the session before `as_of`; the
    starting capital is what makes `cash` right; `nav` is the last NAV (default: at cost)."""
    day0 = as_of - dt.timedelta(days=1)
    fills = [Fill(date=day0, ticker=t, side="buy", qty=q, price_local=px, currency="EUR", fx_eurusd=1.0,
                  gross_eur=cents(q * px), cash_flow_eur=-cents(q * px)) for t, (q, px) in sorted(positions.items())]
    capital = cents(cash + sum(cents(q * px) for q, px in positions.values()))
    p = Portfolio(
        source=source, as_of=as_of, inception=day0, starting_capital_eur=capital, cash_eur=cash,
        positions={t: Position(ticker=t, qty=q, cost_eur=cents(q * px)) for t, (q, px) in sorted(positions.items())},
        pending_orders=tuple(Order(id=f"o-{t}", ticker=t, side="buy", qty=1, decided_on=as_of) for t in pending),
        nav_peak_eur=capital,
    )
    store = StateStore(root)
    if nav is None:
        nav = capital
    rows = {c: [0.0, 0.0] for c, kind in EQUITY_SCHEMA.items() if kind == "float64"}
    rows |= {"n_positions": [len(positions)] * 2, "llm_tokens": [0, 0]}
    rows |= {"date": pd.to_datetime([day0, as_of]).astype("datetime64[ns]"), "nav_eur": [nav - 5.0, nav],
             "cash_eur": [cash, cash], "invested_eur": [nav - cash - 5.0, nav - cash]}
    trades = pd.DataFrame([f.model_dump() for f in fills], columns=list(Fill.model_fields))
    trades["date"] = pd.to_datetime(trades["date"]).astype("datetime64[ns]")
    Path(root).mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(store.trades_path, trades)
    atomic_write_parquet(store.equity_path, pd.DataFrame(rows)[list(EQUITY_SCHEMA)])
    store.save(p, [])
    return store
