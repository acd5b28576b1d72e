"""Checks a market-data panel against the exchange calendars before anything uses it.

:func:`validate` looks at every ticker on the sessions of its own exchange, from the
panel's first date up to ``asof``. Every check is **point in time**: a problem found at
session D is found with data up to D only and is dated (``DataIssue.since``/``until``),
so that a backtest never knows at D what went wrong later (a data problem of December
2024 does not remove a ticker from 2023, and a brief lists only the issues known at D).

* a ticker without a single price up to ``asof`` is removed (``missing``);
* a missing bar on one of its sessions, or a bar that repeats the previous session's
  OHLCV exactly (Yahoo's stale bar), is carried forward from the previous close
  (open/high/low = that close, volume 0) and marked as not traded: orders wait;
* ``nan_bars``: too many such bars in the trailing window up to D make the ticker
  unusable from D until the window is clean again;
* ``stale``: no real bar for the last session of its exchange up to ``asof``;
* ``duplicate``: the same date twice with different values;
* ``jump``: a close-to-close move beyond the threshold with no split is *flagged*,
  never rejected: real prices move that much (AAPL fell 51.8% on 2000-09-29) and a
  held asset must stay tradable. A move that reverses the next session is flagged
  again then, as a likely bad bar;
* values on days its exchange was closed (Yahoo sometimes returns holiday rows) are
  set to NaN, and a dividend or split dated on such a day moves to the next session;
* the EUR/USD series, needed for every valuation, is checked and gaps are filled; if
  it is unusable the run stops with :class:`DataUnavailable`.

The index of the result is exactly the union of the sessions of the panel's exchanges
from the panel's first date to ``asof`` (tz-naive midnight, datetime64[ns]); nothing
after ``asof`` is kept, since it has not been checked. Whether a ticker with a fatal
issue in force was needed (held, ordered, a benchmark) is for the caller to decide,
with :func:`fatal_tickers`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pandas as pd

from engine.config import Config
from engine.data.calendars import sessions, to_session
from engine.data.market import DataIssue, MarketData
from engine.errors import DataUnavailable

# A day-to-day EUR/USD move beyond this is a data error: the largest daily move since
# the euro's launch is about 5%.
FX_JUMP_THRESHOLD = 0.15
# The missing-bar fraction is judged on at least this many sessions of the ticker.
MIN_SESSIONS_FOR_FRACTION = 40
# A jump warning stays in the briefs for this many sessions after the move.
JUMP_NOTICE_SESSIONS = 5

_PRICE_FIELDS = ("open", "high", "low", "close")


def fatal_tickers(market: MarketData, on: pd.Timestamp | dt.date | None = None) -> dict[str, DataIssue]:
    """Ticker -> its first fatal issue in force on `on` (default: the panel's last date)."""
    if on is None:
        on = market.index.max() if len(market.index) else dt.date.max
    day = on.date() if isinstance(on, pd.Timestamp) else on
    return market.blocked_on(day)


def validate(market: MarketData, config: Config, asof: pd.Timestamp) -> MarketData:
    """The panel up to `asof`, cleaned; see the module docstring for the rules."""
    asof = to_session(asof)
    _require_data(market)
    first = to_session(market.index.min())
    if first > asof:
        raise DataUnavailable(
            f"no market data up to {_d(asof)}: the panel starts on {_d(first)}"
        )

    tickers = market.tickers
    codes = [_calendar_of(config, t) for t in tickers]
    code_sessions = {c: sessions(c, first, asof) for c in set(codes) if c is not None}

    # The full session grid (so that a missing session is a NaN row, not an absent
    # row), plus whatever extra dates the source returned up to asof.
    old_index = _ns_index(market.index)
    index = old_index[old_index <= asof].unique()
    for s in code_sessions.values():
        index = index.union(s)
    n, k = len(index), len(tickers)
    days = [ts.date() for ts in index]

    own = np.ones((n, k), dtype=bool)  # is the row a session of the ticker's exchange?
    for code, s in code_sessions.items():
        mask = index.isin(s)
        for j, c in enumerate(codes):
            if c == code:
                own[:, j] = mask

    conflicts: dict[int, int] = {}  # column -> first row with a conflicting duplicate

    def grid(frame: pd.DataFrame, fill: float | None = None) -> np.ndarray:
        idx = _ns_index(frame.index)
        f = frame.set_axis(idx, axis=0)
        dup = idx.duplicated(keep=False)
        if dup.any():
            _find_conflicts(f[dup], index, tickers, conflicts)
        f = f[~idx.duplicated(keep="first")]
        f = f.reindex(index=index, columns=tickers)
        if fill is not None:
            f = f.fillna(fill)
        return f.to_numpy(dtype=float, na_value=np.nan, copy=True)

    px = {name: grid(getattr(market, name)) for name in _PRICE_FIELDS}
    volume = grid(market.volume)
    dividends = grid(market.dividends, 0.0)
    splits = grid(market.splits, 1.0)
    splits[~np.isfinite(splits) | (splits <= 0)] = 1.0

    # 1. Values on days the ticker's exchange was closed.
    present_any = ~np.isnan(volume)
    for name in _PRICE_FIELDS:
        present_any |= ~np.isnan(px[name])
    off_rows = ~own & present_any
    n_off = off_rows.sum(axis=0)
    for arr in (*px.values(), volume):
        arr[~own] = np.nan
    moved_events = _move_off_session_events(dividends, splits, own)

    # 2. Impossible prices count as missing.
    n_invalid = np.zeros(k, dtype=int)
    for name in _PRICE_FIELDS:
        arr = px[name]
        bad = ~np.isnan(arr) & (~np.isfinite(arr) | (arr <= 0))
        n_invalid += bad.sum(axis=0)
        arr[bad] = np.nan
    volume[~np.isnan(volume) & ~np.isfinite(volume)] = np.nan

    # 3. A bar that repeats the previous one exactly did not trade: it counts as missing.
    repeated = _repeated_bars(px, volume)
    for arr in (*px.values(), volume):
        arr[repeated] = np.nan

    close = px["close"]
    has = ~np.isnan(close)  # a bar is a close on one of the ticker's own sessions
    row = np.arange(n)[:, None]
    last_own = np.where(own, row, -1).max(axis=0)
    first_bar = np.where(has, row, n).min(axis=0)
    last_bar = np.where(has, row, -1).max(axis=0)
    listed = own & (row >= first_bar[None, :])  # own sessions from the ticker's first bar

    # The previous available close at each row (strictly before it).
    prev = pd.DataFrame(close).ffill().shift(1).to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        move = close / prev - 1.0
    jumps = has & ~np.isnan(prev) & (np.abs(move) > config.data.jump_threshold) & (splits == 1.0)

    issues: list[DataIssue] = []
    removed: list[str] = []
    for j, t in enumerate(tickers):
        code = codes[j] or "its exchange"
        if not own[:, j].any():
            continue  # its exchange never opened in the window: nothing to check
        if not has[:, j].any():
            issues.append(DataIssue(
                t, "missing",
                f"no data at all: no price between {_d(first)} and {_d(asof)} "
                f"({int(own[:, j].sum())} {code} sessions)",
            ))
            removed.append(t)
            continue
        if not has[last_own[j], j]:
            what = "a repeat of the previous bar" if repeated[last_own[j], j] else "no bar"
            issues.append(DataIssue(
                t, "stale",
                f"{what} for {_d(index[last_own[j]])}, the last {code} session up to "
                f"{_d(asof)}; the last real bar is from {_d(index[last_bar[j]])}",
                since=days[last_own[j]],
            ))
        if j in conflicts:
            i = conflicts[j]
            issues.append(DataIssue(
                t, "duplicate",
                f"{_d(index[i])} appears twice with different values: which bar is right "
                "is unknown",
                since=days[i],
            ))
        issues += _nan_bar_issues(t, code, ~has[:, j] & listed[:, j], listed[:, j], days, config)
        issues += _jump_issues(t, jumps[:, j], has[:, j], move[:, j], prev[:, j], close[:, j], days, config)

    # 4. Carry the previous close over the missing bars.
    need_fill = own & ~has & ~np.isnan(prev)
    partial = has & (np.isnan(px["open"]) | np.isnan(px["high"]) | np.isnan(px["low"]))
    fill_value = np.where(need_fill, prev, np.nan)
    for name in ("open", "high", "low"):
        arr = px[name]
        arr[need_fill] = fill_value[need_fill]
        arr[partial & np.isnan(arr)] = close[partial & np.isnan(arr)]
    close[need_fill] = fill_value[need_fill]
    volume[need_fill] = 0.0
    volume[has & np.isnan(volume)] = 0.0
    # A bar traded if it is real and, for a ticker that reports volume, has some.
    reports_volume = (np.where(has, volume, 0.0) > 0).any(axis=0)
    traded = has & ~(reports_volume[None, :] & (volume <= 0))
    # Bars an earlier validation already marked as not traded stay so, without a new note.
    known = np.zeros((n, k), dtype=bool)
    if market.traded is not None:
        prior = market.traded.set_axis(_ns_index(market.traded.index), axis=0)
        prior = prior[~prior.index.duplicated(keep="first")].reindex(index=index, columns=tickers)
        known = prior.eq(False).to_numpy(dtype=bool)
        traded &= ~known

    gone = set(removed)
    for j, t in enumerate(tickers):
        if t in gone:
            continue
        code = codes[j] or "its exchange"
        for i in np.flatnonzero((need_fill[:, j] | (has[:, j] & ~traded[:, j])) & ~known[:, j]):
            issues.append(DataIssue(t, "filled", _not_traded_detail(
                index[i], code, bool(repeated[i, j]), bool(need_fill[i, j])), since=days[i], until=days[i]))
        detail = _repairs_detail(
            code=code, index=index, n_leading=int(own[: first_bar[j], j].sum()),
            off_rows=off_rows[:, j], n_off=int(n_off[j]), n_partial=int(partial[:, j].sum()),
            n_invalid=int(n_invalid[j]), moved=moved_events.get(j, 0),
        )
        if detail:  # known in full only at asof: reported there
            issues.append(DataIssue(t, "filled", detail, since=days[-1], until=days[-1]))

    usd = np.array([_currency_of(config, t) == "USD" for t in tickers], dtype=bool)
    fx, fx_issue = _check_fx(market.fx_eurusd, index, own[:, usd].any(axis=1), config, first, asof)
    if fx_issue is not None:
        issues.append(fx_issue)

    # Rows on which none of the panel's exchanges trades are not part of the panel.
    keep = own.any(axis=1) if k else np.ones(n, dtype=bool)
    out_index = index[keep].rename(market.index.name)

    def frame(arr: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(arr[keep], index=out_index, columns=market.close.columns)

    cleaned = replace(
        market,
        open=frame(px["open"]),
        high=frame(px["high"]),
        low=frame(px["low"]),
        close=frame(close),
        volume=frame(volume),
        dividends=frame(dividends),
        splits=frame(splits),
        fx_eurusd=pd.Series(fx[keep], index=out_index, name=market.fx_eurusd.name, dtype=float),
        traded=pd.DataFrame(traded[keep], index=out_index, columns=market.close.columns),
        issues=(),
    )
    return cleaned.drop(removed).with_issues(list(market.issues) + issues)


def _repeated_bars(px: dict[str, np.ndarray], volume: np.ndarray) -> np.ndarray:
    """Bars whose OHLCV equals the previous bar's exactly (Yahoo's stale bar).

    A close-only series (open = high = low = close, no volume) can repeat a rounded
    price honestly, so a bar counts only if it has a range or a volume.
    """
    present = ~np.isnan(px["close"])

    def previous(arr: np.ndarray) -> np.ndarray:  # the ticker's previous bar, over gaps
        marked = np.where(present, np.nan_to_num(arr, nan=-1.0), np.nan)
        return pd.DataFrame(marked).ffill().shift(1).to_numpy(dtype=float)

    same = present.copy()
    for arr in (*(px[name] for name in _PRICE_FIELDS), volume):
        same &= np.nan_to_num(arr, nan=-1.0) == previous(arr)
    informative = (px["high"] != px["low"]) | (np.nan_to_num(volume) > 0)
    return same & informative


def _find_conflicts(dups: pd.DataFrame, index: pd.DatetimeIndex, tickers: list[str], out: dict[int, int]) -> None:
    """Record, per column, the first row whose date comes twice with different values."""
    for j, t in enumerate(tickers):
        if t not in dups.columns:
            continue
        col = dups[t]
        for when, values in col.groupby(level=0):
            v = values.dropna().unique()
            if len(v) > 1 and when in index:
                i = int(index.get_loc(when))
                out[j] = min(out.get(j, i), i)


def _nan_bar_issues(
    ticker: str, code: str, missing: np.ndarray, listed: np.ndarray, days: list[dt.date], config: Config
) -> list[DataIssue]:
    """`nan_bars` episodes: the sessions on which the missing fraction of the trailing
    window (the last `history_sessions` of the ticker's own sessions since its first
    bar, the session itself included) is above the limit."""
    window = config.data.history_sessions
    frac = config.data.max_missing_fraction
    pos = np.flatnonzero(listed)
    if len(pos) == 0:
        return []
    cm = np.cumsum(missing[pos].astype(int))
    lagged = np.concatenate([np.zeros(window, dtype=int), cm])[: len(cm)]
    n_miss = cm - lagged
    n_sess = np.minimum(np.arange(1, len(pos) + 1), window)
    bad = (n_sess >= MIN_SESSIONS_FOR_FRACTION) & (n_miss > frac * n_sess)
    out: list[DataIssue] = []
    edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(int), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        # In force from the first bad session to the day before the next clean one.
        until = None if b >= len(pos) else days[pos[b] - 1]
        out.append(DataIssue(
            ticker, "nan_bars",
            f"{int(n_miss[a])} of the last {int(n_sess[a])} {code} sessions up to {days[pos[a]]} "
            f"have no real bar ({n_miss[a] / n_sess[a]:.1%}, more than the {frac:.1%} allowed)",
            since=days[pos[a]], until=until,
        ))
    return out


def _jump_issues(
    ticker: str, jumps: np.ndarray, has: np.ndarray, move: np.ndarray, prev: np.ndarray,
    close: np.ndarray, days: list[dt.date], config: Config,
) -> list[DataIssue]:
    """A warning on the day of each big move, and another when it reverses next session."""
    out: list[DataIssue] = []
    bars = np.flatnonzero(has)
    for i in np.flatnonzero(jumps):
        until = days[min(i + JUMP_NOTICE_SESSIONS, len(days) - 1)]
        out.append(DataIssue(
            ticker, "jump",
            f"the close moves {move[i]:+.1%} on {days[i]} ({prev[i]:.4g} -> {close[i]:.4g}) with no "
            "split recorded: flagged, still traded",
            since=days[i], until=until,
        ))
        nxt = bars[np.searchsorted(bars, i, side="right")] if bars[-1] > i else None
        if nxt is not None and abs(close[nxt] / prev[i] - 1.0) < config.data.jump_threshold / 4:
            out.append(DataIssue(
                ticker, "jump",
                f"the move of {days[i]} reversed on {days[nxt]} (back to {close[nxt]:.4g}): "
                f"the bar of {days[i]} looks wrong",
                since=days[nxt], until=days[min(nxt + JUMP_NOTICE_SESSIONS, len(days) - 1)],
            ))
    return out


def _not_traded_detail(when: pd.Timestamp, code: str, repeated: bool, filled: bool) -> str:
    if repeated:
        return (f"the bar of {_d(when)} repeats the previous one exactly (a stale quote): carried "
                "forward from the previous close, not traded")
    if filled:
        return f"no bar on {_d(when)}, a {code} session: carried forward from the previous close, not traded"
    return f"zero volume on {_d(when)}: the bar did not trade"


def _require_data(market: MarketData) -> None:
    close = market.close
    if close.shape[0] == 0 or close.shape[1] == 0 or not close.notna().to_numpy().any():
        raise DataUnavailable(
            "no market data: the source returned an empty frame (no rows, or no price "
            "at all); check the network connection and the ticker symbols"
        )


def _check_fx(
    series: pd.Series,
    index: pd.DatetimeIndex,
    required: np.ndarray,
    config: Config,
    first: pd.Timestamp,
    asof: pd.Timestamp,
) -> tuple[np.ndarray, DataIssue | None]:
    """The EUR/USD rate on every index date, or DataUnavailable if it is unusable."""
    name = config.fx.eurusd
    raw = series.set_axis(_ns_index(series.index), axis=0)
    raw = raw[~raw.index.duplicated(keep="first")]
    fx = raw.reindex(index).to_numpy(dtype=float, na_value=np.nan, copy=True)
    fx[~np.isfinite(fx) | (fx <= 0)] = np.nan
    valid = ~np.isnan(fx)
    if not valid.any():
        raise DataUnavailable(
            f"{name}: no EUR/USD rate between {_d(first)} and {_d(asof)} (the series is "
            "empty); it is needed to value every USD position"
        )
    if not valid[-1]:
        last = index[np.flatnonzero(valid)[-1]]
        raise DataUnavailable(
            f"{name}: no EUR/USD rate for {_d(index[-1])} (the last quote is from "
            f"{_d(last)}); it is needed for every valuation"
        )
    quotes = fx[valid]
    moves = quotes[1:] / quotes[:-1] - 1.0
    big = np.flatnonzero(np.abs(moves) > FX_JUMP_THRESHOLD)
    if big.size:
        i = big[0]
        when = index[np.flatnonzero(valid)[i + 1]]
        raise DataUnavailable(
            f"{name}: the EUR/USD rate moves {moves[i]:+.1%} on {_d(when)} "
            f"({quotes[i]:.4f} -> {quotes[i + 1]:.4f}): suspect data"
        )
    n_req = int(required.sum())
    n_req_missing = int((required & ~valid).sum())
    frac = config.data.max_missing_fraction
    if n_req and n_req_missing > frac * n_req:
        raise DataUnavailable(
            f"{name}: {n_req_missing} of {n_req} sessions with USD trading have no EUR/USD "
            f"rate (more than the {frac:.1%} allowed)"
        )
    gaps = ~valid
    if not gaps.any():
        return fx, None
    leading = int(np.argmax(valid))
    filled = pd.Series(fx).ffill().bfill().to_numpy(dtype=float)
    n_fwd = int(gaps[leading:].sum())
    parts = []
    if n_fwd:
        first_gap = index[leading + int(np.argmax(gaps[leading:]))]
        parts.append(
            f"{n_fwd} date(s) without a EUR/USD quote carried forward from the previous "
            f"rate (first on {_d(first_gap)})"
        )
    if leading:
        parts.append(
            f"the first {leading} date(s) before the first quote ({_d(index[leading])}) "
            "use that first quote"
        )
    gap_rows = np.flatnonzero(gaps)
    return filled, DataIssue(
        name, "filled", "; ".join(parts), since=index[gap_rows[0]].date(), until=index[gap_rows[-1]].date()
    )


def _move_off_session_events(
    dividends: np.ndarray, splits: np.ndarray, own: np.ndarray
) -> dict[int, int]:
    """Move dividends/splits dated on a closed day to the ticker's next session (in place).

    Returns column -> number of events moved. An event after the last session in the
    window is dropped here (the next panel, which has that session, will carry it).
    """
    off_event = ~own & ((dividends != 0.0) | (splits != 1.0))
    moved: dict[int, int] = {}
    for j in np.flatnonzero(off_event.any(axis=0)):
        sess_rows = np.flatnonzero(own[:, j])
        for i in np.flatnonzero(off_event[:, j]):
            pos = np.searchsorted(sess_rows, i)
            if pos < len(sess_rows):
                target = sess_rows[pos]
                dividends[target, j] += dividends[i, j]
                splits[target, j] *= splits[i, j]
            dividends[i, j] = 0.0
            splits[i, j] = 1.0
        moved[int(j)] = int(off_event[:, j].sum())
    return moved


def _repairs_detail(
    *,
    code: str,
    index: pd.DatetimeIndex,
    n_leading: int,
    off_rows: np.ndarray,
    n_off: int,
    n_partial: int,
    n_invalid: int,
    moved: int,
) -> str:
    """The repairs that change no trading, in one sentence."""
    parts = []
    if n_leading:
        parts.append(f"the first {n_leading} {code} session(s) have no data and stay empty")
    if n_off:
        parts.append(
            f"{n_off} row(s) on days {code} was closed (first on {_d(index[int(np.argmax(off_rows))])}) "
            "set to NaN"
        )
    if moved:
        parts.append(f"{moved} dividend/split(s) dated on a closed day moved to the next session")
    if n_partial:
        parts.append(f"{n_partial} bar(s) with a close but no open/high/low completed from the close")
    if n_invalid:
        parts.append(f"{n_invalid} non-positive or non-finite price(s) discarded")
    return "; ".join(parts)


def _calendar_of(config: Config, ticker: str) -> str | None:
    inst = config.instruments.get(ticker)
    return inst.calendar if inst is not None else None


def _currency_of(config: Config, ticker: str) -> str | None:
    inst = config.instruments.get(ticker)
    return inst.currency if inst is not None else None


def _ns_index(index: pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    return idx.normalize().as_unit("ns")


def _d(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")
