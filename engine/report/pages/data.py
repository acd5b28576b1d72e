"""Downloads and the changes log: the data behind every figure, for anyone to recompute.

:func:`write_downloads` writes ``data/equity.csv|json``, ``data/trades.csv|json`` and
``data/decisions.csv|json`` (one row per session: who decided, what, what was cut, the
orders) beside the pages; :func:`data_page` lists them, says where each day's raw record
is, and logs the changes of model, prompt and configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from engine.report.escape import untrusted
from engine.report.pages.common import Raw, SiteData, day_label, md_table
from engine.report.pages.decisions import is_engine_hold

FILES = (("equity", "one row per session: NAV, cash, invested, drawdown, CVaR, the benchmarks, in EUR"),
         ("trades", "every fill, dividend and split, with its costs"),
         ("decisions", "one row per session: who decided, the summary, the orders, the cuts, engine HOLDs"))


def decisions_frame(data: SiteData) -> pd.DataFrame:
    rows = []
    for rec in data.records:
        answer = rec.get("answer") or {}
        rows.append({
            "date": rec["date"], "policy": rec.get("policy"), "model": rec.get("model"),
            "prompt_version": (rec.get("usage") or {}).get("prompt_version"),
            "engine_hold": is_engine_hold(rec), "fallback": answer.get("fallback"),
            "summary": (answer.get("parsed") or {}).get("summary"),
            "orders": json.dumps(rec.get("orders") or [], ensure_ascii=False, sort_keys=True),
            "cuts": json.dumps(rec.get("cuts") or [], ensure_ascii=False, sort_keys=True),
            "record": data.links.record(rec["date"], 0)[0],
        })
    return pd.DataFrame(rows, columns=["date", "policy", "model", "prompt_version", "engine_hold", "fallback",
                                       "summary", "orders", "cuts", "record"])


def write_downloads(data: SiteData, folder: Path) -> list[str]:
    """The CSV and JSON files into `folder` (``docs/data``); returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    equity = data.equity.reset_index()
    equity["date"] = pd.to_datetime(equity["date"]).dt.strftime("%Y-%m-%d")
    trades = data.trades.copy()
    if "date" in trades:
        trades["date"] = pd.to_datetime(trades["date"]).dt.strftime("%Y-%m-%d")
    names = []
    for name, frame in (("equity", equity), ("trades", trades), ("decisions", decisions_frame(data))):
        frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")
        (folder / f"{name}.json").write_text(frame.to_json(orient="records", indent=1, force_ascii=False) + "\n",
                                             encoding="utf-8")
        names += [f"{name}.csv", f"{name}.json"]
    return names


def data_page(data: SiteData) -> str:
    out = ["# Downloads", "", "Every figure on this site is computed from these files; download them and recompute it.", ""]
    out.append(md_table(["File", "What it holds", "Download"], [
        [name, what, Raw(f"[CSV](data/{name}.csv) · [JSON](data/{name}.json)")] for name, what in FILES]))
    out.append("")
    if data.links.remote:
        out.append(f"Each session's raw decision record (every message sent, the raw answer, the cuts) is in the "
                   f"repository under `state/decisions/`; every day on the decision pages links to its record at "
                   f"the commit that wrote it ([the repository]({data.links.repo_url})).")
    else:
        out.append("Each session's raw decision record (every message sent, the raw answer, the cuts) is copied "
                   "beside the site under `data/decisions/YYYY/MM-DD.json`; every day on the decision pages links "
                   "to it.")
    out += ["", "## Changes of model, prompt and configuration", ""]
    rows: list[list[Any]] = [[day_label(pd.Timestamp(day).date()), Raw(untrusted(who)), Raw(changes_html(what))]
                             for day, who, what in changes_log(data.records)]
    out.append(md_table(["From the session of", "Who decides", "What changed"], rows) if rows else "No session yet.")
    out += ["", "The configuration's digest is the SHA-256 of the effective configuration (the defaults and the "
            "repository's TOML file, merged and validated) that the run recorded with each decision; the sections "
            "named are those whose own digest changed. The dependency lock is the SHA-256 of `requirements.txt`."]
    return "\n".join(out) + "\n"


def changes_html(what: list[str]) -> str:
    return "<br>".join(untrusted(w) for w in what)


# What a decision record says about the configuration that made it, and how to show it:
# (label, how to read it from the record, how to format it). The guardrail limits and churn
# rules are config values the brief quotes; the digests are the run's build stamp.
def _limit(key: str):
    return lambda rec: ((rec.get("brief") or {}).get("limits") or {}).get(key)


def _churn(key: str):
    return lambda rec: ((rec.get("brief") or {}).get("churn") or {}).get(key)


def _stamp(key: str):
    return lambda rec: (rec.get("engine") or {}).get(key)


def _pct(x: object) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else str(x)


def _short(x: object) -> str:
    return str(x)[:12] + "…" if isinstance(x, str) and len(x) > 12 else str(x)


SETTINGS = (
    ("data source", lambda rec: rec.get("source"), str),
    ("engine version", _stamp("version"), str),
    ("dependency lock", _stamp("lock_sha256"), _short),
    ("guardrails.max_weight", _limit("max_weight"), _pct),
    ("guardrails.min_cash", _limit("min_cash"), _pct),
    ("churn.reentry_cooldown_sessions", _churn("reentry_cooldown_sessions"), str),
    ("churn.max_buys_per_week", _churn("max_buys_per_week"), str),
)


def who_decides(rec: dict[str, Any]) -> str:
    who = rec.get("model") or f"{rec.get('policy')} policy"
    prompt = (rec.get("usage") or {}).get("prompt_version")
    return f"{who}, prompt {prompt}" if prompt else str(who)


def changes_log(records: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(date, who decides, what changed) for the first session and each session whose model,
    prompt or configuration differs from the session before: the configuration's digest
    and the sections whose digest changed (when the run recorded them), and the settings a
    record quotes (:data:`SETTINGS`). A value a record starts to carry is "recorded from
    this session", not a change. Oldest first."""
    out: list[tuple[str, str, list[str]]] = []
    prev: dict[str, Any] | None = None
    for rec in records:
        who = who_decides(rec)
        stamp = rec.get("engine") or {}
        if prev is None:
            what = ["start" + (f"; configuration {_short(stamp['config_sha256'])}" if stamp.get("config_sha256") else "")]
            out.append((rec["date"], who, what))
            prev = rec
            continue
        what = []
        if who != who_decides(prev):
            what.append(f"who decides: {who_decides(prev)} → {who}")
        before, now = (prev.get("engine") or {}).get("config_sha256"), stamp.get("config_sha256")
        if now and not before:
            what.append(f"configuration digest recorded from this session: {_short(now)}")
        elif now and now != before:
            old_s = (prev.get("engine") or {}).get("config_sections") or {}
            new_s = stamp.get("config_sections") or {}
            sections = sorted(k for k in {*old_s, *new_s} if old_s.get(k) != new_s.get(k))
            what.append(f"configuration {_short(before)} → {_short(now)}"
                        + (f" (sections: {', '.join(sections)})" if sections else ""))
        for label, read, fmt in SETTINGS:
            a, b = read(prev), read(rec)
            if b is None or a == b:
                continue
            what.append(f"{label}: recorded from this session: {fmt(b)}" if a is None else f"{label}: {fmt(a)} → {fmt(b)}")
        if what:
            out.append((rec["date"], who, what))
        prev = rec
    return out
