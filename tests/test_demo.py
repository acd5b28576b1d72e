"""The offline demo market: deterministic, on the real calendars, and realistic enough."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.data import calendars, demo
from engine.data.demo import DemoSource
from engine.errors import DataUnavailable

FRAMES = ("open", "high", "low", "close", "volume", "dividends", "splits")
US = ["SPY", "QQQ", "GLD", "TLT", "FEZ"]


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def paris(cfg):
    """The Paris single stocks (not the CAC 40 tracker, not the index)."""
    return [a.ticker for a in cfg.assets if a.calendar == "XPAR" and a.kind == "stock"]


@pytest.fixture(scope="module")
def panel(cfg):
    """Twenty years of the default seed: the window for the statistical checks."""
    return DemoSource(42).load(cfg, "2005-01-03", "2024-12-31")


def log_returns(md) -> pd.DataFrame:
    """Close-to-close log-returns of each ticker on its own sessions (NaN elsewhere)."""
    return np.log(md.close).apply(lambda s: s.dropna().diff())


def assert_same(a, b) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    pd.testing.assert_series_equal(a.fx_eurusd, b.fx_eurusd)


# ----------------------------------------------------------------------- contract


def test_marks_itself_synthetic_with_the_demo_source_name(cfg):
    src = DemoSource()
    assert src.name == "demo" and src.synthetic is True
    md = src.load(cfg, "2024-01-01", "2024-03-31")
    assert md.source == "demo"
    assert md.synthetic is True
    assert md.issues == ()


def test_frames_have_the_config_instruments_and_the_union_calendar(cfg):
    md = DemoSource().load(cfg, "2024-01-01", "2024-12-31")
    expected = calendars.union_sessions(["XNYS", "XPAR"], "2024-01-01", "2024-12-31")
    for name in FRAMES:
        frame = getattr(md, name)
        assert list(frame.columns) == list(cfg.instruments)
        pd.testing.assert_index_equal(frame.index, expected)
        assert frame.index.dtype == "datetime64[ns]" and frame.index.tz is None
    pd.testing.assert_index_equal(md.fx_eurusd.index, expected)
    assert (md.dividends == 0.0).all().all()
    # Unadjusted prices with split events: Air Liquide's 11-for-10 of 2024-06-10 only.
    assert md.price_convention == "unadjusted"
    events = md.splits.stack()
    assert events[events != 1.0].to_dict() == {(pd.Timestamp("2024-06-10"), "AI.PA"): 1.1}


def test_a_demo_split_is_a_price_drop_by_the_ratio_in_the_traded_prices(cfg):
    md = DemoSource().load(cfg, "2024-06-03", "2024-06-14")
    before, on = md.close.at[pd.Timestamp("2024-06-07"), "AI.PA"], md.close.at[pd.Timestamp("2024-06-10"), "AI.PA"]
    assert on / before == pytest.approx(1 / 1.1, rel=0.06)  # the split, plus one day's move
    # The units of a bar do not depend on the window asked for.
    short = DemoSource().load(cfg, "2024-06-03", "2024-06-07")
    assert short.close.at[pd.Timestamp("2024-06-07"), "AI.PA"] == before


def test_eurusd_has_a_plausible_value_on_every_date(panel):
    fx = panel.fx_eurusd
    assert fx.notna().all() and np.isfinite(fx).all()
    assert fx.between(0.4, 2.5).all()


# -------------------------------------------------------------------- determinism


def test_same_seed_and_range_give_identical_data_even_after_a_cold_start(cfg):
    first = DemoSource(7).load(cfg, "2023-06-01", "2024-06-30")
    demo._simulate.cache_clear()  # recomputed from scratch, not served from the cache
    again = DemoSource(7).load(cfg, "2023-06-01", "2024-06-30")
    assert_same(first, again)


def test_a_sub_range_equals_the_slice_of_a_longer_range(cfg):
    long = DemoSource(3).load(cfg, "2019-01-01", "2025-06-30")
    short = DemoSource(3).load(cfg, "2024-11-25", "2025-01-10")
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(short, name), getattr(long, name).loc["2024-11-25":"2025-01-10"])
    pd.testing.assert_series_equal(short.fx_eurusd, long.fx_eurusd.loc["2024-11-25":"2025-01-10"])


@pytest.fixture(scope="module")
def full_epoch(cfg):
    return DemoSource(11).load(cfg, calendars.CALENDAR_START, calendars.CALENDAR_END)


@settings(max_examples=30, deadline=None)
@given(
    start=st.dates(min_value=pd.Timestamp("2000-01-03").date(), max_value=pd.Timestamp("2036-12-31").date()),
    days=st.integers(min_value=0, max_value=60),
)
def test_any_window_matches_the_full_epoch(cfg, full_epoch, start, days):
    """The bar of a date never depends on the requested range."""
    full = full_epoch
    end = min(pd.Timestamp(start) + pd.Timedelta(days=days), calendars.CALENDAR_END)
    if len(calendars.union_sessions(["XNYS", "XPAR"], start, end)) == 0:
        return
    part = DemoSource(11).load(cfg, start, end)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(part, name), getattr(full, name).loc[part.index])
    pd.testing.assert_series_equal(part.fx_eurusd, full.fx_eurusd.loc[part.index])


def test_bars_do_not_depend_on_the_other_instruments(cfg):
    """A Paris-only configuration (XPAR calendar only) sees the same MC.PA and CAC 40."""
    small = cfg.without_arms().with_overrides(
        assets=[cfg.asset_by_ticker["MC.PA"].model_dump()],
        benchmarks=[b.model_dump() for b in cfg.benchmarks if b.ticker == "^FCHI"],
    )
    part = DemoSource(5).load(small, "2024-01-01", "2024-12-31")
    full = DemoSource(5).load(cfg, "2024-01-01", "2024-12-31")
    assert part.index.equals(calendars.sessions("XPAR", "2024-01-01", "2024-12-31"))
    for name in ("open", "high", "low", "close", "volume"):
        pd.testing.assert_frame_equal(
            getattr(part, name), getattr(full, name).loc[part.index, ["MC.PA", "^FCHI"]]
        )


def test_different_seeds_give_different_paths(cfg):
    a = DemoSource(1).load(cfg, "2024-01-01", "2024-12-31")
    b = DemoSource(2).load(cfg, "2024-01-01", "2024-12-31")
    ra, rb = log_returns(a), log_returns(b)
    assert not np.allclose(ra.fillna(0.0), rb.fillna(0.0))
    assert (ra - rb).abs().mean().min() > 1e-4  # every ticker differs, not just one


def test_returned_frames_are_copies_not_the_cache(cfg):
    md = DemoSource(42).load(cfg, "2024-01-01", "2024-01-31")
    before = md.close.copy()
    md.close.iloc[:, :] = -1.0
    again = DemoSource(42).load(cfg, "2024-01-01", "2024-01-31")
    pd.testing.assert_frame_equal(again.close, before)


# ---------------------------------------------------------------------- calendars


def test_us_thanksgiving_paris_trades_new_york_does_not(cfg):
    md = DemoSource().load(cfg, "2024-11-01", "2024-12-31")
    d = pd.Timestamp("2024-11-28")
    assert d in md.index
    paris_tickers = [t for t, i in cfg.instruments.items() if i.calendar == "XPAR"]
    for name in ("open", "high", "low", "close", "volume"):
        row = getattr(md, name).loc[d]
        assert row[US].isna().all(), name
        assert row[paris_tickers].notna().all(), name
    assert not md.has_bar("SPY", d) and md.has_bar("MC.PA", d)
    assert np.isfinite(md.fx_eurusd.loc[d])


def test_may_day_new_york_trades_paris_does_not(cfg):
    md = DemoSource().load(cfg, "2024-04-15", "2024-05-15")
    d = pd.Timestamp("2024-05-01")
    assert d in md.index
    assert md.close.loc[d, US].notna().all()
    assert md.close.loc[d, ["CAC.PA", "MC.PA", "^FCHI"]].isna().all()
    assert md.has_bar("QQQ", d) and not md.has_bar("CAC.PA", d)


def test_no_weekends_and_bars_on_exactly_the_own_sessions(cfg, panel):
    assert (panel.index.day_of_week < 5).all()
    for ticker, inst in cfg.instruments.items():
        own = calendars.sessions(inst.calendar, panel.index[0], panel.index[-1])
        for name in ("open", "high", "low", "close", "volume"):
            col = getattr(panel, name)[ticker]
            assert col.dropna().index.equals(own), f"{name} {ticker}"


def test_moves_while_an_exchange_is_closed_show_up_as_an_opening_gap(cfg, panel):
    """After a holiday the open jumps further from the previous close than on normal days."""
    ratios = []
    for ticker in ["SPY", "MC.PA", "BNP.PA", "GLD"]:
        close, open_ = panel.close[ticker].dropna(), panel.open[ticker].dropna()
        gap = np.log(open_ / close.shift()).abs().iloc[1:]
        idx = close.index
        after_break = pd.Series((idx[1:] - idx[:-1]).days > np.where(idx[1:].day_of_week == 0, 3, 1), index=idx[1:])
        assert after_break.sum() > 50
        ratios.append(gap[after_break].mean() / gap[~after_break].mean())
    assert min(ratios) > 1.5, ratios


# ------------------------------------------------------------------------- bars


def test_ohlc_is_consistent_positive_and_finite(cfg, panel):
    o, h, lo, c, v = panel.open, panel.high, panel.low, panel.close, panel.volume
    has = c.notna()
    mask = has.to_numpy()
    for frame in (o, h, lo, c, v):
        values = frame.to_numpy()[mask]
        assert np.isfinite(values).all() and (values > 0).all()
    assert (h >= np.maximum(o, c)).where(has, True).all().all()
    assert (lo <= np.minimum(o, c)).where(has, True).all().all()
    assert ((h > lo) | ~has).all().all()  # a real intraday range, not a flat bar
    vol = v.to_numpy()[mask]
    assert (vol == np.round(vol)).all() and (vol >= 1).all()


def test_intraday_range_and_volume_are_plausible(panel):
    rng = np.log(panel.high / panel.low).mean()
    assert rng["SPY"] == pytest.approx(0.0125, rel=0.5)  # about 1.2% a day
    assert rng.between(0.004, 0.05).all()
    median_volume = panel.volume.median()
    assert 1e7 < median_volume["SPY"] < 2e8
    assert 1e4 < median_volume["RMS.PA"] < 1e6


def test_no_close_to_close_move_trips_the_jump_check(cfg):
    """The data validation flags moves beyond jump_threshold: the demo must pass it."""
    for seed in (0, 1, 42):
        md = DemoSource(seed).load(cfg, calendars.CALENDAR_START, calendars.CALENDAR_END)
        moves = md.close.apply(lambda s: s.dropna().pct_change()).abs()
        assert moves.max().max() < cfg.data.jump_threshold


# -------------------------------------------------------------------- statistics


def test_fat_tails(panel):
    r = log_returns(panel)
    z = ((r - r.mean()) / r.std()).stack().dropna()
    kurtosis = float((z**4).mean())
    assert kurtosis > 4.0, kurtosis  # a normal distribution gives 3


def test_volatility_clusters(panel):
    r = log_returns(panel)
    abs_acf = [r[t].dropna().abs().autocorr(1) for t in r]
    sq_acf = [(r[t].dropna() ** 2).autocorr(1) for t in r]
    assert np.mean(abs_acf) > 0.04 and min(abs_acf) > 0.0
    assert np.mean(sq_acf) > 0.03
    # calm and stormy years: annual vol of SPY varies a lot from year to year
    yearly = r["SPY"].groupby(r.index.year).std() * np.sqrt(252)
    assert yearly.max() / yearly.min() > 1.5


def test_correlations_look_like_a_real_market(panel, paris):
    corr = log_returns(panel).corr()
    assert corr.loc["SPY", "QQQ"] > 0.8
    block = corr.loc[paris, paris].to_numpy()
    pairs = block[np.triu_indices(len(paris), 1)]
    assert 0.3 < pairs.mean() < 0.8, pairs.mean()
    assert abs(corr.loc["GLD", "SPY"]) < 0.25
    assert corr.loc["TLT", "SPY"] < 0.05
    assert corr.loc["GLD", "SPY"] < pairs.mean() and corr.loc["TLT", "SPY"] < pairs.mean()
    assert corr.loc[paris, "^FCHI"].mean() > 0.5


def test_annualised_volatilities_are_sensible(panel, paris):
    vol = log_returns(panel).std() * np.sqrt(252)
    assert 0.12 < vol["SPY"] < 0.24
    assert 0.16 < vol["QQQ"] < 0.30 and vol["QQQ"] > vol["SPY"]
    assert 0.10 < vol["GLD"] < 0.20
    assert 0.09 < vol["TLT"] < 0.20
    assert 0.13 < vol["^FCHI"] < 0.25
    assert vol[paris].between(0.14, 0.45).all(), vol[paris]
    fx_vol = np.log(panel.fx_eurusd).diff().std() * np.sqrt(252)
    assert 0.04 < fx_vol < 0.11


def test_equities_drift_up_over_the_long_run(cfg):
    md = DemoSource(42).load(cfg, calendars.CALENDAR_START, calendars.CALENDAR_END)
    r = log_returns(md)
    equities = ["SPY", "QQQ", "FEZ", "^FCHI"] + [a.ticker for a in cfg.assets if a.kind == "stock"]
    assert r[equities].mean().mean() > 0


def test_cac_tracker_follows_the_index(panel):
    ratio = (panel.close["CAC.PA"] / panel.close["^FCHI"]).dropna()
    assert ratio.median() == pytest.approx(0.0105, rel=0.01)  # index / 100, times ~1.05
    assert (ratio / ratio.median() - 1).abs().max() < 0.005  # only tiny tracking noise
    assert (panel.open["CAC.PA"] / panel.open["^FCHI"]).dropna().between(0.0104, 0.0106).all()


def test_fez_in_usd_moves_with_europe_and_the_euro(panel):
    r = log_returns(panel)
    fx = np.log(panel.fx_eurusd).diff()
    fez_usd = r["FEZ"].dropna()
    fez_eur = fez_usd - np.log(panel.fx_eurusd).loc[fez_usd.index].diff()
    assert fez_usd.corr(fx.loc[fez_usd.index]) > 0.2
    assert r["^FCHI"].corr(fx) < fez_usd.corr(fx.loc[fez_usd.index])
    common = fez_eur.index.intersection(r["^FCHI"].dropna().index)
    assert fez_eur.loc[common].corr(r["^FCHI"].loc[common]) > fez_usd.loc[common].corr(r["^FCHI"].loc[common])


@pytest.mark.parametrize("seed", [1, 42, 2024])
def test_price_levels_near_the_references_around_2025(cfg, seed):
    params = demo.load_params()
    md = DemoSource(seed).load(cfg, "2024-12-20", "2025-01-10")
    d = pd.Timestamp("2025-01-02")
    for ticker in cfg.instruments:
        spec = params.instruments[ticker]
        if spec.tracks is not None:
            ref = params.instruments[spec.tracks].reference_level * spec.tracking_factor / spec.index_divisor
        else:
            ref = spec.reference_level
        level = md.close.loc[d, ticker]
        assert ref / 1.5 < level < ref * 1.5, (ticker, level, ref)
    assert 1.04 / 1.5 < md.fx_eurusd.loc[d] < 1.04 * 1.5
    assert 70 < md.close.loc[d, "CAC.PA"] < 90 and 6000 < md.close.loc[d, "^FCHI"] < 9000


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("1999-06-01", "2000-06-01"),  # before the epoch
        ("2036-06-01", "2037-06-01"),  # after it
        ("2024-06-10", "2024-06-01"),  # start after end
        ("2024-06-01", "2024-06-02"),  # a weekend: no session at all
    ],
)
def test_unsupported_or_empty_ranges_fail_with_one_clear_line(cfg, start, end):
    with pytest.raises(DataUnavailable) as exc:
        DemoSource().load(cfg, start, end)
    message = str(exc.value)
    assert message and "\n" not in message
    assert start[:4] in message or "2000-01-03" in message


def test_an_instrument_without_demo_parameters_is_a_clear_error(cfg):
    extra = {"ticker": "ZZZ.PA", "name": "Nowhere", "kind": "stock", "sector": "None",
             "currency": "EUR", "calendar": "XPAR", "ftt": True}
    bigger = cfg.with_overrides(assets=[a.model_dump() for a in cfg.assets] + [extra])
    with pytest.raises(DataUnavailable, match="ZZZ.PA"):
        DemoSource().load(bigger, "2024-01-01", "2024-01-31")


def test_the_demo_parameters_cover_the_default_universe(cfg):
    params = demo.load_params()
    assert set(cfg.instruments) <= set(params.instruments)
    for ticker, inst in cfg.instruments.items():
        assert params.instruments[ticker].currency == inst.currency


# -------------------------------------------------------------------- performance


