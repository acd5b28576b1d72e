"""engine.backtest.metrics: cross-checked against empyrical, hand-checked golden cases,
short/NaN safety and the JSON-ready performance summary."""

from __future__ import annotations

import json
import math

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backtest import metrics as m
from engine.backtest.metrics import (
    PERFORMANCE_KEYS,
    annual_volatility,
    cagr,
    calmar_ratio,
    conditional_value_at_risk,
    downside_deviation,
    hit_rate,
    max_drawdown,
    max_drawdown_duration,
    nav_path,
    per_period_rate,
    performance,
    returns_from_nav,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    turnover,
    value_at_risk,
)
from engine.risk.cvar import historical_cvar, historical_var

RTOL = 1e-9
SEEDS = range(8)


def fat_tailed(seed: int, n: int = 756, drift: float = 0.0003, scale: float = 0.01) -> pd.Series:
    """Student-t(3) daily returns (fat tails, occasional -5% days), dated on business days."""
    rng = np.random.default_rng(seed)
    r = drift + scale * rng.standard_t(3, n) / math.sqrt(3.0)
    r = np.clip(r, -0.5, 0.5)
    return pd.Series(r, index=pd.bdate_range("2020-01-01", periods=n), name="r")


# ---------------------------------------------------------------- empyrical cross-checks


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [30, 252, 1000])
def test_every_shared_metric_matches_empyrical(seed: int, n: int) -> None:
    r = fat_tailed(seed, n, drift=0.0004 * (seed - 3))
    a = r.to_numpy()
    assert total_return(r) == pytest.approx(empyrical.cum_returns_final(a), rel=RTOL, abs=1e-15)
    assert cagr(r) == pytest.approx(empyrical.annual_return(a), rel=RTOL)
    assert annual_volatility(r) == pytest.approx(empyrical.annual_volatility(a), rel=RTOL)
    assert sharpe_ratio(r) == pytest.approx(empyrical.sharpe_ratio(a), rel=RTOL)
    assert sortino_ratio(r) == pytest.approx(empyrical.sortino_ratio(a), rel=RTOL)
    assert downside_deviation(r) == pytest.approx(empyrical.downside_risk(a), rel=RTOL)
    assert max_drawdown(r) == pytest.approx(empyrical.max_drawdown(a), rel=RTOL)
    assert calmar_ratio(r) == pytest.approx(empyrical.calmar_ratio(a), rel=RTOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_series_input_matches_array_input(seed: int) -> None:
    r = fat_tailed(seed, 300)
    for f in (total_return, cagr, annual_volatility, sharpe_ratio, sortino_ratio, max_drawdown, calmar_ratio):
        assert f(r) == f(r.to_numpy()) == f(list(r))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("annual_rate", [0.0, 0.02, 0.05])
def test_annual_rates_convert_to_empyrical_per_period_rates(seed: int, annual_rate: float) -> None:
    """Our risk_free / required_return are annual; empyrical's are per period."""
    r = fat_tailed(seed, 500).to_numpy()
    daily = (1 + annual_rate) ** (1 / 252) - 1
    assert per_period_rate(annual_rate) == pytest.approx(daily, rel=1e-15, abs=0)
    assert sharpe_ratio(r, risk_free=annual_rate) == pytest.approx(
        empyrical.sharpe_ratio(r, risk_free=daily), rel=RTOL
    )
    assert sortino_ratio(r, required_return=annual_rate) == pytest.approx(
        empyrical.sortino_ratio(r, required_return=daily), rel=RTOL
    )
    assert downside_deviation(r, annual_rate) == pytest.approx(
        empyrical.downside_risk(r, required_return=daily), rel=RTOL
    )


def test_volatility_uses_the_sample_std_like_empyrical() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0])
    expected = np.std(r, ddof=1) * math.sqrt(252)
    assert annual_volatility(r) == pytest.approx(expected, rel=1e-14)
    assert empyrical.annual_volatility(r) == pytest.approx(expected, rel=1e-14)
    assert annual_volatility(r) != pytest.approx(np.std(r, ddof=0) * math.sqrt(252), rel=1e-6)


def test_degenerate_ratios_agree_with_empyrical() -> None:
    flat_up = np.full(10, 0.001)  # no dispersion, no downside
    assert sharpe_ratio(flat_up) == math.inf == empyrical.sharpe_ratio(flat_up)
    assert sortino_ratio(flat_up) == math.inf == empyrical.sortino_ratio(flat_up)
    assert math.isnan(calmar_ratio(flat_up)) and math.isnan(empyrical.calmar_ratio(flat_up))
    assert max_drawdown(flat_up) == 0.0 == empyrical.max_drawdown(flat_up)
    zeros = np.zeros(10)
    assert math.isnan(sharpe_ratio(zeros)) and math.isnan(empyrical.sharpe_ratio(zeros))
    flat_down = np.full(10, -0.001)
    assert sharpe_ratio(flat_down) == -math.inf == empyrical.sharpe_ratio(flat_down)


def test_nans_are_dropped_not_counted() -> None:
    """empyrical counts a NaN as a 0% session (it changes n in CAGR and the std); we drop it."""
    r = fat_tailed(3, 200)
    holed = r.copy()
    holed.iloc[[5, 50, 150]] = np.nan
    kept = holed.dropna()
    for f in (total_return, cagr, annual_volatility, sharpe_ratio, sortino_ratio, max_drawdown, calmar_ratio,
              hit_rate, value_at_risk, conditional_value_at_risk):
        assert f(holed) == f(kept)
    assert cagr(holed) == pytest.approx(empyrical.annual_return(kept.to_numpy()), rel=RTOL)


@pytest.mark.parametrize("n", [20, 21, 99, 100, 199, 200, 201, 250, 757, 1000])
def test_var_cvar_relation_to_empyrical(n: int) -> None:
    """Different estimators by design: ours is -(k-th smallest) with k = ceil(0.05 n) (as in
    engine.risk.cvar), empyrical interpolates a percentile (and keeps the sign). Its VaR
    lies within one order statistic of ours; its CVaR averages floor(0.05 (n-1)) + 1
    smallest returns, which is the same k at 95%, so the CVaRs agree up to the sign."""
    r = fat_tailed(n, n).to_numpy()
    x = np.sort(r)
    k = math.ceil(n * 0.05 - 1e-9)
    assert value_at_risk(r) == historical_var(r, 0.95) == -x[k - 1]
    assert conditional_value_at_risk(r) == historical_cvar(r, 0.95)
    emp_var = empyrical.value_at_risk(r, cutoff=0.05)
    assert x[max(k - 2, 0)] <= emp_var <= x[k]
    assert conditional_value_at_risk(r) == pytest.approx(-empyrical.conditional_value_at_risk(r), rel=1e-12)


# ---------------------------------------------------------------- golden cases


def test_nav_path_starts_at_one_before_the_first_return() -> None:
    r = pd.Series([-0.1, 0.2], index=pd.to_datetime(["2024-01-02", "2024-01-03"]))
    path = nav_path(r)
    np.testing.assert_allclose(path.to_numpy(), [1.0, 0.9, 1.08])
    assert list(path.index) == list(pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-03"]))
    # a loss on the first day is a drawdown from the starting capital
    assert max_drawdown(r) == pytest.approx(-0.1)


def test_max_drawdown_duration_recovered_and_never_recovered() -> None:
    # Fri 2024-01-05, Mon 08, Tue 09, Wed 10, Thu 11
    dates = pd.to_datetime(["2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11"])
    r = pd.Series([-0.1, 0.0, 0.2, -0.5, 0.1], index=dates)
    # NAV 1, .9, .9, 1.08, .54, .594: the anchor's spell recovers at the +20% day (3 sessions,
    # Fri 5th -> Tue 9th = 4 calendar days); the 1.08 peak (Tue 9th) never recovers: 2
    # sessions to Thu 11th (2 days). The longest is the first.
    assert max_drawdown_duration(r) == (3, 4)
    assert max_drawdown(r) == pytest.approx(-0.5)

    # never recovered and longest: +5%, then down for good
    r2 = pd.Series([0.05, -0.01, -0.01, 0.005, -0.02], index=pd.bdate_range("2024-03-01", periods=5))
    # peak at Fri 1 March (position 1); NAV never gets back: 4 sessions to Thu 7 March = 6 days
    assert max_drawdown_duration(r2) == (4, 6)


def test_max_drawdown_duration_counts_an_exact_recovery_and_no_drawdown() -> None:
    r = pd.Series([0.1, -1 / 11, 0.01], index=pd.bdate_range("2024-01-01", periods=3))
    # 1, 1.1, 1.0 (-9.09%), 1.01: the 1.1 peak (Mon) is never regained -> 2 sessions, 2 days
    assert max_drawdown_duration(r) == (2, 2)
    up = pd.Series([0.1, 0.0, 0.2, 0.01], index=pd.bdate_range("2024-01-01", periods=4))
    assert max_drawdown_duration(up) == (0, 0)
    # +10% then -1/11 then +10% lands back exactly on 1.1 (up to one ulp): recovered
    back = pd.Series([0.1, -1 / 11, 0.1, 0.0], index=pd.bdate_range("2024-01-01", periods=4))
    assert max_drawdown_duration(back) == (2, 2)


def test_max_drawdown_duration_without_dates_has_no_days() -> None:
    d = max_drawdown_duration(np.array([-0.1, 0.0, 0.2, -0.5, 0.1]))
    assert d.periods == 3 and math.isnan(d.days)


def _duration_brute_force(r: list[float]) -> int:
    nav = np.concatenate([[1.0], np.cumprod(1 + np.array(r))])
    best = 0
    for p in range(len(nav)):
        if nav[p] < nav[: p + 1].max() * (1 - 1e-12):
            continue  # not at a running peak
        if p + 1 < len(nav) and nav[p + 1] < nav[p] * (1 - 1e-12):  # a spell starts after p
            q = next((j for j in range(p + 1, len(nav)) if nav[j] >= nav[p] * (1 - 1e-12)), len(nav) - 1)
            best = max(best, q - p)
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-0.05, -0.01, 0.0, 0.01, 0.02, 0.05]), min_size=2, max_size=40))
def test_max_drawdown_duration_matches_a_brute_force_count(r: list[float]) -> None:
    assert max_drawdown_duration(r).periods == _duration_brute_force(r)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=60))
def test_max_drawdown_matches_empyrical_on_arbitrary_returns(r: list[float]) -> None:
    a = np.array(r)
    assert max_drawdown(a) == pytest.approx(empyrical.max_drawdown(a), rel=1e-9, abs=1e-12)
    assert total_return(a) == pytest.approx(empyrical.cum_returns_final(a), rel=1e-9, abs=1e-12)


def test_hit_rate_ignores_flat_sessions() -> None:
    r = [0.01, -0.02, 0.0, 0.0, 0.03, 0.005, -0.001]  # 3 up, 2 down, 2 flat
    assert hit_rate(r) == pytest.approx(3 / 5)
    assert math.isnan(hit_rate([0.0, 0.0, 0.0]))
    assert hit_rate([0.01, 0.02]) == 1.0
    assert hit_rate([-0.01, 0.0]) == 0.0


def test_turnover_counts_buys_and_sells_only() -> None:
    nav = pd.Series([10_000.0, 10_200.0, 9_800.0, 10_000.0], index=pd.bdate_range("2024-01-01", periods=4))
    trades = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03", "2024-01-04"]),
            "side": ["buy", "sell", "dividend", "split", "buy"],
            "gross_eur": [5_000.0, 2_000.0, 40.0, 0.0, 1_000.0],
        }
    )
    # (5000 + 2000 + 1000) / mean NAV 10000 / (4 / 252 years) = 0.8 * 63 = 50.4 a year
    assert turnover(trades, nav) == pytest.approx(0.8 * 252 / 4)
    assert turnover(trades.iloc[:0], nav) == 0.0
    # a negative sign on a sell (a cash-flow convention) is counted by its size
    signed = trades.assign(gross_eur=[5_000.0, -2_000.0, 40.0, 0.0, 1_000.0])
    assert turnover(signed, nav) == turnover(trades, nav)
    assert math.isnan(turnover(trades, nav.iloc[:1]))


# ---------------------------------------------------------------- short series and NaN safety


SHORT_INPUTS = [[], [0.01], [np.nan, np.nan], [np.nan, 0.02], np.array([]), pd.Series([], dtype=float)]


@pytest.mark.parametrize("r", SHORT_INPUTS)
def test_short_series_give_nan_not_exceptions(r: object) -> None:
    for f in (total_return, cagr, annual_volatility, sharpe_ratio, sortino_ratio, downside_deviation,
              max_drawdown, calmar_ratio, value_at_risk, conditional_value_at_risk, hit_rate):
        assert math.isnan(f(r)), f.__name__
    d = max_drawdown_duration(r)
    assert math.isnan(d.periods) and math.isnan(d.days)


def test_var_cvar_need_twenty_returns() -> None:
    r = fat_tailed(1, 19)
    assert math.isnan(value_at_risk(r)) and math.isnan(conditional_value_at_risk(r))
    assert value_at_risk(fat_tailed(1, 20)) > 0


def test_a_total_loss_is_handled() -> None:
    r = [0.1, -1.0, 0.0]
    assert total_return(r) == -1.0
    assert cagr(r) == -1.0
    assert max_drawdown(r) == -1.0
    assert max_drawdown_duration(r).periods == 2


# ---------------------------------------------------------------- performance


def _nav(seed: int = 0, n: int = 600, capital: float = 10_000.0) -> pd.Series:
    r = fat_tailed(seed, n)
    return capital * (1 + r).cumprod().rename("nav_eur")


def test_returns_from_nav_start_from_the_capital() -> None:
    nav = pd.Series([9_900.0, 10_890.0], index=pd.bdate_range("2024-01-01", periods=2))
    r = returns_from_nav(nav, 10_000.0)
    np.testing.assert_allclose(r.to_numpy(), [-0.01, 0.1])
    assert r.index.equals(nav.index)


def test_performance_keys_order_and_json() -> None:
    nav = _nav()
    trades = pd.DataFrame({"date": nav.index[:2], "side": ["buy", "sell"], "gross_eur": [9_000.0, 3_000.0]})
    perf = performance(nav, capital=10_000.0, trades=trades, costs_eur=pd.Series([1.5, 2.25]), taxes_eur=0.0,
                       llm_tokens=np.int64(123_456), llm_cost_usd=np.float64(1.23))
    assert tuple(perf) == PERFORMANCE_KEYS
    assert list(perf) == [
        "total_return", "cagr", "volatility_ann", "sharpe", "sortino", "max_drawdown", "max_drawdown_days",
        "max_drawdown_sessions", "calmar", "var_95", "cvar_95", "hit_rate", "turnover_ann", "costs_eur",
        "taxes_eur", "llm_tokens", "llm_cost_usd", "sessions", "start", "end", "final_nav_eur",
    ]
    text = json.dumps(perf, allow_nan=False)
    assert json.loads(text) == perf
    for v in perf.values():
        assert v is None or type(v) in (float, int, str)
    assert type(perf["llm_tokens"]) is int and type(perf["sessions"]) is int
    assert type(perf["max_drawdown_sessions"]) is int and type(perf["max_drawdown_days"]) is int
    assert perf["costs_eur"] == 3.75 and perf["taxes_eur"] == 0.0 and perf["llm_cost_usd"] == 1.23
    assert perf["sessions"] == 600
    assert perf["start"] == "2020-01-01" and perf["end"] == nav.index[-1].date().isoformat()
    assert perf["final_nav_eur"] == pytest.approx(nav.iloc[-1])
    assert perf["turnover_ann"] == pytest.approx(12_000.0 / nav.mean() / (600 / 252))


def test_performance_metrics_equal_the_functions_on_returns_from_capital() -> None:
    nav = _nav(5)
    capital = 10_000.0
    r = returns_from_nav(nav, capital)
    perf = performance(nav, capital=capital, risk_free=0.03)
    assert perf["total_return"] == pytest.approx(nav.iloc[-1] / capital - 1, rel=1e-12)
    assert perf["total_return"] == pytest.approx(empyrical.cum_returns_final(r.to_numpy()), rel=RTOL)
    assert perf["cagr"] == pytest.approx(empyrical.annual_return(r.to_numpy()), rel=RTOL)
    assert perf["volatility_ann"] == pytest.approx(empyrical.annual_volatility(r.to_numpy()), rel=RTOL)
    assert perf["sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(r.to_numpy(), risk_free=1.03 ** (1 / 252) - 1), rel=RTOL
    )
    assert perf["sortino"] == pytest.approx(empyrical.sortino_ratio(r.to_numpy()), rel=RTOL)
    assert perf["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r.to_numpy()), rel=RTOL)
    assert perf["calmar"] == pytest.approx(empyrical.calmar_ratio(r.to_numpy()), rel=RTOL)
    assert perf["var_95"] == historical_var(r.to_numpy())
    assert perf["cvar_95"] == historical_cvar(r.to_numpy())
    assert perf["hit_rate"] == hit_rate(r)
    d = max_drawdown_duration(r)
    assert (perf["max_drawdown_sessions"], perf["max_drawdown_days"]) == (d.periods, d.days)
    assert perf["turnover_ann"] is None and perf["costs_eur"] is None and perf["llm_tokens"] is None


def test_performance_counts_a_first_day_loss() -> None:
    nav = pd.Series([9_000.0, 9_500.0, 10_000.0], index=pd.bdate_range("2024-01-01", periods=3))
    perf = performance(nav, capital=10_000.0)
    assert perf["max_drawdown"] == pytest.approx(-0.1)
    assert perf["max_drawdown_sessions"] == 3  # from the capital to the first NAV back at 10,000
    assert perf["max_drawdown_days"] == 2  # dated from the first session (Mon -> Wed)
    assert perf["total_return"] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("values", [[], [10_100.0], [np.nan, 10_100.0], [np.nan]])
def test_performance_of_a_short_run_is_json_ready(values: list[float]) -> None:
    nav = pd.Series(values, index=pd.bdate_range("2024-01-01", periods=len(values)), dtype=float)
    perf = performance(nav, capital=10_000.0, trades=pd.DataFrame(columns=["date", "side", "gross_eur"]))
    json.dumps(perf, allow_nan=False)
    assert tuple(perf) == PERFORMANCE_KEYS
    assert perf["sharpe"] is None and perf["max_drawdown"] is None and perf["turnover_ann"] is None
    assert perf["sessions"] == int(pd.Series(values, dtype=float).notna().sum())


def test_performance_maps_infinities_to_none() -> None:
    nav = pd.Series(10_000.0 * 1.001 ** np.arange(1, 31), index=pd.bdate_range("2024-01-01", periods=30))
    perf = performance(nav, capital=10_000.0)
    assert perf["sortino"] is None  # no losing day: +inf, not JSON
    assert perf["calmar"] is None  # no drawdown
    assert perf["max_drawdown"] == 0.0 and perf["max_drawdown_sessions"] == 0
    json.dumps(perf, allow_nan=False)


def test_module_has_no_scipy_dependency() -> None:
    import ast
    import inspect

    for module in (m, __import__("engine.backtest.verdict", fromlist=["x"])):
        tree = ast.parse(inspect.getsource(module))
        names = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not any(name.split(".")[0] in ("scipy", "empyrical") for name in names), module.__name__


def test_performance_annualises_with_the_calendars_sessions_per_year():
    from engine.data.calendars import sessions_per_year

    ppy = sessions_per_year({"XNYS", "XPAR"})  # about 258, not 252
    rng = np.random.default_rng(11)
    idx = pd.bdate_range("2024-01-01", periods=600)
    nav = pd.Series(10_000 * np.cumprod(1 + rng.normal(3e-4, 0.01, 600)), index=idx)
    r = returns_from_nav(nav, 10_000.0)
    perf = performance(nav, capital=10_000.0, periods_per_year=ppy)
    assert perf["volatility_ann"] == pytest.approx(np.std(r, ddof=1) * math.sqrt(ppy))
    assert perf["cagr"] == pytest.approx((nav.iloc[-1] / 10_000.0) ** (ppy / 600) - 1)
    assert perf["volatility_ann"] != pytest.approx(performance(nav, capital=10_000.0)["volatility_ann"])
