"""The intraday monitor: alert when a watched asset or the whole portfolio moves more
than 2% from the previous close, while a market is open.

What is watched: the assets **held** (``portfolio.json`` positions) and those with a
**pending order** (they fill at the next open, so a large move matters before then).
An asset is checked only while its own exchange is open: at 08:00 UTC only Paris is,
and only the Paris assets are checked. Outside the hours of both exchanges nothing is
fetched and the monitor says when the next one opens.

Moves, for an asset: the latest price against the previous session's close, both in the
asset's own currency. For the portfolio: the positions of the last session done (as of
``portfolio.json``) at the latest prices in EUR (an asset whose exchange is closed at
its last price), plus cash, against the last NAV in ``equity.parquet``. An alert is
raised when the absolute move is more than :data:`THRESHOLD`.

Latest prices:

* ``yahoo``: one batched ``yfinance.download`` of the watched and held tickers and
  EUR/USD, ``period="5d", interval="5m"`` (see :class:`YahooIntraday`). The latest
  price is the close of the last 5-minute bar of today's session; the previous close is
  the close of the last bar of the session before (within a few basis points of the
  official close). An empty frame stops the run (:class:`DataUnavailable`); a ticker
  without a usable bar is skipped and the reason is logged and printed.
* ``demo``: the synthetic market's bar of today's session, interpolated geometrically
  from the open to the close by the share of the session elapsed at ``now`` (at the open
  the open, at the close the close); the previous close is the demo's close of the
  session before. EUR/USD likewise, over the span of the day's sessions.

Alerts are appended to ``state/alerts.jsonl``, one JSON object per line with the keys
``date, time_utc, ticker, move, price_local, previous_close, message, source`` in this
order (``ticker`` is ``PORTFOLIO`` for the portfolio, whose prices are EUR values). An
alert already raised the same day for the same ticker in the same direction is not
raised again. The file is read and rewritten whole under the state folder's exclusive
lock (:func:`engine.state.state_lock`: two monitors never lose each other's alerts) with
:func:`engine.state.atomic_write_bytes` (old bytes + new lines, fsynced, renamed over):
a crash leaves the old file or the new one. A line that is not an alert is a :class:`StateCorrupt` error; the file is then left
as it is.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from engine.config import Config
from engine.data import calendars
from engine.errors import ConfigError, DataUnavailable, StateCorrupt
from engine.portfolio.ledger import Portfolio
from engine.state import StateStore, atomic_write_bytes, state_lock

log = logging.getLogger(__name__)

THRESHOLD = 0.02  # absolute move from the previous close that raises an alert
PORTFOLIO = "PORTFOLIO"
ALERTS_FILE = "alerts.jsonl"
ALERT_KEYS = ("date", "time_utc", "ticker", "move", "price_local", "previous_close", "message", "source")

# The keyword arguments of the intraday yfinance.download call (the tickers aside).
INTRADAY_OPTIONS: dict[str, Any] = {
    "period": "5d",  # reaches the previous session across a long weekend
    "interval": "5m",
    "auto_adjust": False,
    "actions": False,
    "prepost": False,
    "group_by": "column",
    "ignore_tz": False,  # keep the zone: the index is then tz-aware
    "progress": False,
    "threads": True,
}


@dataclass(frozen=True)
class MonitorResult:
    message: str  # one line: what was checked, or why nothing was
    new_alerts: list[dict] = field(default_factory=list)  # the alerts appended by this run


@dataclass(frozen=True)
class Quote:
    price_local: float  # the latest price
    previous_close: float | None  # None for an exchange not trading today (valuation only)


@dataclass(frozen=True)
class Quotes:
    prices: dict[str, Quote]
    fx_eurusd: float | None  # USD per 1 EUR, latest
    skipped: dict[str, str] = field(default_factory=dict)  # ticker -> why it has no quote


def threshold(config: Config) -> float:
    """THRESHOLD, or ``monitor.threshold`` once the configuration has such a key."""
    section = getattr(config, "monitor", None)
    return float(getattr(section, "threshold", THRESHOLD))


# --- the clock ---------------------------------------------------------------------


def _utc(now: pd.Timestamp | None) -> pd.Timestamp:
    ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if ts.tzinfo is None:
        raise ConfigError(f"the time to check needs a zone: {ts}")
    return ts.tz_convert("UTC")


def _is_open(code: str, now: pd.Timestamp) -> bool:
    # Session by session, not exchange_calendars' minute index (millions of minutes to
    # build): XNYS and XPAR sessions have no break and never span midnight UTC.
    day = now.tz_convert(None).normalize()
    if not calendars.is_session(code, day):
        return False
    cal = calendars.get_calendar(code)
    return bool(cal.session_open(day) <= now < cal.session_close(day))


def open_exchanges(codes: Iterable[str], now: pd.Timestamp) -> set[str]:
    """The exchanges among `codes` open at `now` (UTC): from the open, included, to the close."""
    if not calendars.CALENDAR_START <= now.tz_convert(None) < calendars.CALENDAR_END - pd.Timedelta(days=14):
        raise ConfigError(f"{now} is outside the calendars ({calendars.CALENDAR_START.date()} .. "
                          f"{calendars.CALENDAR_END.date()})")
    return {c for c in codes if _is_open(c, now)}


def _next_open(codes: Iterable[str], now: pd.Timestamp) -> str:
    day = now.tz_convert(None).normalize()
    opens = []
    for code in codes:
        cal = calendars.get_calendar(code)
        later = [cal.session_open(d) for d in calendars.sessions(code, day, day + pd.Timedelta(days=14))]
        opens += [(t, code) for t in later if t > now][:1]
    if not opens:
        return "none in the next two weeks"
    when, code = min(opens)
    return f"{code} at {when.tz_convert('UTC'):%Y-%m-%d %H:%M} UTC"


# --- the monitor ---------------------------------------------------------------------


def monitor(state: Path, config: Config, source: Any, now: pd.Timestamp | None = None) -> MonitorResult:
    """Check the watched assets and the portfolio at `now` (default: the current time) and
    append the new alerts to ``state/alerts.jsonl``."""
    now = _utc(now)
    stamp = f"{now:%Y-%m-%d %H:%M} UTC"
    codes = sorted({i.calendar for i in config.instruments.values()})
    open_now = open_exchanges(codes, now)
    if not open_now:
        return MonitorResult(f"outside market hours ({stamp}; next open: {_next_open(codes, now)}): nothing checked")

    state = Path(state)
    with state_lock(state, create=False):  # alerts.jsonl is read, extended and rewritten by one run at a time
        return _check(state, config, source, now, stamp, open_now)


def _check(state: Path, config: Config, source: Any, now: pd.Timestamp, stamp: str, open_now: set[str]
           ) -> MonitorResult:
    store = StateStore(state)
    p = store.load()
    if p is None or p.as_of is None:
        return MonitorResult(f"nothing to watch at {stamp}: {state} holds no session yet")
    label = f"demo seed={source.seed}" if source.name == "demo" else source.name
    if p.source != label:
        raise ConfigError(f"{state} is priced by '{p.source}', not '{label}': monitor it with the same source")
    today = now.tz_convert(None).normalize()
    if p.as_of >= today.date():
        return MonitorResult(f"nothing to watch at {stamp}: {state} is already as of {p.as_of}")
    alerts_path = state / ALERTS_FILE
    old = read_alerts(alerts_path)

    watched = {t: "held" for t in p.positions}
    for o in p.pending_orders:
        watched.setdefault(o.ticker, f"pending {o.side} order")
    if not watched:
        return MonitorResult(f"nothing to watch at {stamp}: no position and no pending order")
    instruments = config.instruments
    unknown = sorted(t for t in watched if t not in instruments)
    if unknown:
        raise ConfigError(f"{', '.join(unknown)} in {state} not in the configuration: cannot tell its exchange")
    checked = sorted((t for t in watched if instruments[t].calendar in open_now), key=list(instruments).index)

    fetch = sorted(watched, key=list(instruments).index)
    if any(instruments[t].currency == "USD" for t in p.positions):
        fetch.append(config.fx.eurusd)
    if source.name == "demo":
        quotes = demo_quotes(source, config, fetch, now)
    elif source.name == "yahoo":
        intraday = source if isinstance(source, YahooIntraday) else YahooIntraday(
            retries=config.data.retries, backoff_seconds=config.data.backoff_seconds)
        quotes = intraday.quotes(fetch, {t: instruments[t].calendar for t in fetch if t in instruments},
                                 config.fx.eurusd, now)
    else:
        raise ConfigError(f"the monitor has no intraday prices for the source {source.name!r}")
    for t, why in quotes.skipped.items():
        log.warning("monitor: %s skipped: %s", t, why)

    limit = threshold(config)
    base = {"date": today.date().isoformat(), "time_utc": f"{now:%H:%M:%S}", "source": p.source}
    candidates = []
    for t in checked:
        q = quotes.prices.get(t)
        if q is None or q.previous_close is None:
            continue
        move = q.price_local / q.previous_close - 1
        if abs(move) > limit:
            ccy = instruments[t].currency
            candidates.append(_alert(base, t, move, q.price_local, q.previous_close,
                                     f"{t} {move:+.2%} at {q.price_local:,.4f} {ccy} vs the previous close "
                                     f"{q.previous_close:,.4f} {ccy} ({watched[t]})"))
    portfolio = _portfolio_move(p, store, quotes, config)
    if isinstance(portfolio, str):
        portfolio_note = portfolio
    else:
        portfolio_note = ""
        move, value_eur, nav_eur, day = portfolio
        if abs(move) > limit:
            candidates.append(_alert(base, PORTFOLIO, move, value_eur, nav_eur,
                                     f"portfolio {move:+.2%}: {value_eur:,.2f} EUR at the latest prices vs the NAV "
                                     f"{nav_eur:,.2f} EUR at the close of {day}"))

    raised = {_key(a) for a in old}
    new = [a for a in candidates if _key(a) not in raised]
    if new:
        append_alerts(alerts_path, new)

    n_open = " and ".join(sorted(open_now))
    parts = [f"{stamp}: {n_open} open; checked {len(checked)} watched asset{'s' if len(checked) != 1 else ''}"
             + ("" if portfolio_note else " and the portfolio")
             + f": {len(new)} new alert{'s' if len(new) != 1 else ''}"]
    if len(candidates) > len(new):
        parts.append(f"{len(candidates) - len(new)} already raised today")
    if portfolio_note:
        parts.append(portfolio_note)
    skipped = [t for t in quotes.skipped if t in checked or t in p.positions]
    if skipped:
        parts.append("skipped " + "; ".join(f"{t} ({quotes.skipped[t]})" for t in skipped))
    return MonitorResult("; ".join(parts), new)


def _portfolio_move(
    p: Portfolio, store: StateStore, quotes: Quotes, config: Config
) -> tuple[float, float, float, dt.date] | str:
    """(move, value EUR at the latest prices, last NAV EUR, its date), or why it cannot be had."""
    equity = store.equity()
    equity = equity.loc[pd.to_datetime(equity["date"]) <= pd.Timestamp(p.as_of)]
    if equity.empty:
        return "portfolio not checked: no NAV in equity.parquet"
    usd = {t for t in p.positions if config.instruments[t].currency == "USD"}
    missing = sorted(t for t in p.positions if t not in quotes.prices)
    if usd and not quotes.fx_eurusd:
        missing.append(config.fx.eurusd)
    if missing:
        return f"portfolio not checked: no latest price for {', '.join(missing)}"
    value_eur = p.cash_eur + sum(
        pos.qty * quotes.prices[t].price_local / (quotes.fx_eurusd if t in usd else 1.0)
        for t, pos in p.positions.items()
    )
    last = equity.iloc[-1]
    nav_eur = float(last["nav_eur"])
    return value_eur / nav_eur - 1, value_eur, nav_eur, pd.Timestamp(last["date"]).date()


def _alert(base: Mapping[str, str], ticker: str, move: float, price: float, previous: float,
           message: str) -> dict[str, Any]:
    digits = 2 if ticker == PORTFOLIO else 4
    values = {**base, "ticker": ticker, "move": round(move, 6), "price_local": round(price, digits),
              "previous_close": round(previous, digits), "message": message}
    return {k: values[k] for k in ALERT_KEYS}


def _key(alert: Mapping[str, Any]) -> tuple[str, str, bool]:
    return alert["date"], alert["ticker"], alert["move"] > 0


# --- alerts.jsonl ------------------------------------------------------------------------


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """The alerts in `path` (none when it does not exist); StateCorrupt on a bad line."""
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StateCorrupt(f"cannot read {path}: {exc}") from None
    out = []
    for n, line in enumerate(lines, start=1):
        try:
            alert = json.loads(line)
            if not isinstance(alert, dict):
                raise TypeError("not a JSON object")
            if not isinstance(alert.get("date"), str) or not isinstance(alert.get("ticker"), str):
                raise TypeError("no date or ticker")
            move = alert.get("move")
            if isinstance(move, bool) or not isinstance(move, (int, float)) or not math.isfinite(move):
                raise TypeError("no numeric move")
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise StateCorrupt(f"{path} line {n} is not an alert ({exc}): fix or remove it") from None
        out.append(alert)
    return out


def append_alerts(path: Path, alerts: list[dict[str, Any]]) -> None:
    """Append `alerts` as JSON lines by rewriting the file atomically (old bytes kept as they are)."""
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    atomic_write_bytes(path, old + b"".join(orjson.dumps(a) + b"\n" for a in alerts))


# --- latest prices: demo ---------------------------------------------------------------


def _elapsed(now: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """The share of [start, end] elapsed at `now`, clipped to 0..1."""
    span = (end - start).total_seconds()
    return min(max((now - start).total_seconds() / span, 0.0), 1.0) if span > 0 else 1.0


def demo_quotes(source: Any, config: Config, tickers: list[str], now: pd.Timestamp) -> Quotes:
    """Latest prices from the demo market: today's bar interpolated by the time of day."""
    today = now.tz_convert(None).normalize()
    market = source.load(config, today - pd.Timedelta(days=14), today)
    prices: dict[str, Quote] = {}
    skipped: dict[str, str] = {}
    spans = []
    for t in tickers:
        if t not in market.close.columns:
            continue
        code = config.instruments[t].calendar
        closes = market.close[t]
        before = closes.loc[closes.index < today].dropna()
        previous = float(before.iloc[-1]) if len(before) else None
        cal = calendars.get_calendar(code)
        if market.has_bar(t, today) and now >= cal.session_open(today):
            start, end = cal.session_open(today), cal.session_close(today)
            spans.append((start, end))
            o, c = float(market.open.at[today, t]), float(market.close.at[today, t])
            prices[t] = Quote(o * (c / o) ** _elapsed(now, start, end), previous)
        elif previous is not None:  # its exchange is not trading today, or not yet: its last close
            prices[t] = Quote(previous, None)
        else:
            skipped[t] = "no demo price"
    fx = None
    if config.fx.eurusd in tickers:
        series = market.fx_eurusd.dropna()
        fx_prev = series.loc[series.index < today]
        if today in series.index and len(fx_prev) and spans:
            share = _elapsed(now, min(s for s, _ in spans), max(e for _, e in spans))
            fx = float(fx_prev.iloc[-1] * (series.loc[today] / fx_prev.iloc[-1]) ** share)
        elif len(series):
            fx = float(series.iloc[-1])
    return Quotes(prices, fx, skipped)


# --- latest prices: Yahoo ----------------------------------------------------------------


class YahooIntraday:
    """Latest prices from Yahoo: one batched ``yfinance.download`` of 5-minute bars.

    What yfinance 1.7 returns for intraday intervals (``multi.py``, ``scrapers/history.py``):
    columns ``(Price, Ticker)`` as for daily bars; the index is tz-aware (``ignore_tz``
    is False), converted to the most common exchange zone among the tickers, named
    ``Datetime``; a failed ticker is all NaN; when every ticker failed the frame has no
    rows. `download` replaces ``yfinance.download`` (tests pass recorded frame shapes).
    """

    name = "yahoo"

    def __init__(
        self,
        download: Callable[..., pd.DataFrame | None] | None = None,
        *,
        retries: int = 2,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._download = download
        self._retries = max(int(retries), 1)
        self._backoff = backoff_seconds
        self._sleep = sleep

    def fetch(self, tickers: list[str]) -> pd.DataFrame:
        """The raw frame of one batched call (retried on an empty frame or an exception)."""
        cause = "no attempt made"
        for attempt in range(self._retries):
            try:
                frame = self._call(tickers)
            except Exception as exc:  # noqa: BLE001 - network and Yahoo errors of every kind
                cause = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            else:
                if isinstance(frame, pd.DataFrame) and frame.shape[0] > 0 and frame.shape[1] > 0:
                    return frame
                cause = "yfinance returned an empty frame (a network failure or a refusal by Yahoo)"
            log.info("Yahoo intraday attempt %d/%d failed: %s", attempt + 1, self._retries, cause)
            if attempt + 1 < self._retries:
                self._sleep(self._backoff * 2**attempt)
        raise DataUnavailable(f"no intraday prices from Yahoo for {len(tickers)} tickers after "
                              f"{self._retries} attempt(s): {cause}")

    def _call(self, tickers: list[str]) -> Any:
        download = self._download
        if download is None:
            import yfinance  # slow to import: only when needed

            download = yfinance.download
        with warnings.catch_warnings():
            # yfinance 1.7 still passes pandas' deprecated `inplace=`: noise, not ours.
            warnings.simplefilter("ignore", getattr(pd.errors, "Pandas4Warning", DeprecationWarning))
            return download(list(tickers), **INTRADAY_OPTIONS)

    def quotes(self, tickers: list[str], exchange: Mapping[str, str], fx_ticker: str, now: pd.Timestamp) -> Quotes:
        """Latest price and previous close of each ticker (`exchange`: its calendar code)."""
        close = intraday_closes(self.fetch(tickers), tickers)
        close = close.loc[close.index <= now]
        today = now.tz_convert(None).normalize()
        prices: dict[str, Quote] = {}
        skipped: dict[str, str] = {}
        fx = None
        for t in tickers:
            s = close[t].dropna() if t in close.columns else pd.Series(dtype=float)
            if s.empty:
                skipped[t] = "no intraday price from Yahoo"
                continue
            if t == fx_ticker:
                fx = float(s.iloc[-1])
                continue
            code = exchange[t]
            local_day = s.index.tz_convert(calendars.get_calendar(code).tz).normalize().tz_localize(None)
            if not calendars.is_session(code, today):  # its exchange does not trade today
                prices[t] = Quote(float(s.iloc[-1]), None)
                continue
            now_bars, before = s[local_day == today], s[local_day < today]
            if before.empty:
                skipped[t] = "no bar of the previous session"
            elif now_bars.empty:
                if now < calendars.get_calendar(code).session_open(today):
                    prices[t] = Quote(float(before.iloc[-1]), None)  # not open yet: its last close
                else:
                    skipped[t] = "no bar of today's session yet"
            else:
                prices[t] = Quote(float(now_bars.iloc[-1]), float(before.iloc[-1]))
        return Quotes(prices, fx, skipped)


def intraday_closes(raw: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """The Close columns of a yfinance intraday frame, one per requested ticker, UTC index."""
    cols = raw.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels != 2:
        raise DataUnavailable("Yahoo returned an intraday frame without (Price, Ticker) columns")
    level = next((i for i in (0, 1) if "Close" in set(map(str, cols.get_level_values(i)))), None)
    if level is None:
        raise DataUnavailable("Yahoo returned an intraday frame without a Close column")
    close = raw.xs("Close", axis=1, level=level)
    lookup = {t.upper(): t for t in tickers}
    close = close.loc[:, [str(c).upper() in lookup for c in close.columns]]
    close = close.set_axis([lookup[str(c).upper()] for c in close.columns], axis=1)
    close = close.loc[:, ~close.columns.duplicated()].astype("float64")
    index = pd.DatetimeIndex(close.index)
    if index.tz is None:
        raise DataUnavailable("Yahoo returned an intraday frame without a time zone")
    return close.set_axis(index.tz_convert("UTC"), axis=0).sort_index()
