"""How fast the audit trail grows in git: one commit per session, then `git gc`, per year.

    PYTHONPATH=. python benchmarks/audit_trail_growth.py [--years 1] [--policies rules,llm] [--aggressive]

For each policy, a fresh git repository holds a state folder; every session of the demo
market (seeded, offline) is one real daily step, saved by the state store and committed.
After each simulated year the repository is packed (`git gc --prune=now`, or
`--aggressive`; one thread, so that the figures repeat) and the pack's size is printed with
its growth over the year, split by what the objects are (decision records, stored prompts,
equity.parquet, trades.parquet, portfolio.json, trees and commits), from `git verify-pack`.

To measure an older layout, copy this file into a checkout of that commit and run it there.

The ``llm`` policy is the real LLM path (brief rendering, the openai client over HTTP,
parsing, checks) against the scripted local server of the tests: each day's answer is the
rules policy's decision on that brief, written the way a model writes (a reason for every
action, a hold with its reason for every other position, a summary of two sentences), so
that the records trade and grow like a live run's. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import load_config  # noqa: E402
from engine.data.demo import DemoSource  # noqa: E402
from engine.decision import Brief  # noqa: E402
from engine.indicators import compute_indicators  # noqa: E402
from engine.llm.brief import estimate_tokens, render_brief  # noqa: E402
from engine.llm.cache import ResponseCache  # noqa: E402
from engine.llm.client import ChatClient  # noqa: E402
from engine.llm.policy import LLMPolicy  # noqa: E402
from engine.ops import build_info  # noqa: E402
from engine.policies import PolicyAnswer, RulesPolicy  # noqa: E402
from engine.portfolio.ledger import Portfolio  # noqa: E402
from engine.state import StateStore  # noqa: E402
from engine.step import StepContext, step  # noqa: E402
from tests.fake_openai import FakeOpenAI, completion  # noqa: E402

MiB = 1024 * 1024


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bot", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "bot", "GIT_COMMITTER_EMAIL": "b@example.org", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def kind_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if "/prompts/" in f"/{path}":
        return "prompts"
    if "/decisions/" in f"/{path}" and name.endswith(".json"):
        return "records"
    if name in ("equity.parquet", "trades.parquet", "portfolio.json"):
        return name
    return "other"


def packed(repo: Path, aggressive: bool) -> tuple[int, dict[str, int]]:
    """The pack's size after gc, and its bytes by kind of object."""
    # One thread: a threaded delta search gives packs a few percent apart from run to run.
    git(repo, "-c", "pack.threads=1", "gc", "--quiet", "--prune=now", *(["--aggressive"] if aggressive else []))
    packs = sorted((repo / ".git" / "objects" / "pack").glob("*.pack"))
    total = sum(p.stat().st_size for p in packs)
    paths = {}
    for line in git(repo, "rev-list", "--objects", "--all").splitlines():
        sha, _, path = line.partition(" ")
        paths[sha] = path
    split: dict[str, int] = defaultdict(int)
    for p in packs:
        for line in git(repo, "verify-pack", "-v", str(p.with_suffix(".idx"))).splitlines():
            parts = line.split()
            if len(parts) >= 5 and len(parts[0]) == 40 and parts[1] in ("blob", "tree", "commit", "tag"):
                kind = kind_of(paths.get(parts[0], "")) if parts[1] == "blob" else "trees+commits"
                split[kind] += int(parts[3])  # size in the pack (compressed, delta or whole)
    return total, dict(split)


class ScriptedLLM(LLMPolicy):
    """The real LLM policy; the scripted server answers what the rules policy decides on the
    same brief, in a model's words."""

    def __init__(self, config, client, cache, fake: FakeOpenAI):
        super().__init__(config, client, cache)
        self.rules = RulesPolicy(config)
        self.fake = fake

    def decide(self, brief: Brief) -> PolicyAnswer:
        rules = self.rules.decide(brief).decision
        acted = {a.ticker for a in rules.decisions}
        decisions = [{"ticker": a.ticker, "action": a.action, "percent": a.percent, "reason": a.reason}
                     for a in rules.decisions]
        for t, pos in brief.positions.items():
            if t not in acted:
                f = brief.assets.get(t, {})
                close, rsi = f.get("close", float("nan")), f.get("rsi_14", float("nan"))
                decisions.append({"ticker": t, "action": "hold", "percent": 0, "reason": (
                    f"Still in its trend (close {close:.2f}, RSI {rsi:.0f}); "
                    f"P&L {pos.pnl_pct:+.1%} vs cost, weight {pos.weight:.1%} within the cap: keep it.")})
        answer = {"decisions": decisions, "summary": rules.summary + (
            f" Portfolio CVaR {brief.cvar_95:.2%} of NAV against a budget of "
            f"{brief.limits.get('cvar_budget', float('nan')):.2%}; cash {brief.cash_eur:,.0f} EUR kept as a buffer.")}
        content = json.dumps(answer)
        user = render_brief(brief, self.cfg)
        self.fake.script(completion(content, prompt_tokens=estimate_tokens(self.system) + estimate_tokens(user),
                                    completion_tokens=estimate_tokens(content)))
        return super().decide(brief)


def simulate(policy: str, years: int, aggressive: bool, start: pd.Timestamp, keep: Path | None = None) -> None:
    cfg = load_config()
    end = start + pd.DateOffset(years=years) - pd.Timedelta(days=1)
    market = DemoSource(seed=42).load(cfg, str((start - pd.DateOffset(years=2)).date()), str(end.date()))
    ind = compute_indicators(market, cfg)
    sessions = market.index[(market.index >= start) & (market.index <= end)]
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "--quiet", "-b", "main")
        (repo / "README").write_text("audit trail\n")
        git(repo, "add", ".")
        git(repo, "commit", "--quiet", "-m", "start")
        if policy == "llm":
            client = ChatClient(api_key="sk-benchmark", base_url=fake.base_url, settings=cfg.llm)
            chosen = ScriptedLLM(cfg, client, ResponseCache(None), fake)
        else:
            chosen = RulesPolicy(cfg)
        ctx = StepContext(config=cfg, policy=chosen, source="demo", synthetic=True, build=build_info())
        store = StateStore(repo / "state", durable=False)
        p = Portfolio.initial(cfg.portfolio.starting_capital_eur, source="demo")
        before, before_split = packed(repo, aggressive)
        print(f"policy {policy}: {len(sessions)} daily commits {sessions[0].date()}..{sessions[-1].date()} "
              f"(demo market, seed 42; git gc{' --aggressive' if aggressive else ''})")
        t0, year_end, done, record_bytes = time.perf_counter(), start + pd.DateOffset(years=1), 0, []
        for k, d in enumerate(sessions):
            res = step(p, d, market, ind, ctx)
            p = res.portfolio
            store.save(p, [res])
            record_bytes.append(store.decision_path(d).stat().st_size)
            git(repo, "add", "-A", "state")
            git(repo, "commit", "--quiet", "-m", str(d.date()))
            last = k == len(sessions) - 1
            if last or sessions[k + 1] >= year_end:
                done += 1
                size, split = packed(repo, aggressive)
                grew = {k: split.get(k, 0) - before_split.get(k, 0) for k in split}
                parts = ", ".join(f"{name} {grew[name] / 1024:,.0f}" for name in
                                  ("records", "prompts", "equity.parquet", "trades.parquet", "portfolio.json",
                                   "trees+commits", "other") if grew.get(name))
                print(f"  year {done}: pack {size / MiB:.2f} MiB, +{(size - before) / MiB:.3f} MiB this year "
                      f"(of which KiB: {parts}); records on disk {sum(record_bytes) / len(record_bytes) / 1024:.1f} "
                      f"KiB a session on average, largest {max(record_bytes) / 1024:.1f} KiB; "
                      f"{time.perf_counter() - t0:.0f} s")
                before, before_split = size, split
                year_end, record_bytes = year_end + pd.DateOffset(years=1), []
        if keep is not None:
            shutil.copytree(repo, keep / policy, symlinks=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--years", type=int, default=1)
    ap.add_argument("--policies", default="rules,llm")
    ap.add_argument("--start", default="2025-01-02")
    ap.add_argument("--aggressive", action="store_true", help="git gc --aggressive (window 250)")
    ap.add_argument("--keep", type=Path, help="copy each policy's repository to KEEP/<policy> at the end")
    args = ap.parse_args()
    for policy in args.policies.split(","):
        simulate(policy.strip(), args.years, args.aggressive, pd.Timestamp(args.start), args.keep)


if __name__ == "__main__":
    main()
