"""engine.backtest.verdict: the stationary bootstrap, the block length, the one-sided
excess-return test (size, power, coverage), the PSR and the verdict sentences."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from engine.backtest.verdict import (
    excess_return_test,
    optimal_block_length,
    probabilistic_sharpe_ratio,
    sharpe_per_period,
    stationary_bootstrap_indices,
    stationary_bootstrap_means,
    verdict,
)

# ---------------------------------------------------------------- synthetic data


def simulate_pairs(
    seed: int, n_sims: int, n: int, *, excess: float = 0.0, phi: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """`n_sims` (strategy, benchmark) daily-return pairs of length `n`.

    The benchmark is a fat-tailed market (Student-t(4), 1% a day, +0.04% drift); the
    strategy is the market plus an AR(1) active return (t(4) innovations, coefficient
    `phi`, mean 0) plus a constant daily `excess`. So the true mean excess is `excess`.
    """
    rng = np.random.default_rng(seed)
    market = 0.0004 + 0.01 * rng.standard_t(4, (n_sims, n)) / math.sqrt(2.0)
    burn = 50
    shocks = 0.004 * rng.standard_t(4, (n_sims, n + burn)) / math.sqrt(2.0)
    active = np.empty_like(shocks)
    active[:, 0] = shocks[:, 0]
    for t in range(1, n + burn):
        active[:, t] = phi * active[:, t - 1] + shocks[:, t]
    return market + active[:, burn:] + excess, market


def ar1(phi: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n + 200)
    x = np.empty_like(e)
    x[0] = e[0]
    for t in range(1, e.size):
        x[t] = phi * x[t - 1] + e[t]
    return x[200:]


# ---------------------------------------------------------------- stationary bootstrap indices


def test_indices_are_valid_and_reproducible() -> None:
    idx = stationary_bootstrap_indices(97, 5.0, 300, np.random.default_rng(1))
    assert idx.shape == (300, 97)
    assert np.issubdtype(idx.dtype, np.integer)
    assert idx.min() >= 0 and idx.max() <= 96
    again = stationary_bootstrap_indices(97, 5.0, 300, np.random.default_rng(1))
    np.testing.assert_array_equal(idx, again)
    np.testing.assert_array_equal(idx, stationary_bootstrap_indices(97, 5.0, 300, 1))  # a seed is fine too
    assert not np.array_equal(idx, stationary_bootstrap_indices(97, 5.0, 300, 2))


def _breaks(idx: np.ndarray) -> np.ndarray:
    """True where position t does not continue the block (t >= 1)."""
    n = idx.shape[1]
    return idx[:, 1:] != (idx[:, :-1] + 1) % n


@pytest.mark.parametrize("mean_block", [2.0, 5.0, 12.5])
def test_block_lengths_have_the_right_mean(mean_block: float) -> None:
    n, n_boot = 600, 500
    idx = stationary_bootstrap_indices(n, mean_block, n_boot, np.random.default_rng(7))
    breaks = _breaks(idx)
    # restart with probability 1/b; a restart lands on the next index by chance with prob. 1/n
    expected = (1 / mean_block) * (1 - 1 / n)
    assert breaks.mean() == pytest.approx(expected, rel=0.03)
    # complete blocks (not cut by either end of a row) are geometric with mean b
    lengths = []
    for row in breaks:
        starts = np.flatnonzero(row) + 1  # positions where a new block begins
        lengths.append(np.diff(starts))
    lengths = np.concatenate(lengths)
    assert lengths.mean() == pytest.approx(mean_block, rel=0.05)
    assert lengths.min() >= 1


def test_block_wraps_around_the_end() -> None:
    idx = stationary_bootstrap_indices(10, 1e9, 50, np.random.default_rng(0))  # one block per row
    for row in idx:
        np.testing.assert_array_equal(row, (row[0] + np.arange(10)) % 10)


def test_mean_block_one_is_the_iid_bootstrap() -> None:
    idx = stationary_bootstrap_indices(400, 1.0, 200, np.random.default_rng(3))
    assert _breaks(idx).mean() == pytest.approx(1 - 1 / 400, abs=0.002)
    counts = np.bincount(idx.ravel(), minlength=400)
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform draws


def test_resampled_means_are_unbiased_for_the_sample_mean() -> None:
    """Wrapping makes every index equally likely at every position (stationarity)."""
    x = np.random.default_rng(5).standard_t(3, 300)
    idx = stationary_bootstrap_indices(300, 8.0, 4000, np.random.default_rng(6))
    means = x[idx].mean(axis=1)
    assert means.mean() == pytest.approx(x.mean(), abs=4 * means.std() / math.sqrt(4000 / 8))
    # every position sees every index about equally often
    assert np.abs(np.bincount(idx[:, 0], minlength=300) - 4000 / 300).max() < 40
    assert np.abs(np.bincount(idx[:, -1], minlength=300) - 4000 / 300).max() < 40


@pytest.mark.parametrize(("n", "mean_block"), [(1, 3.0), (50, 1.0), (300, 8.0), (2000, 2000.0)])
def test_the_means_are_those_of_the_resamples_the_indices_lay_out(n: int, mean_block: float) -> None:
    """The verdicts sum each block at once: the same resamples, the same means (to rounding)."""
    x = np.random.default_rng(11).standard_t(3, n) / 100
    idx = stationary_bootstrap_indices(n, mean_block, 700, np.random.default_rng(4))
    means = stationary_bootstrap_means(x, mean_block, 700, np.random.default_rng(4))
    np.testing.assert_allclose(means, x[idx].mean(axis=1), rtol=0, atol=1e-15)
    assert means.std() > 0 or n == 1


def test_index_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        stationary_bootstrap_indices(10, 0.5, 10, 0)
    with pytest.raises(ValueError):
        stationary_bootstrap_indices(0, 2.0, 10, 0)
    with pytest.raises(ValueError):
        stationary_bootstrap_indices(10, 2.0, 0, 0)
    assert stationary_bootstrap_indices(1, 3.0, 4, 0).tolist() == [[0], [0], [0], [0]]


# ---------------------------------------------------------------- optimal block length


def test_block_length_of_white_noise_is_short() -> None:
    blocks = [optimal_block_length(np.random.default_rng(s).standard_normal(2000)) for s in range(10)]
    assert all(1.0 <= b < 5.0 for b in blocks)


@pytest.mark.parametrize("phi", [0.2, 0.5])
def test_block_length_of_ar1_is_near_the_theoretical_optimum(phi: float) -> None:
    """For AR(1) the PW/PPW optimum is (2 phi / (1 - phi^2))^(2/3) n^(1/3)."""
    n = 5000
    theory = (2 * phi / (1 - phi**2)) ** (2 / 3) * n ** (1 / 3)  # 9.5 and 20.7
    blocks = [optimal_block_length(ar1(phi, n, s)) for s in range(6)]
    assert np.median(blocks) == pytest.approx(theory, rel=0.3)
    assert optimal_block_length(ar1(0.5, n, 0)) > optimal_block_length(ar1(0.2, n, 0))


def test_block_length_is_capped_and_safe() -> None:
    # strongly persistent series (random walks, trends, a slow square wave) stay within the
    # cap ceil(min(3 sqrt(n), n / 3)) and get much longer blocks than white noise
    for n in (20, 60, 500, 2000):
        cap = math.ceil(min(3 * math.sqrt(n), n / 3))
        t = np.arange(n, dtype=float)
        persistent = [np.cumsum(np.random.default_rng(s).standard_normal(n)) for s in range(3)]
        persistent += [t, np.sign(np.sin(2 * np.pi * t / max(n / 4, 8)) + 0.1)]
        for x in persistent:
            assert 1.0 <= optimal_block_length(x) <= cap
    assert optimal_block_length(np.cumsum(np.random.default_rng(0).standard_normal(500))) > 25
    assert optimal_block_length(np.ones(100)) == 1.0
    assert optimal_block_length([0.01, -0.02, 0.03]) == 1.0
    assert optimal_block_length([]) == 1.0
    x = ar1(0.5, 1000, 1)
    holed = x.copy()
    holed[[3, 30]] = np.nan
    assert optimal_block_length(holed) == optimal_block_length(x[~np.isnan(holed)])


# ---------------------------------------------------------------- the excess-return test


def test_result_keys_and_p_value_lattice() -> None:
    s, b = simulate_pairs(0, 1, 300)
    res = excess_return_test(s[0], b[0], n_boot=999, seed=3)
    assert list(res) == ["mean_excess_ann", "ci_low", "ci_high", "p_value", "n", "mean_block", "n_boot", "seed",
                         "confidence"]
    assert res["n"] == 300 and res["n_boot"] == 999 and res["seed"] == 3 and res["confidence"] == 0.95
    assert res["mean_excess_ann"] == pytest.approx(252 * np.mean(s[0] - b[0]), rel=1e-12)
    assert res["mean_block"] == pytest.approx(optimal_block_length(s[0] - b[0]))
    count = res["p_value"] * 1000
    assert count == pytest.approx(round(count)) and 1 <= round(count) <= 1000  # (1 + #) / (B + 1)
    assert res["ci_low"] < res["mean_excess_ann"] < res["ci_high"]
    assert excess_return_test(s[0], b[0], n_boot=999, seed=3) == res  # reproducible
    json.dumps(res)


def test_the_test_aligns_series_on_dates() -> None:
    dates = pd.bdate_range("2022-01-03", periods=400)
    s, b = simulate_pairs(1, 1, 400)
    strategy = pd.Series(s[0], index=dates)
    benchmark = pd.Series(b[0], index=dates)
    # the benchmark has extra dates, a gap and a NaN; the strategy's dates come shuffled
    longer = pd.concat([benchmark, pd.Series([0.5], index=[pd.Timestamp("2030-01-01")])]).drop(dates[10])
    longer.loc[dates[20]] = np.nan
    res = excess_return_test(strategy.sample(frac=1.0, random_state=0), longer, n_boot=200)
    keep = ~dates.isin([dates[10], dates[20]])
    assert res["n"] == 398
    assert res["mean_excess_ann"] == pytest.approx(252 * np.mean((s[0] - b[0])[keep]), rel=1e-12)
    with pytest.raises(ValueError):
        excess_return_test(np.zeros(5), np.zeros(6))


def test_iid_bootstrap_p_value_is_close_to_the_normal_approximation() -> None:
    rng = np.random.default_rng(11)
    d = 0.0003 + 0.01 * rng.standard_normal(1000)
    res = excess_return_test(d, np.zeros(1000), n_boot=20_000, mean_block=1.0, seed=1)
    z = d.mean() / (d.std(ddof=0) / math.sqrt(d.size))
    assert res["p_value"] == pytest.approx(stats.norm.sf(z), abs=0.02)


def test_p_value_is_about_uniform_under_the_null() -> None:
    """200 pairs with equal true means (fat tails, autocorrelated active returns): the
    one-sided p-value should be ~U(0, 1), so reject ~5% at 5% and ~10% at 10%."""
    s, b = simulate_pairs(2024, 200, 250)
    p = np.array([excess_return_test(s[i], b[i], n_boot=300, seed=i)["p_value"] for i in range(200)])
    assert 0.01 <= np.mean(p <= 0.05) <= 0.11
    assert 0.04 <= np.mean(p <= 0.10) <= 0.18
    assert stats.kstest(p, "uniform").pvalue > 0.01
    deciles = np.histogram(p, bins=10, range=(0, 1))[0]
    assert stats.chisquare(deciles).pvalue > 1e-3


def test_confidence_interval_covers_the_true_mean_about_95_percent() -> None:
    excess = 0.0004  # ~10% a year
    s, b = simulate_pairs(7, 200, 250, excess=excess)
    results = [excess_return_test(s[i], b[i], n_boot=300, seed=i) for i in range(200)]
    covered = np.mean([r["ci_low"] <= 252 * excess <= r["ci_high"] for r in results])
    assert 0.85 <= covered <= 0.99
    # the basic interval and the centred-bootstrap p-value come from the same draws: the CI
    # lies above 0 exactly when p < 2.5%, up to the +1 correction and quantile interpolation
    # (a couple of resamples, i.e. p within ~0.01 of 0.025 with 300 draws)
    for r in results:
        if (r["ci_low"] > 0) != (r["p_value"] < 0.025):
            assert abs(r["p_value"] - 0.025) < 0.01


def test_a_large_true_excess_is_detected() -> None:
    s, b = simulate_pairs(3, 1, 500, excess=0.002)  # +0.2% a day, ~50% a year
    res = excess_return_test(s[0], b[0], seed=0)  # default n_boot = 5000
    assert res["p_value"] < 0.01
    assert res["ci_low"] > 0


def test_a_negative_excess_is_not_significant() -> None:
    s, b = simulate_pairs(4, 1, 500, excess=-0.002)
    res = excess_return_test(s[0], b[0], n_boot=1000)
    assert res["p_value"] > 0.9
    assert res["ci_high"] < 0


def test_degenerate_inputs() -> None:
    r = np.random.default_rng(0).normal(0, 0.01, 100)
    same = excess_return_test(r, r, n_boot=100)  # d = 0: no evidence at all
    assert same["p_value"] == 1.0 and same["mean_excess_ann"] == 0.0
    one = excess_return_test([0.01], [0.0], n_boot=100)
    assert one["n"] == 1 and math.isnan(one["p_value"]) and math.isnan(one["ci_low"])
    empty = excess_return_test([], [], n_boot=100)
    assert empty["n"] == 0 and math.isnan(empty["mean_excess_ann"])


# ---------------------------------------------------------------- probabilistic Sharpe ratio


def test_psr_golden_hand_computation() -> None:
    # x = -1, 0, 0, 1, 3 (in %; SR, skew and kurtosis do not depend on the scale)
    x = np.array([-1.0, 0.0, 0.0, 1.0, 3.0]) / 100
    mean, var_sample = 0.6, 9.2 / 4  # in % units
    m2, m3, m4 = 9.2 / 5, 9.36 / 5, 40.016 / 5
    sr = mean / math.sqrt(var_sample)
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    assert skew == pytest.approx(stats.skew(x), rel=1e-12)
    assert kurt == pytest.approx(stats.kurtosis(x, fisher=False), rel=1e-12)
    assert sharpe_per_period(x) == pytest.approx(sr, rel=1e-12)
    z = sr * math.sqrt(5 - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert z == pytest.approx(0.9096, abs=1e-4)
    assert probabilistic_sharpe_ratio(x) == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    assert probabilistic_sharpe_ratio(x) == pytest.approx(0.8185, abs=1e-4)
    z_bench = (sr - 0.1) * 2 / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(x, 0.1) == pytest.approx(stats.norm.cdf(z_bench), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_psr_matches_scipy_on_fat_tailed_returns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = 0.0005 + 0.01 * rng.standard_t(4, 750) + 0.004 * (rng.random(750) < 0.02) * -5  # skewed, fat
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    for sr_star in (0.0, 0.02, 0.05):
        z = (sr - sr_star) * math.sqrt(749) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
        assert probabilistic_sharpe_ratio(r, sr_star) == pytest.approx(stats.norm.cdf(z), rel=1e-10, abs=1e-15)


def test_psr_is_one_half_at_its_own_sharpe_and_antisymmetric() -> None:
    r = np.random.default_rng(9).standard_t(5, 500) * 0.01 + 0.0004
    sr = sharpe_per_period(r)
    assert probabilistic_sharpe_ratio(r, sr) == pytest.approx(0.5, abs=1e-12)
    assert probabilistic_sharpe_ratio(r, 0.03) + probabilistic_sharpe_ratio(-r, -0.03) == pytest.approx(1.0)
    # more data at the same Sharpe: more confidence
    assert probabilistic_sharpe_ratio(np.tile(r, 4)) > probabilistic_sharpe_ratio(r) > 0.5


def test_psr_is_calibrated_when_the_true_sharpe_equals_the_benchmark() -> None:
    """Normal returns with true per-period SR = SR*: PSR should be ~uniform, so > 0.95 about 5% of the time."""
    rng = np.random.default_rng(12)
    sr_true = 0.05
    samples = sr_true + rng.standard_normal((1000, 252))
    psr = np.array([probabilistic_sharpe_ratio(x, sr_true) for x in samples])
    assert 0.03 <= np.mean(psr > 0.95) <= 0.08
    assert 0.45 <= np.mean(psr > 0.5) <= 0.55


def test_psr_of_short_or_flat_series_is_nan() -> None:
    assert math.isnan(probabilistic_sharpe_ratio([0.01, 0.02]))
    assert math.isnan(probabilistic_sharpe_ratio(np.full(50, 0.001)))
    assert math.isnan(probabilistic_sharpe_ratio([]))


# ---------------------------------------------------------------- the verdict


def _dated(s: np.ndarray, b: np.ndarray) -> tuple[pd.Series, pd.Series]:
    dates = pd.bdate_range("2021-01-04", periods=s.size)
    return pd.Series(s, index=dates), pd.Series(b, index=dates)


def test_verdict_when_the_strategy_wins() -> None:
    s, b = simulate_pairs(5, 1, 756, excess=0.0015)  # 3 years, ~+38% a year
    v = verdict(*_dated(s[0], b[0]), n_boot=2000)
    assert v["reject_null"] is True
    assert v["p_value"] <= 0.05
    assert v["sentence"].startswith("beats buy-and-hold SPY at p ")
    test = excess_return_test(s[0], b[0], n_boot=2000)
    expected = (
        f"beats buy-and-hold SPY at p < 0.001 (excess return {test['mean_excess_ann'] * 100:+.1f}% a year, "
        f"95% CI [{test['ci_low'] * 100:+.1f}%, {test['ci_high'] * 100:+.1f}%])"
    )
    assert v["sentence"] == expected
    assert "too short" not in v["sentence"] and v["short_sample"] is False
    assert v["psr"] > 0.95 and v["psr_vs_benchmark"] > 0.95
    assert v["years"] == pytest.approx(3.0)


def test_verdict_when_the_null_stands() -> None:
    s, b = simulate_pairs(6, 1, 756, excess=0.0)
    v = verdict(*_dated(s[0], b[0]), n_boot=2000)
    assert v["reject_null"] is False
    p = v["p_value"]
    assert p > 0.05
    p_text = f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.3f}"
    assert v["sentence"] == (
        "cannot reject the null: the strategy does not beat buy-and-hold SPY "
        f"(excess return {v['mean_excess_ann'] * 100:+.1f}% a year, "
        f"95% CI [{v['ci_low'] * 100:+.1f}%, {v['ci_high'] * 100:+.1f}%], {p_text})"
    )
    assert v["ci_low"] < 0 < v["ci_high"]


def test_verdict_flags_a_short_sample() -> None:
    s, b = simulate_pairs(8, 1, 300, excess=0.003)
    v = verdict(s[0], b[0], n_boot=1000)
    assert v["short_sample"] is True
    assert v["sentence"].endswith("Only 300 sessions (1.2 years, under 2): too short to conclude much.")
    assert verdict(s[0][:100], b[0][:100], n_boot=200, min_years=0.25)["short_sample"] is False
    tiny = verdict([0.01], [0.0], n_boot=100)
    assert tiny["reject_null"] is False
    assert tiny["sentence"].startswith("cannot reject the null")
    assert "too few sessions" in tiny["sentence"] and "too short to conclude much" in tiny["sentence"]


def test_verdict_keys_and_types() -> None:
    s, b = simulate_pairs(9, 1, 300)
    v = verdict(s[0], b[0], n_boot=500, seed=4, risk_free=0.02)
    for key in ("reject_null", "alpha", "mean_excess_ann", "ci_low", "ci_high", "p_value", "n", "mean_block",
                "n_boot", "seed", "confidence", "years", "short_sample", "sharpe_strategy_ann",
                "sharpe_benchmark_ann", "psr", "psr_vs_benchmark", "sentence"):
        assert key in v
    json.dumps(v, allow_nan=False)
    rf_d = 1.02 ** (1 / 252) - 1
    assert v["psr"] == pytest.approx(probabilistic_sharpe_ratio(s[0] - rf_d))
    assert v["psr_vs_benchmark"] == pytest.approx(
        probabilistic_sharpe_ratio(s[0] - rf_d, sharpe_per_period(b[0] - rf_d))
    )
    assert v["sharpe_strategy_ann"] == pytest.approx(sharpe_per_period(s[0] - rf_d) * math.sqrt(252))
    # a stricter alpha never turns a non-rejection into a rejection
    assert not (verdict(s[0], b[0], n_boot=500, alpha=0.001)["reject_null"] and not v["reject_null"])
