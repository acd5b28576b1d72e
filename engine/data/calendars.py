"""Trading calendars (exchange_calendars): which dates are sessions of which exchange.

Session labels are tz-naive midnight timestamps (datetime64[ns]), the form used for
every date index in the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import exchange_calendars as xc
import pandas as pd

# exchange_calendars needs explicit bounds; these cover the demo market and any
# realistic live or backtest run.
CALENDAR_START = pd.Timestamp("2000-01-03")
CALENDAR_END = pd.Timestamp("2036-12-31")


def to_session(d: object) -> pd.Timestamp:
    """A date-like (str, date, Timestamp) as a tz-naive midnight Timestamp."""
    ts = pd.Timestamp(d)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize().as_unit("ns")


@lru_cache(maxsize=None)
def get_calendar(code: str) -> xc.ExchangeCalendar:
    return xc.get_calendar(code, start=CALENDAR_START, end=CALENDAR_END)


@lru_cache(maxsize=None)
def _all_sessions(code: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(get_calendar(code).sessions).as_unit("ns")


def sessions(code: str, start: object, end: object) -> pd.DatetimeIndex:
    """Sessions of one exchange between `start` and `end`, both inclusive."""
    s = _all_sessions(code)
    return s[(s >= to_session(start)) & (s <= to_session(end))]


def union_sessions(codes: Iterable[str], start: object, end: object) -> pd.DatetimeIndex:
    """Dates on which at least one of the exchanges trades, `start`..`end` inclusive."""
    out = pd.DatetimeIndex([], dtype="datetime64[ns]")
    for code in sorted(set(codes)):
        out = out.union(sessions(code, start, end))
    return pd.DatetimeIndex(out, freq=None)


def is_session(code: str, d: object) -> bool:
    return to_session(d) in _session_set(code)


@lru_cache(maxsize=None)
def _session_set(code: str) -> frozenset[pd.Timestamp]:
    return frozenset(_all_sessions(code))


def previous_sessions(codes: Iterable[str], end: object, count: int) -> pd.DatetimeIndex:
    """The last `count` union sessions up to and including `end`."""
    codes = sorted(set(codes))
    out = pd.DatetimeIndex([], dtype="datetime64[ns]")
    for code in codes:
        out = out.union(_all_sessions(code))
    out = out[out <= to_session(end)]
    return pd.DatetimeIndex(out[-count:], freq=None)


def open_time_utc(code: str, d: object) -> pd.Timestamp:
    """When the exchange opens on session `d` (UTC)."""
    return get_calendar(code).session_open(to_session(d))


# The years over which a calendar's sessions per year are averaged: full years of the
# calendars' range, so that the figure does not depend on a run's window.
SESSIONS_PER_YEAR_YEARS = (2000, 2035)


@lru_cache(maxsize=None)
def _sessions_per_year(codes: tuple[str, ...]) -> float:
    first, last = SESSIONS_PER_YEAR_YEARS
    n = len(union_sessions(codes, f"{first}-01-01", f"{last}-12-31"))
    return n / (last - first + 1)


def sessions_per_year(codes: Iterable[str]) -> float:
    """The average number of sessions a year of the union of these exchanges' calendars
    (about 252 for New York alone, 255 for Paris, 258 for both): what annualises a daily
    figure measured on that calendar."""
    return _sessions_per_year(tuple(sorted(set(codes))))
