"""validate(): what the engine may trust in a market-data panel, and what it is told."""

from __future__ import annotations

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
    (issue,) = [i for i in out.issues if i.ticker == "TTE.PA"]
    assert issue.kind == "filled" and not issue.fatal_for_ticker
    assert "2 missing bar(s)" in issue.detail and "2024-11-12" in issue.detail
    for d in holes:
        prev = market.close["TTE.PA"].loc[: d - pd.Timedelta(days=1)].dropna().iloc[-1]
        assert out.close.at[d, "TTE.PA"] == prev
        assert out.open.at[d, "TTE.PA"] == out.high.at[d, "TTE.PA"] == out.low.at[d, "TTE.PA"] == prev
        assert out.volume.at[d, "TTE.PA"] == 0.0
        assert out.has_bar("TTE.PA", d)
    assert fatal_tickers(out) == {}


def test_too_many_missing_bars_remove_the_ticker():
    # 41 Paris sessions, 5% allowed: 2 holes (4.9%) are fine, 3 (7.3%) are not.
    holes = sessions("XPAR", START, END)[5:8]
    out = validate(set_cells(make_market(), "SAN.PA", holes), CONFIG, END)
    assert "SAN.PA" not in out.tickers
    assert kinds(out, "SAN.PA") == ["nan_bars"]
    assert "3 of 41 XPAR sessions" in fatal_tickers(out)["SAN.PA"].detail


def test_missing_bars_are_counted_on_the_tickers_own_sessions_only():
    # SPY is NaN on Paris-only sessions (Thanksgiving): that is not a missing bar.
    market = make_market()
    assert market.close["SPY"].isna().sum() > 0
    out = validate(market, CONFIG, END)
    assert kinds(out, "SPY") == []


def test_a_missing_last_bar_is_stale_not_filled():
    # The last two Paris sessions have no bar for Airbus, while other shares trade.
    out = validate(set_cells(make_market(), "AIR.PA", paris_sessions(2)), CONFIG, END)
    assert "AIR.PA" not in out.tickers
    assert kinds(out, "AIR.PA") == ["stale"]
    detail = fatal_tickers(out)["AIR.PA"].detail
    assert "2024-12-31" in detail and "2024-12-27" in detail  # the session, and the last bar


def test_stale_is_judged_on_the_tickers_own_last_session():
    # asof = Boxing Day: New York trades, Paris is shut. Paris shares' last session
    # is the 24th, so they are not stale; New York ones must have the 26th.
    asof = pd.Timestamp("2024-12-26")
    market = set_cells(make_market(), "QQQ", [asof])
    out = validate(market, CONFIG, asof)
    assert kinds(out, "QQQ") == ["stale"]
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
    assert "non-positive" in [i for i in out.issues if i.ticker == "CS.PA"][0].detail


# -- jumps ---------------------------------------------------------------------------------


def _with_jump(market: MarketData, ticker: str, d: pd.Timestamp, factor: float) -> MarketData:
    kw = {}
    for name in ("open", "high", "low", "close"):
        frame = getattr(market, name).copy()
        frame.loc[d:, ticker] = frame.loc[d:, ticker] * factor
        kw[name] = frame
    return replace(market, **kw)


def test_a_60_percent_jump_without_split_removes_the_ticker():
    d = pd.Timestamp("2024-12-10")
    out = validate(_with_jump(make_market(), "RMS.PA", d, 1.6), CONFIG, END)
    assert "RMS.PA" not in out.tickers
    assert kinds(out, "RMS.PA") == ["jump"]
    detail = fatal_tickers(out)["RMS.PA"].detail
    assert "2024-12-10" in detail and "no split" in detail
    move = float(re.search(r"moves ([+-][0-9.]+)%", detail).group(1))
    assert move == pytest.approx(60.0, abs=3.0)  # x1.6 on top of a ~1% daily move


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
    assert set(out.tickers) | set(fatal) == set(CONFIG.instruments)
    assert not set(out.tickers) & set(fatal)
    for t in out.tickers:
        own = sessions(CONFIG.instruments[t].calendar, START, END)
        first = out.close[t].first_valid_index()
        assert out.close.loc[own[own >= first], t].notna().all()
        assert out.open.loc[own[own >= first], t].notna().all()
        others = out.index.difference(own)
        assert out.close.loc[others, t].isna().all()


