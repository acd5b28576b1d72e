"""Downloads and the changes log: the data behind every figure, for anyone to recompute.

:func:`write_downloads` writes ``data/equity.csv|json``, ``data/trades.csv|json`` and
``data/decisions.csv|json`` (one row per session: who decided, what, what was cut, the
orders) beside the pages; :func:`data_page` lists them, says where each day's raw record
is, and logs the changes of model and prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from engine.report.escape import untrusted
from engine.report.pages.charts import changes_of
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
    out += ["", "## Changes of model and prompt", ""]
    changes = changes_of(data)
    first = next((r for r in data.records), None)
    rows: list[list[Any]] = []
    if first is not None:
        start = " ".join(str(x) for x in (first.get("model") or f"{first.get('policy')} policy",
                                          (first.get("usage") or {}).get("prompt_version")) if x)
        rows.append([day_label(pd.Timestamp(first["date"]).date()), Raw("start: " + untrusted(start))])
    rows += [[day_label(t.date()), Raw(untrusted(what))] for t, what in changes]
    out.append(md_table(["From the session of", "Who decides"], rows) if rows else "No session yet.")
    return "\n".join(out) + "\n"
