"""Candidate drawdown rules on 10-year demo backtests: time at the floor and recovery.

    python benchmarks/drawdown_rules.py [SEED ...]        (default: 1 2 3)

The drawdown multiplier m(dd) scales the exposure cap and the CVaR budget. Measured from
the all-time NAV peak it bounds the loss, but after one bad year it can hold a portfolio
at the floor for years. The candidates differ in the high-water mark the drawdown is
measured from (``guardrails.drawdown_peak_half_life_sessions``): the all-time peak (0), or
a mark fading with a half-life of 504, 252 or 126 sessions. Each runs the rules policy
through the daily step (engine.step.run) on 2016-01-04 .. 2025-12-31 of a demo seed and
prints, per rule: the share of sessions at the floor (m within 0.01 of it), the longest
stretch at the floor, the mean invested share, the sessions from the deepest NAV trough
back to its previous peak (recovery; "never" if not recovered), the true max drawdown
(from the all-time NAV peak: the loss the rule lets happen) and the CAGR.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from engine.config import load_config
from engine.data.demo import DemoSource
from engine.indicators import compute_indicators
from engine.policies import RulesPolicy
from engine.portfolio.ledger import Portfolio
from engine.step import StepContext, run

START, END = pd.Timestamp("2016-01-04"), pd.Timestamp("2025-12-31")
RULES = {"all-time peak": 0, "fading, half-life 504": 504, "fading, half-life 252": 252, "fading, half-life 126": 126}


def longest_run(flags: np.ndarray) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def recovery_sessions(nav: np.ndarray) -> int | None:
    peak = np.maximum.accumulate(nav)
    trough = int(np.argmin(nav / peak))
    after = np.flatnonzero(nav[trough:] >= peak[trough])
    return int(after[0]) if after.size else None


def measure(seed: int, half_life: int) -> dict[str, float]:
    base = load_config()
    cfg = base.with_overrides(guardrails={"drawdown_peak_half_life_sessions": half_life})
    market = DemoSource(seed=seed).load(cfg, START - pd.Timedelta(days=500), END)
    ind = compute_indicators(market, cfg)
    sessions = market.index[(market.index >= START) & (market.index <= END)]
    ctx = StepContext(config=cfg, policy=RulesPolicy(cfg), source=f"demo seed={seed}", synthetic=True)
    _, results = run(Portfolio.initial(10_000), sessions, market, ind, ctx)
    m = np.array([r.record["brief"]["portfolio"]["drawdown_multiplier"] for r in results])
    nav = np.array([r.equity["nav_eur"] for r in results])
    invested = np.array([r.equity["invested_eur"] for r in results]) / nav
    floor = cfg.guardrails.drawdown_floor
    at_floor = m <= floor + 0.01
    years = len(nav) / 252
    return {"at_floor": at_floor.mean(), "longest_floor": longest_run(at_floor), "invested": invested.mean(),
            "recovery": recovery_sessions(nav), "max_dd": float((nav / np.maximum.accumulate(nav) - 1).min()),
            "cagr": (nav[-1] / 10_000) ** (1 / years) - 1}


def main() -> None:
    seeds = [int(x) for x in sys.argv[1:]] or [1, 2, 3]
    print(f"rules policy, demo market, {START.date()} .. {END.date()}, seeds {seeds}")
    print(f"{'rule':<24}{'seed':>5}{'at floor':>10}{'longest':>9}{'invested':>10}{'recovery':>10}{'max DD':>8}{'CAGR':>8}")
    for name, h in RULES.items():
        rows = []
        for seed in seeds:
            r = measure(seed, h)
            rows.append(r)
            rec = "never" if r["recovery"] is None else str(r["recovery"])
            print(f"{name:<24}{seed:>5}{r['at_floor']:>10.1%}{r['longest_floor']:>9}{r['invested']:>10.1%}{rec:>10}"
                  f"{r['max_dd']:>8.1%}{r['cagr']:>8.1%}", flush=True)
        mean = {k: np.mean([x[k] for x in rows]) for k in ("at_floor", "invested", "max_dd", "cagr")}
        print(f"{name + ' (mean)':<24}{'':>5}{mean['at_floor']:>10.1%}{'':>9}{mean['invested']:>10.1%}{'':>10}"
              f"{mean['max_dd']:>8.1%}{mean['cagr']:>8.1%}", flush=True)


if __name__ == "__main__":
    main()
