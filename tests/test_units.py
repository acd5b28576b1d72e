"""Quantities follow the data: splits on adjusted and unadjusted prices, conversion at
load, splits missing from the events, and no fill on a bar that did not trade."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine.config import load_config
from engine.data.demo import DemoSource
from engine.data.market import MarketData
from engine.data.validate import validate
from engine.decision import Action, Brief, Decision
from engine.errors import DataUnavailable
from engine.indicators import compute_indicators
from engine.policies import PolicyAnswer
from engine.portfolio.ledger import Portfolio
from engine.step import StepContext, run

CFG = load_config()
SPLIT = pd.Timestamp("2024-06-10")  # the demo's 11-for-10 Air Liquide split


class Scripted:
    name = "scripted"

    def __init__(self, plan: dict[str, list[Action]]):
        self.plan = plan
        self.briefs: list[Brief] = []

    def decide(self, brief: Brief) -> PolicyAnswer:
        self.briefs.append(brief)
        return PolicyAnswer(Decision(decisions=tuple(self.plan.get(brief.date.isoformat(), [])), summary="s"))


BUY_AI = {"2024-05-02": [Action(ticker="AI.PA", action="buy", percent=15.0)]}


@pytest.fixture(scope="module")
def unadjusted() -> MarketData:
    return validate(DemoSource(seed=7).load(CFG, "2023-06-01", "2024-07-31"), CFG, pd.Timestamp("2024-07-31"))


def split_adjusted(m: MarketData, end: pd.Timestamp | None = None) -> MarketData:
    """The same market as Yahoo gives it: prices before the split divided by its ratio
    (volume multiplied), the split event still listed."""
    factor = pd.Series(1.0, index=m.index)
    factor[m.index < SPLIT] = 1.1
    kw = {f: getattr(m, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for f in ("open", "high", "low", "close"):
        kw[f]["AI.PA"] = kw[f]["AI.PA"] / factor
    kw["volume"]["AI.PA"] = kw["volume"]["AI.PA"] * factor
    out = dataclasses.replace(m, **kw, price_convention="split_adjusted")
    return out if end is None else out.upto(end)


def _run(market: MarketData, start: str, end: str, p: Portfolio | None = None, plan=BUY_AI):
    ctx = StepContext(config=CFG, policy=Scripted(plan), source="demo seed=7", synthetic=True)
    ind = compute_indicators(market, CFG)
    idx = market.index
    sessions = idx[(idx >= pd.Timestamp(start)) & (idx <= pd.Timestamp(end))]
    return run(p or Portfolio.initial(10_000.0), sessions, market, ind, ctx)


def test_an_11_for_10_split_is_booked_once_on_prices_as_traded(unadjusted):
    p, results = _run(unadjusted, "2024-05-01", "2024-07-31")
    splits = [f for r in results for f in r.fills if f.side == "split"]
    assert [(f.date, f.ticker, f.price_local) for f in splits] == [(SPLIT.date(), "AI.PA", 1.1)]
    bought = next(f for r in results for f in r.fills if f.side == "buy")
    assert p.positions["AI.PA"].qty == pytest.approx(bought.qty * 1.1)


def test_the_split_is_not_applied_again_on_split_adjusted_history(unadjusted):
    # Yahoo's history already contains the split: a position bought before it is in
    # post-split units, and booking the split again would add 10% from nothing.
    adj = split_adjusted(unadjusted)
    p_adj, res_adj = _run(adj, "2024-05-01", "2024-07-31")
    p_raw, res_raw = _run(unadjusted, "2024-05-01", "2024-07-31")
    assert not [f for r in res_adj for f in r.fills if f.side == "split"]
    assert p_adj.positions["AI.PA"].qty == pytest.approx(p_raw.positions["AI.PA"].qty, abs=1.0)
    # Both conventions describe the same shares: the NAV paths agree to within the
    # rounding of whole shares bought at prices 10% apart.
    nav_adj = np.array([r.equity["nav_eur"] for r in res_adj])
    nav_raw = np.array([r.equity["nav_eur"] for r in res_raw])
    assert np.max(np.abs(nav_adj / nav_raw - 1)) < 0.002
    # The indicators see no crash on the split date either way.
    ind = compute_indicators(unadjusted, CFG)
    assert abs(ind.at(SPLIT).loc["AI.PA", "ret_1d"]) < 0.06
    assert ind.at(SPLIT - pd.Timedelta(days=3)).loc["AI.PA", "close"] == unadjusted.close.at[
        SPLIT - pd.Timedelta(days=3), "AI.PA"]


def test_a_live_run_converts_stored_quantities_once_at_load(unadjusted):
    # Yesterday's run (2024-06-07) saw prices adjusted up to that day: no split yet.
    before = split_adjusted(unadjusted, pd.Timestamp("2024-06-07"))
    before = dataclasses.replace(before, **{f: getattr(unadjusted.upto(pd.Timestamp("2024-06-07")), f)
                                            for f in ("open", "high", "low", "close", "volume")})
    p, _ = _run(before, "2024-05-01", "2024-06-07")
    qty = p.positions["AI.PA"].qty
    assert p.units_as_of == pd.Timestamp("2024-06-07").date()
    # Today's download (to 2024-06-12) is adjusted for the split of 2024-06-10.
    today = split_adjusted(unadjusted, pd.Timestamp("2024-06-12"))
    p2, results = _run(today, "2024-06-10", "2024-06-12", p=p)
    (conv,) = [f for f in results[0].fills if f.side == "split"]
    assert conv.ticker == "AI.PA" and conv.price_local == 1.1 and "converted at load" in conv.note
    assert p2.positions["AI.PA"].qty == pytest.approx(qty * 1.1, abs=1e-6)
    assert not [f for r in results[1:] for f in r.fills if f.side == "split"]  # once
    assert p2.units_as_of == pd.Timestamp("2024-06-12").date()


def test_a_split_missing_from_the_events_is_found_at_load_and_booked(unadjusted):
    p, _ = _run(unadjusted.upto(pd.Timestamp("2024-05-31")), "2024-05-01", "2024-05-31")
    qty = p.positions["AI.PA"].qty
    # A new download in which AI.PA's whole history is halved, with no split event.
    halved = {f: getattr(unadjusted, f).copy() for f in ("open", "high", "low", "close")}
    for f in halved.values():
        f["AI.PA"] /= 2.0
    fresh = dataclasses.replace(unadjusted, **halved)
    p2, results = _run(fresh, "2024-06-03", "2024-06-04", p=p)
    (found,) = [f for f in results[0].fills if f.side == "split"]
    assert found.price_local == 2.0 and "not in the events" in found.note
    assert p2.positions["AI.PA"].qty == pytest.approx(qty * 2)


def test_the_marks_are_kept_to_six_digits_and_the_same_data_reads_as_agreeing(unadjusted):
    p, _ = _run(unadjusted.upto(pd.Timestamp("2024-05-31")), "2024-05-01", "2024-05-31")
    close = float(unadjusted.close.loc["2024-05-31", "AI.PA"])
    assert p.marks_local["AI.PA"] == float(f"{close:.6g}") and len(repr(p.marks_local["AI.PA"])) <= 8
    p2, results = _run(unadjusted, "2024-06-03", "2024-06-04", p=p)  # no split found in a rounding
    assert not [f for r in results for f in r.fills if f.side == "split"]
    assert p2.positions["AI.PA"].qty == p.positions["AI.PA"].qty


def test_a_disagreement_that_is_no_split_stops_the_run(unadjusted):
    p, _ = _run(unadjusted.upto(pd.Timestamp("2024-05-31")), "2024-05-01", "2024-05-31")
    off = unadjusted.close.copy()
    off["AI.PA"] *= 0.7
    with pytest.raises(DataUnavailable, match="AI.PA: the close of 2024-05-31 .* not a split"):
        _run(dataclasses.replace(unadjusted, close=off), "2024-06-03", "2024-06-04", p=p)


def test_no_fill_on_a_carried_forward_bar_the_order_waits_with_a_note():
    raw = DemoSource(seed=7).load(CFG, "2024-01-02", "2024-05-31")
    hole = pd.Timestamp("2024-05-03")  # the session after the decision of 2024-05-02
    cut = {f: getattr(raw, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for f in cut.values():
        f.loc[hole, "AI.PA"] = np.nan
    market = validate(dataclasses.replace(raw, **cut), CFG, pd.Timestamp("2024-05-31"))
    assert market.close.at[hole, "AI.PA"] > 0 and market.volume.at[hole, "AI.PA"] == 0  # forward-filled
    _, results = _run(market, "2024-05-02", "2024-05-07")
    by_day = {r.date: r for r in results}
    assert not by_day[hole].fills
    (note,) = by_day[hole].record["execution_notes"]
    assert note["outcome"] == "waiting" and "did not trade" in note["reason"]
    nxt = results[results.index(by_day[hole]) + 1]
    (fill,) = nxt.fills
    assert fill.ticker == "AI.PA" and fill.price_local == pytest.approx(
        market.open.at[nxt.date, "AI.PA"] * (1 + CFG.costs.slippage_bps / 1e4))
    # The brief of the hole's day says so; the brief of the day before does not.
    issues_hole = by_day[hole].record["brief"]["data_issues"]
    assert any(i["ticker"] == "AI.PA" and i["kind"] == "filled" for i in issues_hole)
    assert not any(i["ticker"] == "AI.PA" for i in results[0].record["brief"]["data_issues"])
