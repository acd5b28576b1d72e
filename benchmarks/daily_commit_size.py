"""How much one daily commit adds to the audit trail: bytes of `git diff --binary` per day, and
the compressed size of the objects it adds to the repository. Offline (demo market, rules policy).

    PYTHONPATH=. python benchmarks/daily_commit_size.py [--days 20] [--start 2026-11-02]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from engine.cli import main
from engine.data import calendars


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bot", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "bot", "GIT_COMMITTER_EMAIL": "b@example.org", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def packed_bytes(repo: Path) -> int:
    git(repo, "gc", "--quiet", "--aggressive", "--prune=now")
    return sum(int(line.split()[1]) for line in git(repo, "count-objects", "-v").splitlines()
               if line.startswith("size-pack")) * 1024


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--start", default="2026-11-02")
    args = ap.parse_args()
    sessions = calendars.union_sessions({"XNYS", "XPAR"}, pd.Timestamp(args.start), pd.Timestamp("2036-01-01"))
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        git(repo, "init", "--quiet", "-b", "main")
        (repo / "README").write_text("audit trail\n")
        git(repo, "add", ".")
        git(repo, "commit", "--quiet", "-m", "start")
        diffs, packs, before = [], [], packed_bytes(repo)
        for day in sessions[: args.days]:
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(["daily", "--init", "--state", str(repo / "state"), "--source", "demo",
                             "--date", str(day.date())])
            assert code == 0
            git(repo, "add", "state")
            git(repo, "commit", "--quiet", "-m", str(day.date()))
            diffs.append(len(git(repo, "diff", "--binary", "HEAD~1", "HEAD").encode()))
            after = packed_bytes(repo)
            packs.append(after - before)
            before = after
        files = git(repo, "show", "--stat", "--format=", "HEAD").strip().splitlines()
    print(f"{args.days} daily commits from {sessions[0].date()} (demo market, rules policy)")
    print(f"git diff --binary per day: median {statistics.median(diffs):,.0f} bytes, "
          f"first {diffs[0]:,}, max {max(diffs):,}, last {diffs[-1]:,}")
    print(f"packed repository growth per day: median {statistics.median(packs):,.0f} bytes, "
          f"total {sum(packs):,} bytes")
    print("files changed by the last commit:")
    for line in files:
        print("   ", line.strip())


if __name__ == "__main__":
    main_()
