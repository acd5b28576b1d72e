"""engine.risk: historical VaR/CVaR, prospect value, Kelly and drawdown, on hand-checked
cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.risk import (
    drawdown,
    drawdown_multiplier,
    historical_cvar,
    historical_var,
    kelly_fraction,
    max_drawdown,
    mean_prospect_value,
    portfolio_cvar,
    portfolio_var,
    prospect_value,
    rolling_var_cvar,
    tail_count,
)

# ---------------------------------------------------------------- VaR / CVaR


def _ladder(n: int, seed: int = 0) -> np.ndarray:
    """-0.050, -0.049, ... in shuffled order: the k worst are known by construction."""
    values = (np.arange(n) - 50) / 1000.0
    return np.random.default_rng(seed).permutation(values)


def test_var_cvar_of_100_known_returns():
    r = _ladder(100)
    # k = ceil(100 * 0.05) = 5 worst: -5.0%, -4.9%, -4.8%, -4.7%, -4.6%
    assert historical_var(r, 0.95) == pytest.approx(0.046)
    assert historical_cvar(r, 0.95) == pytest.approx(0.048)
    # k = 1 at 99%: both are the single worst loss
    assert historical_var(r, 0.99) == pytest.approx(0.05)
    assert historical_cvar(r, 0.99) == pytest.approx(0.05)


def test_tail_count_is_not_fooled_by_float_noise():
    # 100 * (1 - 0.95) is 5.000000000000004 in floating point; 20 * 0.05 is 1.0000000000000009
    assert tail_count(100, 0.95) == 5
    assert tail_count(20, 0.95) == 1
    assert tail_count(250, 0.95) == 13  # ceil(12.5)


def test_var_cvar_of_250_returns_uses_13_worst():
    r = np.concatenate([np.full(237, 0.001), -np.arange(1, 14) / 100.0])  # -1% .. -13%
    assert historical_var(r) == pytest.approx(0.01)
    assert historical_cvar(r) == pytest.approx(np.mean(np.arange(1, 14)) / 100.0)


def test_var_cvar_are_losses_as_positive_fractions_and_negative_for_all_gains():
    losses = np.full(40, -0.02)
    assert historical_var(losses) == pytest.approx(0.02)
    assert historical_cvar(losses) == pytest.approx(0.02)
    gains = np.linspace(0.01, 0.05, 40)
    assert historical_var(gains) < 0
    assert historical_cvar(gains) == pytest.approx(-np.mean(gains[:2]))  # k = 2 of 40


def test_var_cvar_ignore_nans_and_need_20_observations():
    r = _ladder(100)
    with_nans = np.concatenate([r, [np.nan] * 30])
    assert historical_cvar(with_nans) == pytest.approx(historical_cvar(r))
    assert math.isnan(historical_var(r[:19]))
    assert math.isnan(historical_cvar([np.nan] * 50))
    assert not math.isnan(historical_cvar(r[:20]))
    assert historical_cvar(pd.Series(r)) == pytest.approx(0.048)


def test_invalid_level_is_rejected():
    with pytest.raises(ValueError):
        historical_cvar(_ladder(100), 1.0)


def test_portfolio_cvar_by_hand():
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, size=(100, 3))
    weights = np.array([0.5, 0.3, 0.0])
    port = returns @ weights
    worst5 = np.sort(port)[:5]
    assert portfolio_cvar(returns, weights) == pytest.approx(-worst5.mean())
    assert portfolio_var(returns, weights) == pytest.approx(-worst5[-1])


def test_portfolio_cvar_counts_a_missing_return_as_flat():
    returns = np.column_stack([np.linspace(-0.05, 0.05, 40), np.full(40, np.nan)])
    returns[5, 1] = -0.5
    # Asset 2 only "moved" once: that -50% day lands in the 2 worst portfolio days.
    flat = np.nan_to_num(returns)
    expected = historical_cvar(0.5 * flat[:, 0] + 0.5 * flat[:, 1])
    assert portfolio_cvar(returns, np.array([0.5, 0.5])) == pytest.approx(expected)
    assert expected > 0.1


def test_portfolio_cvar_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        portfolio_cvar(np.zeros((30, 3)), np.ones(2))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 300),
    level=st.sampled_from([0.9, 0.95, 0.975, 0.99]),
)
def test_cvar_is_at_least_var(seed, n, level):
    rng = np.random.default_rng(seed)
    r = rng.standard_t(3, size=n) * 0.01
    assert historical_cvar(r, level) >= historical_var(r, level) - 1e-15


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.01, 100.0))
def test_portfolio_cvar_scales_linearly_with_the_weights(seed, scale):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0005, 0.015, size=(120, 4))
    returns[rng.random(returns.shape) < 0.05] = np.nan
    weights = rng.dirichlet(np.ones(4))
    base = portfolio_cvar(returns, weights)
    scaled = portfolio_cvar(returns, scale * weights)
    assert scaled == pytest.approx(scale * base, rel=1e-9, abs=1e-15)


def test_rolling_var_cvar_equals_the_scalar_functions_window_by_window():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        rng.normal(0, 0.01, size=(120, 3)),
        index=pd.bdate_range("2024-01-01", periods=120),
        columns=["A", "B", "C"],
    )
    frame.iloc[:15, 1] = np.nan  # B starts later
    frame.iloc[60, 2] = np.nan  # C has a hole
    window = 40
    var_f, cvar_f = rolling_var_cvar(frame, window, 0.95)
    assert var_f.shape == frame.shape and var_f.index.equals(frame.index)
    for t in range(len(frame)):
        for col in frame.columns:
            w = frame[col].iloc[max(0, t - window + 1) : t + 1]
            if t < window - 1 or w.isna().any():
                assert math.isnan(var_f[col].iloc[t]) and math.isnan(cvar_f[col].iloc[t])
            else:
                assert var_f[col].iloc[t] == pytest.approx(historical_var(w, 0.95), rel=1e-12)
                assert cvar_f[col].iloc[t] == pytest.approx(historical_cvar(w, 0.95), rel=1e-12)
    assert var_f["A"].iloc[window - 1 :].notna().all()
    assert var_f["B"].iloc[15 + window - 1 :].notna().all()
    assert cvar_f["C"].iloc[60 : 60 + window].isna().all()


def test_rolling_var_cvar_on_a_series_and_a_short_frame():
    s = pd.Series(_ladder(30), name="X")
    var_s, cvar_s = rolling_var_cvar(s, 25)
    assert isinstance(cvar_s, pd.Series) and cvar_s.name == "X"
    short = pd.DataFrame({"A": [0.01] * 10})
    var_f, _ = rolling_var_cvar(short, 20)
    assert var_f["A"].isna().all()
    with pytest.raises(ValueError):
        rolling_var_cvar(short, 5)


# ---------------------------------------------------------------- prospect theory


def test_prospect_value_of_known_gains_and_losses():
    assert prospect_value(0.1) == pytest.approx(0.1**0.88)
    assert prospect_value(-0.1) == pytest.approx(-2.25 * 0.1**0.88)
    assert prospect_value(0.0) == 0.0
    assert prospect_value(-0.1, beta=1.0, loss_aversion=2.0) == pytest.approx(-0.2)
    out = prospect_value(np.array([0.1, -0.1, np.nan]))
    np.testing.assert_allclose(out[:2], [0.1**0.88, -2.25 * 0.1**0.88])
    assert np.isnan(out[2])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(-5, 5, allow_nan=False), st.just(float("nan"))),
       st.floats(0.1, 1.5), st.floats(0.1, 1.5), st.floats(0.5, 4.0))
def test_the_steps_one_value_form_is_the_same_function(x, alpha, beta, lam):
    from engine.risk.prospect import prospect_value_of

    one = prospect_value_of(alpha, beta, lam)(x)
    many = float(prospect_value(np.array([x]), alpha, beta, lam)[0])
    assert (math.isnan(one) and math.isnan(many)) or one == pytest.approx(many, rel=1e-12, abs=1e-300)
    assert one == prospect_value(x, alpha, beta, lam) or math.isnan(one)


def test_the_one_value_form_checks_its_parameters_once_made():
    from engine.risk.prospect import prospect_value_of

    with pytest.raises(ValueError, match="positive"):
        prospect_value_of(0.88, 0.0, 2.25)
    with pytest.raises(ValueError, match="loss_aversion"):
        prospect_value_of(0.88, 0.88, -1)


def test_prospect_value_keeps_the_series_index():
    s = pd.Series([0.05, -0.05], index=["up", "down"])
    out = prospect_value(s)
    assert isinstance(out, pd.Series) and list(out.index) == ["up", "down"]


def test_mean_prospect_value_of_a_symmetric_sample_is_negative():
    # +2% and -2% equally often: indifferent in expectation, unattractive when loss-averse.
    r = np.array([0.02, -0.02] * 10 + [np.nan])
    expected = (0.02**0.88 - 2.25 * 0.02**0.88) / 2
    assert mean_prospect_value(r) == pytest.approx(expected)
    assert mean_prospect_value(r) < 0
    assert math.isnan(mean_prospect_value([np.nan]))


finite_returns = st.floats(-0.99, 10.0, allow_nan=False)


@given(a=finite_returns, b=finite_returns)
def test_prospect_value_is_monotone_increasing(a, b):
    lo, hi = min(a, b), max(a, b)
    assert prospect_value(lo) <= prospect_value(hi)


@given(x=st.floats(1e-6, 5.0))
def test_losses_hurt_more_than_equal_gains(x):
    assert -prospect_value(-x) > prospect_value(x) > 0


# ---------------------------------------------------------------- Kelly


def test_kelly_fraction_of_known_mean_and_variance():
    # mu = 0.1%/day, sigma^2 = 1e-4/day: full Kelly 10x, half-Kelly 5x
    assert kelly_fraction(0.001, 0.0001, fraction=1.0) == pytest.approx(10.0)
    assert kelly_fraction(0.001, 0.0001) == pytest.approx(5.0)
    # same ratio from annualised figures
    assert kelly_fraction(0.252, 0.0252) == pytest.approx(5.0)


def test_kelly_fraction_never_shorts_and_is_nan_without_variance():
    assert kelly_fraction(-0.001, 0.0001) == 0.0
    assert math.isnan(kelly_fraction(0.001, 0.0))
    assert math.isnan(kelly_fraction(0.001, float("nan")))
    assert math.isnan(kelly_fraction(float("nan"), 0.0001))


def test_kelly_fraction_is_vectorised_over_series():
    idx = ["A", "B", "C", "D"]
    mean = pd.Series([0.001, -0.002, 0.0005, 0.001], index=idx)
    var = pd.Series([0.0001, 0.0001, 0.0002, 0.0], index=idx)
    out = kelly_fraction(mean, var, 0.5)
    assert isinstance(out, pd.Series) and list(out.index) == idx
    np.testing.assert_allclose(out.to_numpy()[:3], [5.0, 0.0, 1.25])
    assert math.isnan(out["D"])


# ---------------------------------------------------------------- drawdown


def test_drawdown_and_max_drawdown_by_hand():
    nav = pd.Series([100.0, 110.0, 99.0, 121.0, 60.5])
    np.testing.assert_allclose(drawdown(nav).to_numpy(), [0.0, 0.0, -0.1, 0.0, -0.5])
    assert max_drawdown(nav) == pytest.approx(-0.5)
    assert max_drawdown(pd.Series([100.0, 101.0, 102.0])) == 0.0
    assert math.isnan(max_drawdown(pd.Series([], dtype=float)))


@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=60))
def test_drawdown_is_never_positive(values):
    dd = drawdown(pd.Series(values))
    assert (dd <= 0).all()
    assert dd.iloc[0] == 0.0


def test_drawdown_multiplier_at_known_points():
    m = drawdown_multiplier
    assert m(0.0) == 1.0
    assert m(-0.10) == pytest.approx(0.75)  # half the limit: 1 - 0.5^2
    assert m(0.10) == pytest.approx(0.75)  # sign does not matter
    assert m(-0.15) == pytest.approx(1 - 0.75**2)
    assert m(-0.20) == pytest.approx(0.25)  # at the limit: the floor
    assert m(-0.35) == pytest.approx(0.25)  # beyond it: still the floor
    # gentle at first, steep later: the second 5% costs more than the first
    assert (m(0.0) - m(0.05)) < (m(0.05) - m(0.10)) < (m(0.10) - m(0.15))
    out = m(pd.Series([0.0, -0.1, np.nan]))
    assert isinstance(out, pd.Series) and math.isnan(out.iloc[2])


@given(
    a=st.floats(-2.0, 2.0),
    b=st.floats(-2.0, 2.0),
    limit=st.floats(0.01, 0.9),
    floor=st.floats(0.0, 1.0),
    power=st.floats(1.0, 5.0),
)
def test_drawdown_multiplier_is_bounded_and_non_increasing(a, b, limit, floor, power):
    ma = drawdown_multiplier(a, limit, floor, power)
    mb = drawdown_multiplier(b, limit, floor, power)
    assert floor <= ma <= 1.0
    if abs(a) <= abs(b):
        assert ma >= mb


def test_drawdown_multiplier_rejects_a_convex_power():
    with pytest.raises(ValueError):
        drawdown_multiplier(0.1, power=0.5)


@pytest.mark.parametrize("power,limit,floor", [(1.0, 0.2, 0.25), (1.5, 0.2, 0.25), (2.0, 0.1, 0.0), (3.0, 0.35, 1.0)])
def test_one_sessions_drawdown_multiplier_is_the_arrays_bit_for_bit(power, limit, floor):
    """A step passes one float (a fast path); the limits must be exactly those numpy gives
    for the same number, NaN, overflow and both signs included."""
    rng = np.random.default_rng(3)
    xs = [float(x) for x in rng.normal(0, 0.15, 5000)] + [0.0, -0.0, 1e200, -1e300, math.nan, math.inf, -math.inf,
                                                          limit, -limit, 5e-324]
    for x in xs:
        with np.errstate(over="ignore"):
            expected = float(np.maximum(floor, 1.0 - (np.abs(np.asarray(x)) / limit) ** power))
        got = drawdown_multiplier(x, limit, floor, power)
        assert type(got) is float and (got == expected or (math.isnan(got) and math.isnan(expected))), x
