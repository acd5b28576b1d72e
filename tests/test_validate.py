"""validate(): what the engine may trust in a market-data panel, and what it is told."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.data.calendars import sessions, union_sessions
from engine.data.market import MarketData
from engine.data.validate import fatal_tickers, validate
from engine.errors import DataUnavailable

CONFIG = load_config()
FX = CONFIG.fx.eurusd
# Covers Thanksgiving (NYSE shut, Paris open) and Christmas / Boxing Day (Paris shut
# on the 25th and 26th, New York only on the 25th): 41 sessions each.
START, END = pd.Timestamp("2024-11-01"), pd.Timestamp("2024-12-31")


def make_market(config=CONFIG, start=START, end=END, seed: int = 1) -> MarketData:
    """A clean panel: random-walk prices on each ticker's own sessions, NaN elsewhere."""
    tickers = list(config.instruments)
    codes = {t: config.instruments[t].calendar for t in tickers}
    index = union_sessions(set(codes.values()), start, end)
    rng = np.random.default_rng(seed)
    close = pd.DataFrame(
        100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(index), len(tickers))), axis=0)),
        index=index,
        columns=tickers,
    )
    own = pd.DataFrame({t: index.isin(sessions(codes[t], start, end)) for t in tickers}, index=index)
    close = close.where(own)
    return MarketData(
        open=close * 0.999,
        high=close * 1.005,
        low=close * 0.995,
        close=close,
        volume=(close * 0 + 1e6),
        dividends=pd.DataFrame(0.0, index=index, columns=tickers),
        splits=pd.DataFrame(1.0, index=index, columns=tickers),
        fx_eurusd=pd.Series(1.08 + 0.001 * np.sin(np.arange(len(index))), index=index, name=FX),
        source="test",
        synthetic=True,
    )


def set_cells(market: MarketData, ticker: str, dates, **values) -> MarketData:
    """A copy of `market` with some cells of some fields replaced (all fields by default)."""
    fields = values or {f: np.nan for f in ("open", "high", "low", "close", "volume")}
    kw = {}
    for name, value in fields.items():
        frame = getattr(market, name).copy()
        frame.loc[pd.DatetimeIndex(dates), ticker] = value
        kw[name] = frame
    return replace(market, **kw)


def kinds(market: MarketData, ticker: str) -> list[str]:
    return [i.kind for i in market.issues if i.ticker == ticker]


def paris_sessions(n_last: int) -> pd.DatetimeIndex:
    return sessions("XPAR", START, END)[-n_last:]


# -- a clean panel ------------------------------------------------------------------------


def test_clean_panel_passes_unchanged():
    market = make_market()
    out = validate(market, CONFIG, END)
    assert out.issues == ()
    assert out.tickers == list(CONFIG.instruments)
    assert out.index.equals(union_sessions({"XNYS", "XPAR"}, START, END))
    assert str(out.index.dtype) == "datetime64[ns]"
    pd.testing.assert_frame_equal(out.close, market.close, check_freq=False)
    pd.testing.assert_series_equal(out.fx_eurusd, market.fx_eurusd, check_freq=False)
    # Closed days stay NaN: Paris shares have no Thanksgiving gap, New York ones do.
    assert np.isnan(out.close.at[pd.Timestamp("2024-11-28"), "SPY"])
    assert not np.isnan(out.close.at[pd.Timestamp("2024-11-28"), "MC.PA"])


def test_validating_twice_changes_nothing_more():
    market = set_cells(make_market(), "TTE.PA", ["2024-11-12"])
    market = set_cells(market, "KER.PA", market.index)
    once = validate(market, CONFIG, END)
    twice = validate(once, CONFIG, END)
    assert twice.issues == once.issues  # no new warning for data already repaired
    pd.testing.assert_frame_equal(twice.close, once.close)


def test_nothing_after_asof_is_kept():
    asof = pd.Timestamp("2024-12-20")
    out = validate(make_market(), CONFIG, asof)
    assert out.index[-1] == asof
    assert out.issues == ()


# -- missing data ---------------------------------------------------------------------------


def test_a_ticker_without_any_price_is_removed_as_missing():
    market = set_cells(make_market(), "KER.PA", make_market().index)
    out = validate(market, CONFIG, END)
    assert "KER.PA" not in out.tickers
    assert "KER.PA" not in out.dividends.columns and "KER.PA" not in out.splits.columns
    assert kinds(out, "KER.PA") == ["missing"]
    assert "no data at all" in fatal_tickers(out)["KER.PA"].detail


def test_a_few_missing_bars_are_carried_forward_with_a_warning():
    holes = pd.DatetimeIndex(["2024-11-12", "2024-12-05"])
    market = set_cells(make_market(), "TTE.PA", holes)
    out = validate(market, CONFIG, END)
    assert "TTE.PA" in out.tickers
    issues = [i for i in out.issues if i.ticker == "TTE.PA"]
    assert [(i.kind, i.since, i.fatal_for_ticker) for i in issues] == [
        ("filled", d.date(), False) for d in holes
    ]
    assert "2024-11-12" in issues[0].detail and "not traded" in issues[0].detail
    for d in holes:
        prev = market.close["TTE.PA"].loc[: d - pd.Timedelta(days=1)].dropna().iloc[-1]
        assert out.close.at[d, "TTE.PA"] == prev
        assert out.open.at[d, "TTE.PA"] == out.high.at[d, "TTE.PA"] == out.low.at[d, "TTE.PA"] == prev
        assert out.volume.at[d, "TTE.PA"] == 0.0
        assert not out.has_bar("TTE.PA", d)  # a carried-forward bar did not trade
        # A brief on the day of the hole is told; a brief the day before is not.
        assert any(i.ticker == "TTE.PA" for i in out.issues_on(d.date()))
        assert not any(i.ticker == "TTE.PA" for i in out.issues_on((d - pd.Timedelta(days=1)).date()))
    assert fatal_tickers(out) == {}


def test_too_many_missing_bars_block_the_ticker_from_that_session_only():
    # 5% allowed, judged once a ticker has 40 sessions: 3 holes (7.5% of 40) block SAN.PA
    # from the 40th Paris session on, and not before: the sessions before it did not know.
    paris = sessions("XPAR", START, END)
    holes = paris[5:8]
    out = validate(set_cells(make_market(), "SAN.PA", holes), CONFIG, END)
    assert "SAN.PA" in out.tickers
    (issue,) = [i for i in out.issues if i.ticker == "SAN.PA" and i.kind == "nan_bars"]
    assert issue.since == paris[39].date() and issue.until is None
    assert "3 of the last 40 XPAR sessions" in issue.detail
    assert "SAN.PA" in fatal_tickers(out)  # still in force at the end of the panel
    assert "SAN.PA" not in fatal_tickers(out, paris[38])
    # Two holes (4.9% of 41) are fine.
    assert fatal_tickers(validate(set_cells(make_market(), "SAN.PA", holes[:2]), CONFIG, END)) == {}


def test_a_missing_bar_problem_in_december_does_not_block_the_ticker_in_november():
    long_start = pd.Timestamp("2023-01-02")
    market = make_market(start=long_start)
    holes = sessions("XPAR", "2024-12-02", "2024-12-31")[:17]  # 17 of the last 320: 5.3%
    out = validate(set_cells(market, "SAN.PA", holes), CONFIG, END)
    (issue,) = [i for i in out.issues if i.kind == "nan_bars"]
    assert issue.since >= holes[0].date()
    for d in sessions("XPAR", long_start, "2024-11-29"):
        assert "SAN.PA" not in out.blocked_on(d.date())
    assert not [i for i in out.issues_on(dt.date(2024, 11, 29)) if i.ticker == "SAN.PA"]


def test_missing_bars_are_counted_on_the_tickers_own_sessions_only():
    # SPY is NaN on Paris-only sessions (Thanksgiving): that is not a missing bar.
    market = make_market()
    assert market.close["SPY"].isna().sum() > 0
    out = validate(market, CONFIG, END)
    assert kinds(out, "SPY") == []


def test_a_missing_last_bar_is_stale_not_filled():
    # The last two Paris sessions have no bar for Airbus, while other shares trade.
    out = validate(set_cells(make_market(), "AIR.PA", paris_sessions(2)), CONFIG, END)
    assert "stale" in kinds(out, "AIR.PA")
    detail = fatal_tickers(out)["AIR.PA"].detail
    assert "2024-12-31" in detail and "2024-12-27" in detail  # the session, and the last bar
    # Stale as of the last session only: the day before, it was one carried-forward bar.
    assert "AIR.PA" not in fatal_tickers(out, pd.Timestamp("2024-12-30"))


def test_a_bar_repeating_the_previous_one_exactly_is_stale():
    # Yahoo's stale bar: the last session's OHLCV is a copy of the previous session's.
    market = make_market()
    last, before = paris_sessions(2)[1], paris_sessions(2)[0]
    for name in ("open", "high", "low", "close", "volume"):
        getattr(market, name).loc[last, "BNP.PA"] = getattr(market, name).loc[before, "BNP.PA"]
    out = validate(market, CONFIG, END)
    assert "repeat" in fatal_tickers(out)["BNP.PA"].detail
    assert not out.has_bar("BNP.PA", last)


def test_a_repeated_close_of_a_close_only_series_is_a_real_bar():
    # open = high = low = close and no volume: a rounded price can repeat honestly.
    market = make_market()
    close = market.close.round(0)
    out = validate(replace(market, open=close, high=close, low=close, close=close,
                           volume=close * np.nan), CONFIG, END)
    assert fatal_tickers(out) == {}


def test_a_date_twice_with_different_values_is_a_fatal_duplicate():
    market = make_market()
    d = pd.Timestamp("2024-12-10")
    def twice(frame: pd.DataFrame, bump: float) -> pd.DataFrame:
        row = frame.loc[[d]].copy()
        row["OR.PA"] *= bump
        return pd.concat([frame, row]).sort_index(kind="stable")
    dup = replace(market, **{n: twice(getattr(market, n), 1.1) for n in ("open", "high", "low", "close")})
    out = validate(dup, CONFIG, END)
    issue = fatal_tickers(out)["OR.PA"]
    assert issue.kind == "duplicate" and "2024-12-10" in issue.detail and issue.since == d.date()
    # The same row twice with the same values is harmless.
    same = replace(market, close=pd.concat([market.close, market.close.loc[[d]]]).sort_index(kind="stable"))
    assert "OR.PA" not in fatal_tickers(validate(same, CONFIG, END))


def test_stale_is_judged_on_the_tickers_own_last_session():
    # asof = Boxing Day: New York trades, Paris is shut. Paris shares' last session
    # is the 24th, so they are not stale; New York ones must have the 26th.
    asof = pd.Timestamp("2024-12-26")
    market = set_cells(make_market(), "QQQ", [asof])
    out = validate(market, CONFIG, asof)
    assert kinds(out, "QQQ") == ["stale", "filled"]
    assert "MC.PA" in out.tickers and kinds(out, "MC.PA") == []


def test_a_ticker_whose_data_start_late_keeps_its_leading_gap_empty():
    late = sessions("XPAR", START, END)[:2]
    out = validate(set_cells(make_market(), "DG.PA", late), CONFIG, END)
    assert "DG.PA" in out.tickers
    assert out.close.loc[late, "DG.PA"].isna().all()  # nothing to carry forward from
    (issue,) = [i for i in out.issues if i.ticker == "DG.PA"]
    assert issue.kind == "filled" and "first 2 XPAR session(s)" in issue.detail


def test_impossible_prices_count_as_missing():
    d = sessions("XPAR", START, END)[10]
    out = validate(set_cells(make_market(), "CS.PA", [d], close=-1.0), CONFIG, END)
    assert out.close.at[d, "CS.PA"] > 0
    assert any("non-positive" in i.detail for i in out.issues if i.ticker == "CS.PA")
    assert not out.has_bar("CS.PA", d)


# -- jumps ---------------------------------------------------------------------------------


def _with_jump(market: MarketData, ticker: str, d: pd.Timestamp, factor: float) -> MarketData:
    kw = {}
    for name in ("open", "high", "low", "close"):
        frame = getattr(market, name).copy()
        frame.loc[d:, ticker] = frame.loc[d:, ticker] * factor
        kw[name] = frame
    return replace(market, **kw)


def test_a_60_percent_jump_without_split_is_flagged_not_removed():
    d = pd.Timestamp("2024-12-10")
    out = validate(_with_jump(make_market(), "RMS.PA", d, 1.6), CONFIG, END)
    assert "RMS.PA" in out.tickers and fatal_tickers(out) == {}
    (issue,) = [i for i in out.issues if i.ticker == "RMS.PA"]
    assert issue.kind == "jump" and not issue.fatal_for_ticker and issue.since == d.date()
    assert "2024-12-10" in issue.detail and "no split" in issue.detail
    move = float(re.search(r"moves ([+-][0-9.]+)%", issue.detail).group(1))
    assert move == pytest.approx(60.0, abs=3.0)  # x1.6 on top of a ~1% daily move
    assert not out.issues_on(dt.date(2024, 12, 9))  # unknown the day before


def test_a_jump_that_reverses_next_session_is_flagged_as_a_bad_bar_the_next_day():
    d, nxt = pd.Timestamp("2024-12-10"), pd.Timestamp("2024-12-11")
    market = _with_jump(make_market(), "RMS.PA", d, 1.6)
    market = _with_jump(market, "RMS.PA", nxt, 1 / 1.6)
    out = validate(market, CONFIG, END)
    notes = [i for i in out.issues if i.ticker == "RMS.PA"]
    assert [(i.kind, i.since) for i in notes] == [("jump", d.date()), ("jump", nxt.date())]
    assert "looks wrong" in notes[1].detail
    assert fatal_tickers(out) == {}


def test_the_same_jump_on_a_split_date_is_accepted():
    d = pd.Timestamp("2024-12-10")
    market = _with_jump(make_market(), "RMS.PA", d, 0.5)
    splits = market.splits.copy()
    splits.loc[d, "RMS.PA"] = 2.0
    out = validate(replace(market, splits=splits), CONFIG, END)
    assert "RMS.PA" in out.tickers and kinds(out, "RMS.PA") == []
    assert out.splits.at[d, "RMS.PA"] == 2.0


def test_a_move_just_under_the_threshold_is_kept():
    out = validate(_with_jump(make_market(), "SU.PA", pd.Timestamp("2024-12-10"), 1.35), CONFIG, END)
    assert "SU.PA" in out.tickers


# -- rows on closed days -----------------------------------------------------------------


def test_holiday_rows_of_a_closed_exchange_are_set_to_nan():
    market = make_market()
    boxing_day = pd.Timestamp("2024-12-26")  # NYSE open, Euronext Paris shut
    assert boxing_day in market.index
    market = set_cells(market, "BNP.PA", [boxing_day], close=60.0, open=60.0, high=60.0, low=60.0, volume=5.0)
    out = validate(market, CONFIG, END)
    assert "BNP.PA" in out.tickers
    assert out.close.loc[boxing_day, ["BNP.PA", "MC.PA"]].isna().all()
    assert not out.has_bar("BNP.PA", boxing_day)
    (issue,) = [i for i in out.issues if i.ticker == "BNP.PA"]
    assert issue.kind == "filled" and "closed" in issue.detail and "2024-12-26" in issue.detail


def test_a_row_on_a_day_no_exchange_trades_leaves_the_index():
    christmas = pd.Timestamp("2024-12-25")
    market = make_market()
    index = market.index.union([christmas])
    market = replace(
        market,
        **{n: getattr(market, n).reindex(index) for n in ("open", "high", "low", "close", "volume")},
        dividends=market.dividends.reindex(index, fill_value=0.0),
        splits=market.splits.reindex(index, fill_value=1.0),
        fx_eurusd=market.fx_eurusd.reindex(index).ffill(),
    )
    market = set_cells(market, "SPY", [christmas], close=600.0, open=600.0, high=600.0, low=600.0, volume=1.0)
    out = validate(market, CONFIG, END)
    assert christmas not in out.index
    assert out.index.equals(union_sessions({"XNYS", "XPAR"}, START, END))
    assert "SPY" in out.tickers and kinds(out, "SPY") == ["filled"]


def test_a_dividend_dated_on_a_closed_day_moves_to_the_next_session():
    boxing_day, next_session = pd.Timestamp("2024-12-26"), pd.Timestamp("2024-12-27")
    market = set_cells(make_market(), "OR.PA", [boxing_day], dividends=1.5)
    out = validate(market, CONFIG, END)
    assert out.dividends.at[next_session, "OR.PA"] == 1.5
    assert out.dividends["OR.PA"].sum() == 1.5


# -- empty panels and FX ---------------------------------------------------------------------


def test_an_empty_panel_stops_the_run():
    market = make_market()
    empty = replace(market, close=market.close.iloc[:0])
    with pytest.raises(DataUnavailable, match="no market data: the source returned an empty frame"):
        validate(empty, CONFIG, END)
    all_nan = replace(market, close=market.close * np.nan)
    with pytest.raises(DataUnavailable, match="no market data"):
        validate(all_nan, CONFIG, END)


def _with_fx(market: MarketData, fx: pd.Series) -> MarketData:
    return replace(market, fx_eurusd=fx)


def test_an_empty_fx_series_stops_the_run():
    market = make_market()
    with pytest.raises(DataUnavailable, match="EURUSD=X.*empty"):
        validate(_with_fx(market, market.fx_eurusd * np.nan), CONFIG, END)


def test_an_fx_rate_missing_on_asof_stops_the_run():
    market = make_market()
    fx = market.fx_eurusd.copy()
    fx.iloc[-1] = np.nan
    with pytest.raises(DataUnavailable, match="EURUSD=X: no EUR/USD rate for 2024-12-31"):
        validate(_with_fx(market, fx), CONFIG, END)


def test_an_fx_jump_stops_the_run():
    market = make_market()
    fx = market.fx_eurusd.copy()
    fx.loc["2024-12-10":] *= 1.2
    with pytest.raises(DataUnavailable, match=r"EURUSD=X: the EUR/USD rate moves \+20"):
        validate(_with_fx(market, fx), CONFIG, END)


def test_a_small_fx_gap_is_carried_forward_with_a_note():
    market = make_market()
    fx = market.fx_eurusd.copy()
    gap = pd.Timestamp("2024-12-05")
    fx.loc[gap] = np.nan
    out = validate(_with_fx(market, fx), CONFIG, END)
    assert out.fx_eurusd.at[gap] == fx.loc[: gap - pd.Timedelta(days=1)].iloc[-1]
    assert out.fx_eurusd.notna().all()
    (issue,) = [i for i in out.issues if i.ticker == FX]
    assert issue.kind == "filled" and "2024-12-05" in issue.detail
    assert fatal_tickers(out) == {}


def test_many_fx_gaps_stop_the_run():
    market = make_market()
    fx = market.fx_eurusd.copy()
    fx.iloc[10:20] = np.nan
    with pytest.raises(DataUnavailable, match=r"EURUSD=X: \d+ of 41 sessions with USD trading"):
        validate(_with_fx(market, fx), CONFIG, END)


def test_non_positive_fx_is_not_a_rate():
    market = make_market()
    fx = market.fx_eurusd.copy()
    fx.iloc[-1] = 0.0
    with pytest.raises(DataUnavailable, match="EURUSD=X"):
        validate(_with_fx(market, fx), CONFIG, END)


# -- properties and speed ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holes=st.lists(st.tuples(st.integers(0, 21), st.integers(0, 41)), max_size=40))
def test_every_kept_ticker_has_a_bar_on_each_of_its_sessions(holes):
    market = make_market()
    close = market.close.copy()
    for j, i in holes:
        close.iat[i, j] = np.nan
    out = validate(replace(market, close=close), CONFIG, END)
    fatal = fatal_tickers(out)
    assert set(out.tickers) == set(CONFIG.instruments)  # nothing is dropped for holes
    for t in out.tickers:
        own = sessions(CONFIG.instruments[t].calendar, START, END)
        first = out.close[t].first_valid_index()
        assert out.close.loc[own[own >= first], t].notna().all()
        assert out.open.loc[own[own >= first], t].notna().all()
        others = out.index.difference(own)
        assert out.close.loc[others, t].isna().all()
        # A hole is a bar that did not trade; a ticker with too many is blocked.
        assert not out.traded.loc[out.close.index.isin(close.index[close[t].isna()]) & out.index.isin(own), t].any()
        if t in fatal:
            assert fatal[t].kind in ("nan_bars", "stale")
