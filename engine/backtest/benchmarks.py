"""Buy-and-hold benchmarks in EUR, with the same cost model where they trade.

A tradable benchmark (buy-and-hold SPY, the CAC 40 tracker, an equal-weight basket of
the 21 assets) is bought like the strategy's first orders: decided at the inception
close, filled at each asset's next open through the same ``quote`` (slippage,
commission with its minimum, French tax, FX), then held; dividends are kept as cash.
Fractional shares are used so that the intended weights hold exactly (an equal
weight of 476 EUR cannot buy one Hermes share). An index (^FCHI) cannot be traded:
it is units bought at the inception close, without costs.

Holding a fixed set of shares needs no daily step: the NAV is valued for every
session at once, vectorised.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from engine.config import Config
from engine.data.market import MarketData
from engine.portfolio.costs import CostModel
from engine.portfolio.execution import affordable_qty, quote


def _eur_prices(market: MarketData, config: Config, tickers: list[str]) -> pd.DataFrame:
    close = market.close[tickers].ffill()
    usd = [t for t in tickers if config.instruments[t].currency == "USD"]
    if usd:
        close[usd] = close[usd].div(market.fx_eurusd, axis=0)
    return close


def buy_and_hold(
    market: MarketData,
    config: Config,
    weights: Mapping[str, float],
    sessions: pd.DatetimeIndex,
    capital_eur: float,
) -> pd.Series:
    """NAV in EUR on `sessions` of buying `weights` after the close of ``sessions[0]``."""
    costs = CostModel.from_config(config.costs)
    tickers = list(weights)
    idx = market.index
    pos = idx.get_indexer(sessions)
    if (pos < 0).any():
        raise ValueError("every session must be in the market data")
    prices = _eur_prices(market, config, tickers).to_numpy()[pos]
    n = len(sessions)
    cash = np.full(n, float(capital_eur))
    value = np.zeros(n)
    opens = market.open[tickers].to_numpy()
    fx = market.fx_eurusd.to_numpy()
    dividends = market.dividends[tickers].to_numpy()
    for j, t in enumerate(tickers):
        asset = config.asset_by_ticker[t]
        # The first session after inception on which the asset's exchange opens.
        k = next((k for k in range(1, n) if opens[pos[k], j] == opens[pos[k], j]), None)
        if k is None:
            continue
        i = pos[k]
        budget = capital_eur * weights[t]
        qty = affordable_qty(asset, float(opens[i, j]), float(fx[i]), budget, costs, whole_shares=False)
        if qty <= 0:
            continue
        fill = quote(asset, "buy", qty, float(opens[i, j]), float(fx[i]), costs)
        cash[k:] += fill.cash_flow_eur
        value[k:] += qty * prices[k:, j]
        div = np.nan_to_num(dividends[pos[k:], j]) * qty
        if asset.currency == "USD":
            div = div / fx[pos[k:]]
        cash[k:] += np.cumsum(div)
    return pd.Series(cash + value, index=sessions, name="nav_eur")


def index_units(market: MarketData, config: Config, ticker: str, sessions: pd.DatetimeIndex, capital_eur: float) -> pd.Series:
    """An untradable index bought at the inception close without costs, in EUR."""
    p = _eur_prices(market, config, [ticker])[ticker].reindex(sessions)
    return (capital_eur * p / p.iloc[0]).rename("nav_eur")


def standard_benchmarks(
    market: MarketData, config: Config, sessions: pd.DatetimeIndex, capital_eur: float
) -> dict[str, pd.Series]:
    """Buy-and-hold SPY, the CAC 40 index and its tracker, and an equal-weight basket."""
    out: dict[str, pd.Series] = {}
    available = set(market.close.columns)
    if "SPY" in available:
        out["buy_and_hold_spy"] = buy_and_hold(market, config, {"SPY": 1.0}, sessions, capital_eur)
    if "CAC.PA" in available:
        out["buy_and_hold_cac40_tracker"] = buy_and_hold(market, config, {"CAC.PA": 1.0}, sessions, capital_eur)
    if "^FCHI" in available:
        out["cac40_index"] = index_units(market, config, "^FCHI", sessions, capital_eur)
    basket = [t for t in config.tickers if t in available]
    if basket:
        w = 1.0 / len(basket)
        out["equal_weight"] = buy_and_hold(market, config, dict.fromkeys(basket, w), sessions, capital_eur)
    return out
