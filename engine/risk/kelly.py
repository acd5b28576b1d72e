"""Fractional Kelly sizing (Kelly 1956).

For log utility and a continuously rebalanced position, the growth-optimal fraction of
wealth in one risky asset is ``mu / sigma^2`` (mean excess return over variance). The
ratio is the same for daily or annualised figures as long as both use the same period.
Full Kelly is notoriously aggressive with estimated inputs, hence the `fraction`
(0.5 = half-Kelly: about three quarters of the growth for half the volatility).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.risk._shape import like


def kelly_fraction(mean_return: object, variance: object, fraction: float = 0.5) -> object:
    """``fraction * mean_return / variance``, clipped at 0 from below (no shorting).

    NaN where the variance is 0, negative or NaN, or the mean is NaN. Not capped from
    above: a guardrail caps the weight. Elementwise over scalars, arrays or Series (two
    pandas inputs must share their index); the result has the type of the pandas input
    if any, else float / ndarray.
    """
    if fraction < 0:
        raise ValueError(f"fraction must be non-negative, got {fraction}")
    pandas_inputs = [a for a in (mean_return, variance) if isinstance(a, pd.Series | pd.DataFrame)]
    if len(pandas_inputs) == 2 and not pandas_inputs[0].index.equals(pandas_inputs[1].index):
        raise ValueError("mean_return and variance must share their index")
    m = np.asarray(mean_return, dtype=float)
    v = np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(v > 0, fraction * m / v, np.nan)
    values = np.maximum(raw, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    return like(pandas_inputs[0] if pandas_inputs else None, values)
