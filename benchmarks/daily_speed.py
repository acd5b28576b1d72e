"""Time one `python -m engine daily` session, whole process, on a state the demo made.

    python benchmarks/daily_speed.py [--runs N] [--sessions S] [--source demo|csv]

Makes a state once (`python -m engine demo --sessions S --end 2025-12-30`, every offline
arm, default 250 sessions), then runs `daily --date 2025-12-31` N times (default 5), each
on a fresh copy of that state, in a fresh process: interpreter start, imports, the
calendars, the lock and strict load of every arm, the market data, the indicators, one
step of every arm, the saves and the verdicts. The engine's modules are compiled first, as an
installed package's are (with PYTHONDONTWRITEBYTECODE set, an editable install would
compile them again in every run). `--source csv` reads the demo panel
exported once as CSV files (an offline stand-in for the Yahoo download). Prints each run
and the median, with the load average.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE, DAY = "2025-12-30", "2025-12-31"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=250)
    ap.add_argument("--source", choices=("demo", "csv"), default="demo")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALMOST_SURELY_NOW": f"{DAY}T23:59:00+00:00"}
    env.pop("OPENAI_API_KEY", None)  # the offline arms only
    compileall.compile_dir(ROOT / "engine", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "engine", "demo", "--out", str(work / "made"), "--sessions",
                        str(args.sessions), "--end", BEFORE, "--no-site"], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        extra: list[str] = []
        if args.source == "csv":
            sys.path.insert(0, str(ROOT))
            from engine.config import load_config
            from engine.data.csv_source import write_folder
            from engine.data.demo import DemoSource

            cfg = load_config(None)
            write_folder(DemoSource(seed=42).load(cfg, "2024-01-02", DAY), work / "panel", cfg.fx.eurusd)
            (work / "csv.toml").write_text('[data]\ncsv_price_convention = "unadjusted"\n', encoding="utf-8")
            extra = ["--data", str(work / "panel"), "--config", str(work / "csv.toml")]
            # The state was priced by the demo source: relabel it as the csv source's own.
            for pj in (work / "made" / "state").rglob("portfolio.json"):
                pj.write_text(pj.read_text(encoding="utf-8").replace('"demo seed=42"', '"csv"'), encoding="utf-8")
        times = []
        for _ in range(args.runs):
            state = work / "run"
            shutil.rmtree(state, ignore_errors=True)
            shutil.copytree(work / "made" / "state", state)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "engine", "daily", "--state", str(state), "--source",
                                   args.source, "--date", DAY, *extra], env=env, cwd=ROOT, capture_output=True,
                                  text=True, check=False)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"daily failed:\n{proc.stderr[-2000:]}")
        print(proc.stdout.strip().splitlines()[0])
        print(f"daily, {args.source}, state of {args.sessions} sessions: median {statistics.median(times):.2f} s "
              f"(runs {' '.join(f'{t:.2f}' for t in times)}), load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
