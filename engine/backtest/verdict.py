"""The verdict on the null hypothesis: can the strategy beat buy-and-hold SPY?

H0: the strategy's mean daily return is no higher than the benchmark's (mean excess
``<= 0``); H1: it is higher. Daily returns are autocorrelated and heteroskedastic, so the
test resamples the daily excess return ``d_t = r_strategy_t - r_benchmark_t`` with the
stationary bootstrap of Politis & Romano (1994), "The Stationary Bootstrap", JASA 89(428),
which keeps the short-range dependence of ``d`` inside random-length blocks and, unlike
fixed blocks, gives a stationary resampled series. The mean block length is chosen by
Politis & White (2004), "Automatic Block-Length Selection for the Dependent Bootstrap",
Econometric Reviews 23(1), as corrected by Patton, Politis & White (2009), Econometric
Reviews 28(4).

The probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012, "The Sharpe Ratio Efficient
Frontier", Journal of Risk 15(2)) is reported alongside as a second, parametric view.

Honest limits, stated once here: a single backtest of a single strategy is tested; if
several prompts, models or parameter sets were tried and the best one is reported, these
p-values are too small (data snooping; see White 2000, "A Reality Check for Data
Snooping", and Bailey & Lopez de Prado 2014, "The Deflated Sharpe Ratio"). And a bootstrap
cannot manufacture information a short sample does not hold.

Everything is a pure function of return arrays/Series and an explicit seed; no scipy (the
normal CDF is ``math.erf``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252
BOOTSTRAP_CELLS = 1 << 21  # replicates x sessions resampled at once, to bound memory on long samples


# ---------------------------------------------------------------- helpers


def _clean(x: object) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[~np.isnan(a)]


def _aligned_excess(strategy_returns: object, benchmark_returns: object) -> np.ndarray:
    """``r_s - r_b`` on the dates both have (Series: inner join on the index; arrays: by
    position, same length), rows with a NaN in either dropped."""
    s, b = _aligned(strategy_returns, benchmark_returns)
    return s - b


def _aligned(strategy_returns: object, benchmark_returns: object) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(strategy_returns, pd.Series) and isinstance(benchmark_returns, pd.Series):
        both = pd.concat(
            [strategy_returns.astype(float).rename("s"), benchmark_returns.astype(float).rename("b")],
            axis=1,
            join="inner",
        ).dropna()
        return both["s"].to_numpy(), both["b"].to_numpy()
    s = np.asarray(strategy_returns, dtype=float).ravel()
    b = np.asarray(benchmark_returns, dtype=float).ravel()
    if s.shape != b.shape:
        raise ValueError(
            f"without a date index the two series must have the same length, got {s.size} and {b.size}"
        )
    keep = ~(np.isnan(s) | np.isnan(b))
    return s[keep], b[keep]


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# ---------------------------------------------------------------- the stationary bootstrap


def _blocks(n: int, mean_block: float, n_boot: int, rng: np.random.Generator | int | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks of `n_boot` stationary-bootstrap resamples of a length-`n` series, in
    order, replicate after replicate: where each starts (``replicate * n + position``),
    its length and the index it starts from."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not mean_block >= 1.0:
        raise ValueError(f"mean_block must be >= 1, got {mean_block}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    # single precision, twice as fast to draw: exact enough for any restart probability above
    # 2**-24 (a mean block under 16 million sessions; excess_return_test's is at most n)
    restart = rng.random((n_boot, n), dtype=np.float32) < np.float32(1.0 / float(mean_block))
    restart[:, 0] = True  # a resample starts with a block
    where = np.flatnonzero(restart)
    # up to the next block: a replicate's last block ends with it, as the next one starts with one
    length = np.empty_like(where)
    np.subtract(where[1:], where[:-1], out=length[:-1])
    length[-1] = n_boot * n - where[-1]
    return where, length, rng.integers(0, n, where.size)


def stationary_bootstrap_indices(
    n: int, mean_block: float, n_boot: int, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Indices of `n_boot` stationary-bootstrap resamples of a length-`n` series.

    Politis & Romano (1994): the first index of each resample is uniform on ``0..n-1``;
    each next one is the previous ``+ 1`` (wrapping from ``n - 1`` to 0) with probability
    ``1 - 1/mean_block``, else a fresh uniform draw. Block lengths are thus geometric with
    mean `mean_block` (``mean_block = 1`` is the i.i.d. bootstrap), and the wrap makes
    every index equally likely at every position, so the resampled mean is unbiased for
    the sample mean.

    Returns an ``(n_boot, n)`` integer array. `rng` is a ``numpy.random.Generator`` (or a
    seed for one). :func:`stationary_bootstrap_means` draws the same resamples (the same
    `rng` gives the same ones) without laying out their indices.
    """
    where, length, first = _blocks(n, mean_block, n_boot, rng)
    block = np.repeat(np.arange(where.size), length)  # the block of every cell
    idx = np.arange(n_boot * n) - where[block] + first[block]  # its first index + the offset in it
    idx %= n
    return idx.reshape(n_boot, n)


def stationary_bootstrap_means(
    x: np.ndarray, mean_block: float, n_boot: int, rng: np.random.Generator | int | None
) -> np.ndarray:
    """The means of `n_boot` stationary-bootstrap resamples of `x`: those of
    :func:`stationary_bootstrap_indices` (``x[idx].mean(axis=1)``), each block summed at
    once from the running sums of ``x`` twice over (a block may wrap)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    where, length, first = _blocks(n, mean_block, n_boot, rng)
    running = np.concatenate(([0.0], np.cumsum(np.concatenate((x, x)))))
    sums = np.take(running, first + length)
    sums -= np.take(running, first)
    firsts = np.searchsorted(where, np.arange(n_boot) * n)  # each replicate's first block
    return np.add.reduceat(sums, firsts) / n


def _flat_top(s: np.ndarray) -> np.ndarray:
    """Politis & Romano's trapezoidal flat-top lag window: 1 on |s| <= 1/2, then linear to 0 at 1."""
    a = np.abs(s)
    return np.where(a <= 0.5, 1.0, np.where(a <= 1.0, 2.0 * (1.0 - a), 0.0))


def optimal_block_length(x: object) -> float:
    """Automatic mean block length for the stationary bootstrap of the mean of `x`.

    Politis & White (2004) with the correction of Patton, Politis & White (2009):

    1. ``R(k)`` the sample autocovariances (divisor ``n``), ``rho(k) = R(k)/R(0)``.
    2. ``m`` = the smallest positive lag such that ``rho(m+1) .. rho(m+K)`` are all
       insignificant, ``|rho| < c sqrt(log10(n) / n)``, with ``K = max(5, sqrt(log10 n))``
       and ``c = 2``; searched up to ``m_max = ceil(sqrt(n)) + K``. If there is no such run,
       ``m`` is the largest significant lag (as in Patton's reference code).
    3. ``M = min(2 m, m_max)``; with the flat-top window ``lambda``,
       ``G = sum_{|k|<=M} lambda(k/M) |k| R(k)`` and ``g = sum_{|k|<=M} lambda(k/M) R(k)``
       (the long-run variance), ``D_SB = 2 g^2`` (the PPW-corrected constant).
    4. ``b = (2 G^2 / D_SB)^(1/3) n^(1/3)``, kept within ``[1, ceil(min(3 sqrt(n), n/3))]``.

    White noise gives a block near 1; positive autocorrelation a longer one (AR(1) with
    coefficient ``phi``: ``b -> (2 phi / (1 - phi^2))^(2/3) n^(1/3)``). Series shorter than
    8 or with no variance get 1. Returns a float (the stationary bootstrap needs no integer).
    """
    v = _clean(x)
    n = v.size
    if n < 8:
        return 1.0
    e = v - v.mean()
    r0 = float(e @ e) / n
    if not r0 > 0:
        return 1.0
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = min(math.ceil(math.sqrt(n)) + k_n, n - 1)
    b_max = math.ceil(min(3.0 * math.sqrt(n), n / 3.0))
    acov = np.array([float(e[: n - k] @ e[k:]) / n for k in range(m_max + 1)])
    rho = acov[1:] / r0  # rho[k - 1] is the lag-k autocorrelation
    threshold = 2.0 * math.sqrt(math.log10(n) / n)
    significant = np.abs(rho) >= threshold
    m_hat = None
    for m in range(1, m_max - k_n + 1):
        if not significant[m : m + k_n].any():  # lags m+1 .. m+K
            m_hat = m
            break
    if m_hat is None:
        lags = np.flatnonzero(significant) + 1
        m_hat = int(lags.max()) if lags.size else 1
    big_m = min(2 * m_hat, m_max)
    k = np.arange(-big_m, big_m + 1)
    weights = _flat_top(k / big_m)
    r_k = acov[np.abs(k)]
    g_hat = float(np.sum(weights * np.abs(k) * r_k))
    long_run = float(np.sum(weights * r_k))
    d_sb = 2.0 * long_run**2
    if not d_sb > 0:
        return 1.0
    b = (2.0 * g_hat**2 / d_sb) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return float(min(max(b, 1.0), b_max))


def excess_return_test(
    strategy_returns: object,
    benchmark_returns: object,
    *,
    n_boot: int = 5000,
    mean_block: float | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    periods_per_year: float = PERIODS_PER_YEAR,
) -> dict[str, float | int | None]:
    """Stationary-bootstrap test of H0: mean excess return ``<= 0`` against H1: ``> 0``.

    ``d_t = r_s - r_b`` on the aligned dates; the statistic is the annualised mean excess
    ``ppy * mean(d)`` (arithmetic, so it is not the difference of the two CAGRs).

    * One-sided p-value: resample the *centred* series ``d - mean(d)`` (which obeys H0 with
      equality, the least favourable case) `n_boot` times and count how often the resampled
      mean reaches the observed mean: ``p = (1 + #{mean* >= mean(d)}) / (n_boot + 1)``. The
      ``+1`` makes it a valid p-value (never 0; Davison & Hinkley 1997, ch. 4).
    * Confidence interval: the *basic* (reverse-percentile) bootstrap interval
      ``[mean - q_hi, mean - q_lo]`` with ``q`` the quantiles of the same centred resampled
      means. It is built from the same draws as the p-value, so the two agree: the lower
      bound is above 0 about exactly when ``p < (1 - confidence) / 2``. (A 95% two-sided CI
      matches a 2.5% one-sided test, so at ``alpha = 0.05`` a p-value in ``[0.025, 0.05]``
      rejects with a CI that still touches 0.) For a mean the percentile interval is
      nearly the same; a studentised interval would need a per-replicate long-run variance
      and was not judged worth it.
    * `mean_block` defaults to :func:`optimal_block_length` of ``d`` (clipped to ``[1, n]``).

    Returns ``{mean_excess_ann, ci_low, ci_high, p_value, n, mean_block, n_boot, seed,
    confidence}`` (annualised fractions); with fewer than 2 aligned sessions the statistics
    are NaN.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    d = _aligned_excess(strategy_returns, benchmark_returns)
    n = int(d.size)
    result: dict[str, float | int | None] = {
        "mean_excess_ann": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "n": n,
        "mean_block": math.nan if mean_block is None else float(mean_block),
        "n_boot": int(n_boot),
        "seed": seed,
        "confidence": float(confidence),
    }
    if n < 2:
        return result
    block = optimal_block_length(d) if mean_block is None else float(mean_block)
    block = float(min(max(block, 1.0), n))
    mean_d = float(d.mean())
    centred = d - mean_d
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    chunk = max(1, BOOTSTRAP_CELLS // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        boot[start : start + size] = stationary_bootstrap_means(centred, block, size, rng)
    p_value = (1.0 + float(np.count_nonzero(boot >= mean_d))) / (n_boot + 1.0)
    tail = (1.0 - confidence) / 2.0
    q_lo, q_hi = np.quantile(boot, [tail, 1.0 - tail])
    result.update(
        mean_excess_ann=mean_d * periods_per_year,
        ci_low=(mean_d - float(q_hi)) * periods_per_year,
        ci_high=(mean_d - float(q_lo)) * periods_per_year,
        p_value=p_value,
        mean_block=block,
    )
    return result


# ---------------------------------------------------------------- the probabilistic Sharpe ratio


def sharpe_per_period(returns: object) -> float:
    """Non-annualised Sharpe ratio ``mean / std(ddof=1)``; NaN if undefined."""
    x = _clean(returns)
    if x.size < 2 or x.max() == x.min():
        return math.nan
    return float(x.mean() / x.std(ddof=1))


def probabilistic_sharpe_ratio(returns: object, sr_benchmark: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds `sr_benchmark` (Bailey & Lopez de Prado 2012).

    ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))``

    with ``SR`` the *per-period* (non-annualised) Sharpe ratio ``mean / std(ddof=1)`` of the
    returns (pass excess returns over the risk-free rate if it is not 0), ``SR*`` a
    per-period benchmark Sharpe (divide an annual one by ``sqrt(252)``), ``skew`` and
    ``kurt`` the sample skewness and *non-excess* kurtosis (moment estimators, divisor
    ``n``: ``m3 / m2^1.5`` and ``m4 / m2^2``; a normal has ``kurt = 3``). ``Phi`` via
    ``math.erf``. The variance term accounts for fat tails and skew, not for serial
    correlation, and `sr_benchmark` is taken as known. NaN with fewer than 3 returns, no
    variance, or a non-positive variance term.
    """
    x = _clean(returns)
    n = x.size
    if n < 3 or x.max() == x.min():
        return math.nan
    sr = float(x.mean() / x.std(ddof=1))
    e = x - x.mean()
    m2 = float(np.mean(e**2))
    skew = float(np.mean(e**3)) / m2**1.5
    kurt = float(np.mean(e**4)) / m2**2
    variance_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not variance_term > 0:
        return math.nan
    z = (sr - float(sr_benchmark)) * math.sqrt(n - 1.0) / math.sqrt(variance_term)
    return _normal_cdf(z)


# ---------------------------------------------------------------- the verdict


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _p_text(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    if p < 0.1:
        return f"p = {p:.3f}"
    return f"p = {p:.2f}"


def verdict(
    strategy_returns: object,
    benchmark_returns: object,
    *,
    alpha: float = 0.05,
    n_boot: int = 5000,
    mean_block: float | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    risk_free: float = 0.0,
    min_years: float = 2.0,
    periods_per_year: float = PERIODS_PER_YEAR,
) -> dict[str, object]:
    """The answer to "does the strategy beat buy-and-hold SPY?", with a plain sentence.

    Rejects H0 (mean daily excess return ``<= 0``) when the one-sided stationary-bootstrap
    p-value of :func:`excess_return_test` is ``<= alpha``. Adds the probabilistic Sharpe
    ratio of the strategy against 0 (``psr``) and against the benchmark's per-period Sharpe
    ratio over the same dates (``psr_vs_benchmark``, which treats the benchmark's Sharpe as
    known), both on returns in excess of the annual `risk_free` rate, and the annualised
    Sharpe ratios. Samples shorter than `min_years` (in sessions / 252) carry a note that
    they are too short to conclude much.

    The sentence reads, for instance, "cannot reject the null: the strategy does not beat
    buy-and-hold SPY (excess return +1.2% a year, 95% CI [-8.0%, +10.4%], p = 0.41)" or
    "beats buy-and-hold SPY at p = 0.012 (excess return +9.1% a year, 95% CI [+2.0%,
    +16.3%])". Not rejecting is not proof of no skill: the CI says how large an edge the
    data still allow.
    """
    test = excess_return_test(
        strategy_returns,
        benchmark_returns,
        n_boot=n_boot,
        mean_block=mean_block,
        seed=seed,
        confidence=confidence,
        periods_per_year=periods_per_year,
    )
    s, b = _aligned(strategy_returns, benchmark_returns)
    rf_d = (1.0 + risk_free) ** (1.0 / periods_per_year) - 1.0
    sr_s = sharpe_per_period(s - rf_d)
    sr_b = sharpe_per_period(b - rf_d)
    n = int(test["n"])
    years = n / periods_per_year
    p = test["p_value"]
    tested = not math.isnan(p)
    reject = bool(tested and p <= alpha)
    level = f"{confidence * 100:g}%"
    if not tested:
        sentence = (
            "cannot reject the null: the strategy does not beat buy-and-hold SPY "
            f"(too few sessions to test: n = {n})"
        )
    else:
        effect = (
            f"excess return {_pct(test['mean_excess_ann'])} a year, "
            f"{level} CI [{_pct(test['ci_low'])}, {_pct(test['ci_high'])}]"
        )
        if reject:
            sentence = f"beats buy-and-hold SPY at {_p_text(p)} ({effect})"
        else:
            sentence = f"cannot reject the null: the strategy does not beat buy-and-hold SPY ({effect}, {_p_text(p)})"
    short = years < min_years
    if short:
        sentence += (
            f". Only {n} sessions ({years:.1f} years, under {min_years:g}): too short to conclude much."
        )
    sqrt_ppy = math.sqrt(periods_per_year)
    return {
        "reject_null": reject,
        "alpha": float(alpha),
        **test,
        "years": years,
        "short_sample": short,
        "sharpe_strategy_ann": sr_s * sqrt_ppy,
        "sharpe_benchmark_ann": sr_b * sqrt_ppy,
        "psr": probabilistic_sharpe_ratio(s - rf_d, 0.0),
        "psr_vs_benchmark": probabilistic_sharpe_ratio(s - rf_d, sr_b) if not math.isnan(sr_b) else math.nan,
        "sentence": sentence,
    }


# ---------------------------------------------------------------- several arms, honest power


def paired_test(
    treatment_returns: object, control_returns: object, *, alpha: float = 0.05, n_boot: int = 5000, seed: int = 0,
    confidence: float = 0.95, periods_per_year: float = PERIODS_PER_YEAR, names: tuple[str, str] = ("treatment", "control"),
) -> dict[str, object]:
    """Treatment against control on the paired daily differences ``r_t - r_c`` (same dates,
    same market), with the stationary bootstrap of :func:`excess_return_test`: H0 the
    treatment's mean daily return is no higher than the control's. This is the test of the
    hypothesis itself: what the behavioural prompt adds over the same model without it."""
    test = excess_return_test(treatment_returns, control_returns, n_boot=n_boot, seed=seed, confidence=confidence,
                              periods_per_year=periods_per_year)
    p = test["p_value"]
    a, b = names
    if math.isnan(p):
        sentence = f"{a} vs {b}: too few paired sessions to test (n = {test['n']})"
    else:
        effect = (f"{_pct(test['mean_excess_ann'])} a year, {confidence * 100:g}% CI "
                  f"[{_pct(test['ci_low'])}, {_pct(test['ci_high'])}], {_p_text(p)}")
        sentence = (f"{a} beats {b} ({effect})" if p <= alpha
                    else f"cannot tell {a} from {b} ({effect})")
    mde = minimum_detectable_effect(_aligned_excess(treatment_returns, control_returns), alpha=alpha,
                                    periods_per_year=periods_per_year)
    return {**test, "reject_null": bool(not math.isnan(p) and p <= alpha), "alpha": alpha, "sentence": sentence,
            "mde": mde}


def minimum_detectable_effect(
    excess_returns: object, *, alpha: float = 0.05, power: float = 0.8, periods_per_year: float = PERIODS_PER_YEAR,
    last_date: object = None, edge: float = 0.05,
) -> dict[str, object]:
    """The smallest annual edge a one-sided test at `alpha` detects with probability
    `power`, given the tracking error and the sample in hand:

    ``MDE = (z_{1-alpha} + z_power) * TE_ann / sqrt(years)``, ``TE_ann = std(d) sqrt(ppy)``

    (the normal approximation for the mean of i.i.d. daily differences; autocorrelation
    would only widen it). Also how many years an `edge` (default 5% a year) needs,
    ``years = ((z_{1-alpha} + z_power) TE_ann / edge)^2``, and, given the sample's
    `last_date`, the year it could first be told from luck. Said in words in ``sentence``."""
    d = _clean(excess_returns)
    n = d.size
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    out: dict[str, object] = {"alpha": alpha, "power": power, "n": int(n), "edge": edge,
                              "tracking_error_ann": math.nan, "mde_ann": math.nan, "years_for_edge": math.nan,
                              "sentence": "too few sessions to measure the noise"}
    if n < 3 or not d.std(ddof=1) > 0:
        return out
    te = float(d.std(ddof=1)) * math.sqrt(periods_per_year)
    years = n / periods_per_year
    mde = z * te / math.sqrt(years)
    need = (z * te / edge) ** 2
    out.update(tracking_error_ann=te, mde_ann=mde, years_for_edge=need)
    when = ""
    if last_date is not None:
        end = pd.Timestamp(last_date)
        out["edge_detectable_from"] = int(end.year + max(need - years, 0.0))
        when = f", that is not before {out['edge_detectable_from']}"
    out["sentence"] = (
        f"at this noise (tracking error {te:.1%} a year), an edge below {mde:.1%} a year cannot be told from luck "
        f"with the {years:.1f} years in hand; an edge of {edge:.0%} a year needs about {need:.0f} years{when} "
        f"(one-sided test at {alpha:g}, power {power:.0%})"
    )
    return out


EULER_GAMMA = 0.5772156649015329


def deflated_sharpe_ratio(returns: object, trial_sharpes: Sequence[float], n_trials: int | None = None) -> dict[str, object]:
    """The probabilistic Sharpe ratio against the Sharpe ratio the best of N trials would
    reach by luck (Bailey & Lopez de Prado 2014, "The Deflated Sharpe Ratio", Journal of
    Portfolio Management 40(5)):

    ``SR0 = sqrt(V[SR_n]) * ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``

    with ``SR_n`` the per-period Sharpe ratios of the N trials compared (arms, prompt
    versions, models), ``gamma`` the Euler-Mascheroni constant; ``DSR = PSR(SR0)``. With
    one trial it is the PSR against 0. `n_trials` counts trials whose Sharpe ratio is not
    in `trial_sharpes` (an earlier prompt version): N is the larger of the two, the
    variance that of the Sharpe ratios given."""
    srs = [float(x) for x in trial_sharpes if x == x]
    n = max(len(srs), n_trials or 0)
    if n < 2 or len(srs) < 2:
        sr0 = 0.0
    else:
        var = float(np.var(srs, ddof=1))
        nd = NormalDist()
        sr0 = math.sqrt(var) * ((1 - EULER_GAMMA) * nd.inv_cdf(1 - 1 / n) + EULER_GAMMA * nd.inv_cdf(1 - 1 / (n * math.e)))
    dsr = probabilistic_sharpe_ratio(returns, sr0)
    return {"trials": n, "sr0_per_period": sr0, "dsr": dsr,
            "sentence": (f"deflated Sharpe ratio {dsr:.2f} for the best of {n} trials (the probability that its "
                         "true Sharpe ratio beats what luck alone gives the best of that many)") if dsr == dsr
            else "deflated Sharpe ratio: not enough data"}
