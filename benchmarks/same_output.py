"""Check that a change left a backtest's output byte for byte as it was.

    python benchmarks/same_output.py save DIR      # before the change: run and keep the outputs
    python benchmarks/same_output.py check DIR     # after it: run again and compare every file

The run: ``backtest --source demo --policy rules`` over 2024-2025 (517 sessions, every
offline arm) with ``--no-charts``, and a 60-session ``demo`` (the live path: daily
records, the site skipped). Compared: metrics.json, benchmarks.parquet, experiment.json,
arms.json and every state file (portfolio.json, equity and trades Parquet, each decision
record), of the root and of every arm. The charts (PNG) are left out.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "backtest": ["backtest", "--source", "demo", "--policy", "rules", "--start", "2024-01-01", "--end", "2025-12-31",
                 "--no-charts", "--out"],
    "demo": ["demo", "--sessions", "60", "--end", "2025-12-31", "--no-site", "--out"],
}


def run(dest: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, argv in RUNS.items():
        subprocess.run([sys.executable, "-m", "engine", *argv, str(dest / name)], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL)


def files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and p.suffix != ".png" and p.name != ".state.lock")


def main() -> None:
    mode, dest = sys.argv[1], Path(sys.argv[2])
    if mode == "save":
        run(dest / "before")
        print(f"saved {len(files(dest / 'before'))} files in {dest / 'before'}")
        return
    import shutil

    shutil.rmtree(dest / "after", ignore_errors=True)
    run(dest / "after")
    a, b = files(dest / "before"), files(dest / "after")
    if a != b:
        sys.exit(f"different files: only before {sorted(set(a) - set(b))[:5]}, only after {sorted(set(b) - set(a))[:5]}")
    differ = [p for p in a if not filecmp.cmp(dest / "before" / p, dest / "after" / p, shallow=False)]
    if differ:
        sys.exit(f"{len(differ)} of {len(a)} files differ, e.g. {[str(p) for p in differ[:5]]}")
    print(f"identical: {len(a)} files")


if __name__ == "__main__":
    main()
