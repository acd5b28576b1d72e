"""Time the strict load of a state (every file validated and cross-checked) and the lock.

    python benchmarks/state_load.py [YEARS]      (default: 10)

Builds a rules-policy backtest state of YEARS on the demo market (a decision record per
session, every fill), then times StateStore.load() (portfolio.json strict parse, exact
Parquet schemas, the reconciliation of cash and positions with trades.parquet) and taking
and releasing the state lock (which also sweeps stale temporary files), best of 5 each.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

from engine.cli import main
from engine.state import StateStore, state_lock


def best(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(years: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bt"
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["backtest", "--source", "demo", "--policy", "rules", "--start", f"{2026 - years}-01-01",
                         "--end", "2025-12-31", "--out", str(out), "--no-charts"])
        assert code == 0, code
        state = out / "state"
        store = StateStore(state)
        store.load()
        sessions, fills = len(store.equity()), len(store.trades())
        records = sum(1 for _ in state.rglob("*.json")) - 1
        load = best(lambda: StateStore(state).load())

        def lock() -> None:
            with state_lock(state):
                pass

        locked = best(lock)
        print(f"{years} years: {sessions} sessions, {fills} trades, {records} decision records")
        print(f"  strict load + cross-checks: {load * 1000:.1f} ms (best of 5)")
        print(f"  lock + stale-file sweep:    {locked * 1000:.1f} ms (best of 5)")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
