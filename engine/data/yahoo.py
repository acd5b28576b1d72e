"""Daily bars from Yahoo Finance (yfinance), as a validated :class:`MarketData`.

One batched ``yfinance.download`` call fetches every instrument of the configuration
plus the EUR/USD rate. What yfinance 1.7 returns for several tickers (read from
``yfinance/multi.py`` and ``yfinance/scrapers/history.py``):

* columns: a 2-level MultiIndex named ``["Price", "Ticker"]`` with ``group_by="column"``
  (``["Ticker", "Price"]`` with ``group_by="ticker"``), sorted; the price level holds
  ``Adj Close, Close, High, Low, Open, Volume`` and, with ``actions=True``,
  ``Dividends`` and ``Stock Splits`` (plus ``Capital Gains`` for ETFs and funds);
  a ticker that failed has only the six price columns, all NaN;
* index: tz-naive (``ignore_tz=True``) midnight dates named ``Date``, the union of every
  ticker's own trading dates, so a ticker is NaN on the other exchanges' sessions;
* it does not raise when Yahoo or the network fails: the failed ticker is logged and
  left NaN, and if every ticker failed the frame has no rows at all.

Prices are traded prices (``auto_adjust=False``): dividends are credited as cash by the
ledger. Yahoo's OHLC (and dividends) are **split-adjusted** back in time but not
dividend-adjusted: the panel declares ``price_convention="split_adjusted"``, so a
backtest never applies a split to quantities again, and a live run converts its stored
quantities once, at load, for the splits since its last session (engine/corporate.py).

A EUR/USD bar whose open, high, low and close repeat the previous bar's exactly is
Yahoo's stale quote, not a rate: it counts as missing.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config import Config
from engine.data.cache import ParquetCache, request_key
from engine.data.calendars import get_calendar, previous_sessions, sessions, to_session, union_sessions
from engine.data.market import MarketData
from engine.data.validate import validate
from engine.errors import DataUnavailable

_logger = logging.getLogger(__name__)

# The keyword arguments of every yfinance.download call (tickers, start, end aside).
DOWNLOAD_OPTIONS: dict[str, Any] = {
    "interval": "1d",
    "auto_adjust": False,
    "actions": True,
    "group_by": "column",
    "ignore_tz": True,
    "progress": False,
    "threads": True,
}

# Yahoo's daily bars settle a little after the close; a window whose last session
# closed more recently than this is not cached (its last bar may still change).
SETTLE_DELAY = pd.Timedelta(minutes=30)

_FIELDS = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
_LEVEL_NAMES = ["Price", "Ticker"]


def history_start(config: Config, end: object) -> pd.Timestamp:
    """The first date of the last ``config.data.history_sessions`` union sessions up to `end`."""
    codes = {inst.calendar for inst in config.instruments.values()}
    window = previous_sessions(codes, end, config.data.history_sessions)
    if len(window) == 0:
        raise ValueError(f"no trading session up to {to_session(end).date()}")
    return window[0]


class YahooSource:
    name = "yahoo"
    synthetic = False

    def __init__(
        self,
        cache_dir: Path | None,
        *,
        retries: int = 3,
        backoff_seconds: float = 2.0,
        download: Callable[..., pd.DataFrame | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        if retries < 1:
            raise ValueError("retries must be at least 1")
        self._log = log or _logger.info
        self._cache = ParquetCache(Path(cache_dir), log=self._log) if cache_dir is not None else None
        self._retries = retries
        self._backoff = backoff_seconds
        self._download = download
        self._sleep = sleep
        self._clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))

    def load(self, config: Config, start: object, end: object) -> MarketData:
        """Daily bars for `start`..`end` (both inclusive), validated as of `end`."""
        start, end = to_session(start), to_session(end)
        if start > end:
            raise ValueError(f"start {start.date()} is after end {end.date()}")
        tickers = request_tickers(config)
        key = request_key(
            source=self.name,
            tickers=sorted(tickers),
            start=str(start.date()),
            end=str(end.date()),
            **{k: v for k, v in DOWNLOAD_OPTIONS.items() if k not in ("progress", "threads")},
        )
        raw = self._cache.get(key) if self._cache is not None else None
        if raw is not None:
            self._log(f"Yahoo data for {start.date()}..{end.date()} read from the cache")
            raw = canonical_frame(raw, tickers)
        else:
            raw = self._fetch(tickers, start, end)
            if self._cache is not None and self._cacheable(raw, tickers, config, end):
                self._cache.put(key, raw)
        market = to_market(raw, config, start, end)
        return validate(market, config, asof=end)

    # -- downloading ---------------------------------------------------------------

    def _fetch(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        raw = self._download_with_retries(tickers, start, end)
        missing = missing_tickers(raw, tickers)
        if not missing:
            return raw
        self._log(
            f"Yahoo returned no prices for {', '.join(missing)}; asking once more for "
            "just those"
        )
        self._sleep(self._backoff)
        try:
            extra = self._call(missing, start, end)
        except Exception as exc:  # noqa: BLE001 - the tickers just stay missing
            self._log(f"the second request failed too: {_one_line(exc)}")
            return raw
        if not _has_rows(extra):
            self._log("the second request returned an empty frame")
            return raw
        extra = canonical_frame(extra, missing)
        got = [t for t in missing if t not in set(missing_tickers(extra, missing))]
        if got:
            self._log(f"the second request recovered {', '.join(got)}")
            raw = _merge(raw, extra, got)
        return raw

    def _download_with_retries(
        self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """One batched download, retried with a doubling wait (``backoff_seconds``: minutes in the
        shipped configuration, since Yahoo's rate limiting of cloud runners lasts minutes).

        The final error says what yfinance itself reported per ticker (a rate limit, a
        delisting), not only that the frame came back empty."""
        cause = "no attempt made"
        for attempt in range(self._retries):
            try:
                frame = self._call(tickers, start, end)
            except Exception as exc:  # noqa: BLE001 - network and Yahoo errors of every kind
                cause = _one_line(exc)
            else:
                if _has_rows(frame):
                    canonical = canonical_frame(frame, tickers)
                    if len(missing_tickers(canonical, tickers)) < len(tickers):
                        return canonical
                cause = (
                    f"yfinance reported {self._yf_errors}" if self._yf_errors else
                    "yfinance returned an empty frame (that is how it reports a network "
                    "failure or a refusal by Yahoo)"
                )
            self._log(f"Yahoo download attempt {attempt + 1}/{self._retries} failed: {cause}")
            if attempt + 1 < self._retries:
                wait_s = self._backoff * 2**attempt
                self._log(f"next Yahoo download attempt in {_duration(wait_s)}")
                self._sleep(wait_s)
        raise DataUnavailable(
            f"Yahoo returned no data for {len(tickers)} tickers after {self._retries} "
            f"attempts: {cause}"
        )

    def _call(self, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> Any:
        """One ``yfinance.download``; what yfinance logs as failed downloads (it never raises
        for them) is kept, in one line, in ``self._yf_errors``."""
        download = self._download
        if download is None:
            import yfinance  # imported on first use: it is slow to import

            download = yfinance.download
        with warnings.catch_warnings(), _YFinanceErrors() as errors:
            # yfinance 1.7 still passes pandas' deprecated `inplace=`: noise, not ours.
            warnings.simplefilter("ignore", getattr(pd.errors, "Pandas4Warning", DeprecationWarning))
            try:
                return download(
                    list(tickers),
                    start=str(start.date()),
                    end=str((end + pd.Timedelta(days=1)).date()),  # yfinance's end is exclusive
                    **DOWNLOAD_OPTIONS,
                )
            finally:
                self._yf_errors = errors.summary()

    def _cacheable(
        self, raw: pd.DataFrame, tickers: list[str], config: Config, end: pd.Timestamp
    ) -> bool:
        """Only complete data whose last bars are final is cached.

        A partial frame is not cached, so that a re-run asks Yahoo again; nor is a window
        whose last session closed less than SETTLE_DELAY ago (or has not closed yet),
        since Yahoo then returns a bar that is still moving.
        """
        if raw.shape[0] == 0 or missing_tickers(raw, tickers):
            return False
        now = pd.Timestamp(self._clock())
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        for code in {inst.calendar for inst in config.instruments.values()}:
            recent = sessions(code, end - pd.Timedelta(days=14), end)
            if len(recent) and now < get_calendar(code).session_close(recent[-1]) + SETTLE_DELAY:
                return False
        return True


# -- frame conversion -------------------------------------------------------------------


def request_tickers(config: Config) -> list[str]:
    """Every instrument of the configuration, then the EUR/USD rate."""
    out = list(config.instruments)
    if config.fx.eurusd not in out:
        out.append(config.fx.eurusd)
    return out


def canonical_frame(raw: pd.DataFrame, requested: Sequence[str]) -> pd.DataFrame:
    """yfinance's frame in one fixed shape, whichever `group_by` produced it.

    Columns ``(Price, Ticker)`` sorted, tickers spelled as requested (yfinance
    upper-cases them), index tz-naive midnight datetime64[ns] without duplicates.
    Columns of tickers that were not requested are dropped.
    """
    cols = raw.columns
    if isinstance(cols, pd.MultiIndex):
        if cols.nlevels != 2:
            raise DataUnavailable(f"Yahoo returned a frame with {cols.nlevels} column levels, expected 2")
        lv0 = [str(v) for v in cols.get_level_values(0)]
        lv1 = [str(v) for v in cols.get_level_values(1)]
        if "Close" in lv0:
            fields, names = lv0, lv1
        elif "Close" in lv1:
            fields, names = lv1, lv0
        else:
            raise DataUnavailable("Yahoo returned a frame without a Close column")
    elif len(requested) == 1:  # a single ticker with multi_level_index=False
        fields = [str(v) for v in cols]
        names = [requested[0]] * len(fields)
    else:
        raise DataUnavailable("Yahoo returned a frame without per-ticker columns")
    lookup = {t.upper(): t for t in requested}
    labels = [(f, lookup.get(n.upper())) for f, n in zip(fields, names, strict=True)]
    keep = np.array([t is not None for _, t in labels], dtype=bool)
    out = raw.loc[:, keep]
    out = out.set_axis(
        pd.MultiIndex.from_tuples([lab for lab, k in zip(labels, keep, strict=True) if k], names=_LEVEL_NAMES)
        if keep.any()
        else pd.MultiIndex.from_arrays([[], []], names=_LEVEL_NAMES),
        axis=1,
    )
    out = out.loc[:, ~out.columns.duplicated(keep="first")]
    index = _naive_dates(out.index)
    out = out.set_axis(index, axis=0)
    out = out[~index.duplicated(keep="first")]
    return out.sort_index(axis=0).sort_index(axis=1)


def missing_tickers(raw: pd.DataFrame, tickers: Sequence[str]) -> list[str]:
    """The tickers of a canonical frame without a single close."""
    present = set()
    if "Close" in raw.columns.get_level_values(0):
        close = raw.xs("Close", axis=1, level=0)
        present = {t for t, ok in close.notna().any(axis=0).items() if ok}
    return [t for t in tickers if t not in present]


def to_market(raw: pd.DataFrame, config: Config, start: pd.Timestamp, end: pd.Timestamp) -> MarketData:
    """A canonical Yahoo frame as a (not yet validated) MarketData panel.

    The index is the union of the instruments' sessions from `start` to `end`, plus any
    other date on which an instrument has a price (holiday rows: validate() NaNs them).
    """
    instruments = list(config.instruments)
    codes = {inst.calendar for inst in config.instruments.values()}
    raw = raw.loc[(raw.index >= start) & (raw.index <= end)]
    present_fields = set(raw.columns.get_level_values(0))

    def field(name: str) -> pd.DataFrame:
        if name in present_fields:
            sub = raw.xs(name, axis=1, level=0)
        else:
            sub = pd.DataFrame(index=raw.index)
        sub = sub.reindex(columns=instruments)
        return sub.set_axis(pd.Index(instruments), axis=1).astype("float64")

    close = field("Close")
    traded = close.index[close.notna().any(axis=1).to_numpy()]
    index = union_sessions(codes, start, end).union(pd.DatetimeIndex(traded).as_unit("ns"))
    index = pd.DatetimeIndex(index, name=None).as_unit("ns")

    frames = {k: field(v).reindex(index) for k, v in _FIELDS.items()}
    dividends = field("Dividends").reindex(index).fillna(0.0)
    splits = field("Stock Splits").reindex(index)
    splits = splits.where(splits.notna() & (splits != 0.0), 1.0)

    fx_name = config.fx.eurusd
    if ("Close", fx_name) in raw.columns:
        fx = raw[("Close", fx_name)].astype("float64")
        fx = fx.where(~_repeated_fx_bars(raw, fx_name)).reindex(index)
    else:
        fx = pd.Series(np.nan, index=index, dtype="float64")
    fx = fx.rename(fx_name)

    return MarketData(
        **frames,
        dividends=dividends,
        splits=splits,
        fx_eurusd=fx,
        source="yahoo",
        synthetic=False,
        price_convention="split_adjusted",
    )


def _repeated_fx_bars(raw: pd.DataFrame, fx_name: str) -> pd.Series:
    """Rows whose EUR/USD open, high, low and close equal the previous quoted row's."""
    cols = [(f, fx_name) for f in ("Open", "High", "Low", "Close")]
    if not all(c in raw.columns for c in cols):
        return pd.Series(False, index=raw.index)
    bars = raw[cols].astype("float64")
    quoted = bars.dropna(how="any")
    same = quoted.eq(quoted.shift(1)).all(axis=1) & (quoted.iloc[:, 1] != quoted.iloc[:, 2])
    return same.reindex(raw.index, fill_value=False)


def _merge(base: pd.DataFrame, extra: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """`base` with the columns of `tickers` taken from `extra` (canonical frames)."""
    base = base.loc[:, ~base.columns.get_level_values(1).isin(tickers)]
    extra = extra.loc[:, extra.columns.get_level_values(1).isin(tickers)]
    out = pd.concat([base, extra], axis=1, sort=True)
    return out.sort_index(axis=0).sort_index(axis=1)


def _has_rows(frame: object) -> bool:
    return isinstance(frame, pd.DataFrame) and frame.shape[0] > 0 and frame.shape[1] > 0


def _naive_dates(index: pd.Index) -> pd.DatetimeIndex:
    try:
        idx = pd.DatetimeIndex(index)
    except (TypeError, ValueError) as exc:  # mixed time zones, or not dates at all
        raise DataUnavailable(f"Yahoo returned an index that is not one series of dates ({_one_line(exc)})") from None
    if idx.tz is not None:
        idx = idx.tz_localize(None)  # keep the exchange's local date
    return pd.DatetimeIndex(idx.normalize(), name=None).as_unit("ns")


class _YFinanceErrors(logging.Handler):
    """Collects the per-ticker errors yfinance logs during one download (``['SPY', 'QQQ']:
    YFRateLimitError(...)``), whatever level the application gave yfinance's logger."""

    _HEADER = re.compile(r"\d+ Failed downloads?:")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []
        self._logger = logging.getLogger("yfinance")

    _LINE = re.compile(r"\[(?P<tickers>[^\]]*)\]: (?P<error>.+)")

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        if not text or self._HEADER.fullmatch(text):
            return
        m = self._LINE.fullmatch(text)
        if m:  # the error first: a long list of tickers must not push it out of the line
            tickers = [t.strip(" '\"") for t in m["tickers"].split(",") if t.strip()]
            shown = ", ".join(sorted(tickers)[:3]) + (", ..." if len(tickers) > 3 else "")
            text = f"{m['error']} for {len(tickers)} ticker{'' if len(tickers) == 1 else 's'} ({shown})"
        self.lines.append(text)

    def summary(self, limit: int = 240) -> str:
        text = "; ".join(self.lines)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def __enter__(self) -> _YFinanceErrors:
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.ERROR)
        self._logger.propagate = False  # collected here, said once in the run's own error line
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}"
