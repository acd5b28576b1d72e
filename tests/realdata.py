"""Real prices that ship inside packages (no download at run time), as engine panels.

* skfolio: 20 S&P 500 stocks, daily closes (split- and dividend-adjusted, rounded to
  0.001) 1990-01-02 .. 2022-12-28, and the S&P 500 index;
* arch: the S&P 500 index (^GSPC) OHLCV 1999-2018;
* backtesting.py: GOOG OHLCV 2004-2013.

The engine's calendars start in 2000, so panels start on 2000-01-03. The test universe
prices the stocks in EUR on the New York calendar: these tests are about what the
engine knows when and how it books real price paths; currency conversion is tested on
its own elsewhere.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.config import Config, load_config
from engine.data.calendars import CALENDAR_START
from engine.data.market import MarketData

FX = "EURUSD=X"
BENCH = "SP500"


@lru_cache(maxsize=1)
def sp500_closes() -> pd.DataFrame:
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    stocks = load_sp500_dataset()
    index = load_sp500_index().rename(columns={"SP500": BENCH})
    df = stocks.join(index, how="outer")
    df.index = pd.DatetimeIndex(df.index).as_unit("ns")
    return df.loc[CALENDAR_START:]


def real_config(tickers: list[str] | None = None, **overrides) -> Config:
    """A custom universe: the skfolio stocks (or some of them) and the S&P 500 benchmark."""
    tickers = tickers or [t for t in sp500_closes().columns if t != BENCH]
    assets = [
        {"ticker": t, "name": t, "kind": "stock", "sector": "US equity", "currency": "EUR", "calendar": "XNYS"}
        for t in tickers
    ]
    bench = [{"key": "sp500", "ticker": BENCH, "name": "S&P 500 index", "currency": "EUR", "calendar": "XNYS"}]
    overrides.setdefault("benchmarks", bench)
    return load_config().without_arms().with_overrides(assets=assets, **overrides)


def real_market(tickers: list[str] | None = None, start: str | None = None, end: str | None = None) -> MarketData:
    """The closes as a close-only panel (open = high = low = close, no volume), unvalidated."""
    df = sp500_closes()
    cols = [*(tickers or [t for t in df.columns if t != BENCH]), BENCH]
    df = df.loc[start:end, cols]
    return MarketData(
        open=df.copy(), high=df.copy(), low=df.copy(), close=df.copy(),
        volume=pd.DataFrame(np.nan, index=df.index, columns=cols),
        dividends=pd.DataFrame(0.0, index=df.index, columns=cols),
        splits=pd.DataFrame(1.0, index=df.index, columns=cols),
        fx_eurusd=pd.Series(1.0, index=df.index, name=FX),  # unused: every asset is in EUR
        source="skfolio", synthetic=False, price_convention="split_adjusted",
    )


def with_prices(market: MarketData, ticker: str, dates, factor: float) -> MarketData:
    kw = {}
    for f in ("open", "high", "low", "close"):
        frame = getattr(market, f).copy()
        frame.loc[dates, ticker] = frame.loc[dates, ticker] * factor
        kw[f] = frame
    return dataclasses.replace(market, **kw)
