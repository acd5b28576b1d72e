"""Two checkouts of the engine on the same backtest, interleaved: whole-process wall and CPU time.

    python benchmarks/ab.py BEFORE [AFTER] [--runs N] [--policy equal_weight|rules] [--years Y]
                            [--outputs DIR]

BEFORE and AFTER are folders holding a checkout of this repository (AFTER defaults to this
one); make BEFORE with ``git worktree add /tmp/before <commit>``. Each run is
``python -m engine backtest --source csv --no-charts`` with the job of
``benchmarks/peers.py`` (the demo panel exported as CSV files; with ``--policy
equal_weight`` the one-arm configuration, with ``rules`` the default five arms), started in
that checkout so that it imports its own ``engine``. The two alternate, BEFORE then AFTER,
N times (default 6): a burst of load on this machine hits both alike, which consecutive
batches of runs would not. Prints each run, and the medians of the wall time and of the
CPU time (user + system, over the process and its forked savers), then whether the two
versions wrote the same files (the last run of each, compared byte for byte).
"""

from __future__ import annotations

import argparse
import compileall
import filecmp
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import END, EQUAL_WEIGHT_CONFIG, export_panel  # noqa: E402  (the same job as the peers')


def run(checkout: Path, argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the process and its children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", *argv], cwd=checkout, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"the run in {checkout} failed:\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def different_files(a: Path, b: Path) -> list[str]:
    """Paths under `a` and `b` whose bytes differ, or which only one of them has."""
    out = []
    cmp = filecmp.dircmp(a, b)
    out += [f"{a / n} (only here)" for n in cmp.left_only] + [f"{b / n} (only here)" for n in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    out += [str(a / n) for n in mismatch + errors]
    for sub in cmp.common_dirs:
        out += different_files(a / sub, b / sub)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path, help="a checkout of the earlier version (git worktree add ...)")
    ap.add_argument("after", type=Path, nargs="?", default=ROOT, help="the later one (default: this checkout)")
    ap.add_argument("--runs", type=int, default=6, help="runs of each version (default 6)")
    ap.add_argument("--policy", choices=("equal_weight", "rules"), default="equal_weight")
    ap.add_argument("--years", type=int, default=10, help="years ending 2025-12-31 (default 10)")
    ap.add_argument("--outputs", type=Path, help="where the runs write (default: a temporary folder)")
    args = ap.parse_args()
    versions = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, checkout in versions.items():
        if not (checkout / "engine" / "__main__.py").exists():
            sys.exit(f"{checkout} holds no checkout of the engine (engine/__main__.py): give the {name} version's folder")
        compileall.compile_dir(checkout / "engine", quiet=1)  # as an installed package's modules are
    if args.runs < 1:
        sys.exit("--runs must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        outputs = args.outputs or work
        outputs.mkdir(parents=True, exist_ok=True)
        panel = work / "panel"
        _, _, first, n = export_panel(panel, args.years)
        config = work / "job.toml"
        config.write_text('[data]\ncsv_price_convention = "unadjusted"\n'
                          + (EQUAL_WEIGHT_CONFIG if args.policy == "equal_weight" else ""), encoding="utf-8")
        print(f"{args.policy}, {n} sessions {first} .. {END}; {args.runs} runs of each, interleaved")
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        for i in range(args.runs):
            for name, checkout in versions.items():
                out = outputs / f"ab-{name}"
                shutil.rmtree(out, ignore_errors=True)
                wall, cpu = run(checkout, ["backtest", "--source", "csv", "--data", str(panel), "--start", first,
                                           "--end", END, "--no-charts", "--policy", args.policy, "--config",
                                           str(config), "--out", str(out)])
                figures[name].append((wall, cpu))
                print(f"  run {i + 1} {name:<6} wall {wall:6.2f} s  CPU {cpu:6.2f} s", flush=True)
        for name, checkout in versions.items():
            walls, cpus = [w for w, _ in figures[name]], [c for _, c in figures[name]]
            print(f"{name:<6} wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}), "
                  f"CPU median {statistics.median(cpus):.2f} s   {checkout}")
        differ = different_files(outputs / "ab-before", outputs / "ab-after")
        print("the same files, byte for byte" if not differ else
              f"{len(differ)} file(s) differ, for example {differ[0]}")


if __name__ == "__main__":
    main()
