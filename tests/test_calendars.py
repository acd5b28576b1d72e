"""engine.data.calendars: the sessions and open/close times kept in a cache file are the library's."""

from __future__ import annotations

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest

from engine.data import calendars


def _library(code: str) -> xc.ExchangeCalendar:
    return xc.get_calendar(code, start=calendars.CALENDAR_START, end=calendars.CALENDAR_END)


@pytest.mark.parametrize("code", ["XNYS", "XPAR"])
def test_the_cached_sessions_and_times_are_exchange_calendars_own_built_then_read_back(tmp_path, monkeypatch, code):
    monkeypatch.setenv("ALMOST_SURELY_CALENDAR_CACHE", str(tmp_path))
    lib = _library(code)
    built = calendars._arrays(code)  # no file yet: built from the library and written
    assert calendars._cache_path(code).exists()
    read = calendars._arrays(code)  # from the file
    for arrays in (built, read):
        assert np.array_equal(arrays["sessions"], pd.DatetimeIndex(lib.sessions).as_unit("ns").asi8)
        assert np.array_equal(arrays["opens"], pd.DatetimeIndex(lib.opens.to_numpy()).as_unit("ns").asi8)
        assert np.array_equal(arrays["closes"], pd.DatetimeIndex(lib.closes.to_numpy()).as_unit("ns").asi8)


@pytest.mark.parametrize("damage", [b"", b"not a numpy archive", None])
def test_a_damaged_or_unwritable_cache_only_means_building_again(tmp_path, monkeypatch, damage):
    if damage is None:  # the cache folder cannot be made: a file stands in its way
        (tmp_path / "blocked").write_text("a file")
        monkeypatch.setenv("ALMOST_SURELY_CALENDAR_CACHE", str(tmp_path / "blocked" / "calendars"))
    else:
        monkeypatch.setenv("ALMOST_SURELY_CALENDAR_CACHE", str(tmp_path))
        calendars._cache_path("XNYS").write_bytes(damage)
    arrays = calendars._arrays("XNYS")
    assert np.array_equal(arrays["sessions"], pd.DatetimeIndex(_library("XNYS").sessions).as_unit("ns").asi8)
    if damage is not None:  # and the file is sound again
        assert np.array_equal(calendars._arrays("XNYS")["closes"], arrays["closes"])


def test_open_and_close_times_follow_the_exchange_early_closes_included():
    christmas_eve = pd.Timestamp("2024-12-24")
    assert calendars.close_time_utc("XNYS", christmas_eve) == pd.Timestamp("2024-12-24 18:00", tz="UTC")  # 13:00 ET
    assert calendars.close_time_utc("XPAR", christmas_eve) == pd.Timestamp("2024-12-24 13:05", tz="UTC")  # 14:05 CET
    assert calendars.open_time_utc("XNYS", "2024-07-01") == pd.Timestamp("2024-07-01 13:30", tz="UTC")
    assert calendars.open_time_utc("XPAR", "2024-01-02") == pd.Timestamp("2024-01-02 08:00", tz="UTC")
    assert not calendars.is_session("XNYS", "2024-11-28") and calendars.is_session("XPAR", "2024-11-28")
    with pytest.raises(Exception, match="2024-11-28"):  # not a New York session: the library's own error
        calendars.open_time_utc("XNYS", "2024-11-28")
