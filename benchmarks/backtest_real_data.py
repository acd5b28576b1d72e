"""Time a rules-policy backtest on real prices: whole process, sessions/s, peak memory.

    python benchmarks/backtest_real_data.py [YEARS ...]      (default: 1 5 22)

The prices are skfolio's 20 S&P 500 stocks and the S&P 500 index (shipped inside the
package, dev extra), written once as a folder of CSV files; each run is a fresh
`python -m engine backtest --source csv --data ...` process ending on 2022-12-28, with a
custom universe from a config file, writing the full state, metrics.json and the charts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.realdata import BENCH, real_market, sp500_closes  # noqa: E402

from engine.data.csv_source import write_folder  # noqa: E402

CHILD = """
import contextlib, io, json, resource, sys
from engine.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["backtest", "--source", "csv", "--data", sys.argv[2], "--config", sys.argv[3], "--policy", "rules",
                 "--start", sys.argv[4], "--end", "2022-12-28", "--out", sys.argv[1]])
print(json.dumps({"code": code, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def universe_toml(tickers: list[str]) -> str:
    lines = []
    for t in tickers:
        lines += ["[[assets]]", f'ticker = "{t}"', f'name = "{t}"', 'kind = "stock"', 'sector = "US equity"',
                  'currency = "EUR"', 'calendar = "XNYS"', ""]
    lines += ["[[benchmarks]]", 'key = "sp500"', f'ticker = "{BENCH}"', 'name = "S&P 500 index"',
              'currency = "EUR"', 'calendar = "XNYS"', ""]
    return "\n".join(lines)


def measure(data: Path, config: Path, years: int) -> dict[str, float]:
    start = f"{2023 - years}-01-01"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, out, str(data), str(config), start],
                              capture_output=True, text=True, check=False, cwd=ROOT,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"backtest failed for {years} years:\n{proc.stderr}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        with open(f"{out}/metrics.json") as fh:
            sessions = json.load(fh)["run"]["sessions"]
    return {"years": years, "sessions": sessions, "wall_s": wall, "peak_mb": child["peak_mb"]}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("years", type=int, nargs="*", default=[1, 5, 22],
                    help="lengths of the backtests in years, each ending 2022-12-28 (default: 1 5 22)")
    years = ap.parse_args(argv).years
    if any(not 1 <= y <= 22 for y in years):
        ap.error("each length is 1 to 22 years: skfolio's prices run from 2000-01-03 to 2022-12-28 "
                 "(a 23rd year would start before them)")
    tickers = [t for t in sp500_closes().columns if t != BENCH]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mydata"
        write_folder(real_market(), data, "EURUSD=X")
        config = Path(tmp) / "universe.toml"
        config.write_text(universe_toml(tickers), encoding="utf-8")
        print(f"real prices: skfolio, {len(tickers)} S&P 500 stocks + the index, CSV in {data}")
        print(f"{'years':>5} {'sessions':>8} {'wall s':>8} {'sessions/s':>10} {'peak MB':>8}")
        for y in years:
            r = measure(data, config, y)
            print(f"{r['years']:>5} {r['sessions']:>8} {r['wall_s']:>8.2f} {r['sessions'] / r['wall_s']:>10.0f} "
                  f"{r['peak_mb']:>8.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
