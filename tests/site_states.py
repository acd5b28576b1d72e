"""States for the site tests, made the way a user makes them (no hand-written records).

* :func:`demo_state`: the offline demo, rules policy, synthetic market.
* :func:`hostile_state`: a copy of it, then two sessions of the LLM policy against a fake
  OpenAI server whose answers attack the site (HTML, scripts, Markdown links and images,
  table pipes, an unknown ticker), plus a weekly report and alerts with the same payloads.
* :func:`backtest`: a small backtest folder (metrics.json, benchmarks.parquet).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from tests.fake_openai import FakeOpenAI, answer_json, completion

KEY = "sk-test-site"
MARKER = "window.__pwned"  # set by the payloads if any of them ever runs
HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1)) "
    "![x](http://evil.example/x.png) <script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=1\"> "
    "**bold** | pipe | `tick` {: onclick=alert(1) }\n# heading"
)
HOSTILE_TICKER = "<img src=x onerror=alert(1)>"
# What the reader must see, as text, wherever the model's words appear.
SHOWN = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
         "![x](http://evil.example/x.png)")


def run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def demo_state(root: Path, sessions: int = 60, end: str = "2024-12-27") -> Path:
    run("demo", "--out", str(root), "--sessions", str(sessions), "--end", end, "--no-site")
    return root / "state"


def hostile_state(demo: Path, root: Path) -> Path:
    """`demo` (ending 2024-12-27) copied to ROOT/state, then the hostile sessions of 30 and 31 Dec."""
    state = root / "state"
    shutil.copytree(demo, state)
    argv = ["daily", "--init", "--state", str(state), "--source", "demo", "--policy", "llm", "--cache", str(root / "cache")]
    with FakeOpenAI() as fake, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        mp.setenv("OPENAI_BASE_URL", fake.base_url)
        # 30 Dec: prose twice (after one repair round): an explicit HOLD, the raw answer kept.
        fake.script(completion(HOSTILE), completion(HOSTILE))
        run(*argv, "--date", "2024-12-30")
        # 31 Dec: a valid answer whose reasons and summary attack, and an unknown ticker that is cut.
        fake.script(answer_json({"decisions": [
            {"ticker": "TTE.PA", "action": "buy", "percent": 30, "reason": HOSTILE},
            {"ticker": "SAN.PA", "action": "buy", "percent": 30, "reason": HOSTILE},
            {"ticker": HOSTILE_TICKER, "action": "buy", "percent": 5, "reason": HOSTILE},
        ], "summary": HOSTILE}))
        run(*argv, "--date", "2024-12-31")
    reports = state / "reports"
    reports.mkdir()
    (reports / "2024-W52.md").write_text(
        "# Weekly report 2024-W52\n\n![NAV against buy-and-hold, 2024-W52](2024-W52.png)\n\n"
        f"| date | summary |\n|---|---|\n| 2024-12-31 | ok |\n\n{HOSTILE}\n\n[r]: javascript:alert(1)\n",
        encoding="utf-8")
    (reports / "2024-W51.md").write_text("# Weekly report 2024-W51\n\nA quiet week.\n", encoding="utf-8")
    alerts = [
        {"date": "2024-12-30", "time_utc": "15:17", "ticker": "MC.PA", "move": -0.024, "price_local": 650.1,
         "previous_close": 666.1, "message": "MC.PA -2.4% since the last close", "source": "demo seed=42"},
        {"date": "2024-12-31", "time_utc": "11:17", "ticker": HOSTILE_TICKER, "move": 0.03, "price_local": 1.0,
         "previous_close": 1.0, "message": HOSTILE, "source": "demo seed=42"},
    ]
    (state / "alerts.jsonl").write_text("".join(json.dumps(a) + "\n" for a in alerts), encoding="utf-8")
    return state


def backtest(root: Path) -> Path:
    out = root / "bt"
    run("backtest", "--start", "2024-01-02", "--end", "2024-03-28", "--out", str(out), "--no-charts")
    return out
