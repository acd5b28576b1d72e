"""Our backtest beside bt and vectorbt: the same equal-weight job, whole processes, same panel.

    python benchmarks/peers.py [--runs N] [--years Y] [--peer-python PATH] [--keep DIR] [--outputs DIR]

The job: the 21 assets of the seeded demo market (seed 42), the last Y years (default 10:
2,583 sessions) ending 2025-12-31, EUR 10,000, an equal weight of every asset rebalanced
every session, whole shares, a commission of 10 bp with a EUR 1 minimum. The panel is
exported once to a folder of CSV files (engine.data.csv_source.write_folder: as-traded
prices with their split ratios, and EURUSD); every process reads that folder:

* ``ours, equal weight``: ``python -m engine backtest --source csv --policy equal_weight
  --no-charts`` with a configuration of one arm, the equal-weight baseline with a band of
  5% (at every session it buys what is more than 5% below its target, and at a month's
  first session it sells what is more than 5% above: with no band at all it would buy a
  few euros of something every day and pay the EUR 1 minimum each time); a passive arm
  buys fractional shares, with the same costs;
* ``ours, rules (5 arms)``: ``python -m engine backtest --source csv --policy rules
  --no-charts`` with the default configuration (the rules headline and the four offline
  arms stepped in lockstep: random, two buy-and-holds, equal weight);
* ``bt``: bt 1.4.1, ``RunDaily, SelectAll, WeighEqually, Rebalance`` on the EUR closes
  (split-adjusted from the ratios), ``integer_positions=True``, the same commission;
* ``vectorbt``: vectorbt 1.2.0, ``Portfolio.from_orders`` with a target percent of 1/21
  at every session, one cash-sharing group, ``size_granularity=1``, the same fees.

Each peer prints its final value, Sharpe ratio and maximum drawdown, as ours does in
metrics.json. The figure is each whole process's wall time (interpreter start, imports,
reading the panel, the run, the results), the median of N runs (default 3), and its
ratio to ours (the equal-weight run).

Our runs write their audit trail (about 5,000 files for 10 years: a decision record per
session, and its hard link in the arm's folder); the peers write nothing. What creating
those files costs depends on the filesystem, and on some it is most of the difference: on
an ext4 folder where many files were just deleted (a temporary folder reused by
benchmarks), the kernel's search for a free inode made a run up to 2 s slower than on a
fresh folder or a RAM disk. ``--outputs`` chooses the folder, so the comparison can be
made on each.

bt and vectorbt are not dependencies of the project (they pin their own numpy, numba and
pandas ranges, and the lock is compiled with every extra and installed whole by CI): put
them in a venv of their own and point ``--peer-python`` (or ``PEERS_PYTHON``) at it::

    python3 -m venv /work/venv-peers
    /work/venv-peers/bin/pip install bt==1.4.1 vectorbt==1.2.0 pyarrow

A peer whose package that interpreter cannot import is skipped with a message.
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
END = "2025-12-31"
CAPITAL = 10_000.0
COMMISSION_BPS = 10.0
COMMISSION_MIN_EUR = 1.0

# One arm, the equal-weight baseline, as the headline (no null-hypothesis arm to test against).
EQUAL_WEIGHT_CONFIG = """
[arms]
treatment = ""
control = ""
reference = ""

[[arms.arm]]
name = "equal_weight"
policy = "equal_weight"
label = "Equal weight"
rebalance_band = 0.05
"""

# What both peers share: the panel as EUR closes, split-adjusted, carried forward over a
# day an exchange is closed.
READ_PANEL = """
import sys, glob, os
import numpy as np, pandas as pd
folder, fx_name = sys.argv[1], sys.argv[2]
usd = set(sys.argv[3].split(","))
fx = pd.read_csv(os.path.join(folder, fx_name + ".csv"), index_col="date", parse_dates=True)["close"]
cols = {}
for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
    t = os.path.basename(path)[:-4]
    if t == fx_name:
        continue
    f = pd.read_csv(path, index_col="date", parse_dates=True)
    later = f["splits"][::-1].cumprod()[::-1].shift(-1, fill_value=1.0)  # the splits after each day
    cols[t] = f["close"] / later
close = pd.DataFrame(cols).sort_index().ffill()
fx = fx.reindex(close.index).ffill()
for t in close.columns:
    if t in usd:
        close[t] = close[t] / fx
close = close.loc[sys.argv[4]:].dropna(how="any")
"""

BT = READ_PANEL + """
import bt
capital, bps, minimum = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
strategy = bt.Strategy("equal_weight", [bt.algos.RunDaily(), bt.algos.SelectAll(), bt.algos.WeighEqually(),
                                         bt.algos.Rebalance()])
test = bt.Backtest(strategy, close, initial_capital=capital, integer_positions=True,
                   commissions=lambda q, p: max(minimum, abs(q) * p * bps / 1e4), progress_bar=False)
res = bt.run(test)
s = res.stats["equal_weight"]
print(f"bt: {len(close)} sessions, final {res.prices['equal_weight'].iloc[-1] * capital / 100:,.2f} EUR, "
      f"Sharpe {s['daily_sharpe']:.2f}, max DD {s['max_drawdown']:.1%}")
"""

VBT = READ_PANEL + """
import vectorbt as vbt
capital, bps, minimum = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
size = np.full(close.shape, 1.0 / close.shape[1])
pf = vbt.Portfolio.from_orders(close, size=size, size_type="targetpercent", group_by=True, cash_sharing=True,
                               call_seq="auto", fees=bps / 1e4, size_granularity=1, init_cash=capital, freq="1D")
print(f"vectorbt: {len(close)} sessions, final {pf.final_value():,.2f} EUR, Sharpe {pf.sharpe_ratio():.2f}, "
      f"max DD {pf.max_drawdown():.1%} (fees {bps:g} bp; vectorbt has no minimum commission)")
"""


def export_panel(folder: Path, years: int) -> tuple[str, list[str], str, int]:
    """The demo panel as CSV files; returns (fx name, USD tickers, first session, sessions)."""
    sys.path.insert(0, str(ROOT))
    from engine.cli import _calendar_codes
    from engine.config import load_config
    from engine.data import calendars
    from engine.data.csv_source import write_folder
    from engine.data.demo import DemoSource

    cfg = load_config(None)
    codes = _calendar_codes(cfg)
    sessions = calendars.union_sessions(codes, f"{int(END[:4]) - years + 1}-01-01", END)
    first = calendars.previous_sessions(codes, sessions[0], cfg.data.history_sessions + 1)[0]
    market = DemoSource(seed=42).load(cfg, first, sessions[-1])
    write_folder(market, folder, cfg.fx.eurusd)
    usd = [t for t, i in cfg.instruments.items() if i.currency == "USD"]
    return cfg.fx.eurusd, usd, str(sessions[0].date()), len(sessions)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def importable(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True, check=False).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each process (the median is shown; default 3)")
    ap.add_argument("--years", type=int, default=10, help="years ending 2025-12-31 (default 10)")
    ap.add_argument("--peer-python", default=os.environ.get("PEERS_PYTHON", "/work/venv-peers/bin/python"),
                    help="the interpreter with bt and vectorbt (default $PEERS_PYTHON or /work/venv-peers/bin/python)")
    ap.add_argument("--keep", type=Path, help="keep the panel and our outputs in this folder")
    ap.add_argument("--outputs", type=Path,
                    help="where our runs write their state folders (default: beside the panel, in the temporary "
                         "folder or --keep); creating 5,000 files costs what this filesystem charges")
    args = ap.parse_args()
    # Our engine's modules compiled once, as an installed package's are (pip compiles them;
    # with PYTHONDONTWRITEBYTECODE set, each run of an editable install would compile them
    # again, a cost the peers' installed packages do not pay).
    compileall.compile_dir(ROOT / "engine", quiet=1)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        outputs = args.outputs or work
        outputs.mkdir(parents=True, exist_ok=True)
        panel = work / "panel"
        fx_name, usd, first, n = export_panel(panel, args.years)
        config = work / "equal_weight.toml"
        config.write_text(EQUAL_WEIGHT_CONFIG, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        ours = [sys.executable, "-m", "engine", "backtest", "--source", "csv", "--data", str(panel),
                "--start", first, "--end", END, "--no-charts"]
        peer_args = [str(panel), fx_name, ",".join(usd), first, str(CAPITAL), str(COMMISSION_BPS),
                     str(COMMISSION_MIN_EUR)]
        jobs: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        # The csv source reads as-traded prices: the split column is booked on the quantities.
        csv_cfg = "[data]\ncsv_price_convention = \"unadjusted\"\n"
        config.write_text(csv_cfg + EQUAL_WEIGHT_CONFIG, encoding="utf-8")
        rules_cfg = work / "rules.toml"
        rules_cfg.write_text(csv_cfg, encoding="utf-8")
        jobs["ours, equal weight (1 arm)"] = (ours + ["--policy", "equal_weight", "--config", str(config),
                                                      "--out", str(outputs / "ours-ew")], env)
        jobs["ours, rules (5 arms)"] = (ours + ["--policy", "rules", "--config", str(rules_cfg),
                                                "--out", str(outputs / "ours-rules")], env)
        for name, module, script in (("bt", "bt", BT), ("vectorbt", "vectorbt", VBT)):
            if not Path(args.peer_python).exists() or not importable(args.peer_python, module):
                print(f"{name}: skipped ({args.peer_python} cannot import {module}; see this script's docstring)")
                continue
            jobs[name] = ([args.peer_python, "-c", script, *peer_args], None)

        print(f"{n} sessions {first} .. {END}, 21 assets, EUR {CAPITAL:,.0f}, commission {COMMISSION_BPS:g} bp "
              f"(min EUR {COMMISSION_MIN_EUR:g}); median of {args.runs} whole-process runs; load {os.getloadavg()[0]:.2f}")
        print(f"our runs write their state (about 5,000 files each) under {outputs}; bt and vectorbt write nothing")
        times: dict[str, list[float]] = {k: [] for k in jobs}
        said: dict[str, str] = {}
        for _ in range(args.runs):  # interleaved, so that a burst of load hits every process alike
            for name, (argv, e) in jobs.items():
                for out in (outputs / "ours-ew", outputs / "ours-rules"):  # a fresh run each time, not a resume
                    shutil.rmtree(out, ignore_errors=True)
                wall, stdout = timed(argv, e)
                times[name].append(wall)
                said[name] = _summary(name, stdout)
        base = statistics.median(times["ours, equal weight (1 arm)"])
        print(f"{'process':<28} {'median s':>9} {'runs s':>24} {'vs ours':>8}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:<28} {med:>9.2f} {' '.join(f'{t:.2f}' for t in ts):>24} {med / base:>7.2f}x")
        for name in jobs:
            print(f"  {said[name]}")


def _summary(name: str, stdout: str) -> str:
    if not name.startswith("ours"):
        return stdout.strip().splitlines()[-1]
    lines = [ln for ln in stdout.splitlines() if ln.startswith("│ Strategy") or ln.startswith("Arms:")]
    return f"{name}: " + " / ".join(" ".join(ln.replace("│", " ").split()) for ln in lines)


if __name__ == "__main__":
    main()
