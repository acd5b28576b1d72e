"""Checking a policy's answer and sizing it into orders: every repair says why."""

from __future__ import annotations

import pytest

from engine.decision import Action, Decision, check_decision, size_orders
from engine.portfolio.ledger import Order
from tests.helpers import DAY, brief

UNIVERSE = {"SPY", "MC.PA", "TTE.PA", "GLD"}


def check(actions, b):
    return check_decision(Decision(decisions=tuple(actions)), b, UNIVERSE)


def test_a_clean_answer_passes_untouched():
    b = brief(prices={"SPY": 100.0, "MC.PA": 50.0}, positions={"MC.PA": (10, 40.0)})
    acts = [Action(ticker="SPY", action="buy", percent=30), Action(ticker="MC.PA", action="sell", percent=50)]
    kept, cuts = check(acts, b)
    assert kept == acts and cuts == []


@pytest.mark.parametrize(
    ("actions", "reason"),
    [
        ([Action(ticker="TSLA", action="buy", percent=10)], "unknown ticker"),
        ([Action(ticker="GLD", action="sell", percent=100)], "not held"),
        ([Action(ticker="TTE.PA", action="buy", percent=10)], "no valid market data today"),
        ([Action(ticker="SPY", action="buy", percent=-5)], "percent must be in (0, 100]"),
        ([Action(ticker="SPY", action="buy", percent=float("nan"))], "percent must be in (0, 100]"),
        ([Action(ticker="SPY", action="buy", percent=10), Action(ticker="SPY", action="sell", percent=10)],
         "contradictory"),
    ],
)
def test_what_cannot_be_done_is_dropped_with_its_reason(actions, reason):
    b = brief(prices={"SPY": 100.0, "MC.PA": 50.0, "GLD": 20.0})  # TTE.PA: no data today
    kept, cuts = check(actions, b)
    assert kept == []
    assert len(cuts) >= 1 and all(reason in c.reason for c in cuts)
    assert all(c.after == "dropped" and c.stage == "validation" for c in cuts)


def test_duplicates_keep_the_first_and_over_100_percent_is_clipped():
    b = brief(prices={"SPY": 100.0}, positions={"SPY": (5, 90.0)})
    kept, cuts = check([Action(ticker="SPY", action="sell", percent=150), Action(ticker="SPY", action="sell", percent=20)], b)
    assert kept == [Action(ticker="SPY", action="sell", percent=100)]
    assert {c.reason for c in cuts} == {"duplicate entry: the first one is kept", "percent above 100 clipped to 100"}


def test_buys_over_100_percent_of_cash_are_scaled_down_proportionally():
    b = brief(prices={"SPY": 100.0, "MC.PA": 50.0, "GLD": 20.0})
    kept, cuts = check([Action(ticker="SPY", action="buy", percent=150), Action(ticker="MC.PA", action="buy", percent=100)], b)
    assert [a.percent for a in kept] == pytest.approx([60.0, 40.0])
    assert len(cuts) == 2 and all("250.0% of cash" in c.reason for c in cuts)


def test_selling_what_a_pending_order_will_deliver_is_allowed():
    pending = (Order(id="x", ticker="GLD", side="buy", qty=3, decided_on=DAY),)
    b = brief(prices={"GLD": 20.0}, pending=pending)
    kept, cuts = check([Action(ticker="GLD", action="sell", percent=100)], b)
    assert kept and not cuts


def test_sizing_turns_percentages_into_whole_shares_at_the_close():
    b = brief(cash=5_000.0, prices={"SPY": 100.0, "MC.PA": 50.0}, positions={"MC.PA": (3, 40.0)})
    acts = [Action(ticker="SPY", action="buy", percent=50, reason="r"), Action(ticker="MC.PA", action="sell", percent=50)]
    orders, cuts = size_orders(acts, b, {"SPY": 1.0015, "MC.PA": 1.0055}, min_order_eur=50, whole_shares=True)
    spy, mc = orders
    assert (spy.side, spy.qty) == ("buy", 24.0)  # 2,500 EUR buys 24 shares once costs are counted
    assert spy.reason == "r" and spy.decided_on == DAY and spy.id == f"{DAY.isoformat()}-SPY-buy"
    assert (mc.side, mc.qty) == ("sell", 1.0)  # half of 3 shares, rounded down
    assert cuts == []


def test_sizing_drops_orders_too_small_to_be_worth_it():
    b = brief(cash=1_000.0, prices={"SPY": 600.0, "MC.PA": 50.0, "GLD": 20.0}, positions={"GLD": (1, 20.0)})
    acts = [Action(ticker="SPY", action="buy", percent=50), Action(ticker="MC.PA", action="buy", percent=10),
            Action(ticker="GLD", action="sell", percent=10)]
    orders, cuts = size_orders(acts, b, {"SPY": 1.0, "MC.PA": 1.0, "GLD": 1.0}, min_order_eur=150, whole_shares=True)
    assert orders == []
    reasons = {c.ticker: c.reason for c in cuts}
    assert "does not buy one share" in reasons["SPY"]
    assert "below the minimum order of 150 EUR" in reasons["MC.PA"]
    assert "less than one share" in reasons["GLD"]


def test_closing_a_position_sells_all_of_it_even_below_the_minimum_order():
    b = brief(prices={"GLD": 20.0}, positions={"GLD": (2, 25.0)})
    orders, cuts = size_orders([Action(ticker="GLD", action="sell", percent=100)], b, {"GLD": 1.0}, 150, True)
    assert [(o.side, o.qty) for o in orders] == [("sell", 2.0)] and not cuts
