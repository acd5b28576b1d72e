"""The intraday monitor: thresholds, market hours, de-duplication, Yahoo frame shapes, the demo.

Offline: Yahoo is replaced by frames shaped like yfinance 1.7's intraday download.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_config
from engine.data import calendars
from engine.errors import ConfigError, DataUnavailable, StateCorrupt
from engine.monitor import (
    ALERT_KEYS,
    INTRADAY_OPTIONS,
    PORTFOLIO,
    THRESHOLD,
    YahooIntraday,
    monitor,
    open_exchanges,
    read_alerts,
)
from tests.state_builder import write_state
from tests import yf_frames

CONFIG = load_config()
FX = CONFIG.fx.eurusd
AS_OF = dt.date(2024, 6, 13)  # a Thursday: the state's last session
FRIDAY_14H = pd.Timestamp("2024-06-14T14:00:00Z")  # Paris and New York both open
TZ = {"XNYS": "America/New_York", "XPAR": "Europe/Paris", "FX": "Europe/London"}


# -- yfinance-shaped intraday frames ------------------------------------------------------------


def intraday_history(code: str, closes: Mapping[str, float], now: pd.Timestamp) -> pd.DataFrame:
    """One ticker's ``Ticker.history(interval="5m", auto_adjust=False, actions=False)``: 5-minute
    bars of each session in `closes` (session -> its last close) up to `now`, index tz-aware in
    the exchange's zone named ``Datetime``. Each session opens 0.5% below its last close."""
    parts = []
    for day, last in closes.items():
        d = pd.Timestamp(day)
        if code == "FX":  # EUR/USD trades round the clock
            start = d.tz_localize(TZ["FX"])
            end = start + pd.Timedelta(days=1)
        else:
            cal = calendars.get_calendar(code)
            start, end = cal.session_open(d), cal.session_close(d)
        stamps = pd.date_range(start, end - pd.Timedelta(minutes=5), freq="5min")
        stamps = stamps[stamps <= now]
        path = np.linspace(last * 0.995, last, len(stamps)) if len(stamps) > 1 else np.array([last] * len(stamps))
        parts.append(pd.Series(path, index=stamps.tz_convert(TZ.get(code, TZ["FX"]))))
    close = pd.concat(parts) if parts else pd.Series(dtype=float)
    frame = pd.DataFrame(
        {"Open": close.to_numpy(), "High": close.to_numpy() * 1.001, "Low": close.to_numpy() * 0.999,
         "Close": close.to_numpy(), "Adj Close": close.to_numpy(),
         "Volume": np.full(len(close), 1000, dtype=np.int64)},
        index=pd.DatetimeIndex(close.index, name="Datetime"),
    )
    return frame


def empty_history() -> pd.DataFrame:
    """``yfinance.utils.empty_df()``: what a failed ticker becomes."""
    empty = pd.DataFrame(index=[], data={c: np.nan for c in ("Open", "High", "Low", "Close", "Adj Close", "Volume")})
    empty.index.name = "Date"
    return empty


def combine(histories: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    """``yfinance.download(..., interval="5m", group_by="column")``: tz-aware, as yfinance
    returns intraday bars (``ignore_tz=False``)."""
    return yf_frames.combine(histories, ignore_tz=False)


class Fake:
    """A stand-in for yfinance.download returning fixed frames, recording its calls."""

    def __init__(self, *frames: pd.DataFrame):
        self.frames = list(frames)
        self.calls: list[dict] = []

    def __call__(self, tickers, **kwargs):
        self.calls.append({"tickers": list(tickers), **kwargs})
        return self.frames.pop(0) if len(self.frames) > 1 else self.frames[0]


def yahoo_frame(moves: Mapping[str, float], now: pd.Timestamp = FRIDAY_14H, *, missing=(),
                previous: Mapping[str, float] | None = None) -> pd.DataFrame:
    """An intraday frame where each ticker closed at `previous` (default 100) the session
    before `now` and trades at previous * (1 + move) at `now`."""
    previous = previous or {}
    today = now.tz_convert(None).normalize()
    hist: dict[str, pd.DataFrame | None] = {}
    for t, move in moves.items():
        if t in missing:
            hist[t] = None
            continue
        code = "FX" if t == FX else CONFIG.instruments[t].calendar
        cal_code = "XPAR" if code == "FX" else code
        prev_day = calendars.previous_sessions([cal_code], today - pd.Timedelta(days=1), 1)[0]
        p0 = previous.get(t, 100.0)
        days = {prev_day.date().isoformat(): p0}
        if code == "FX" or calendars.is_session(code, today):
            days[today.date().isoformat()] = p0 * (1 + move)
        hist[t] = intraday_history(code, days, now)
    return combine(hist)


def yahoo(frame: pd.DataFrame, **kw) -> tuple[YahooIntraday, Fake]:
    fake = Fake(frame)
    return YahooIntraday(download=fake, sleep=lambda _s: None, **kw), fake


# -- hand-made states -------------------------------------------------------------------------


def make_state(root, positions: Mapping[str, tuple[float, float]], *, cash: float = 1000.0, nav: float | None = None,
               source: str = "yahoo", pending: tuple[str, ...] = (), as_of: dt.date = AS_OF):
    """A state holding `positions` (ticker -> (qty, previous close in EUR)), with `cash`, whose
    last NAV is `nav` (default: the positions at the previous close plus cash)."""
    if nav is None:
        nav = cash + sum(q * px for q, px in positions.values())
    write_state(root, positions, cash=cash, as_of=as_of, nav=nav, source=source, pending=pending)
    return root


def alerts_of(root) -> list[dict]:
    path = root / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# -- thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("move", "alert"), [(0.019, False), (0.021, True), (-0.019, False), (-0.021, True)])
def test_an_asset_alerts_beyond_2_percent_either_way(tmp_path, move, alert):
    # Small position, so the portfolio as a whole moves less than 2%.
    make_state(tmp_path, {"MC.PA": (10, 100.0)}, cash=9000.0)
    src, fake = yahoo(yahoo_frame({"MC.PA": move}))
    result = monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert fake.calls[0]["tickers"] == ["MC.PA"]  # one batched call, no FX for a EUR asset
    assert {k: fake.calls[0][k] for k in ("period", "interval")} == {"period": "5d", "interval": "5m"}
    assert THRESHOLD == 0.02
    if not alert:
        assert result.new_alerts == [] and not (tmp_path / "alerts.jsonl").exists()
        assert "0 new alerts" in result.message
        return
    [a] = result.new_alerts
    assert list(a) == list(ALERT_KEYS)
    assert a["ticker"] == "MC.PA" and a["move"] == pytest.approx(move, abs=1e-6)
    assert a["price_local"] == pytest.approx(100 * (1 + move)) and a["previous_close"] == 100.0
    assert a["date"] == "2024-06-14" and a["time_utc"] == "14:00:00" and a["source"] == "yahoo"
    assert f"{move:+.2%}" in a["message"] and "held" in a["message"]
    assert alerts_of(tmp_path) == [a]
    assert "1 new alert" in result.message


def test_the_portfolio_alerts_as_a_whole_in_eur(tmp_path):
    # SPY +1.5% in dollars is no alert; with the euro 1% weaker it is +2.5% in EUR, and the
    # portfolio (all in SPY) moves more than 2% against its last NAV.
    fx0 = 1.08
    make_state(tmp_path, {"SPY": (20, 500 / fx0)}, cash=0.0)
    frame = yahoo_frame({"SPY": 0.015, FX: -0.01}, previous={"SPY": 500.0, FX: fx0})
    src, fake = yahoo(frame)
    result = monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert fake.calls[0]["tickers"] == ["SPY", FX]
    [a] = result.new_alerts
    assert a["ticker"] == PORTFOLIO
    expected = (20 * 500 * 1.015 / (fx0 * 0.99)) / (20 * 500 / fx0) - 1
    assert a["move"] == pytest.approx(expected, abs=1e-6) and expected > THRESHOLD
    assert a["previous_close"] == pytest.approx(20 * 500 / fx0, abs=0.01)
    assert "portfolio" in a["message"] and "EUR" in a["message"]


# -- de-duplication --------------------------------------------------------------------------------


def test_an_alert_is_raised_once_a_day_per_direction_and_again_the_next_day(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0)}, cash=9000.0)
    src, _ = yahoo(yahoo_frame({"MC.PA": -0.03}))
    first = monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert len(first.new_alerts) == 1
    before = (tmp_path / "alerts.jsonl").read_bytes()

    later = FRIDAY_14H + pd.Timedelta(hours=1)
    src, _ = yahoo(yahoo_frame({"MC.PA": -0.04}, now=later))
    again = monitor(tmp_path, CONFIG, src, now=later)
    assert again.new_alerts == [] and "1 already raised today" in again.message
    assert (tmp_path / "alerts.jsonl").read_bytes() == before

    src, _ = yahoo(yahoo_frame({"MC.PA": +0.03}, now=later))  # the other way: a new alert
    up = monitor(tmp_path, CONFIG, src, now=later)
    assert [a["move"] > 0 for a in up.new_alerts] == [True]

    monday = pd.Timestamp("2024-06-17T09:00:00Z")
    src, _ = yahoo(yahoo_frame({"MC.PA": -0.03}, now=monday))
    next_day = monitor(tmp_path, CONFIG, src, now=monday)
    assert [a["date"] for a in next_day.new_alerts] == ["2024-06-17"]
    lines = (tmp_path / "alerts.jsonl").read_bytes()
    assert lines.startswith(before) and len(lines.splitlines()) == 3
    assert [a["date"] for a in read_alerts(tmp_path / "alerts.jsonl")] == ["2024-06-14", "2024-06-14", "2024-06-17"]


def test_a_corrupt_alerts_line_stops_the_run_and_the_file_is_left_alone(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0)}, cash=9000.0)
    good = json.dumps(dict.fromkeys(ALERT_KEYS, "x") | {"move": 0.03, "date": "2024-06-13"})
    (tmp_path / "alerts.jsonl").write_text(good + "\n{not json\n")
    before = (tmp_path / "alerts.jsonl").read_bytes()
    src, _ = yahoo(yahoo_frame({"MC.PA": -0.03}))
    with pytest.raises(StateCorrupt, match=r"alerts\.jsonl line 2 is not an alert"):
        monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert (tmp_path / "alerts.jsonl").read_bytes() == before


# -- market hours ---------------------------------------------------------------------------------


@pytest.mark.parametrize("now", ["2024-06-15T12:00:00Z", "2024-12-25T14:00:00Z", "2024-06-14T21:00:00Z"])
def test_outside_market_hours_nothing_is_fetched_or_written(tmp_path, now):
    make_state(tmp_path, {"MC.PA": (10, 100.0)})
    src, fake = yahoo(yahoo_frame({"MC.PA": 0.05}))
    result = monitor(tmp_path, CONFIG, src, now=pd.Timestamp(now))
    assert result.message.startswith("outside market hours") and "next open" in result.message
    assert result.new_alerts == [] and fake.calls == [] and not (tmp_path / "alerts.jsonl").exists()
    if now.startswith("2024-12-25"):  # Paris is closed on the 26th too: New York opens first
        assert "XNYS at 2024-12-26 14:30 UTC" in result.message


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-06-14T06:59:59Z", set()),
        ("2024-06-14T07:00:00Z", {"XPAR"}),  # Paris opens at 09:00 CEST
        ("2024-06-14T13:30:00Z", {"XPAR", "XNYS"}),  # New York at 09:30 EDT
        ("2024-06-14T15:30:00Z", {"XNYS"}),  # Paris has closed
        ("2024-06-14T20:00:00Z", set()),
        ("2024-01-15T15:00:00Z", {"XPAR"}),  # Martin Luther King Day; Paris at 09:00 CET is 08:00 UTC
        ("2024-01-16T07:30:00Z", set()),
        ("2024-12-24T13:00:00Z", {"XPAR"}),  # Christmas Eve: Paris closes at 14:05 CET,
        ("2024-12-24T13:10:00Z", set()),  # and New York opens at 09:30 EST
        ("2024-12-24T18:00:00Z", set()),  # and closes at 13:00
        ("2024-12-26T15:00:00Z", {"XNYS"}),  # Paris is closed on Boxing Day
    ],
)
def test_market_hours_follow_the_exchange_calendars(now, expected):
    assert open_exchanges(["XNYS", "XPAR"], pd.Timestamp(now)) == expected


@pytest.mark.parametrize("now", ["2024-11-28T14:00:00Z", "2024-06-14T08:00:00Z"])  # Thanksgiving; before New York opens
def test_when_only_paris_is_open_only_paris_assets_are_checked(tmp_path, now):
    now = pd.Timestamp(now)
    as_of = calendars.previous_sessions(["XPAR"], now.tz_convert(None).normalize() - pd.Timedelta(days=1), 1)[0].date()
    make_state(tmp_path, {"MC.PA": (10, 100.0), "SPY": (2, 100.0)}, cash=9000.0, as_of=as_of)
    src, _ = yahoo(yahoo_frame({"MC.PA": 0.03, "SPY": 0.05, FX: 0.0}, now=now))
    result = monitor(tmp_path, CONFIG, src, now=now)
    assert "XPAR open" in result.message and "XNYS" not in result.message.split(";")[0].replace("XPAR open", "")
    assert [a["ticker"] for a in result.new_alerts] == ["MC.PA"]
    assert "checked 1 watched asset " in result.message


def test_watched_means_held_or_with_a_pending_order(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0)}, cash=9000.0, pending=("OR.PA",))
    src, fake = yahoo(yahoo_frame({"MC.PA": 0.0, "OR.PA": -0.025, "TTE.PA": 0.05}))
    result = monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert fake.calls[0]["tickers"] == ["MC.PA", "OR.PA"]
    [a] = result.new_alerts
    assert a["ticker"] == "OR.PA" and "pending buy order" in a["message"]


# -- Yahoo frames ------------------------------------------------------------------------------------


def test_the_intraday_builder_matches_real_yfinance_download(monkeypatch):
    import yfinance
    import yfinance.multi

    picked = {
        "MC.PA": intraday_history("XPAR", {"2024-06-13": 100.0, "2024-06-14": 101.0}, FRIDAY_14H),
        "OR.PA": intraday_history("XPAR", {"2024-06-13": 50.0, "2024-06-14": 49.0}, FRIDAY_14H),
        "SPY": intraday_history("XNYS", {"2024-06-13": 500.0, "2024-06-14": 505.0}, FRIDAY_14H),
        FX: intraday_history("FX", {"2024-06-13": 1.08, "2024-06-14": 1.07}, FRIDAY_14H),
    }

    class StubTicker:  # the network part of yfinance: Ticker(t).history(...)
        def __init__(self, ticker):
            self.ticker, self._price_history = ticker, None

        def history(self, **kwargs):
            assert kwargs["interval"] == "5m"
            if self.ticker == "DEAD.PA":
                raise RuntimeError("no data")
            return picked[self.ticker].copy()

    monkeypatch.setattr(yfinance.multi, "Ticker", StubTicker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        real = yfinance.download([*picked, "DEAD.PA"], **INTRADAY_OPTIONS)
    pd.testing.assert_frame_equal(real, combine({**picked, "DEAD.PA": None}))
    assert real.index.tz is not None and real.columns.names == ["Price", "Ticker"]


def test_an_empty_frame_from_yahoo_is_one_clear_line(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0)})
    src, fake = yahoo(combine({"MC.PA": None}), retries=2)
    with pytest.raises(DataUnavailable) as exc:
        monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert "no intraday prices from Yahoo" in str(exc.value) and "empty frame" in str(exc.value)
    assert "\n" not in str(exc.value) and len(fake.calls) == 2


def test_a_ticker_missing_from_yahoo_is_skipped_with_its_reason(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0), "OR.PA": (10, 100.0)}, cash=8000.0)
    src, _ = yahoo(yahoo_frame({"MC.PA": 0.0, "OR.PA": 0.03}, missing=("MC.PA",)))
    result = monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)
    assert [a["ticker"] for a in result.new_alerts] == ["OR.PA"]
    assert "skipped MC.PA (no intraday price from Yahoo)" in result.message
    assert "portfolio not checked: no latest price for MC.PA" in result.message


# -- the state and the source -------------------------------------------------------------------


def test_a_state_priced_by_another_source_is_refused(tmp_path):
    make_state(tmp_path, {"MC.PA": (10, 100.0)}, source="demo seed=42")
    src, _ = yahoo(yahoo_frame({"MC.PA": 0.05}))
    with pytest.raises(ConfigError, match="priced by 'demo seed=42', not 'yahoo'"):
        monitor(tmp_path, CONFIG, src, now=FRIDAY_14H)


def test_nothing_to_watch_is_said_plainly(tmp_path):
    src, fake = yahoo(yahoo_frame({"MC.PA": 0.05}))
    assert "holds no session yet" in monitor(tmp_path / "none", CONFIG, src, now=FRIDAY_14H).message
    make_state(tmp_path / "cash", {}, cash=10_000.0)
    assert "no position and no pending order" in monitor(tmp_path / "cash", CONFIG, src, now=FRIDAY_14H).message
    make_state(tmp_path / "done", {"MC.PA": (10, 100.0)}, as_of=dt.date(2024, 6, 14))
    assert "already as of 2024-06-14" in monitor(tmp_path / "done", CONFIG, src, now=FRIDAY_14H).message
    assert fake.calls == []


# -- the demo source, end to end -------------------------------------------------------------------


def _demo_state(tmp_path_factory, end: str):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--sessions", "30", "--end", end, "--no-site"]) == 0
    return out / "state"


def test_monitor_on_the_demo_source_through_the_cli(tmp_path_factory, capsys):
    state = _demo_state(tmp_path_factory, "2024-06-13")
    capsys.readouterr()
    argv = ["monitor", "--state", str(state), "--source", "demo", "--now", "2024-06-14T14:00:00+00:00"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("2024-06-14 14:00 UTC: XNYS and XPAR open; checked ")
    assert "and the portfolio" in out
    assert main([*argv[:-1], "2024-06-15T14:00:00+00:00"]) == 0  # a Saturday
    assert capsys.readouterr().out.startswith("outside market hours")


def test_demo_alerts_match_the_demo_bars_and_are_not_repeated(tmp_path_factory, capsys):
    # 2024-07-09 is a big up day of the seed-42 demo market for several Paris stocks.
    state = _demo_state(tmp_path_factory, "2024-07-08")
    capsys.readouterr()
    now = pd.Timestamp("2024-07-09T15:00:00Z")  # Paris trades 07:00 .. 15:30 UTC
    argv = ["monitor", "--state", str(state), "--source", "demo", "--now", now.isoformat()]
    assert main(argv) == 0
    out = capsys.readouterr().out
    alerts = alerts_of(state)
    assert alerts and all(a["source"] == "demo seed=42" for a in alerts)
    assert all(f"ALERT {a['ticker']}: {a['message']}" in out for a in alerts)
    # The latest price is the day's bar interpolated from the open to the close by the time of day.
    from engine.data.demo import DemoSource

    market = DemoSource(42).load(CONFIG, pd.Timestamp("2024-07-01"), pd.Timestamp("2024-07-09"))
    share = (now - pd.Timestamp("2024-07-09T07:00:00Z")) / pd.Timedelta(hours=8.5)
    for a in alerts:
        if a["ticker"] == PORTFOLIO:
            continue
        o, c = market.open.at[pd.Timestamp("2024-07-09"), a["ticker"]], market.close[a["ticker"]]
        assert a["price_local"] == pytest.approx(o * (c.loc["2024-07-09"] / o) ** share, abs=1e-4)
        assert a["previous_close"] == pytest.approx(c.loc["2024-07-08"], abs=1e-4)
        assert abs(a["move"]) > THRESHOLD
    before = (state / "alerts.jsonl").read_bytes()
    assert main(argv) == 0
    assert "0 new alerts" in capsys.readouterr().out
    assert (state / "alerts.jsonl").read_bytes() == before
