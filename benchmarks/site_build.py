"""Time the site build and measure the site, for 1, 5 and 10 years of daily decisions.

    python benchmarks/site_build.py [SESSIONS ...] [--work DIR]     (default: 252 1260 2520)

Each size is a demo state (rules policy, synthetic market, one decision record per
session, and one weekly report per week, as the weekly workflow writes them) made once
under WORK (default ``.cache/bench-site``, git-ignored) and reused by later runs; the site
is then built from it (strict MkDocs build, charts included, no chart cache: a cold
build) into a fresh folder, the time measured and the output weighed. Target: under 60 s for 10 years
(2,520 sessions) on a 2-core machine.

The build runs as on GitHub Pages: ``GITHUB_REPOSITORY`` and ``GITHUB_SHA`` are set (to
placeholders, unless already set), so each day links to its record in the repository and
the raw records are not copied into the site. "search KB" is the search index, which
every page view loads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

END = "2025-12-31"


def demo_state(work: Path, sessions: int) -> Path:
    from engine.cli import main

    root = work / f"demo-{sessions}"
    state = root / "state"
    portfolio = state / "portfolio.json"
    if portfolio.exists() and json.loads(portfolio.read_text())["as_of"] == END and (root / "reports.done").exists():
        return state
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["demo", "--out", str(root), "--sessions", str(sessions), "--end", END, "--no-site"])
    if code != 0:
        sys.exit(f"the demo of {sessions} sessions failed (exit {code})")
    weekly_reports(state)
    (root / "reports.done").touch()
    print(f"  (made the {sessions}-session demo state in {time.perf_counter() - t0:.1f} s, kept in {root})")
    return state


def weekly_reports(state: Path) -> None:
    """One report per ISO week of the state, as ``python -m engine weekly`` writes them."""
    import pandas as pd

    from engine.config import load_config
    from engine.report.weekly import iso_week, write_weekly

    cfg = load_config()
    dates = pd.to_datetime(pd.read_parquet(state / "equity.parquet")["date"])
    for week in sorted({iso_week(d.date()) for d in dates}):
        write_weekly(state, cfg, week)


def weigh(site: Path) -> dict[str, float]:
    files = [p for p in site.rglob("*") if p.is_file()]
    size = lambda ps: sum(p.stat().st_size for p in ps) / 2**20  # noqa: E731
    return {
        "files": len(files),
        "site_mb": size(files),
        "html_mb": size(p for p in files if p.suffix == ".html"),
        "charts_mb": size(p for p in files if p.suffix == ".png" and "charts" in p.parts),
        "index_kb": 1024 * size(p for p in files if p.name == "search_index.json"),
        "home_kb": 1024 * size([site / "index.html"]),
        "reports": sum(1 for p in files if p.name == "index.html" and p.parent.parent.name == "reports"),
        "largest_page_kb": 1024 * max((p.stat().st_size for p in files if p.suffix == ".html"), default=0) / 2**20,
        "pages": sum(1 for p in files if p.name == "index.html"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="*", type=int, default=[252, 1260, 2520])
    parser.add_argument("--work", type=Path, default=Path(".cache") / "bench-site")
    args = parser.parse_args()

    from engine.config import load_config
    from engine.report.site import build_site

    os.environ.setdefault("GITHUB_REPOSITORY", "owner/almost-surely")
    os.environ.setdefault("GITHUB_SHA", "0" * 40)
    os.environ.pop("SITE_CACHE", None)  # a cold build
    cfg = load_config()
    rows = []
    for n in args.sessions:
        state = demo_state(args.work, n)
        out = args.work / f"site-{n}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        build_site(state, out, config=cfg)
        seconds = time.perf_counter() - t0
        rows.append({"sessions": n, "years": n / 252, "seconds": seconds, **weigh(out)})

    print(f"{'sessions':>8} {'years':>5} {'build s':>8} {'pages':>6} {'files':>6} {'site MB':>8} {'HTML MB':>8} "
          f"{'charts MB':>9} {'search KB':>9} {'home KB':>8} {'max page KB':>11} {'reports':>7}")
    for r in rows:
        print(f"{r['sessions']:>8} {r['years']:>5.1f} {r['seconds']:>8.1f} {r['pages']:>6} {r['files']:>6} "
              f"{r['site_mb']:>8.1f} {r['html_mb']:>8.1f} {r['charts_mb']:>9.2f} {r['index_kb']:>9.0f} "
              f"{r['home_kb']:>8.0f} {r['largest_page_kb']:>11.0f} {r['reports']:>7}")
    worst = max((r for r in rows if r["sessions"] >= 2520), key=lambda r: r["seconds"], default=None)
    if worst is not None:
        verdict = "OK" if worst["seconds"] < 60 else "OVER"
        print(f"target: 10 years under 60 s: {verdict} ({worst['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
