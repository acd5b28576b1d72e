"""Prospect-theory value of returns (Tversky & Kahneman 1992).

``v(x) = x ** alpha`` for gains (``x >= 0``) and ``v(x) = -lambda * (-x) ** beta`` for
losses, with the paper's median estimates alpha = beta = 0.88 and lambda = 2.25 as
defaults. The reference point is a zero return. Probability weighting is not applied:
every historical outcome gets the same weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from engine.risk._shape import like


def prospect_value(
    x: object, alpha: float = 0.88, beta: float = 0.88, loss_aversion: float = 2.25
) -> object:
    """``v(x)`` elementwise; same type as `x` (float, ndarray, Series or DataFrame).

    NaN stays NaN. Strictly increasing for alpha, beta > 0, and with alpha = beta and
    loss_aversion > 1 a loss hurts more than an equal gain pleases: ``-v(-x) > v(x)``.
    """
    if isinstance(x, (float, int)):  # one value (the step's portfolio)
        return prospect_value_of(alpha, beta, loss_aversion)(float(x))
    _check(alpha, beta, loss_aversion)
    arr = np.asarray(x, dtype=float)
    magnitude = np.abs(arr)
    # Both branches on |x|: a negative base to a fractional power would be NaN.
    values = np.where(arr >= 0, magnitude**alpha, -loss_aversion * magnitude**beta)
    values = np.where(np.isnan(arr), np.nan, values)
    return like(x, values)


def prospect_value_of(alpha: float = 0.88, beta: float = 0.88, loss_aversion: float = 2.25) -> Callable[[float], float]:
    """``v`` of one float, the parameters checked once: for the step, which values every
    position of every session (a call of :func:`prospect_value` checks them each time)."""
    _check(alpha, beta, loss_aversion)

    def v(x: float) -> float:
        if x != x:
            return math.nan
        return x**alpha if x >= 0 else -loss_aversion * (-x) ** beta

    return v


def _check(alpha: float, beta: float, loss_aversion: float) -> None:
    if alpha <= 0 or beta <= 0:
        raise ValueError("alpha and beta must be positive")
    if loss_aversion <= 0:
        raise ValueError("loss_aversion must be positive")


def mean_prospect_value(
    returns: object, alpha: float = 0.88, beta: float = 0.88, loss_aversion: float = 2.25
) -> float:
    """Mean of ``v(r)`` over the valid (non-NaN) returns of a sample; NaN if none."""
    r = np.asarray(returns, dtype=float).ravel()
    r = r[~np.isnan(r)]
    if r.size == 0:
        return math.nan
    return float(np.mean(prospect_value(r, alpha, beta, loss_aversion)))
