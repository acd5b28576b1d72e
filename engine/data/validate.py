"""Checks a market-data panel against the exchange calendars before anything uses it.

:func:`validate` looks at every ticker on the sessions of its own exchange, from the
panel's first date up to ``asof``, and returns a panel that can be trusted:

* a ticker with a fatal problem is removed from every frame, with a :class:`DataIssue`
  saying why (``missing``, ``stale``, ``nan_bars`` or ``jump``);
* a few missing bars on its own sessions are carried forward from the previous close
  (open/high/low = that close, volume 0), with a ``filled`` warning;
* values on days its exchange was closed (Yahoo sometimes returns holiday rows) are
  set to NaN, and a dividend or split dated on such a day moves to the next session;
* the EUR/USD series, needed for every valuation, is checked and gaps are filled; if
  it is unusable the run stops with :class:`DataUnavailable`.

The index of the result is exactly the union of the sessions of the panel's exchanges
from the panel's first date to ``asof`` (tz-naive midnight, datetime64[ns]); nothing
after ``asof`` is kept, since it has not been checked. Whether a removed ticker was
needed (held, ordered, a benchmark) is for the caller to decide, with
:func:`fatal_tickers`.
"""

from __future__ import annotations

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

_PRICE_FIELDS = ("open", "high", "low", "close")


def fatal_tickers(market: MarketData) -> dict[str, DataIssue]:
    """Ticker -> its first fatal issue, for the tickers that validation removed."""
    out: dict[str, DataIssue] = {}
    for issue in market.issues:
        if issue.fatal_for_ticker and issue.ticker not in out:
            out[issue.ticker] = issue
    return out


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
    index = old_index[old_index <= asof]
    for s in code_sessions.values():
        index = index.union(s)
    n, k = len(index), len(tickers)

    own = np.ones((n, k), dtype=bool)  # is the row a session of the ticker's exchange?
    for code, s in code_sessions.items():
        mask = index.isin(s)
        for j, c in enumerate(codes):
            if c == code:
                own[:, j] = mask

    def grid(frame: pd.DataFrame, fill: float | None = None) -> np.ndarray:
        idx = _ns_index(frame.index)
        f = frame.set_axis(idx, axis=0)[~idx.duplicated(keep="first")]
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

    close = px["close"]
    has = ~np.isnan(close)  # a bar is a close on one of the ticker's own sessions
    n_sessions = own.sum(axis=0)
    n_bars = has.sum(axis=0)
    n_missing = n_sessions - n_bars
    row = np.arange(n)[:, None]
    last_own = np.where(own, row, -1).max(axis=0)
    first_bar = np.where(has, row, n).min(axis=0)
    last_bar = np.where(has, row, -1).max(axis=0)

    # The previous available close at each row (strictly before it).
    prev = pd.DataFrame(close).ffill().shift(1).to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        move = close / prev - 1.0
    jumps = has & ~np.isnan(prev) & (np.abs(move) > config.data.jump_threshold) & (splits == 1.0)

    frac = config.data.max_missing_fraction
    issues: list[DataIssue] = []
    fatal: list[str] = []
    for j, t in enumerate(tickers):
        code = codes[j] or "its exchange"
        ns = int(n_sessions[j])
        issue: DataIssue | None = None
        if ns == 0:
            pass  # its exchange never opened in the window: nothing to check
        elif n_bars[j] == 0:
            issue = DataIssue(
                t, "missing",
                f"no data at all: no price between {_d(first)} and {_d(asof)} "
                f"({ns} {code} sessions)",
            )
        elif not has[last_own[j], j]:
            issue = DataIssue(
                t, "stale",
                f"no bar for {_d(index[last_own[j]])}, the last {code} session up to "
                f"{_d(asof)}; the last bar is from {_d(index[last_bar[j]])}",
            )
        elif n_missing[j] > frac * ns:
            issue = DataIssue(
                t, "nan_bars",
                f"{int(n_missing[j])} of {ns} {code} sessions between {_d(first)} and "
                f"{_d(asof)} have no close ({n_missing[j] / ns:.1%}, more than the "
                f"{frac:.1%} allowed)",
            )
        elif jumps[:, j].any():
            rows = np.flatnonzero(jumps[:, j])
            i = rows[0]
            more = f"; {len(rows) - 1} more such move(s)" if len(rows) > 1 else ""
            issue = DataIssue(
                t, "jump",
                f"the close moves {move[i, j]:+.1%} on {_d(index[i])} ({prev[i, j]:.4g} -> "
                f"{close[i, j]:.4g}) with no split recorded that day{more}",
            )
        if issue is not None:
            issues.append(issue)
            fatal.append(t)

    # 3. Carry the previous close over the few missing bars of the survivors.
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

    fatal_set = set(fatal)
    for j, t in enumerate(tickers):
        if t in fatal_set:
            continue
        detail = _filled_detail(
            code=codes[j] or "its exchange",
            index=index,
            n_fill=int(need_fill[:, j].sum()),
            first_fill=int(np.argmax(need_fill[:, j])),
            n_leading=int(own[: first_bar[j], j].sum()) if n_bars[j] else 0,
            n_off=int(n_off[j]),
            first_off=int(np.argmax(off_rows[:, j])),
            n_partial=int(partial[:, j].sum()),
            n_invalid=int(n_invalid[j]),
            moved=moved_events.get(j, 0),
        )
        if detail:
            issues.append(DataIssue(t, "filled", detail))

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
    )
    return cleaned.drop(fatal).with_issues(issues)


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
    return filled, DataIssue(name, "filled", "; ".join(parts))


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


def _filled_detail(
    *,
    code: str,
    index: pd.DatetimeIndex,
    n_fill: int,
    first_fill: int,
    n_leading: int,
    n_off: int,
    first_off: int,
    n_partial: int,
    n_invalid: int,
    moved: int,
) -> str:
    parts = []
    if n_fill:
        parts.append(
            f"{n_fill} missing bar(s) on {code} sessions carried forward from the previous "
            f"close (first on {_d(index[first_fill])})"
        )
    if n_leading:
        parts.append(f"the first {n_leading} {code} session(s) have no data and stay empty")
    if n_off:
        parts.append(
            f"{n_off} row(s) on days {code} was closed (first on {_d(index[first_off])}) "
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
