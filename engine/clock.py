"""Which session a run may book: the last one whose close has settled. Pure: `now` is an argument.

A session D of the union calendar (New York, Paris) is *settled* at `now` when every exchange
trading on D has closed, plus a settle delay (Yahoo's daily bar keeps moving for a while after
the close), by `now`. Early closes (Christmas Eve, the day after Thanksgiving) come from the
calendars themselves; an exchange closed on D (New York on Thanksgiving) does not delay it.

``daily`` books the last settled session by default (``--date last-closed``), however late
the scheduler starts it: a run at 00:10 UTC on Wednesday books Tuesday. An explicit date that
has not settled is refused (:func:`require_settled`), so a moving intraday bar is never booked
as a close (a re-run at night would then say "already done" and keep it forever).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from engine.data import calendars
from engine.errors import ConfigError

LAST_CLOSED = "last-closed"
# Far enough back to cross the longest closure of both exchanges together (Easter is 4 days).
_LOOKBACK = pd.Timedelta(days=14)


def _utc(now: object) -> pd.Timestamp:
    ts = pd.Timestamp(now)
    if ts.tzinfo is None:
        raise ValueError(f"`now` needs a time zone: {now!r}")
    return ts.tz_convert("UTC")


def settles_at(d: object, codes: Iterable[str], settle: pd.Timedelta) -> pd.Timestamp | None:
    """When session `d` settles (UTC): the latest close among the exchanges trading on `d`,
    plus `settle`; None when no exchange of `codes` trades on `d`."""
    day = calendars.to_session(d)
    closes = [calendars.close_time_utc(c, day) for c in sorted(set(codes)) if calendars.is_session(c, day)]
    return max(closes) + settle if closes else None


def last_closed(now: object, codes: Iterable[str], settle: pd.Timedelta) -> pd.Timestamp:
    """The last session of the union of `codes` that has settled at `now` (a tz-naive date)."""
    now = _utc(now)
    codes = sorted(set(codes))
    today = calendars.to_session(now)
    for day in reversed(calendars.union_sessions(codes, today - _LOOKBACK, today)):
        at = settles_at(day, codes, settle)
        if at is not None and at <= now:
            return day
    raise ConfigError(f"no session of {' or '.join(codes)} settled in the two weeks before {now:%Y-%m-%d %H:%M} UTC")


def require_settled(d: object, now: object, codes: Iterable[str], settle: pd.Timedelta) -> None:
    """Refuse, in one line, a session whose close has not settled at `now`.

    A date that is no session at all passes: the caller says "nothing to do" for it."""
    now = _utc(now)
    at = settles_at(d, codes, settle)
    if at is not None and now < at:
        day = calendars.to_session(d).date()
        raise ConfigError(
            f"--date {day}: its close settles at {at:%Y-%m-%d %H:%M} UTC and it is {now:%Y-%m-%d %H:%M} UTC: "
            "a bar still moving is never booked as a close; run again later, or omit --date "
            f"(the last settled session is {last_closed(now, codes, settle).date()})"
        )
