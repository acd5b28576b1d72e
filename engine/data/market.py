"""The market-data contract every source returns.

A :class:`MarketData` is a panel of daily bars in wide frames: one row per date, one
column per ticker. The index is the union of the sessions of the exchanges in the
panel (tz-naive midnight, datetime64[ns]); a ticker's cells are NaN on the dates its own
exchange is closed. Prices are in each asset's own currency; ``fx_eurusd`` (USD per 1
EUR) converts USD prices to EUR: ``price_eur = price_usd / fx_eurusd``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

IssueKind = Literal["missing", "empty", "nan_bars", "stale", "jump", "fx", "filled", "duplicate", "split"]

FIELDS = ("open", "high", "low", "close", "volume")

# Kinds that make a ticker unusable while they are in force; the others are warnings.
FATAL_KINDS = frozenset({"missing", "empty", "nan_bars", "stale", "fx", "duplicate"})

PriceConvention = Literal["split_adjusted", "unadjusted"]


@dataclass(frozen=True)
class DataIssue:
    """Something wrong with one ticker's data (or the FX series, ticker ``EURUSD=X``).

    ``kind`` says what: ``missing`` (no data at all), ``nan_bars`` (too many missing bars
    in the window that ends at the session), ``stale`` (no bar, or a repeated one, for
    the last session of its exchange), ``duplicate`` (the same date twice with different
    values), ``jump`` (a close-to-close move beyond the threshold with no split: a
    warning, since real prices do move that much), ``fx`` (the FX series is unusable),
    ``split`` (a split found in the prices but not in the events), and ``filled`` (a
    missing or repeated bar carried forward, or another repair: a warning, the data is
    still used). ``detail`` is one human sentence.

    Point in time: ``since`` is the first session on which the issue is known (it is
    found with data up to that session only) and ``until`` the last one it is in force
    (None: from the start, or to the end). A backtest applies an issue at session D only
    when it is in force at D, and a brief lists only those.
    """

    ticker: str
    kind: IssueKind
    detail: str
    since: dt.date | None = None
    until: dt.date | None = None

    @property
    def fatal_for_ticker(self) -> bool:
        return self.kind in FATAL_KINDS

    def in_force(self, d: dt.date) -> bool:
        return (self.since is None or self.since <= d) and (self.until is None or d <= self.until)

    def as_dict(self) -> dict[str, str]:
        out = {"ticker": self.ticker, "kind": self.kind, "detail": self.detail}
        if self.since is not None:
            out["since"] = self.since.isoformat()
        return out


SPLIT_TOLERANCE = 1e-12  # a ratio this close to 1 is no split


@dataclass(frozen=True)
class _Rows:
    tickers: list[str]
    open: np.ndarray
    dividends: np.ndarray
    splits: np.ndarray
    fx_eurusd: np.ndarray
    traded: np.ndarray  # bool: the bar really traded (not carried forward, not repeated)
    dates_ns: np.ndarray  # the index as int64 nanoseconds (a search without Timestamps)
    last_day: dt.date  # of the index

    def at(self, name: str, i: int) -> dict[str, float]:
        """{ticker: value} of one frame at row `i` (a new dict: the caller may change it).
        The arms stepping in lockstep ask for the same row in turn: it is converted once."""
        hit = self._last.get(name)
        if hit is None or hit[0] != i:
            hit = self._last[name] = (i, dict(zip(self.tickers, getattr(self, name)[i].tolist(), strict=True)))
        return dict(hit[1])

    @cached_property
    def _last(self) -> dict[str, tuple[int, dict[str, float]]]:
        return {}

    @cached_property
    def row_of(self) -> dict[pd.Timestamp, int]:
        """Session (a midnight Timestamp) -> its row: a dict look-up, not an index search."""
        return dict(zip(pd.DatetimeIndex(self.dates_ns.view("datetime64[ns]")), range(len(self.dates_ns))))

    @cached_property
    def ticker_set(self) -> frozenset[str]:
        return frozenset(self.tickers)

    @cached_property
    def paying(self) -> np.ndarray:
        """Per row: some ticker has a dividend (an amount above 0) on it."""
        return (self.dividends > 0).any(axis=1)

    @cached_property
    def splitting(self) -> np.ndarray:
        """Per row: some ticker has a split on it (a ratio above 0 other than 1)."""
        return ((self.splits > 0) & (np.abs(self.splits - 1.0) > SPLIT_TOLERANCE)).any(axis=1)


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
    # Whether past prices already contain later splits (Yahoo's history) or are the
    # prices as they traded (the demo, most CSV exports). Quantities follow the data:
    # on split-adjusted prices a split is never applied again (see engine/step.py).
    price_convention: PriceConvention = "unadjusted"
    # True where the bar really traded; None: wherever there is an open and a close.
    # Validation sets it False on bars it carried forward and on repeated (stale) bars.
    traded: pd.DataFrame | None = None

    @property
    def split_adjusted(self) -> bool:
        return self.price_convention == "split_adjusted"

    def issues_on(self, d: dt.date) -> tuple[DataIssue, ...]:
        """The issues known and in force on session `d`: what a brief at `d` may say."""
        return tuple(x for x in self.issues if x.in_force(d))

    def blocked_on(self, d: dt.date) -> dict[str, DataIssue]:
        """Ticker -> its first fatal issue in force on `d`."""
        out: dict[str, DataIssue] = {}
        for x in self._fatal_issues:
            if x.ticker not in out and x.in_force(d):
                out[x.ticker] = x
        return out

    @cached_property
    def _fatal_issues(self) -> tuple[DataIssue, ...]:
        return tuple(x for x in self.issues if x.fatal_for_ticker)

    @cached_property
    def rows(self) -> _Rows:
        """The frames as NumPy arrays, for reading one date at a time in a loop."""
        opens = self.open.to_numpy(dtype=float)
        if self.traded is None:
            traded = ~np.isnan(opens) & ~np.isnan(self.close.to_numpy(dtype=float))
        else:
            traded = self.traded.reindex(index=self.index, columns=self.close.columns, fill_value=False)
            traded = traded.to_numpy(dtype=bool)
        return _Rows(
            tickers=list(self.close.columns),
            open=opens,
            dividends=self.dividends.to_numpy(dtype=float),
            splits=self.splits.to_numpy(dtype=float),
            fx_eurusd=self.fx_eurusd.to_numpy(dtype=float),
            traded=traded,
            dates_ns=pd.DatetimeIndex(self.index).as_unit("ns").to_numpy().view("i8"),
            last_day=self.index[-1].date(),
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
            traded=None if self.traded is None else self.traded.loc[cut],
            issues=tuple(x for x in self.issues if x.since is None or x.since <= d.date()),
        )

    def drop(self, tickers: list[str]) -> MarketData:
        """The panel without some tickers (e.g. those whose data failed validation)."""
        if not tickers:
            return self
        kw = {
            name: getattr(self, name).drop(columns=tickers, errors="ignore")
            for name in (*FIELDS, "dividends", "splits")
        }
        if self.traded is not None:
            kw["traded"] = self.traded.drop(columns=tickers, errors="ignore")
        return replace(self, **kw)

    def with_issues(self, issues: list[DataIssue]) -> MarketData:
        return replace(self, issues=self.issues + tuple(issues))

    def has_bar(self, ticker: str, d: pd.Timestamp) -> bool:
        """Whether `ticker` traded on `d` (its exchange was open and the bar is there)."""
        if ticker not in self.close.columns or d not in self.close.index:
            return False
        if self.traded is not None:
            return bool(self.traded.at[d, ticker])
        return bool(pd.notna(self.open.at[d, ticker]) and pd.notna(self.close.at[d, ticker]))
