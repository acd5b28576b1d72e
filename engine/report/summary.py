"""The end-of-run summary: the strategy against buy-and-hold SPY and CAC 40, in EUR."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from engine.config import Config
from engine.portfolio.ledger import Portfolio
from engine.risk.cvar import historical_cvar
from engine.risk.drawdown import max_drawdown


@dataclass(frozen=True)
class Line:
    name: str
    nav_eur: float
    total_return: float
    max_drawdown: float
    cvar_95: float  # historical 1-day CVaR of the run's daily returns
    trades: int | None = None
    costs_eur: float | None = None


def summarize(equity: pd.DataFrame, trades: pd.DataFrame, p: Portfolio, config: Config, policy: str) -> list[Line]:
    """One line for the strategy, then one per benchmark, over the sessions in `equity`."""
    capital = p.starting_capital_eur
    lines = []
    nav = equity["nav_eur"].astype(float)
    n_trades = int(trades["side"].isin(["buy", "sell"]).sum()) if len(trades) else 0
    lines.append(_line(f"Strategy ({policy})", nav, capital, n_trades, p.costs.total_eur))
    for b in config.benchmarks:
        col = f"benchmark_{b.key}_eur"
        if col in equity.columns:
            lines.append(_line(b.name, equity[col].astype(float), capital))
    return lines


def _line(name: str, nav: pd.Series, capital: float, trades: int | None = None, costs: float | None = None) -> Line:
    # The first session is the inception close: returns start from the starting capital.
    series = pd.concat([pd.Series([capital]), nav], ignore_index=True)
    return Line(
        name=name,
        nav_eur=float(nav.iloc[-1]),
        total_return=float(nav.iloc[-1] / capital - 1),
        max_drawdown=max_drawdown(series),
        cvar_95=historical_cvar(series.pct_change().dropna()),
        trades=trades,
        costs_eur=costs,
    )
