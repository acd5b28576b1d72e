"""The market-data contract every source returns.

A :class:`MarketData` is a panel of daily bars in wide frames: one row per date, one
column per ticker. The index is the union of the sessions of the exchanges in the
panel (tz-naive midnight, datetime64[ns]); a ticker's cells are NaN on the dates its own
exchange is closed. Prices are in each asset's own currency; ``fx_eurusd`` (USD per 1
EUR) converts USD prices to EUR: ``price_eur = price_usd / fx_eurusd``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

IssueKind = Literal["missing", "empty", "nan_bars", "stale", "jump", "fx", "filled"]

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class DataIssue:
    """Something wrong with one ticker's data (or the FX series, ticker ``EURUSD=X``).

    ``kind`` says what: ``missing`` (no data at all), ``nan_bars`` (too many missing bars),
    ``stale`` (no bar for the last session of its exchange), ``jump`` (a close-to-close
    move beyond the threshold with no split), ``fx`` (the FX series is unusable), and
    ``filled`` (a few isolated missing bars were carried forward: a warning, the data
    is still used). ``detail`` is one human sentence.
    """

    ticker: str
    kind: IssueKind
    detail: str

    @property
    def fatal_for_ticker(self) -> bool:
        return self.kind != "filled"

    def as_dict(self) -> dict[str, str]:
        return {"ticker": self.ticker, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class _Rows:
    tickers: list[str]
    open: np.ndarray
    dividends: np.ndarray
    splits: np.ndarray
    fx_eurusd: np.ndarray

    def at(self, name: str, i: int) -> dict[str, float]:
        return dict(zip(self.tickers, getattr(self, name)[i].tolist(), strict=True))


@dataclass(frozen=True)
class MarketData:
    open: pd.DataFrame
    high: pd.DataFrame
    low: pd.DataFrame
    close: pd.DataFrame
    volume: pd.DataFrame
    dividends: pd.DataFrame  # cash per share on the ex-date, local currency, 0 where none
    splits: pd.DataFrame  # new shares per old share on the split date, 1.0 where none
    fx_eurusd: pd.Series  # USD per 1 EUR on each index date
    source: str
    synthetic: bool
    issues: tuple[DataIssue, ...] = field(default=())

    @cached_property
    def rows(self) -> _Rows:
        """The frames as NumPy arrays, for reading one date at a time in a loop."""
        return _Rows(
            tickers=list(self.close.columns),
            open=self.open.to_numpy(dtype=float),
            dividends=self.dividends.to_numpy(dtype=float),
            splits=self.splits.to_numpy(dtype=float),
            fx_eurusd=self.fx_eurusd.to_numpy(dtype=float),
        )

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.close.index  # type: ignore[return-value]

    @property
    def tickers(self) -> list[str]:
        return list(self.close.columns)

    def upto(self, d: pd.Timestamp) -> MarketData:
        """The panel with nothing after `d`: what was knowable after the close of `d`."""
        cut = slice(None, d)
        return replace(
            self,
            open=self.open.loc[cut],
            high=self.high.loc[cut],
            low=self.low.loc[cut],
            close=self.close.loc[cut],
            volume=self.volume.loc[cut],
            dividends=self.dividends.loc[cut],
            splits=self.splits.loc[cut],
            fx_eurusd=self.fx_eurusd.loc[cut],
        )

    def drop(self, tickers: list[str]) -> MarketData:
        """The panel without some tickers (e.g. those whose data failed validation)."""
        if not tickers:
            return self
        kw = {
            name: getattr(self, name).drop(columns=tickers, errors="ignore")
            for name in (*FIELDS, "dividends", "splits")
        }
        return replace(self, **kw)

    def with_issues(self, issues: list[DataIssue]) -> MarketData:
        return replace(self, issues=self.issues + tuple(issues))

    def has_bar(self, ticker: str, d: pd.Timestamp) -> bool:
        """Whether `ticker` traded on `d` (its exchange was open and the bar is there)."""
        if ticker not in self.close.columns or d not in self.close.index:
            return False
        return bool(pd.notna(self.open.at[d, ticker]) and pd.notna(self.close.at[d, ticker]))
