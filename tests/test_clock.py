"""engine/clock.py: the session a run may book, at DST edges, holidays, weekends and midnight UTC."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.clock import last_closed, require_settled, settles_at
from engine.errors import ConfigError

CODES = {"XNYS", "XPAR"}
SETTLE = pd.Timedelta(minutes=30)


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("now", "session", "why"),
    [
        ("2026-11-24 22:30", "2026-11-24", "the scheduled run: New York closed at 21:00 UTC (EST)"),
        ("2026-11-24 21:29", "2026-11-23", "New York closed, but its bar has not settled yet"),
        ("2026-11-24 21:30", "2026-11-24", "settled to the minute"),
        ("2026-11-24 15:00", "2026-11-23", "during the session: yesterday"),
        ("2026-11-25 00:10", "2026-11-24", "just after midnight UTC: still Tuesday's session"),
        ("2026-11-30 08:00", "2026-11-27", "Monday morning: Friday (New York's early close)"),
        ("2026-11-28 12:00", "2026-11-27", "Saturday"),
        ("2026-11-29 23:59", "2026-11-27", "Sunday night"),
        ("2026-11-26 17:00", "2026-11-26", "Thanksgiving: Paris traded (closed 16:30 UTC), New York did not"),
        ("2026-11-26 16:45", "2026-11-25", "Thanksgiving, before Paris's close settled"),
        ("2026-11-27 18:29", "2026-11-26", "the day after Thanksgiving: New York closes early, at 18:00 UTC"),
        ("2026-11-27 18:30", "2026-11-27", "... and has settled at 18:30 UTC"),
        ("2026-12-24 18:30", "2026-12-24", "Christmas Eve: both close early"),
        ("2026-12-25 12:00", "2026-12-24", "Christmas: both closed"),
        ("2027-01-01 23:00", "2026-12-31", "New Year's Day: both closed"),
        ("2026-04-04 10:00", "2026-04-02", "Easter Saturday: Good Friday was a holiday on both"),
        ("2026-04-06 22:00", "2026-04-06", "Easter Monday: Paris closed, New York traded"),
        ("2026-03-09 20:30", "2026-03-09", "New York on summer time, Paris not yet: closed at 20:00 UTC"),
        ("2026-03-06 20:30", "2026-03-05", "the Friday before: still winter time, closes at 21:00 UTC"),
        ("2026-10-26 20:30", "2026-10-26", "Paris back on winter time, New York still on summer time"),
        ("2026-11-02 20:30", "2026-10-30", "both on winter time again: 21:00 UTC"),
    ],
)
def test_the_last_closed_session(now, session, why):
    assert last_closed(at(now), CODES, SETTLE) == pd.Timestamp(session), why


def test_a_session_settles_after_the_last_of_its_exchanges():
    assert settles_at("2026-11-24", CODES, SETTLE) == at("2026-11-24 21:30")
    assert settles_at("2026-11-26", CODES, SETTLE) == at("2026-11-26 17:00")  # Paris only
    assert settles_at("2026-11-28", CODES, SETTLE) is None  # Saturday
    assert settles_at("2026-11-24", {"XPAR"}, pd.Timedelta(0)) == at("2026-11-24 16:30")


def test_an_explicit_date_whose_close_has_not_settled_is_refused_in_one_line():
    with pytest.raises(ConfigError) as info:
        require_settled("2026-11-24", at("2026-11-24 15:00"), CODES, SETTLE)
    message = str(info.value)
    assert "\n" not in message
    assert "2026-11-24 21:30 UTC" in message and "2026-11-24 15:00 UTC" in message
    assert "last settled session is 2026-11-23" in message


def test_a_date_in_the_future_is_refused():
    with pytest.raises(ConfigError, match="--date 2026-12-01"):
        require_settled("2026-12-01", at("2026-11-25 00:10"), CODES, SETTLE)


def test_a_settled_date_and_a_non_session_pass():
    require_settled("2026-11-24", at("2026-11-24 21:30"), CODES, SETTLE)
    require_settled("2026-11-20", at("2026-11-24 15:00"), CODES, SETTLE)
    require_settled("2026-11-28", at("2026-11-24 15:00"), CODES, SETTLE)  # Saturday: "nothing to do"


def test_now_needs_a_time_zone():
    with pytest.raises(ValueError, match="time zone"):
        last_closed(pd.Timestamp("2026-11-24 22:30"), CODES, SETTLE)
