"""After a backtest: the metrics, the verdict per arm, the charts.

Everything is computed from the states the arms wrote (equity, trades, decisions) and the
same market data, so that a re-evaluation of an existing run gives the same
``metrics.json``. The benchmark lines are the baseline arms' NAVs (engine.arms): the
strategy and its benchmarks went through the same step, ledger and costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from engine.analytics import RecordCounts
from engine.backtest.benchmarks import index_keys
from engine.backtest.experiment import arm_nav, judge_arms
from engine.backtest.metrics import performance
from engine.config import Config
from engine.data.calendars import sessions_per_year
from engine.data.market import MarketData
from engine.state import StateStore, atomic_write_bytes, atomic_write_parquet, dumps


def close_eur(market: MarketData, config: Config) -> pd.DataFrame:
    """Every instrument's close in EUR (USD ones at the EURUSD of the day), forward-filled."""
    close = market.close.ffill()
    usd = [t for t in close.columns if t in config.instruments and config.instruments[t].currency == "USD"]
    if usd:
        close[usd] = close[usd].div(market.fx_eurusd, axis=0)
    return close


def benchmark_lines(store: StateStore, arms: Mapping[str, StateStore], config: Config) -> dict[str, pd.Series]:
    """{key: NAV} of the benchmark lines: each passive arm, then each untradable index
    (``<key>_index``, from the headline's equity column)."""
    specs = config.arm_by_name
    lines = {name: arm_nav(s) for name, s in arms.items() if name in specs and specs[name].passive}
    equity = store.equity()
    for key in index_keys(config):
        col = f"benchmark_{key}_eur"
        if col in equity:
            lines[f"{key}_index"] = pd.Series(equity[col].to_numpy(dtype=float), index=pd.DatetimeIndex(equity["date"]))
    return {k: v for k, v in lines.items() if len(v)}


def labels(config: Config) -> dict[str, str]:
    """The display name of every line: the arms' labels and the benchmarks' names."""
    out = {a.name: a.title for a in config.arms.arm}
    out.update({f"{b.key}_index": b.name for b in config.benchmarks})
    return out


def evaluate(
    store: StateStore, arms: Mapping[str, StateStore], headline: str, market: MarketData, config: Config,
    run: dict[str, Any], out: Path, charts: bool = True, manifest: Mapping[str, Any] | None = None,
    counts: Mapping[str, RecordCounts] | None = None,
) -> dict[str, Any]:
    """metrics.json, benchmarks.parquet and the charts of a backtest; `counts`: the counts
    of the decision records of the arms the run wrote whole (engine.backtest.experiment)."""
    p = store.current()
    equity = store.equity()
    if p is None or equity.empty:
        raise ValueError(f"{store.root} holds no session to evaluate")
    capital = p.starting_capital_eur
    # Annualised over the calendar's sessions per year (about 258 for New York + Paris).
    ppy = sessions_per_year({i.calendar for i in config.instruments.values()})
    nav = arm_nav(store)
    bench = benchmark_lines(store, arms, config)
    experiment = judge_arms(arms, config, manifest, close_eur(market, config), counts=counts)
    head = experiment["arms"].get(headline, {})
    metrics: dict[str, Any] = {
        "run": run,
        "strategy": head.get("performance") or performance(nav, capital=capital, trades=store.trades(),
                                                             periods_per_year=ppy),
        "benchmarks": {k: performance(s, capital=capital, periods_per_year=ppy) for k, s in bench.items()},
        "labels": labels(config),
        "experiment": experiment,
    }
    if "verdict" in head:
        metrics["verdict"] = head["verdict"]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "metrics.json", dumps(metrics))
    frame = pd.DataFrame({"strategy": nav, **bench}).rename_axis("date").reset_index()
    atomic_write_parquet(out / "benchmarks.parquet", frame)
    if charts:
        from engine.report.charts import drawdown_chart, equity_chart

        lines = {"strategy": nav, **bench}
        synthetic = bool(run.get("synthetic"))
        equity_chart(lines, out / "charts" / "equity.png", synthetic=synthetic)
        drawdown_chart(lines, out / "charts" / "drawdown.png", synthetic=synthetic)
    return metrics
