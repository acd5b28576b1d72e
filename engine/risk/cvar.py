"""Historical Value-at-Risk and Conditional Value-at-Risk (expected shortfall).

Convention, shared by every function here: for ``n`` returns and a level ``c`` (e.g.
0.95) the tail is the ``k = ceil(n * (1 - c))`` worst returns. Then

* ``VaR  = -(k-th smallest return)``
* ``CVaR = -(mean of the k smallest returns)``

both reported as positive loss fractions (a 2% loss is ``0.02``). Either may be negative
when even the worst returns are gains. CVaR is the mean of the tail whose largest member
defines VaR, so ``CVaR >= VaR`` always. With whole observations this is the discrete
estimator of Rockafellar & Uryasev (2000) restricted to the k worst outcomes.

NaNs are ignored; with fewer than ``MIN_OBSERVATIONS`` valid returns the answer is NaN
(a tail of one or two points says nothing).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

MIN_OBSERVATIONS = 20


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def tail_count(n: int, level: float) -> int:
    """``k = ceil(n * (1 - level))``, at least 1.

    The small tolerance keeps float noise from adding an observation:
    ``100 * (1 - 0.95)`` is ``5.000000000000004`` in binary floating point.
    """
    _check_level(level)
    return max(1, math.ceil(n * (1.0 - level) - 1e-9))


def _valid(returns: object) -> np.ndarray:
    x = np.asarray(returns, dtype=float).ravel()
    missing = np.isnan(x)
    return x[~missing] if missing.any() else x


def _tail(returns: object, level: float, min_observations: int) -> np.ndarray | None:
    """The k smallest valid returns (the k-th smallest last), or None if too few."""
    _check_level(level)
    x = _valid(returns)
    if x.size < max(1, min_observations):
        return None
    k = tail_count(x.size, level)
    return np.partition(x, k - 1)[:k]


def historical_var(
    returns: object, level: float = 0.95, *, min_observations: int = MIN_OBSERVATIONS
) -> float:
    """1-period historical VaR at `level`: ``-(k-th smallest return)``, a positive loss."""
    tail = _tail(returns, level, min_observations)
    return math.nan if tail is None else float(-tail[-1])


def historical_cvar(
    returns: object, level: float = 0.95, *, min_observations: int = MIN_OBSERVATIONS
) -> float:
    """1-period historical CVaR at `level`: ``-(mean of the k smallest returns)``."""
    tail = _tail(returns, level, min_observations)
    return math.nan if tail is None else float(-(tail.sum() / tail.size))  # the mean, as np.mean sums it


def rolling_var_cvar(
    returns: pd.DataFrame | pd.Series, window: int, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[pd.Series, pd.Series]:
    """Trailing-window (VaR, CVaR) per column, same shape and labels as `returns`.

    Row ``t`` uses rows ``t - window + 1 .. t`` only (no look-ahead). A window must be
    full: NaN until ``window`` rows exist, and NaN for any window that contains a NaN
    (so each value equals ``historical_var/cvar`` of that window's returns). Vectorised
    with a sliding-window view and ``np.partition``; the only loop is over columns.
    """
    _check_level(level)
    if window < MIN_OBSERVATIONS:
        raise ValueError(f"window must be at least {MIN_OBSERVATIONS}, got {window}")
    if isinstance(returns, pd.Series):
        var_f, cvar_f = rolling_var_cvar(returns.to_frame(), window, level)
        return var_f.iloc[:, 0].rename(returns.name), cvar_f.iloc[:, 0].rename(returns.name)

    values = returns.to_numpy(dtype=float, copy=True)
    n_rows, n_cols = values.shape
    var_out = np.full((n_rows, n_cols), np.nan)
    cvar_out = np.full((n_rows, n_cols), np.nan)
    if n_rows >= window:
        k = tail_count(window, level)
        full = full_windows(values, window)  # (n_rows - window + 1, n_cols)
        for j in range(n_cols):
            every = sliding_window_view(values[:, j], window)
            full_rows = np.flatnonzero(full[:, j])
            for a in range(0, full_rows.size, WINDOW_CHUNK):  # a bounded copy of the windows at a time
                rows = full_rows[a : a + WINDOW_CHUNK]
                tail = np.partition(every[rows], k - 1, axis=1)[:, :k]
                var_out[rows + window - 1, j] = -tail[:, k - 1]
                cvar_out[rows + window - 1, j] = -tail.mean(axis=1)
    var_f = pd.DataFrame(var_out, index=returns.index, columns=returns.columns)
    cvar_f = pd.DataFrame(cvar_out, index=returns.index, columns=returns.columns)
    return var_f, cvar_f


# Trailing windows are copied and reduced this many at a time (rolling_var_cvar and the
# indicators): 1024 windows of a year of returns are 2 MB, whatever the length of the run.
WINDOW_CHUNK = 1024


def full_windows(values: np.ndarray, window: int) -> np.ndarray:
    """For a (T x N) array: whether each trailing window (rows t-window+1..t, t >= window-1)
    holds no NaN. Shape ``(T - window + 1, N)``."""
    nan_count = np.concatenate(
        [np.zeros((1, values.shape[1])), np.cumsum(np.isnan(values), axis=0)], axis=0
    )
    return (nan_count[window:] - nan_count[:-window]) == 0


def _portfolio_returns(returns_matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    r = np.asarray(returns_matrix, dtype=float)
    w = np.asarray(weights, dtype=float).ravel()
    if r.ndim != 2 or r.shape[1] != w.size:
        raise ValueError(f"returns_matrix must be T x {w.size}, got shape {r.shape}")
    out = r @ w
    if np.isnan(out).any():  # a NaN return (or weight) is in it: the returns' NaN count as 0
        out = np.where(np.isnan(r), 0.0, r) @ w
    return out


def portfolio_var(
    returns_matrix: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> float:
    """Historical-simulation VaR of the 1-period portfolio return ``w . r_t``.

    `returns_matrix` is T x N (rows are dates), `weights` N fractions of NAV. A NaN
    return counts as 0 (the asset did not move that day), so pass only the lookback rows.
    """
    return historical_var(_portfolio_returns(returns_matrix, weights), level)


def portfolio_cvar(
    returns_matrix: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> float:
    """Historical-simulation CVaR of the 1-period portfolio return ``w . r_t``.

    Same inputs as :func:`portfolio_var`. Positively homogeneous: scaling every weight
    by ``s > 0`` scales the CVaR by ``s`` (historical simulation keeps the ranking).
    """
    return historical_cvar(_portfolio_returns(returns_matrix, weights), level)
