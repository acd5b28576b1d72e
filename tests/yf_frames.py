"""Frames shaped exactly like yfinance 1.7's, built offline.

Derived from the installed source (and checked against it by
``test_yahoo.py::test_builder_matches_real_yfinance_download``, which runs the real
``yfinance.download`` with a stub ``Ticker``):

* ``history_frame`` is what ``Ticker.history(interval="1d", auto_adjust=False,
  actions=True)`` returns for one ticker (``scrapers/history.py``): index = the
  exchange-local dates at midnight, tz-aware in the exchange's zone, datetime64[s]
  (``pd.to_datetime(quotes.index.date).tz_localize(tz)``), named ``Date``; columns
  ``Open, High, Low, Close, Adj Close, Volume`` (Volume int64), then ``Dividends``,
  ``Stock Splits`` (0.0 where none) and, for ETFs/funds only, ``Capital Gains``;
  rows only on the days Yahoo has a bar (``keepna=False``).
* ``empty_history`` is ``yfinance.utils.empty_df()``: what a failed ticker becomes.
* ``combine`` is ``multi._download_impl`` after its threads finish: indexes made
  tz-naive (``ignore_tz=True``), every frame reindexed onto the union of dates (so a
  ticker is NaN on the other exchange's sessions and int Volume turns float), concat
  with ``keys=tickers, names=["Ticker", "Price"]``, then for ``group_by="column"`` the
  levels swapped to ``(Price, Ticker)`` and the columns sorted. If every ticker
  failed, the result has the columns but no rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from engine.config import Config
from engine.data.calendars import sessions

EXCHANGE_TZ = {"XNYS": "America/New_York", "XPAR": "Europe/Paris"}
FX_TZ = "Europe/London"


def history_frame(
    dates: Iterable[object],
    close: Iterable[float],
    *,
    tz: str,
    capital_gains: bool = False,
    dividends: Mapping[str, float] | None = None,
    splits: Mapping[str, float] | None = None,
    volume: Iterable[int] | None = None,
) -> pd.DataFrame:
    """One ticker's ``Ticker.history(auto_adjust=False, actions=True)`` frame."""
    local = pd.DatetimeIndex([pd.Timestamp(d) for d in dates])
    index = pd.to_datetime(local.date).tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    c = np.asarray(list(close), dtype=float)
    o = np.round(c * 0.998, 4)
    frame = pd.DataFrame(
        {
            "Open": o,
            "High": np.round(np.maximum(o, c) * 1.004, 4),
            "Low": np.round(np.minimum(o, c) * 0.996, 4),
            "Close": c,
            "Adj Close": np.round(c * 0.97, 4),
            "Volume": np.asarray(
                list(volume) if volume is not None else np.full(len(c), 1_000_000), dtype=np.int64
            ),
        },
        index=index,
    )
    frame["Dividends"] = 0.0
    frame["Stock Splits"] = 0.0
    if capital_gains:
        frame["Capital Gains"] = 0.0
    for col, events in (("Dividends", dividends), ("Stock Splits", splits)):
        for d, value in (events or {}).items():
            frame.loc[_local(d, tz), col] = value
    frame.index.name = "Date"
    return frame


def empty_history() -> pd.DataFrame:
    """``yfinance.utils.empty_df()``."""
    empty = pd.DataFrame(
        index=[],
        data={"Open": np.nan, "High": np.nan, "Low": np.nan, "Close": np.nan, "Adj Close": np.nan, "Volume": np.nan},
    )
    empty.index.name = "Date"
    return empty


def combine(
    histories: Mapping[str, pd.DataFrame | None], group_by: str = "column", ignore_tz: bool = True
) -> pd.DataFrame:
    """``yfinance.download(list(histories), ...)``; None marks a failed ticker.

    ``ignore_tz=False`` (intraday downloads, ``multi.reindex_dfs``): every index is
    converted to the most common zone instead of being made naive.
    """
    dfs = {t.upper(): (empty_history() if df is None else df.copy()) for t, df in histories.items()}
    if ignore_tz:
        for df in dfs.values():
            if df.shape[0] > 0:
                df.index = df.index.tz_localize(None)
    else:
        tzs = [str(df.index.tz) for df in dfs.values() if not df.empty]
        if tzs:
            unique, counts = np.unique(tzs, return_counts=True)
            mode = unique[counts.argmax()]
            for df in dfs.values():
                if not df.empty:
                    df.index = df.index.tz_convert(mode)
    idx = None
    for df in dfs.values():
        if not df.empty:
            idx = df.index if idx is None else idx.union(df.index)
    if idx is None:
        idx = pd.DatetimeIndex([])
    dfs = {k: df.reindex(idx) for k, df in dfs.items()}
    data = pd.concat(list(dfs.values()), axis=1, sort=True, keys=list(dfs.keys()), names=["Ticker", "Price"])
    if group_by == "column":
        data.columns = data.columns.swaplevel(0, 1)
        data = data.sort_index(level=0, axis=1)
    return data


def random_walk(n: int, start: float, seed: int, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(start * np.exp(np.cumsum(rng.normal(0.0, vol, n))), 4)


def universe_histories(config: Config, start: object, end: object, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A plausible history frame for every instrument of `config` and for EUR/USD."""
    out: dict[str, pd.DataFrame] = {}
    for j, (ticker, inst) in enumerate(config.instruments.items()):
        dates = sessions(inst.calendar, start, end)
        out[ticker] = history_frame(
            dates,
            random_walk(len(dates), 50.0 + 25.0 * j, seed + j),
            tz=EXCHANGE_TZ[inst.calendar],
            capital_gains=getattr(inst, "kind", "index") == "etf",
        )
    fx_dates = pd.bdate_range(start, end)  # FX trades every weekday, holidays included
    out[config.fx.eurusd] = history_frame(
        fx_dates, random_walk(len(fx_dates), 1.08, seed + 99, vol=0.003), tz=FX_TZ, volume=[0] * len(fx_dates)
    )
    return out


class FakeDownload:
    """A stand-in for ``yfinance.download`` over fixed per-ticker histories.

    Honours `start` (inclusive) and `end` (exclusive) like Yahoo. `fail` tickers always
    come back as failures, `fail_first` ones only on the first call; `script` items are
    consumed first, one per call: an exception is raised, a frame returned as is, None
    means "behave normally".
    """

    def __init__(
        self,
        histories: Mapping[str, pd.DataFrame],
        *,
        fail: Iterable[str] = (),
        fail_first: Iterable[str] = (),
        script: Iterable[object] = (),
        group_by: str = "column",
    ) -> None:
        self.histories = dict(histories)
        self.fail = set(fail)
        self.fail_first = set(fail_first)
        self.script = list(script)
        self.group_by = group_by
        self.calls: list[dict[str, object]] = []

    def __call__(self, tickers, **kwargs):  # noqa: ANN001 - yfinance's signature
        self.calls.append({"tickers": list(tickers), **kwargs})
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                return item
        first = len(self.calls) == 1
        start, end = pd.Timestamp(kwargs["start"]), pd.Timestamp(kwargs["end"])
        per: dict[str, pd.DataFrame | None] = {}
        for t in tickers:
            h = self.histories.get(t)
            if h is None or t in self.fail or (first and t in self.fail_first):
                per[t] = None
                continue
            local = h.index.tz_localize(None)
            per[t] = h[(local >= start) & (local < end)]
        return combine(per, group_by=self.group_by)


def _local(d: object, tz: str) -> pd.Timestamp:
    return pd.Timestamp(d).normalize().tz_localize(tz)
