"""Time a rules-policy backtest on the demo market: whole process, sessions/s, peak memory.

    python benchmarks/backtest_speed.py [YEARS ...]      (default: 1 5 10)

Each run is a fresh `python -m engine backtest` process ending on 2025-12-31, writing
the full state (a decision record per session), metrics.json and the charts. Target:
10 years x 21 assets in under 5 s on a 2-core machine, growing linearly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

CHILD = """
import contextlib, io, json, resource, sys
from engine.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["backtest", "--source", "demo", "--policy", "rules", "--start", sys.argv[2], "--end", "2025-12-31",
                 "--out", sys.argv[1]])
print(json.dumps({"code": code, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(years: int) -> dict[str, float]:
    start = f"{2026 - years}-01-01"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, out, start], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"backtest failed for {years} years:\n{proc.stderr}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        with open(f"{out}/metrics.json") as fh:
            sessions = json.load(fh)["run"]["sessions"]
    return {"years": years, "sessions": sessions, "wall_s": wall, "peak_mb": child["peak_mb"]}


def main() -> None:
    years = [int(x) for x in sys.argv[1:]] or [1, 5, 10]
    rows = [measure(y) for y in years]
    print(f"{'years':>5} {'sessions':>8} {'wall s':>7} {'sessions/s':>10} {'peak MB':>8}")
    for r in rows:
        print(f"{r['years']:>5} {r['sessions']:>8} {r['wall_s']:>7.2f} {r['sessions'] / r['wall_s']:>10.0f} {r['peak_mb']:>8.0f}")
    for a, b in zip(rows, rows[1:], strict=False):
        marginal = (b["wall_s"] - a["wall_s"]) / (b["sessions"] - a["sessions"])
        print(f"marginal cost {a['years']}y->{b['years']}y: {marginal * 1000:.2f} ms/session")


if __name__ == "__main__":
    main()
