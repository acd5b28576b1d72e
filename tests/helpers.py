"""Small builders shared by the unit tests (no I/O)."""

from __future__ import annotations

import datetime as dt

from engine.decision import Brief, PositionView
from engine.indicators import INDICATOR_COLUMNS
from engine.portfolio.ledger import Order

DAY = dt.date(2024, 6, 14)


def figures(**overrides: float) -> dict[str, float]:
    """An asset in a calm uptrend, with every indicator filled in."""
    f = dict.fromkeys(INDICATOR_COLUMNS, 0.0)
    f.update(close=110.0, sma_20=108.0, sma_50=105.0, sma_200=100.0, rsi_14=55.0, cvar_95=0.02,
             var_95=0.015, half_kelly=0.5, prospect_20d=0.01, vol_20_ann=0.2)
    f.update(overrides)
    return f


def brief(
    *,
    nav: float = 10_000.0,
    cash: float | None = None,
    positions: dict[str, tuple[float, float]] | None = None,  # ticker -> (qty, avg cost)
    prices: dict[str, float] | None = None,
    assets: dict[str, dict[str, float]] | None = None,
    pending: tuple[Order, ...] = (),
    limits: dict[str, float] | None = None,
    drawdown: float = 0.0,
) -> Brief:
    positions = positions or {}
    prices = prices or {}
    views = {}
    for t, (q, cost) in positions.items():
        px = prices[t]
        views[t] = PositionView(t, q, cost, px, "EUR", px, q * px, q * px / nav, q * (px - cost), px / cost - 1, 0.0)
    invested = sum(v.value_eur for v in views.values())
    cash = nav - invested if cash is None else cash
    assets = assets if assets is not None else {t: figures(close=p) for t, p in prices.items()}
    return Brief(
        date=DAY, source="test", synthetic=True, nav_eur=nav, cash_eur=cash, cash_available_eur=cash,
        invested_eur=invested, gross_exposure=invested / nav, nav_peak_eur=nav / (1 + drawdown),
        drawdown=drawdown, drawdown_multiplier=1.0, cvar_95=0.01,
        limits=limits or {"max_weight": 0.2, "min_cash": 0.05, "exposure_cap": 0.95, "cvar_budget": 0.02,
                          "drawdown_multiplier": 1.0},
        positions=views, assets=assets, prices_eur=prices, pending_orders=pending,
        tradable=tuple(prices),
    )
