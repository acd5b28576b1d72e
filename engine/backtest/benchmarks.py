"""The benchmark lines: baseline arms where they trade, an index where nothing can.

A tradable benchmark (buy-and-hold SPY, the CAC 40 tracker, a rebalanced equal weight)
is not computed here: it is an *arm* (engine.arms), a paper portfolio run through the
same step, ledger, execution, costs and dividend booking as the strategy, from the same
first session. Its line is that arm's NAV, so the site, the weekly report and the verdict
show one number. Which arm fills which ``[[benchmarks]]`` line is the config's
``benchmark = key`` of the arm.

A ``[[benchmarks]]`` line that no arm fills is an untradable index (^FCHI, the CAC 40
*price* index: no dividends): units bought at the first session's close, without costs.
Its units are kept in the headline portfolio (``Portfolio.benchmarks``) so that a live
run years later still values it from the same first close.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from engine.config import Config
from engine.portfolio.ledger import BenchmarkHolding, Portfolio


def arm_lines(config: Config) -> dict[str, str]:
    """{benchmark key: arm name} for the lines an arm of the configuration fills."""
    return {a.benchmark: a.name for a in config.arms.arm if a.benchmark is not None}


def index_keys(config: Config) -> list[str]:
    """The benchmark keys no arm fills: untradable index lines."""
    filled = arm_lines(config)
    return [b.key for b in config.benchmarks if b.key not in filled]


def track_indices(
    p: Portfolio, day: dt.date, prices_eur: Mapping[str, float], config: Config
) -> tuple[dict[str, BenchmarkHolding], dict[str, float]]:
    """The index holdings after `day` and their NAVs in EUR (NaN without a price).

    At the portfolio's first session (``p.inception`` is `day` or unset) each index is
    bought for the starting capital at that close; afterwards the units stay fixed."""
    by_key = {b.key: b for b in config.benchmarks}
    holdings = {k: h for k, h in p.benchmarks.items() if k in by_key}
    first = p.inception is None or p.inception == day
    navs: dict[str, float] = {}
    for key in index_keys(config):
        b = by_key[key]
        price = prices_eur.get(b.ticker, float("nan"))
        if key not in holdings and first and price == price and price > 0:
            holdings[key] = BenchmarkHolding(ticker=b.ticker, units=p.starting_capital_eur / price)
        h = holdings.get(key)
        navs[key] = h.units * price + h.cash_eur if h is not None else float("nan")
    return dict(sorted(holdings.items())), navs
