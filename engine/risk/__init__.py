"""Risk measures as pure functions of arrays and Series: CVaR, prospect value, Kelly, drawdown."""

from engine.risk.cvar import (
    MIN_OBSERVATIONS,
    historical_cvar,
    historical_var,
    portfolio_cvar,
    portfolio_var,
    rolling_var_cvar,
    tail_count,
)
from engine.risk.drawdown import drawdown, drawdown_multiplier, max_drawdown
from engine.risk.kelly import kelly_fraction
from engine.risk.prospect import mean_prospect_value, prospect_value

__all__ = [
    "MIN_OBSERVATIONS",
    "drawdown",
    "drawdown_multiplier",
    "historical_cvar",
    "historical_var",
    "kelly_fraction",
    "max_drawdown",
    "mean_prospect_value",
    "portfolio_cvar",
    "portfolio_var",
    "prospect_value",
    "rolling_var_cvar",
    "tail_count",
]
