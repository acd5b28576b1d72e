"""After a backtest: the benchmarks, the metrics, the verdict, the charts.

Everything is computed from the state the run wrote (equity, trades, portfolio) and
the same market data, so that a re-evaluation of an existing state gives the same
``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from engine.backtest.benchmarks import standard_benchmarks
from engine.backtest.metrics import performance, returns_from_nav
from engine.backtest.verdict import verdict
from engine.config import Config
from engine.data.calendars import sessions_per_year
from engine.data.market import MarketData
from engine.state import StateStore, atomic_write_bytes, atomic_write_parquet, dumps


def evaluate(
    store: StateStore, market: MarketData, config: Config, run: dict[str, Any], out: Path, charts: bool = True
) -> dict[str, Any]:
    p = store.load()
    equity = store.equity()
    if p is None or equity.empty:
        raise ValueError(f"{store.root} holds no session to evaluate")
    trades = store.trades()
    capital = p.starting_capital_eur
    nav = pd.Series(equity["nav_eur"].to_numpy(dtype=float), index=pd.DatetimeIndex(equity["date"]), name="nav_eur")
    sessions = pd.DatetimeIndex(nav.index)
    bench = standard_benchmarks(market, config, sessions, capital)

    c = p.costs
    # Annualised over the calendar's sessions per year (about 258 for New York + Paris).
    ppy = sessions_per_year({i.calendar for i in config.instruments.values()})
    metrics: dict[str, Any] = {
        "run": run,
        "strategy": performance(
            nav, capital=capital, trades=trades,
            costs_eur=round(c.commission_eur + c.slippage_eur + c.fx_fee_eur, 2), taxes_eur=c.tax_eur,
            llm_tokens=p.llm.prompt_tokens + p.llm.completion_tokens, llm_cost_usd=p.llm.cost_usd,
            periods_per_year=ppy,
        ),
        "benchmarks": {key: performance(series, capital=capital, periods_per_year=ppy) for key, series in bench.items()},
    }
    if "buy_and_hold_spy" in bench:
        metrics["verdict"] = verdict(
            returns_from_nav(nav, capital), returns_from_nav(bench["buy_and_hold_spy"], capital),
            periods_per_year=ppy,
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "metrics.json", dumps(metrics))
    frame = pd.DataFrame({"date": sessions, "strategy": nav.to_numpy(), **{k: v.to_numpy() for k, v in bench.items()}})
    atomic_write_parquet(out / "benchmarks.parquet", frame)
    if charts:
        from engine.report.charts import drawdown_chart, equity_chart

        lines = {"strategy": nav, **bench}
        synthetic = bool(run.get("synthetic"))
        equity_chart(lines, out / "charts" / "equity.png", synthetic=synthetic)
        drawdown_chart(lines, out / "charts" / "drawdown.png", synthetic=synthetic)
    return metrics
