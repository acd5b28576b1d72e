"""YahooSource: one batched yfinance call, retries, cache, and a validated panel. Offline."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from tests.yf_frames import FakeDownload, combine, history_frame, universe_histories

from engine.config import load_config
from engine.data.cache import ParquetCache, request_key
from engine.data.calendars import previous_sessions, union_sessions
from engine.data.validate import fatal_tickers
from engine.data.yahoo import DOWNLOAD_OPTIONS, YahooSource, history_start
from engine.errors import DataUnavailable

CONFIG = load_config()
FX = CONFIG.fx.eurusd
INSTRUMENTS = list(CONFIG.instruments)  # 21 assets + the ^FCHI benchmark
START, END = pd.Timestamp("2024-11-01"), pd.Timestamp("2024-12-31")
LONG_AGO = pd.Timestamp("2030-01-01", tz="UTC")  # "now" for the cache: the window is long closed


@pytest.fixture(scope="module")
def histories():
    return universe_histories(CONFIG, START, END)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def source(fake, cache_dir=None, **kw) -> tuple[YahooSource, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("clock", lambda: LONG_AGO)
    return YahooSource(cache_dir, download=fake, sleep=sleeps, log=lambda _msg: None, **kw), sleeps


def issue_kinds(market, ticker):
    return [i.kind for i in market.issues if i.ticker == ticker]


# -- the fixture itself ---------------------------------------------------------------------


def test_builder_matches_real_yfinance_download(histories, monkeypatch):
    """The offline frames are what yfinance 1.7's own download() assembles."""
    import yfinance
    import yfinance.multi

    picked = {t: histories[t] for t in ("SPY", "MC.PA", "^FCHI", "CAC.PA", FX)}

    class StubTicker:  # replaces the network part: Ticker(t).history(...)
        def __init__(self, ticker):
            self.ticker, self._price_history = ticker, None

        def history(self, **kwargs):
            if self.ticker == "DEAD.PA":
                raise RuntimeError("no data")
            return picked[self.ticker].copy()

    monkeypatch.setattr(yfinance.multi, "Ticker", StubTicker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # yfinance's own pandas usage
        real = yfinance.download([*picked, "DEAD.PA"], start="2024-11-01", end="2025-01-01", **DOWNLOAD_OPTIONS)
        real_by_ticker = yfinance.download(
            [*picked, "DEAD.PA"], start="2024-11-01", end="2025-01-01", **{**DOWNLOAD_OPTIONS, "group_by": "ticker"}
        )
        real_empty = yfinance.download(["DEAD.PA"], start="2024-11-01", end="2025-01-01", **DOWNLOAD_OPTIONS)
    mine = combine({**picked, "DEAD.PA": None})
    pd.testing.assert_frame_equal(real, mine)
    pd.testing.assert_frame_equal(
        real_by_ticker.sort_index(axis=1), combine({**picked, "DEAD.PA": None}, group_by="ticker").sort_index(axis=1)
    )
    pd.testing.assert_frame_equal(real_empty, combine({"DEAD.PA": None}))
    # The facts the parser relies on:
    assert real.columns.names == ["Price", "Ticker"]
    assert str(real.index.dtype) == "datetime64[s]" and real.index.tz is None
    assert ("Capital Gains", "SPY") in real.columns and ("Capital Gains", "MC.PA") not in real.columns
    assert ("Dividends", "DEAD.PA") not in real.columns and real[("Close", "DEAD.PA")].isna().all()
    assert np.isnan(real.at[pd.Timestamp("2024-11-28"), ("Close", "SPY")])  # Thanksgiving
    assert real_empty.shape[0] == 0


# -- the happy path -------------------------------------------------------------------------


def test_one_batched_call_for_every_instrument_and_eurusd(histories):
    fake = FakeDownload(histories)
    src, sleeps = source(fake)
    src.load(CONFIG, START, END)
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert sorted(call["tickers"]) == sorted([*INSTRUMENTS, FX]) and len(call["tickers"]) == 23
    assert call["start"] == "2024-11-01"
    assert call["end"] == "2025-01-01"  # yfinance's end is exclusive
    assert call["auto_adjust"] is False and call["actions"] is True
    assert call["progress"] is False and call["threads"] is True and call["ignore_tz"] is True
    assert sleeps == []


def test_happy_path_gives_the_whole_panel(histories):
    fake = FakeDownload(histories)
    src, _ = source(fake)
    market = src.load(CONFIG, START, END)
    assert market.source == "yahoo" and market.synthetic is False
    assert market.issues == ()
    assert market.tickers == INSTRUMENTS
    for frame in (market.open, market.high, market.low, market.close, market.volume, market.dividends, market.splits):
        assert list(frame.columns) == INSTRUMENTS
        assert frame.index.equals(market.index)
    assert str(market.index.dtype) == "datetime64[ns]" and market.index.tz is None
    assert market.index.equals(union_sessions({"XNYS", "XPAR"}, START, END))
    # Traded prices, in the instrument's own currency, on its own sessions only.
    spy = histories["SPY"]["Close"].set_axis(histories["SPY"].index.tz_localize(None).as_unit("ns"))
    pd.testing.assert_series_equal(market.close["SPY"].dropna(), spy, check_names=False, check_freq=False)
    assert np.isnan(market.close.at[pd.Timestamp("2024-11-28"), "SPY"])
    assert market.close.at[pd.Timestamp("2024-11-28"), "MC.PA"] > 0
    assert np.isnan(market.close.at[pd.Timestamp("2024-12-26"), "MC.PA"])
    assert market.has_bar("MC.PA", END) and market.has_bar("SPY", END)
    assert (market.dividends == 0.0).all().all() and (market.splits == 1.0).all().all()
    # EUR/USD: USD per 1 EUR, on every panel date, Thanksgiving included.
    assert market.fx_eurusd.notna().all()
    assert ((market.fx_eurusd > 1.0) & (market.fx_eurusd < 1.3)).all()
    fx = histories[FX]["Close"].set_axis(histories[FX].index.tz_localize(None).as_unit("ns"))
    assert market.fx_eurusd.at[END] == fx.at[END]
    spy_eur = market.close.at[END, "SPY"] / market.fx_eurusd.at[END]
    assert spy_eur < market.close.at[END, "SPY"]


def test_dividends_and_splits_come_through(histories):
    h = dict(histories)
    mc = h["MC.PA"]
    h["MC.PA"] = history_frame(
        mc.index.tz_localize(None), mc["Close"], tz="Europe/Paris", dividends={"2024-12-03": 7.5}
    )
    h["QQQ"] = history_frame(
        h["QQQ"].index.tz_localize(None), h["QQQ"]["Close"], tz="America/New_York",
        capital_gains=True, splits={"2024-12-10": 2.0},
    )
    market = source(FakeDownload(h))[0].load(CONFIG, START, END)
    assert market.dividends.at[pd.Timestamp("2024-12-03"), "MC.PA"] == 7.5
    assert market.dividends["MC.PA"].sum() == 7.5
    assert market.splits.at[pd.Timestamp("2024-12-10"), "QQQ"] == 2.0
    assert (market.splits.drop(columns="QQQ") == 1.0).all().all()


def test_a_group_by_ticker_frame_parses_the_same(histories):
    by_column = source(FakeDownload(histories))[0].load(CONFIG, START, END)
    by_ticker = source(FakeDownload(histories, group_by="ticker"))[0].load(CONFIG, START, END)
    pd.testing.assert_frame_equal(by_column.close, by_ticker.close)
    pd.testing.assert_frame_equal(by_column.splits, by_ticker.splits)
    pd.testing.assert_series_equal(by_column.fx_eurusd, by_ticker.fx_eurusd)


def test_history_start_gives_the_configured_number_of_sessions():
    start = history_start(CONFIG, END)
    window = union_sessions({"XNYS", "XPAR"}, start, END)
    assert len(window) == CONFIG.data.history_sessions == 320
    assert start == previous_sessions({"XNYS", "XPAR"}, END, 320)[0]


# -- failures and retries -------------------------------------------------------------------


def test_an_empty_frame_is_retried_with_backoff_then_stops_the_run(histories):
    empty = combine({t: None for t in [*INSTRUMENTS, FX]})
    assert empty.shape[0] == 0  # what yfinance returns when the network is down
    fake = FakeDownload(histories, script=[empty, empty, empty])
    src, sleeps = source(fake)
    with pytest.raises(DataUnavailable) as info:
        src.load(CONFIG, START, END)
    message = str(info.value)
    assert message.startswith("Yahoo returned no data for 23 tickers after 3 attempts: ")
    assert "empty frame" in message and "\n" not in message
    assert len(fake.calls) == 3
    assert sleeps == [2.0, 4.0]  # backoff_seconds * 2**attempt


def test_backoff_follows_the_configured_settings(histories):
    fake = FakeDownload(histories, script=[ConnectionError("reset")] * 4)
    src, sleeps = source(fake, retries=4, backoff_seconds=0.5)
    with pytest.raises(DataUnavailable, match="after 4 attempts: ConnectionError: reset"):
        src.load(CONFIG, START, END)
    assert sleeps == [0.5, 1.0, 2.0]


def test_yfinance_rate_limit_is_named_in_the_one_line_error(monkeypatch):
    """yfinance logs each failed ticker and returns an empty frame; the error line says why."""
    import yfinance
    import yfinance.multi
    from yfinance.exceptions import YFRateLimitError

    class RateLimited:  # the network part of yfinance: Ticker(t).history(...)
        def __init__(self, ticker):
            self.ticker, self._price_history = ticker, None

        def history(self, **kwargs):
            raise YFRateLimitError()

    monkeypatch.setattr(yfinance.multi, "Ticker", RateLimited)
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)  # as the CLI sets it
    sleeps = Sleeps()
    src = YahooSource(None, retries=2, backoff_seconds=60.0, sleep=sleeps, log=lambda _m: None,
                      clock=lambda: LONG_AGO)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(DataUnavailable) as info:
            src.load(CONFIG, START, END)
    message = str(info.value)
    assert "\n" not in message and "empty frame" not in message
    assert "YFRateLimitError" in message and "Too Many Requests" in message
    assert "for 23 tickers (AI.PA, AIR.PA, BNP.PA, ...)" in message
    assert sleeps == [60.0]
    assert logging.getLogger("yfinance").level == logging.CRITICAL  # restored


def test_the_shipped_backoff_waits_minutes_within_the_daily_jobs_budget(histories):
    fake = FakeDownload(histories, script=[ConnectionError("reset")] * CONFIG.data.retries)
    src, sleeps = source(fake, retries=CONFIG.data.retries, backoff_seconds=CONFIG.data.backoff_seconds)
    with pytest.raises(DataUnavailable):
        src.load(CONFIG, START, END)
    assert sleeps[0] >= 60  # rate limiting of cloud runners lasts minutes, not seconds
    assert sum(sleeps) <= 20 * 60  # the daily job has 45 minutes (daily.yml), the LLM call included


def test_an_exception_then_success(histories):
    fake = FakeDownload(histories, script=[TimeoutError("Yahoo timed out")])
    src, sleeps = source(fake)
    market = src.load(CONFIG, START, END)
    assert len(fake.calls) == 2 and sleeps == [2.0]
    assert market.tickers == INSTRUMENTS and market.issues == ()


def test_a_missing_ticker_is_asked_for_once_more_then_removed(histories):
    fake = FakeDownload(histories, fail={"MC.PA"})
    src, _ = source(fake)
    market = src.load(CONFIG, START, END)
    assert [c["tickers"] for c in fake.calls] == [fake.calls[0]["tickers"], ["MC.PA"]]
    assert "MC.PA" not in market.tickers and len(market.tickers) == 21
    assert issue_kinds(market, "MC.PA") == ["missing"]
    assert fatal_tickers(market)["MC.PA"].kind == "missing"


def test_a_missing_ticker_recovered_by_the_second_call(histories):
    fake = FakeDownload(histories, fail_first={"SAF.PA", "GLD"})
    src, _ = source(fake)
    market = src.load(CONFIG, START, END)
    assert len(fake.calls) == 2 and sorted(fake.calls[1]["tickers"]) == ["GLD", "SAF.PA"]
    assert market.tickers == INSTRUMENTS and market.issues == ()
    assert market.close["SAF.PA"].notna().sum() == 41


def test_missing_eurusd_stops_the_run(histories):
    fake = FakeDownload(histories, fail={FX})
    src, _ = source(fake)
    with pytest.raises(DataUnavailable, match="EURUSD=X"):
        src.load(CONFIG, START, END)
    assert fake.calls[1]["tickers"] == [FX]


def test_an_unexpected_frame_shape_is_a_clear_error(histories):
    flat = pd.DataFrame({"Close": [1.0, 2.0]}, index=pd.to_datetime(["2024-12-30", "2024-12-31"]))
    src, _ = source(FakeDownload(histories, script=[flat]))
    with pytest.raises(DataUnavailable, match="per-ticker columns"):
        src.load(CONFIG, START, END)


# -- bad bars, end to end ---------------------------------------------------------------------


def _replace_close(h, ticker, close, tz="Europe/Paris", dates=None, **kw):
    out = dict(h)
    dates = h[ticker].index.tz_localize(None) if dates is None else dates
    out[ticker] = history_frame(dates, close, tz=tz, **kw)
    return out


def test_a_few_missing_bars_are_filled_and_many_remove_the_ticker(histories):
    h = dict(histories)
    few = h["AI.PA"].drop(index=h["AI.PA"].index[[5, 20]])
    many = h["DSY.PA"].drop(index=h["DSY.PA"].index[3:13])
    h["AI.PA"], h["DSY.PA"] = few, many
    market = source(FakeDownload(h))[0].load(CONFIG, START, END)
    assert "AI.PA" in market.tickers and issue_kinds(market, "AI.PA") == ["filled", "filled"]
    assert "carried forward" in next(i.detail for i in market.issues if i.ticker == "AI.PA")
    assert market.close["AI.PA"].notna().sum() == 41
    assert "AI.PA" not in fatal_tickers(market)
    # 10 holes of 41 sessions: blocked from the 40th session, when the fraction is judged.
    assert "nan_bars" in issue_kinds(market, "DSY.PA") and "DSY.PA" in fatal_tickers(market)


def test_a_paris_stock_two_sessions_behind_is_stale(histories):
    h = dict(histories)
    h["SGO.PA"] = h["SGO.PA"].iloc[:-2]  # last bar on 2024-12-27, asof 2024-12-31
    market = source(FakeDownload(h))[0].load(CONFIG, START, END)
    assert issue_kinds(market, "SGO.PA")[0] == "stale"
    assert "2024-12-31" in fatal_tickers(market)["SGO.PA"].detail


def test_a_60_percent_jump_is_flagged_unless_a_split_explains_it(histories):
    close = histories["KER.PA"]["Close"].to_numpy().copy()
    close[30:] = close[30:] * 1.6
    jump_day = histories["KER.PA"].index[30].tz_localize(None)
    plain = source(FakeDownload(_replace_close(histories, "KER.PA", close)))[0].load(CONFIG, START, END)
    assert "KER.PA" in plain.tickers and issue_kinds(plain, "KER.PA") == ["jump"]
    assert "KER.PA" not in fatal_tickers(plain)  # a real move stays tradable
    assert str(jump_day.date()) in next(i.detail for i in plain.issues if i.ticker == "KER.PA")
    reverse_split = {str(jump_day.date()): 0.625}  # a reverse split: 0.625 new share per old one
    split = source(FakeDownload(_replace_close(histories, "KER.PA", close, splits=reverse_split)))[0].load(
        CONFIG, START, END
    )
    assert "KER.PA" in split.tickers and issue_kinds(split, "KER.PA") == []
    assert split.splits.at[jump_day, "KER.PA"] == 0.625


def test_holiday_rows_from_yahoo_are_dropped(histories):
    h = dict(histories)
    dates = h["OR.PA"].index.tz_localize(None).union(pd.DatetimeIndex(["2024-12-26"]))  # Paris was shut
    close = pd.Series(h["OR.PA"]["Close"].to_numpy(), index=h["OR.PA"].index.tz_localize(None))
    close = close.reindex(dates).ffill()
    h["OR.PA"] = history_frame(dates, close, tz="Europe/Paris")
    market = source(FakeDownload(h))[0].load(CONFIG, START, END)
    assert np.isnan(market.close.at[pd.Timestamp("2024-12-26"), "OR.PA"])
    assert "OR.PA" in market.tickers and issue_kinds(market, "OR.PA") == ["filled"]
    assert "closed" in next(i.detail for i in market.issues if i.ticker == "OR.PA")


def test_fx_only_dates_do_not_enter_the_index(histories):
    assert pd.Timestamp("2024-12-25") in histories[FX].index.tz_localize(None)
    market = source(FakeDownload(histories))[0].load(CONFIG, START, END)
    assert pd.Timestamp("2024-12-25") not in market.index


# -- cache ---------------------------------------------------------------------------------


def test_a_second_load_reads_the_cache(histories, tmp_path):
    fake = FakeDownload(histories)
    first = source(fake, tmp_path)[0].load(CONFIG, START, END)
    assert len(fake.calls) == 1
    again = FakeDownload(histories)
    second = source(again, tmp_path)[0].load(CONFIG, START, END)
    assert again.calls == []
    for name in ("open", "high", "low", "close", "volume", "dividends", "splits"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    pd.testing.assert_series_equal(first.fx_eurusd, second.fx_eurusd)
    # Another request (a different window) is not served from it.
    other = FakeDownload(histories)
    source(other, tmp_path)[0].load(CONFIG, START, pd.Timestamp("2024-12-30"))
    assert len(other.calls) == 1


def test_a_corrupt_cache_file_is_a_miss_and_gets_replaced(histories, tmp_path):
    source(FakeDownload(histories), tmp_path)[0].load(CONFIG, START, END)
    (path,) = list(tmp_path.glob("*.parquet"))
    path.write_bytes(b"PAR1 this is not parquet")
    fake = FakeDownload(histories)
    market = source(fake, tmp_path)[0].load(CONFIG, START, END)
    assert len(fake.calls) == 1 and market.tickers == INSTRUMENTS
    third = FakeDownload(histories)
    source(third, tmp_path)[0].load(CONFIG, START, END)
    assert third.calls == []  # the rewritten file is good again


def test_failed_or_partial_downloads_are_not_cached(histories, tmp_path):
    empty = combine({t: None for t in [*INSTRUMENTS, FX]})
    with pytest.raises(DataUnavailable):
        source(FakeDownload(histories, script=[empty] * 3), tmp_path)[0].load(CONFIG, START, END)
    source(FakeDownload(histories, fail={"MC.PA"}), tmp_path)[0].load(CONFIG, START, END)
    assert list(tmp_path.glob("*.parquet")) == []
    fake = FakeDownload(histories)
    source(fake, tmp_path)[0].load(CONFIG, START, END)
    assert len(fake.calls) == 1  # the re-run asked Yahoo again, and got everything


def test_a_window_whose_last_session_is_still_trading_is_not_cached(histories, tmp_path):
    during_ny_session = pd.Timestamp("2024-12-31 17:00", tz="UTC")
    source(FakeDownload(histories), tmp_path, clock=lambda: during_ny_session)[0].load(CONFIG, START, END)
    assert list(tmp_path.glob("*.parquet")) == []
    after_close = pd.Timestamp("2024-12-31 23:00", tz="UTC")
    source(FakeDownload(histories), tmp_path, clock=lambda: after_close)[0].load(CONFIG, START, END)
    assert len(list(tmp_path.glob("*.parquet"))) == 1


def test_no_cache_dir_means_no_cache(histories):
    fake = FakeDownload(histories)
    src, _ = source(fake, None)
    src.load(CONFIG, START, END)
    src.load(CONFIG, START, END)
    assert len(fake.calls) == 2


def test_cache_round_trips_a_yfinance_frame(histories, tmp_path):
    frame = combine({t: histories[t] for t in ("SPY", "MC.PA", FX)} | {"DEAD.PA": None})
    cache = ParquetCache(tmp_path)
    key = request_key(tickers=["DEAD.PA", "MC.PA", "SPY", FX], start="2024-11-01", end="2024-12-31")
    assert cache.get(key) is None
    cache.put(key, frame)
    back = cache.get(key)
    assert back.columns.names == ["Price", "Ticker"]
    assert list(back.columns) == list(frame.columns)
    # Parquet has no second resolution: the index comes back as datetime64[ms].
    pd.testing.assert_frame_equal(back, frame, check_index_type=False, check_freq=False)
    assert list(tmp_path.iterdir()) == [cache.path_for(key)]  # no temporary file left behind
    assert request_key(start="a", end="b") == request_key(end="b", start="a")


def test_the_default_downloader_is_yfinance_download(histories, monkeypatch):
    import yfinance

    fake = FakeDownload(histories)
    monkeypatch.setattr(yfinance, "download", fake)
    market = YahooSource(None, sleep=lambda _s: None, log=lambda _m: None).load(CONFIG, START, END)
    assert len(fake.calls) == 1 and market.tickers == INSTRUMENTS


# -- stale bars and the price convention ---------------------------------------------------


def test_yahoo_declares_split_adjusted_prices(histories):
    market = source(FakeDownload(histories))[0].load(CONFIG, START, END)
    assert market.price_convention == "split_adjusted" and market.split_adjusted


def test_a_repeated_last_eurusd_bar_is_stale_and_stops_the_run(histories):
    h = dict(histories)
    fx = h[FX].copy()
    fx.iloc[-1, :] = fx.iloc[-2, :].to_numpy()  # Yahoo's stale bar: yesterday's OHLCV again
    h[FX] = fx
    with pytest.raises(DataUnavailable, match="no EUR/USD rate for 2024-12-31"):
        source(FakeDownload(h))[0].load(CONFIG, START, END)


def test_a_repeated_last_asset_bar_is_stale(histories):
    h = dict(histories)
    tte = h["TTE.PA"].copy()
    tte.iloc[-1, :] = tte.iloc[-2, :].to_numpy()
    h["TTE.PA"] = tte
    market = source(FakeDownload(h))[0].load(CONFIG, START, END)
    issue = fatal_tickers(market)["TTE.PA"]
    assert issue.kind == "stale" and "repeat" in issue.detail
    assert not market.has_bar("TTE.PA", END)
