"""Time the offline demo end to end: sessions per second and peak memory.

    python benchmarks/demo_speed.py [SESSIONS ...]      (default: 250 1000 2500)

Each size runs in a fresh Python process (so peak memory is its own), through the same
entry point as `python -m engine demo`, writing the full state (decision records
included) to a temporary folder. Target: 2,500 sessions x 21 assets in under 10 s on a
2-core machine, with time growing linearly in sessions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import contextlib, io, json, resource, sys, time
t0 = time.perf_counter()
from engine.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["demo", "--out", sys.argv[1], "--sessions", sys.argv[2], "--end", "2026-10-30", "--no-site"])
elapsed = time.perf_counter() - t0
print(json.dumps({"code": code, "seconds": elapsed,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(sessions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, out, str(sessions)], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"demo failed for {sessions} sessions:\n{proc.stderr}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    return {"sessions": sessions, "wall_s": wall, "in_process_s": child["seconds"],
            "peak_mb": child["peak_mb"], "state_mb": size / 2**20}


def main() -> None:
    sizes = [int(x) for x in sys.argv[1:]] or [250, 1000, 2500]
    print(f"{'sessions':>8} {'wall s':>8} {'sessions/s':>11} {'peak MB':>8} {'state MB':>9}")
    rows = [measure(n) for n in sizes]
    for r in rows:
        print(f"{r['sessions']:>8} {r['wall_s']:>8.2f} {r['sessions'] / r['wall_s']:>11.0f} "
              f"{r['peak_mb']:>8.0f} {r['state_mb']:>9.1f}")
    # Linear growth means a constant marginal cost per session once the fixed start-up
    # (imports, calendars, the synthetic market, indicators) is paid.
    for a, b in zip(rows, rows[1:], strict=False):
        marginal = (b["wall_s"] - a["wall_s"]) / (b["sessions"] - a["sessions"])
        print(f"marginal cost {a['sessions']}->{b['sessions']}: {marginal * 1000:.2f} ms/session")

if __name__ == "__main__":
    main()
