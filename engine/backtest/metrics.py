"""Performance metrics of a daily simple-returns series, in the style of empyrical.

Every function is pure: it takes daily *simple* returns (``r_t = NAV_t / NAV_{t-1} - 1``),
drops NaNs, and returns a float. No I/O, no globals, no state.

Conventions (each cross-checked against ``empyrical`` 0.7.1 in ``tests/test_metrics.py``):

* ``periods_per_year = 252`` trading sessions by default (empyrical's); ``years = n /
  periods_per_year`` for ``n`` returns. A run passes its calendar's sessions per year
  (:func:`engine.data.calendars.sessions_per_year`: about 258 for New York + Paris).
* Annual rates (``risk_free``, ``required_return``) become per-period rates
  geometrically: ``(1 + rate) ** (1 / 252) - 1``.
* The NAV path is compounded from 1 *before* the first return,
  ``NAV = [1, (1 + r_1), (1 + r_1)(1 + r_2), ...]``, so a loss on the first day is a
  drawdown (empyrical anchors its drawdowns the same way).
* Standard deviations are sample ones (``ddof = 1``), as in empyrical's
  ``annual_volatility`` and ``sharpe_ratio``.
* With fewer than ``MIN_PERIODS = 2`` valid returns every metric is NaN (one session
  says nothing, and a dispersion needs two). VaR and CVaR need ``MIN_OBSERVATIONS = 20``
  (see :mod:`engine.risk.cvar`). Nothing here raises on a short or empty series.

:func:`performance` gathers them into one flat, JSON-ready dict for a NAV series.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from engine.risk.cvar import historical_cvar, historical_var
from engine.risk.drawdown import drawdown as _drawdown
from engine.risk.drawdown import max_drawdown as _max_drawdown_of_nav

PERIODS_PER_YEAR = 252
MIN_PERIODS = 2
# A NAV this close (relatively) to its running peak counts as back at the peak: compounding
# +10% then -1/11 must "recover" even though the product is off by one ulp.
RECOVERY_TOLERANCE = 1e-12
TRADED_SIDES = ("buy", "sell")


# ---------------------------------------------------------------- helpers


def _clean(returns: object) -> pd.Series:
    """The returns as a float Series without NaNs (index kept if there was one)."""
    if isinstance(returns, pd.Series):
        s = returns.astype(float)
    else:
        s = pd.Series(np.asarray(returns, dtype=float).ravel())
    missing = np.isnan(s.to_numpy())
    return s[~missing] if missing.any() else s  # already clean: each metric cleans its input again


def _too_short(r: pd.Series) -> bool:
    return len(r) < MIN_PERIODS


def per_period_rate(annual_rate: float, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """An annual rate as the equivalent per-period rate: ``(1 + rate) ** (1 / ppy) - 1``."""
    return (1.0 + annual_rate) ** (1.0 / periods_per_year) - 1.0


def nav_path(returns: object) -> pd.Series:
    """The compounded NAV starting at 1 before the first return: ``n + 1`` values.

    The anchor (position 0) has no date of its own; it takes the first return's date
    (the capital at the start of the first session), so a Series index may repeat once.
    """
    r = _clean(returns)
    values = np.concatenate([[1.0], np.cumprod(1.0 + r.to_numpy())])
    index = r.index[:1].append(r.index) if len(r) else pd.RangeIndex(1)
    return pd.Series(values, index=index)


def _sample_std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof = 1); exactly 0 when every value is equal.

    Floating-point centring leaves a ~1e-18 residue on a constant series, which would turn
    an infinite ratio into a huge finite one (empyrical's ``_zero_dispersion_std`` does the
    same correction).
    """
    if x.max() == x.min():
        return 0.0
    return float(np.std(x, ddof=1))


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with IEEE semantics (±inf, or NaN for 0 / 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


# ---------------------------------------------------------------- return and risk


def total_return(returns: object) -> float:
    """Compounded return over the whole series: ``prod(1 + r) - 1``.

    Equals ``empyrical.cum_returns_final``.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    return float(np.prod(1.0 + r.to_numpy()) - 1.0)


def cagr(returns: object, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate: ``(1 + total_return) ** (ppy / n) - 1``.

    The number of years is the number of periods over ``periods_per_year`` (not calendar
    time), as in ``empyrical.annual_return``.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    growth = float(np.prod(1.0 + r.to_numpy()))
    years = len(r) / periods_per_year
    return growth ** (1.0 / years) - 1.0


def annual_volatility(returns: object, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Sample standard deviation (ddof = 1) of the returns, times ``sqrt(ppy)``.

    Same convention as ``empyrical.annual_volatility`` (which also uses ddof = 1).
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    return _sample_std(r.to_numpy()) * math.sqrt(periods_per_year)


def sharpe_ratio(
    returns: object, risk_free: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR
) -> float:
    """Annualised Sharpe ratio (Sharpe 1966, "Mutual Fund Performance").

    ``mean(r - rf_d) / std(r - rf_d, ddof=1) * sqrt(ppy)`` with ``rf_d`` the per-period
    equivalent of the *annual* rate `risk_free`. ``empyrical.sharpe_ratio`` takes the
    per-period rate directly; given ``rf_d`` the two agree. A constant series has zero
    dispersion: the answer is then ±inf (or NaN for a zero mean), as in empyrical.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    excess = r.to_numpy() - per_period_rate(risk_free, periods_per_year)
    return _ratio(excess.mean(), _sample_std(excess)) * math.sqrt(periods_per_year)


def downside_deviation(
    returns: object, required_return: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR
) -> float:
    """Annualised downside deviation below a minimum acceptable return.

    ``sqrt(mean(min(r - mar_d, 0) ** 2)) * sqrt(ppy)``: the mean runs over *all* periods
    (the gains count as zeros), not only the losing ones, as in Sortino & van der Meer
    (1991) and ``empyrical.downside_risk``. `required_return` is an annual rate.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    shortfall = np.minimum(r.to_numpy() - per_period_rate(required_return, periods_per_year), 0.0)
    return math.sqrt(float(np.mean(shortfall**2))) * math.sqrt(periods_per_year)


def sortino_ratio(
    returns: object, required_return: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR
) -> float:
    """Annualised Sortino ratio (Sortino & van der Meer 1991, "Downside Risk").

    ``ppy * mean(r - mar_d) / downside_deviation(r, mar)``, with the minimum acceptable
    return `required_return` an annual rate (default 0, so ``mar_d = 0``). Equals
    ``empyrical.sortino_ratio`` given the per-period ``mar_d``. With no period below the
    threshold the downside deviation is 0 and the ratio is +inf (NaN for a zero mean).
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    mar_d = per_period_rate(required_return, periods_per_year)
    mean_ann = float(np.mean(r.to_numpy() - mar_d)) * periods_per_year
    return _ratio(mean_ann, downside_deviation(r, required_return, periods_per_year))


def max_drawdown(returns: object) -> float:
    """The deepest fall from a running peak of the compounded NAV, as a fraction <= 0.

    The NAV starts at 1 before the first return (see :func:`nav_path`); delegates to
    :func:`engine.risk.drawdown.max_drawdown`. Equals ``empyrical.max_drawdown``.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    return _max_drawdown_of_nav(nav_path(r).reset_index(drop=True))


class DrawdownDuration(NamedTuple):
    """The longest drawdown, counted from its peak to its recovery (or to the end)."""

    periods: float  # sessions from the peak to the first NAV back at the peak (NaN if undefined)
    days: float  # calendar days over the same stretch (NaN without a date index)


def max_drawdown_duration(returns: object) -> DrawdownDuration:
    """The longest stretch from a peak until the NAV first gets back to that peak.

    On the NAV path (1 before the first return, :func:`nav_path`) a drawdown spell starts at
    the last position at its running peak and ends at the first later position whose NAV
    is back at (or above) that peak, within a relative ``RECOVERY_TOLERANCE``. A spell that
    never recovers ends at the last observation. The duration is counted in periods
    (positions between peak and end) and in calendar days (dates of the same two
    positions; the anchor before the first return is dated at the first return's date,
    i.e. the capital at the start of the first session).

    The longest spell is chosen by periods (ties: by days); both figures describe that one
    spell. No drawdown at all gives ``(0, 0)``. Fewer than 2 returns give ``(NaN, NaN)``;
    a non-date index gives ``days = NaN``.

    Example: returns ``-10%, 0, +20%, -50%, +10%`` give the path
    ``1, .9, .9, 1.08, .54, .594``: a 3-period spell (anchor to the +20% day, recovered)
    and a 2-period one (the 1.08 peak to the end, never recovered); the answer is 3.
    """
    r = _clean(returns)
    if _too_short(r):
        return DrawdownDuration(math.nan, math.nan)
    path = nav_path(r)
    underwater = (_drawdown(path.reset_index(drop=True)) < -RECOVERY_TOLERANCE).to_numpy()
    if not underwater.any():
        return DrawdownDuration(0, 0)
    # Spells are runs of underwater positions i..j; the peak is i - 1 (position 0 is never
    # underwater), the end is j + 1 if it exists (recovered) else the last position j.
    flags = np.concatenate([[False], underwater, [False]]).astype(np.int8)
    edges = np.diff(flags)
    starts = np.flatnonzero(edges == 1)  # first underwater position of each spell
    stops = np.flatnonzero(edges == -1) - 1  # last underwater position of each spell
    last = len(path) - 1
    peaks = starts - 1
    ends = np.minimum(stops + 1, last)
    periods = ends - peaks
    if isinstance(path.index, pd.DatetimeIndex):
        dates = path.index
        days = np.asarray((dates[ends] - dates[peaks]).days, dtype=float)
    else:
        days = np.full(len(periods), np.nan)
    # longest by periods, ties broken by calendar days
    order = np.lexsort((np.nan_to_num(days, nan=-1.0), periods))
    k = order[-1]
    day_count = days[k]
    return DrawdownDuration(int(periods[k]), math.nan if np.isnan(day_count) else int(day_count))


def calmar_ratio(returns: object, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """``cagr / |max_drawdown|`` (Young 1991, "Calmar Ratio: A Smoother Tool").

    NaN when there is no drawdown (or the ratio is infinite), as ``empyrical.calmar_ratio``.
    Note empyrical and this module both use the whole series, not Young's trailing 36
    months.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    mdd = max_drawdown(r)
    if not mdd < 0:
        return math.nan
    value = cagr(r, periods_per_year) / abs(mdd)
    return math.nan if math.isinf(value) else value


def value_at_risk(returns: object, level: float = 0.95) -> float:
    """1-period historical VaR, a positive loss fraction (:func:`engine.risk.cvar.historical_var`).

    ``-(k-th smallest return)`` with ``k = ceil(n (1 - level))``; NaN below 20 returns.
    empyrical's ``value_at_risk`` interpolates a percentile instead (and keeps the sign),
    so the two differ slightly by design.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    return historical_var(r.to_numpy(), level)


def conditional_value_at_risk(returns: object, level: float = 0.95) -> float:
    """1-period historical CVaR (expected shortfall), a positive loss fraction.

    ``-(mean of the k smallest returns)``, :func:`engine.risk.cvar.historical_cvar`;
    NaN below 20 returns.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    return historical_cvar(r.to_numpy(), level)


def hit_rate(returns: object) -> float:
    """Share of winning periods among the periods that moved: ``#(r > 0) / #(r != 0)``.

    Flat periods (exactly zero return: all cash, market closed for a held asset) are left
    out, so a strategy that sits in cash is not scored as losing. NaN when no period moved
    or with fewer than 2 returns.
    """
    r = _clean(returns)
    if _too_short(r):
        return math.nan
    x = r.to_numpy()
    moved = int(np.count_nonzero(x))
    return math.nan if moved == 0 else int(np.count_nonzero(x > 0)) / moved


def turnover(trades: pd.DataFrame, nav: pd.Series, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualised turnover: ``sum |gross_eur| of buy and sell fills / mean NAV / years``.

    `trades` has columns ``date``, ``side`` (``buy``, ``sell``, ``dividend``, ``split``)
    and ``gross_eur``; dividends and splits are not trading and are ignored. ``years`` is
    the number of valid NAV sessions over ``periods_per_year``, as for :func:`cagr`. Both
    buys and sells count, so selling everything and buying it back once a year is a
    turnover of 2 (some define turnover as half of this, or as the smaller of the buy and
    sell legs). Pass the trades of the same run as `nav`: they are not filtered by date.
    NaN with fewer than 2 NAV sessions or a non-positive mean NAV.
    """
    values = pd.Series(nav, dtype=float) if not isinstance(nav, pd.Series) else nav.astype(float)
    values = values[values.notna()]
    if len(values) < MIN_PERIODS:
        return math.nan
    mean_nav = float(values.mean())
    if not mean_nav > 0:
        return math.nan
    if trades is None or len(trades) == 0:
        traded_eur = 0.0
    else:
        fills = trades[trades["side"].isin(TRADED_SIDES)]
        traded_eur = float(fills["gross_eur"].astype(float).abs().sum())
    years = len(values) / periods_per_year
    return traded_eur / mean_nav / years


# ---------------------------------------------------------------- the summary


def returns_from_nav(nav: pd.Series, capital: float) -> pd.Series:
    """Daily simple returns of a NAV series, the first one measured from `capital`.

    ``r_0 = nav_0 / capital - 1`` (the first session counts), then
    ``r_t = nav_t / nav_{t-1} - 1``. NaN NAVs are dropped first.
    """
    values = nav.astype(float)
    values = values[values.notna()]
    previous = values.shift(1)
    if len(values):
        previous.iloc[0] = float(capital)
    return values / previous - 1.0


def _json_float(x: object) -> float | None:
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _json_int(x: object) -> int | None:
    if x is None:
        return None
    value = float(x)
    return round(value) if math.isfinite(value) else None


def _json_total(x: object) -> float | None:
    """A number, or the sum of an array/Series of amounts (per-fill costs), or None."""
    if x is None:
        return None
    if np.ndim(x) == 0:
        return _json_float(x)
    return _json_float(np.nansum(np.asarray(x, dtype=float)))


def _iso(label: object) -> str:
    """A date label as an ISO date (or date-time if it has a time of day); else ``str``."""
    if not isinstance(label, (dt.date, np.datetime64)):
        return str(label)
    stamp = pd.Timestamp(label)
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()


PERFORMANCE_KEYS = (
    "total_return",
    "cagr",
    "volatility_ann",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_days",
    "max_drawdown_sessions",
    "calmar",
    "var_95",
    "cvar_95",
    "hit_rate",
    "turnover_ann",
    "costs_eur",
    "taxes_eur",
    "llm_tokens",
    "llm_cost_usd",
    "sessions",
    "start",
    "end",
    "final_nav_eur",
)


def performance(
    nav: pd.Series,
    *,
    capital: float,
    trades: pd.DataFrame | None = None,
    costs_eur: object = None,
    taxes_eur: object = None,
    llm_tokens: object = None,
    llm_cost_usd: object = None,
    risk_free: float = 0.0,
    periods_per_year: float = PERIODS_PER_YEAR,
) -> dict[str, float | int | str | None]:
    """Every metric of a run, as a flat JSON-ready dict in the order of ``PERFORMANCE_KEYS``.

    `nav` is the end-of-session NAV in EUR indexed by date; `capital` the cash it started
    from. Returns are :func:`returns_from_nav` (the first session counts). Fractions are
    plain fractions (``0.12`` = 12%); ``volatility_ann``, ``sharpe``, ``sortino``, ``cagr``
    and ``turnover_ann`` are annualised over `periods_per_year` sessions (the calendar's);
    ``sharpe`` uses the annual
    `risk_free` rate, ``sortino`` a required return of 0. ``var_95`` / ``cvar_95`` are 1-day
    historical losses as positive fractions. ``costs_eur`` and ``taxes_eur`` may be numbers
    or per-fill amounts (summed). NaN or infinite values become None; ``start`` / ``end``
    are ISO dates.
    """
    if not capital > 0:
        raise ValueError(f"capital must be positive, got {capital}")
    values = nav.astype(float)
    values = values[values.notna()]
    r = returns_from_nav(values, capital)
    duration = max_drawdown_duration(r)
    ppy = periods_per_year
    out: dict[str, float | int | str | None] = {
        "total_return": _json_float(total_return(r)),
        "cagr": _json_float(cagr(r, ppy)),
        "volatility_ann": _json_float(annual_volatility(r, ppy)),
        "sharpe": _json_float(sharpe_ratio(r, risk_free, ppy)),
        "sortino": _json_float(sortino_ratio(r, 0.0, ppy)),
        "max_drawdown": _json_float(max_drawdown(r)),
        "max_drawdown_days": _json_int(duration.days),
        "max_drawdown_sessions": _json_int(duration.periods),
        "calmar": _json_float(calmar_ratio(r, ppy)),
        "var_95": _json_float(value_at_risk(r, 0.95)),
        "cvar_95": _json_float(conditional_value_at_risk(r, 0.95)),
        "hit_rate": _json_float(hit_rate(r)),
        "turnover_ann": None if trades is None else _json_float(turnover(trades, values, ppy)),
        "costs_eur": _json_total(costs_eur),
        "taxes_eur": _json_total(taxes_eur),
        "llm_tokens": _json_int(llm_tokens),
        "llm_cost_usd": _json_float(llm_cost_usd),
        "sessions": len(values),
        "start": _iso(values.index[0]) if len(values) else None,
        "end": _iso(values.index[-1]) if len(values) else None,
        "final_nav_eur": _json_float(values.iloc[-1]) if len(values) else None,
    }
    return out
