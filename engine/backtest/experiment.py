"""The verdict per arm: every arm judged the same way, from its own state folder.

For each arm: its performance, its verdict against the reference arm (buy-and-hold SPY:
the null hypothesis; bootstrap CI, p-value, PSR), the minimum detectable effect at its
tracking error, in words, and the decision analytics (engine.analytics). Then the test of
the hypothesis itself, **treatment vs control** (paired daily differences, same test),
and, since several arms (and prompt versions) are compared, the deflated Sharpe ratio of
each active arm for the number of trials (passive baselines are not trials).

Everything is computed from what the arms wrote (equity, trades, decision records), so a
re-evaluation gives the same figures; a daily run takes the counts of the decision records
it judged the day before from its previous verdicts, and reads only the new records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from engine.analytics import RecordCounts, analyse
from engine.backtest.metrics import performance, returns_from_nav
from engine.backtest.verdict import (
    deflated_sharpe_ratio,
    minimum_detectable_effect,
    paired_test,
    sharpe_per_period,
    verdict,
)
from engine.config import Config
from engine.data.calendars import sessions_per_year
from engine.state import StateStore


def record_counts(store: StateStore, equity: pd.DataFrame, previous: Mapping[str, Any] | None = None,
                  known: RecordCounts | None = None) -> RecordCounts:
    """The analytics' counts of every decision record of a state folder, read one record at
    a time (memory does not grow with the number of records).

    `previous`: this arm's entry in a verdict written earlier (experiment.json). The records
    it counted are not read again when it matches the folder: it counted as many records as
    there are up to the session its performance ends at, the last of them on that session,
    whose NAV in `equity` is its final NAV. Only the records after are read, so a daily run
    reads one record per arm, however long the history; any other case reads them all.

    `known`: the counts of the records as the run that wrote every one of them counted
    them, taken when they count as many records as the folder holds."""
    folder = store.root / "decisions"
    names = _record_names(folder)
    if known is not None and known.sessions == len(names):
        return known
    counts = _counted(previous, names, equity) or RecordCounts()
    for year, day in names[counts.sessions:]:
        counts.add(orjson.loads((folder / year / day).read_bytes()))
    return counts


def _record_names(folder: Path) -> list[tuple[str, str]]:
    """(year, file) of each ``folder/*/*.json`` in date order (YYYY/MM-DD.json): a long
    history's names are listed in milliseconds."""
    if not folder.is_dir():
        return []
    found = []
    with os.scandir(folder) as years:
        for year in years:
            if year.is_dir():
                with os.scandir(year.path) as days:
                    found += [(year.name, day.name) for day in days if day.name.endswith(".json")]
    return sorted(found)


def _counted(previous: Mapping[str, Any] | None, names: Sequence[tuple[str, str]],
             equity: pd.DataFrame) -> RecordCounts | None:
    """The counts of `previous` when they are those of the first records `names` lists (see
    :func:`record_counts`), else None."""
    if not isinstance(previous, Mapping):
        return None
    counts = RecordCounts.from_analytics(previous.get("analytics") or {})
    perf = previous.get("performance")
    if counts is None or not 0 < counts.sessions <= len(names) or not isinstance(perf, Mapping):
        return None
    year, day = names[counts.sessions - 1]
    end = perf.get("end")
    if not isinstance(end, str) or f"{year}-{day.removesuffix('.json')}" != end:  # the last it counted
        return None
    nav = equity.loc[equity["date"] == pd.Timestamp(end), "nav_eur"]  # and the arm it judged
    if len(nav) != 1 or float(nav.iloc[0]) != perf.get("final_nav_eur"):
        return None
    return counts


def arm_nav(store: StateStore) -> pd.Series:
    eq = store.equity()
    return pd.Series(eq["nav_eur"].to_numpy(dtype=float), index=pd.DatetimeIndex(eq["date"]), name="nav_eur")


def judge_arms(
    stores: Mapping[str, StateStore], config: Config, manifest: Mapping[str, Any] | None = None,
    close_eur: pd.DataFrame | None = None, n_boot: int = 2000, previous: Mapping[str, Any] | None = None,
    counts: Mapping[str, RecordCounts] | None = None,
) -> dict[str, Any]:
    """{arms: {name: {label, performance, verdict, mde, analytics, deflated}}, treatment_vs_control,
    trials} for the arms whose folders are in `stores`. Annualised over the calendar's sessions
    per year (about 258 for New York + Paris). `previous`: the verdicts written earlier for
    these folders (experiment.json), whose counts of the decision records are taken over
    where they match (:func:`record_counts`): the same answer as without. `counts`: those
    of the arms whose records the caller wrote and counted (a backtest's), taken as well."""
    capital = config.portfolio.starting_capital_eur
    ppy = sessions_per_year({i.calendar for i in config.instruments.values()})
    specs = config.arm_by_name
    info = (manifest or {}).get("arms", {})
    before = previous.get("arms") if isinstance(previous, Mapping) else None
    before = before if isinstance(before, Mapping) else {}
    counted = counts or {}
    saved = {name: s.current() for name, s in stores.items()}  # each folder read and checked once (or just saved)
    navs = {name: arm_nav(s) for name, s in stores.items()}
    navs = {k: v for k, v in navs.items() if len(v)}
    rets = {k: returns_from_nav(v, capital) for k, v in navs.items()}
    ref = config.arms.reference
    arms: dict[str, Any] = {}
    for name, nav in navs.items():
        store = stores[name]
        p = saved[name]
        trades = store.trades()
        equity = store.equity()
        c = p.costs if p is not None else None
        entry: dict[str, Any] = {
            "label": specs[name].title if name in specs else name,
            "policy": specs[name].policy if name in specs else info.get(name, {}).get("policy"),
            "performance": performance(
                nav, capital=capital, trades=trades,
                costs_eur=round(c.commission_eur + c.slippage_eur + c.fx_fee_eur, 2) if c else None,
                taxes_eur=c.tax_eur if c else None,
                llm_tokens=(p.llm.prompt_tokens + p.llm.completion_tokens) if p else None,
                llm_cost_usd=p.llm.cost_usd if p else None,
                periods_per_year=ppy,
            ),
            "llm_cost_usd_per_session": (p.llm.cost_usd / len(nav)) if p and len(nav) else 0.0,
            "analytics": analyse(trades, equity, record_counts(store, equity, before.get(name), counted.get(name)),
                                 close_eur, periods_per_year=ppy),
        }
        if ref in rets and name != ref:
            entry["verdict"] = verdict(rets[name], rets[ref], n_boot=n_boot, periods_per_year=ppy)
            excess = pd.concat([rets[name], rets[ref]], axis=1, join="inner").dropna()
            entry["mde"] = minimum_detectable_effect(excess.iloc[:, 0] - excess.iloc[:, 1], last_date=nav.index[-1],
                                                     periods_per_year=ppy)
        arms[name] = entry
    active = [n for n in navs if not (specs[n].passive if n in specs else False)]
    trials = sum(max(1, len(info.get(n, {}).get("versions", []))) for n in active)
    sharpes = [sharpe_per_period(rets[n]) for n in active]
    for n in active:
        arms[n]["deflated"] = deflated_sharpe_ratio(rets[n], sharpes, n_trials=trials)
    out: dict[str, Any] = {"reference": ref, "arms": arms, "trials": trials,
                           "trials_note": f"{trials} trial(s) compared (active arms x prompt versions): "
                                          "the deflated Sharpe ratio corrects each active arm's PSR for them"}
    t, k = config.arms.treatment, config.arms.control
    if t in rets and k in rets:
        out["treatment_vs_control"] = paired_test(rets[t], rets[k], n_boot=n_boot, names=(t, k), periods_per_year=ppy)
    return out
