"""Trading calendars (exchange_calendars): which dates are sessions of which exchange.

Session labels are tz-naive midnight timestamps (datetime64[ns]), the form used for
every date index in the engine.

Building an exchange's calendar over 2000-2036 costs about 0.2 s (its holiday rules are
evaluated for every year), and importing exchange_calendars another 0.4 s: more than
half of a daily run. What the engine asks of a calendar is only its sessions and their
open and close times, so those arrays are kept in a cache file per exchange and
exchange_calendars version (``$ALMOST_SURELY_CALENDAR_CACHE``, else
``$XDG_CACHE_HOME/almost-surely/calendars`` or ``~/.cache/almost-surely/calendars``),
written once, atomically, from exchange_calendars itself; an unreadable or unwritable
cache only means building the calendar again. :func:`get_calendar` (the monitor's
intraday questions) still builds the library's calendar.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import exchange_calendars as xc

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
    import exchange_calendars as xc

    return xc.get_calendar(code, start=CALENDAR_START, end=CALENDAR_END)


class _Table(NamedTuple):
    """One exchange's sessions (tz-naive) and their open and close times (UTC)."""

    sessions: pd.DatetimeIndex
    opens: pd.DatetimeIndex
    closes: pd.DatetimeIndex
    row: dict[pd.Timestamp, int]


def cache_folder() -> Path:
    env = os.environ.get("ALMOST_SURELY_CALENDAR_CACHE", "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "almost-surely" / "calendars"


def _cache_path(code: str) -> Path:
    key = f"{code}-exchange_calendars-{version('exchange_calendars')}-{CALENDAR_START.date()}-{CALENDAR_END.date()}"
    return cache_folder() / f"{key}.npz"


def _arrays(code: str) -> dict[str, np.ndarray]:
    """The session, open and close arrays (int64 nanoseconds), from the cache or built."""
    path = _cache_path(code)
    with contextlib.suppress(OSError, ValueError, KeyError, EOFError):
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("sessions", "opens", "closes")}
        if len({len(a) for a in arrays.values()}) == 1 and all(a.dtype == np.int64 for a in arrays.values()):
            return arrays
    cal = get_calendar(code)
    arrays = {
        "sessions": pd.DatetimeIndex(cal.sessions).as_unit("ns").asi8,
        "opens": pd.DatetimeIndex(cal.opens.to_numpy()).as_unit("ns").asi8,
        "closes": pd.DatetimeIndex(cal.closes.to_numpy()).as_unit("ns").asi8,
    }
    _write_cache(path, arrays)
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # a cache only: the next run builds the calendar again
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@lru_cache(maxsize=None)
def _table(code: str) -> _Table:
    a = _arrays(code)
    s = pd.DatetimeIndex(a["sessions"].view("datetime64[ns]"))
    opens = pd.DatetimeIndex(a["opens"].view("datetime64[ns]")).tz_localize("UTC")
    closes = pd.DatetimeIndex(a["closes"].view("datetime64[ns]")).tz_localize("UTC")
    return _Table(s, opens, closes, {d: i for i, d in enumerate(s)})


def _all_sessions(code: str) -> pd.DatetimeIndex:
    return _table(code).sessions


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
    return to_session(d) in _table(code).row


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
    t = _table(code)
    i = t.row.get(to_session(d))
    return t.opens[i] if i is not None else get_calendar(code).session_open(to_session(d))  # its error


def close_time_utc(code: str, d: object) -> pd.Timestamp:
    """When the exchange closes on session `d` (UTC; early closes included)."""
    t = _table(code)
    i = t.row.get(to_session(d))
    return t.closes[i] if i is not None else get_calendar(code).session_close(to_session(d))  # its error


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
