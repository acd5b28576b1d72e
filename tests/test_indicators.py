"""engine.indicators: golden values, per-own-session computation, FX orientation, and no
look-ahead. Every market is built here from plain frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.config import load_config
from engine.data.calendars import sessions, sessions_per_year, union_sessions
from engine.data.market import MarketData
from engine.indicators import INDICATOR_COLUMNS, Indicators, compute_indicators
from engine.risk import historical_cvar, historical_var, mean_prospect_value

# exchange_calendars (building a calendar) trips a pandas 3.1 deprecation that is not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Series.values returning an ndarray that drops timezone information"
)

CONFIG = load_config()
# SPY: USD on XNYS; MC.PA: EUR on XPAR (from the default universe).
USD, EUR = "SPY", "MC.PA"
UNION_PPY = sessions_per_year({"XNYS", "XPAR"})


def test_annualisation_uses_the_calendars_sessions_per_year():
    # Averaged over 2000-2035: New York about 251.4, Paris 255.9, both 258.3 (not 252).
    assert sessions_per_year({"XNYS"}) == pytest.approx(251.4, abs=0.1)
    assert sessions_per_year({"XPAR"}) == pytest.approx(255.9, abs=0.1)
    assert UNION_PPY == pytest.approx(258.3, abs=0.1)


def make_market(close: pd.DataFrame, fx: pd.Series | None = None) -> MarketData:
    if fx is None:
        fx = pd.Series(1.0, index=close.index)
    ones = pd.DataFrame(1.0, index=close.index, columns=close.columns).where(close.notna())
    return MarketData(
        open=close,
        high=close,
        low=close,
        close=close,
        volume=ones * 1000,
        dividends=ones * 0,
        splits=ones,
        fx_eurusd=fx,
        source="test",
        synthetic=True,
    )


def random_walk(n: int, seed: int, start: float = 100.0, vol: float = 0.015) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0.0003, vol, n)))


def calendar_market(start: str, end: str, seed: int = 0) -> MarketData:
    """SPY and MC.PA on the XNYS + XPAR union index, NaN on each one's closed days."""
    index = union_sessions(["XNYS", "XPAR"], start, end)
    columns = {}
    for k, (ticker, code) in enumerate([(USD, "XNYS"), (EUR, "XPAR"), ("CAC.PA", "XPAR")]):
        s = pd.Series(random_walk(len(index), seed + k), index=index)
        columns[ticker] = s.where(index.isin(sessions(code, start, end)))
    fx = pd.Series(random_walk(len(index), seed + 99, start=1.1, vol=0.004), index=index)
    return make_market(pd.DataFrame(columns), fx)


SMALL_RISK = CONFIG.with_overrides(risk={"lookback_sessions": 60, "prospect_horizon_sessions": 10})

# ---------------------------------------------------------------- golden values


def one_ticker(closes: np.ndarray, ticker: str = EUR) -> Indicators:
    index = pd.bdate_range("2024-01-01", periods=len(closes))
    return compute_indicators(make_market(pd.DataFrame({ticker: closes}, index=index)), CONFIG)


def test_sma_and_bollinger_on_a_tiny_series():
    ind = one_ticker(np.arange(1.0, 26.0))  # 1, 2, ..., 25
    f = ind.frames
    assert f["sma_20"][EUR].iloc[:19].isna().all()
    assert f["sma_20"][EUR].iloc[19] == pytest.approx(10.5)
    assert f["sma_20"][EUR].iloc[24] == pytest.approx(15.5)
    # population std of 20 consecutive integers: sqrt((20^2 - 1) / 12)
    sd = math.sqrt(399 / 12)
    assert f["bb_upper"][EUR].iloc[19] == pytest.approx(10.5 + 2 * sd)
    assert f["bb_lower"][EUR].iloc[19] == pytest.approx(10.5 - 2 * sd)
    assert f["bb_pct_b"][EUR].iloc[19] == pytest.approx((20 - (10.5 - 2 * sd)) / (4 * sd))
    assert f["sma_50"][EUR].isna().all()  # not enough history
    assert f["ret_1d"][EUR].iloc[1] == pytest.approx(1.0)  # 1 -> 2
    assert f["ret_20d"][EUR].iloc[20] == pytest.approx(21 / 1 - 1)
    assert f["max_drawdown_1y"][EUR].isna().all()  # needs 252 sessions


def test_flat_prices_have_no_bollinger_percent_b():
    ind = one_ticker(np.full(30, 50.0))
    assert ind.frames["bb_upper"][EUR].iloc[-1] == pytest.approx(50.0)
    assert ind.frames["bb_pct_b"][EUR].isna().all()
    assert ind.frames["rsi_14"][EUR].iloc[-1] == 50.0  # neither gains nor losses


# The worked example of Wilder's RSI published by StockCharts ("ChartSchool: RSI").
TEXTBOOK_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433,
    46.0826, 45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116,
    46.2222, 45.6439, 46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288,
    44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
]  # fmt: skip
TEXTBOOK_RSI = [
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42,
    39.99, 41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
]  # fmt: skip


def test_rsi_matches_the_textbook_example():
    rsi = one_ticker(np.array(TEXTBOOK_CLOSES)).frames["rsi_14"][EUR]
    assert rsi.iloc[:14].isna().all()
    np.testing.assert_allclose(rsi.iloc[14:].to_numpy(), TEXTBOOK_RSI, atol=0.006)


def hand_rsi(closes: list[float], period: int = 14) -> list[float]:
    """Wilder's recursion, written out plainly."""
    gains = [max(b - a, 0.0) for a, b in zip(closes, closes[1:])]
    losses = [max(a - b, 0.0) for a, b in zip(closes, closes[1:])]
    avg_gain = sum(gains[:period]) / period
    avg_loss = sum(losses[:period]) / period
    out = [math.nan] * period + [100 - 100 / (1 + avg_gain / avg_loss)]
    for g, loss in zip(gains[period:], losses[period:]):
        avg_gain = (avg_gain * (period - 1) + g) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
        out.append(100 - 100 / (1 + avg_gain / avg_loss))
    return out


def test_rsi_equals_the_hand_recursion_and_stays_in_0_100():
    closes = random_walk(300, seed=3)
    rsi = one_ticker(closes).frames["rsi_14"][EUR].to_numpy()
    np.testing.assert_allclose(rsi, hand_rsi(list(closes)), rtol=1e-10)
    assert np.nanmin(rsi) >= 0 and np.nanmax(rsi) <= 100


def test_volatility_drawdown_and_52_week_high():
    closes = random_walk(300, seed=4)
    f = one_ticker(closes).frames
    log_ret = np.diff(np.log(closes))
    assert f["vol_20_ann"][EUR].iloc[19] != f["vol_20_ann"][EUR].iloc[19]  # NaN: 19 returns
    ann = math.sqrt(sessions_per_year({"XPAR"}))  # MC.PA's own calendar: ~255.9 sessions a year
    assert f["vol_20_ann"][EUR].iloc[20] == pytest.approx(np.std(log_ret[:20], ddof=1) * ann)
    assert f["vol_20_ann"][EUR].iloc[-1] == pytest.approx(np.std(log_ret[-20:], ddof=1) * ann)
    last_year = closes[-252:]
    hand_mdd = min(last_year[i] / max(last_year[: i + 1]) - 1 for i in range(252))
    assert f["max_drawdown_1y"][EUR].iloc[-1] == pytest.approx(hand_mdd)
    assert f["max_drawdown_1y"][EUR].iloc[250] != f["max_drawdown_1y"][EUR].iloc[250]  # NaN: 251 sessions
    assert (f["max_drawdown_1y"][EUR].dropna() <= 0).all()
    assert f["dist_52w_high"][EUR].iloc[250] != f["dist_52w_high"][EUR].iloc[250]  # NaN
    assert f["dist_52w_high"][EUR].iloc[-1] == pytest.approx(closes[-1] / closes[-252:].max() - 1)


def test_at_returns_every_indicator_in_the_documented_order():
    ind = compute_indicators(calendar_market("2023-01-02", "2024-06-28"), SMALL_RISK)
    d = pd.Timestamp("2024-03-15")
    row = ind.at(d)
    assert list(row.columns) == list(INDICATOR_COLUMNS) == ind.names
    assert list(row.index) == [USD, EUR, "CAC.PA"]
    for name in INDICATOR_COLUMNS:
        pd.testing.assert_series_equal(row[name], ind.frames[name].loc[d], check_names=False)
    # a Saturday reads Friday's row; before the first date everything is NaN
    pd.testing.assert_frame_equal(ind.at("2024-03-16"), row)
    assert ind.at("2020-01-01").isna().all().all()
    # the caller gets a copy it may modify
    row.iloc[0, 0] = -1.0
    assert ind.at(d).iloc[0, 0] != -1.0


# ---------------------------------------------------------------- own sessions


def test_indicators_use_each_tickers_own_sessions():
    index = pd.bdate_range("2024-01-01", periods=80)
    closed = np.arange(80) % 3 == 2  # the Paris ticker misses every third union date
    eur = pd.Series(random_walk(80, seed=5), index=index).where(~closed)
    close = pd.DataFrame({USD: random_walk(80, seed=6), EUR: eur}, index=index)
    f = compute_indicators(make_market(close), CONFIG).frames
    own = eur.dropna()
    for d in own.index[19:]:
        assert f["sma_20"].at[d, EUR] == pytest.approx(own.loc[:d].iloc[-20:].mean())
    rsi_own = hand_rsi(list(own.to_numpy()))
    for k, d in enumerate(own.index):
        if k >= 14:
            assert f["rsi_14"].at[d, EUR] == pytest.approx(rsi_own[k])
    # a closed date keeps the previous session's values
    for d in index[closed]:
        prev = own.loc[:d].index[-1]
        for name in ("close", "sma_20", "rsi_14", "ret_1d", "bb_pct_b"):
            a, b = f[name].at[d, EUR], f[name].at[prev, EUR]
            assert (a == b) or (math.isnan(a) and math.isnan(b))
    # 20 own sessions take 30 union dates here: the SMA starts later than SPY's
    assert f["sma_20"][USD].first_valid_index() == index[19]
    assert f["sma_20"][EUR].first_valid_index() == own.index[19] == index[28]


# ---------------------------------------------------------------- EUR returns and risk


def test_usd_asset_in_eur_moves_opposite_to_eurusd():
    index = pd.bdate_range("2024-01-01", periods=5)
    close = pd.DataFrame({USD: [100.0] * 5, EUR: [50.0] * 5}, index=index)
    fx = pd.Series([1.10, 1.12, 1.08, 1.08, 1.10], index=index)  # USD per 1 EUR
    ind = compute_indicators(make_market(close, fx), CONFIG)
    r = ind.returns_eur
    assert math.isnan(r[USD].iloc[0])
    # the euro strengthens -> a flat dollar price is worth fewer euros
    assert r[USD].iloc[1] == pytest.approx(1.10 / 1.12 - 1) and r[USD].iloc[1] < 0
    assert r[USD].iloc[2] == pytest.approx(1.12 / 1.08 - 1) and r[USD].iloc[2] > 0
    assert r[USD].iloc[3] == 0.0
    assert (r[EUR].iloc[1:] == 0.0).all()  # a EUR asset ignores the exchange rate
    assert ind.frames["ret_1d"][USD].iloc[1] == 0.0  # the local return is still flat


def test_eur_returns_carry_prices_across_closed_days():
    market = calendar_market("2024-01-02", "2024-12-31")
    r = compute_indicators(market, SMALL_RISK).returns_eur
    us_holiday = pd.Timestamp("2024-07-04")  # New York closed, Paris open
    assert math.isnan(market.close.at[us_holiday, USD])
    fx = market.fx_eurusd
    prev = fx.index[fx.index.get_loc(us_holiday) - 1]
    assert r.at[us_holiday, USD] == pytest.approx(fx[prev] / fx[us_holiday] - 1)
    good_friday = pd.Timestamp("2024-03-29")  # both closed: not in the union index
    assert good_friday not in r.index
    assert r.iloc[1:].notna().all().all()


def test_risk_columns_match_the_scalar_functions_on_the_trailing_window():
    market = calendar_market("2023-01-02", "2024-06-28", seed=7)
    ind = compute_indicators(market, SMALL_RISK)
    lookback, horizon = 60, 10
    f, r = ind.frames, ind.returns_eur
    price_eur = market.close.ffill()
    price_eur[USD] = price_eur[USD] / market.fx_eurusd
    checked = 0
    for t in (lookback - 1, lookback, lookback + 1, 200, len(r) - 1):
        d = r.index[t]
        for col in r.columns:
            w = r[col].iloc[max(0, t - lookback + 1) : t + 1]
            if len(w) < lookback or w.isna().any():  # e.g. SPY has no price on 2023-01-02
                for name in ("var_95", "cvar_95", "mean_ret_eur", "half_kelly", "prospect_20d"):
                    assert math.isnan(f[name].at[d, col])
                continue
            assert f["var_95"].at[d, col] == pytest.approx(historical_var(w, 0.95))
            assert f["cvar_95"].at[d, col] == pytest.approx(historical_cvar(w, 0.95))
            assert f["mean_ret_eur"].at[d, col] == pytest.approx(w.mean())
            assert f["vol_ann_eur"].at[d, col] == pytest.approx(w.std(ddof=1) * math.sqrt(UNION_PPY))
            kelly = max(0.0, 0.5 * w.mean() / w.var(ddof=1))
            assert f["half_kelly"].at[d, col] == pytest.approx(kelly, abs=1e-12)
            p = price_eur[col].iloc[t - lookback : t + 1].to_numpy()
            horizon_returns = p[horizon:] / p[:-horizon] - 1  # the 51 lying inside the window
            expected_prospect = mean_prospect_value(horizon_returns)
            assert f["prospect_20d"].at[d, col] == pytest.approx(expected_prospect)
            checked += 1
    assert checked >= 3 * 3
    assert (f["cvar_95"].dropna() >= f["var_95"].dropna() - 1e-15).all().all()


def test_correlation_over_the_lookback():
    market = calendar_market("2023-01-02", "2024-06-28", seed=8)
    ind = compute_indicators(market, SMALL_RISK)
    d = pd.Timestamp("2024-05-10")
    corr = ind.correlation(d, 60)
    expected = ind.returns_eur.loc[:d].iloc[-60:].corr()
    pd.testing.assert_frame_equal(corr, expected)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert ind.correlation("2023-01-05", 60).isna().all().all()  # 2 returns only


def test_unknown_ticker_is_rejected():
    index = pd.bdate_range("2024-01-01", periods=5)
    with pytest.raises(ValueError, match="NOPE"):
        compute_indicators(make_market(pd.DataFrame({"NOPE": [1.0] * 5}, index=index)), CONFIG)


# ---------------------------------------------------------------- no look-ahead


def assert_same_rows_upto(a: Indicators, b: Indicators, d: pd.Timestamp) -> None:
    for name in INDICATOR_COLUMNS:
        pd.testing.assert_frame_equal(a.frames[name].loc[:d], b.frames[name].loc[:d], obj=name)
    pd.testing.assert_frame_equal(a.returns_eur.loc[:d], b.returns_eur.loc[:d])


@pytest.mark.parametrize("poison", ["times_ten", "random"])
def test_no_look_ahead_poisoned_future_changes_no_past_row(poison):
    market = calendar_market("2022-01-03", "2023-12-29", seed=9)
    d = market.index[420]
    later = market.index > d
    rng = np.random.default_rng(0)
    close = market.close.copy()
    fx = market.fx_eurusd.copy()
    if poison == "times_ten":
        close.loc[later] = close.loc[later] * 10
        fx.loc[later] = fx.loc[later] * 10
    else:
        future = close.loc[later]
        close.loc[later] = future.where(future.isna(), rng.uniform(1, 1e4, future.shape))
        fx.loc[later] = rng.uniform(0.5, 2.0, later.sum())
    poisoned = make_market(close, fx)

    clean = compute_indicators(market, SMALL_RISK)
    dirty = compute_indicators(poisoned, SMALL_RISK)
    assert_same_rows_upto(clean, dirty, d)
    pd.testing.assert_frame_equal(clean.at(d), dirty.at(d))
    # every family is actually exercised: the rows before d hold real values
    assert clean.at(d).notna().all().all()
    # and the future really was different
    assert not clean.frames["sma_20"].loc[later].equals(dirty.frames["sma_20"].loc[later])


def test_no_look_ahead_truncated_panel_gives_the_same_rows():
    market = calendar_market("2022-01-03", "2023-12-29", seed=10)
    d = market.index[450]
    full = compute_indicators(market, SMALL_RISK)
    truncated = compute_indicators(market.upto(d), SMALL_RISK)
    assert len(truncated.returns_eur) == 451
    assert_same_rows_upto(full, truncated, d)


# ---------------------------------------------------------------- speed


def test_figures_at_d_do_not_depend_on_how_much_history_was_loaded():
    # A live run loads ~320 sessions; a backtest loads years. Both must see the same
    # figures at D (Wilder's RSI has an exponentially fading memory: equal to ~1e-9).
    from engine.data.calendars import previous_sessions
    from engine.data.demo import DemoSource

    d = pd.Timestamp("2024-06-28")
    codes = {i.calendar for i in CONFIG.instruments.values()}
    short_start = previous_sessions(codes, d, CONFIG.data.history_sessions)[0]
    src = DemoSource(seed=11)
    short = compute_indicators(src.load(CONFIG, short_start, d), CONFIG).at(d)
    long = compute_indicators(src.load(CONFIG, "2019-01-02", d), CONFIG).at(d)
    assert short.notna().all().all(), "320 sessions of history suffice for every figure"
    pd.testing.assert_frame_equal(short, long, rtol=1e-8, atol=1e-12)


def test_windows_reduced_a_chunk_at_a_time_give_the_same_bits(demo_market, monkeypatch):
    # The trailing windows are copied and reduced WINDOW_CHUNK at a time so that memory
    # does not grow with the history: every figure must be the one a single pass gives.
    import engine.indicators
    import engine.risk.cvar

    cfg = load_config()
    whole = compute_indicators(demo_market, cfg)
    for module in (engine.indicators, engine.risk.cvar):
        monkeypatch.setattr(module, "WINDOW_CHUNK", 37)  # many chunks, a short last one
    chunked = compute_indicators(demo_market, cfg)
    assert len(demo_market.index) > 10 * 37
    for name, frame in whole.frames.items():
        np.testing.assert_array_equal(chunked.frames[name].to_numpy(), frame.to_numpy(), err_msg=name)


def test_the_panel_of_indicators_is_held_once(demo_market):
    ind = compute_indicators(demo_market, load_config())
    assert all(np.shares_memory(frame.to_numpy(), ind._cube) for frame in ind.frames.values())
    assert not ind._cube.flags.writeable
    k = list(ind.frames).index("rsi_14")
    np.testing.assert_array_equal(ind.frames["rsi_14"].to_numpy(), ind._cube[:, :, k])
