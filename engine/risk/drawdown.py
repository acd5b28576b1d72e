"""Drawdowns and the drawdown multiplier that tightens risk limits as losses deepen."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from engine.risk._shape import like


def drawdown(nav: pd.Series) -> pd.Series:
    """``nav / running peak - 1`` at each date: 0 at a new high, negative below it.

    Uses only past values (the running peak up to each date). NaN stays NaN.
    """
    nav = pd.Series(nav, dtype=float) if not isinstance(nav, pd.Series) else nav.astype(float)
    return nav / nav.cummax() - 1.0


def max_drawdown(nav: pd.Series) -> float:
    """The deepest drawdown, as a fraction <= 0 (``-0.25`` = a 25% fall from a peak).

    NaN for an empty or all-NaN series.
    """
    dd = drawdown(nav)
    return math.nan if dd.isna().all() else float(dd.min())


def drawdown_multiplier(
    dd: object, limit: float = 0.20, floor: float = 0.25, power: float = 2.0
) -> object:
    """``m = max(floor, 1 - (|dd| / limit) ** power)``, elementwise.

    1 at no drawdown; concave in |dd| (power >= 1), so limits tighten gently for small
    drawdowns and steeply as the drawdown nears `limit`; `floor` at and beyond it when
    ``floor >= 0``. `dd` may be given as a negative (as :func:`drawdown` returns it) or a
    positive fraction: only its magnitude counts. NaN stays NaN. Same type as `dd`.
    """
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    if power < 1:
        raise ValueError(f"power must be >= 1 (a concave multiplier), got {power}")
    if isinstance(dd, float):  # one session's drawdown (the step's): the same arithmetic, without arrays
        depth = abs(float(dd))
        if depth != depth:
            return math.nan
        try:
            return max(floor, 1.0 - (depth / limit) ** power)
        except OverflowError:  # numpy's inf: 1 - inf is below any floor
            return floor
    depth = np.abs(np.asarray(dd, dtype=float))
    with np.errstate(over="ignore"):
        values = np.maximum(floor, 1.0 - (depth / limit) ** power)
    return like(dd, values)
