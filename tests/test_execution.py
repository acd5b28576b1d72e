"""engine.portfolio.execution: next-open fills, as the module docstring promises.

Orders decided after the close of D fill at the next open of their own exchange; a
closed exchange keeps its orders pending. Paris fills before New York; within an
exchange older decisions first, then sells before buys. Cash never goes negative,
nothing is shorted, and every clip or rejection comes with its reason.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.data.calendars import is_session
from engine.portfolio.costs import CostModel, cents
from engine.portfolio.execution import affordable_qty, corporate_actions, execute_pending, floor_qty, quote
from engine.portfolio.ledger import Order, Portfolio, Position, mark

CFG = load_config()
ASSETS = CFG.asset_by_ticker
COSTS = CostModel.from_config(CFG.costs)
FX = 1.10

# A week on which both exchanges trade every day, with the 0.4% FTT in force.
MON, TUE, WED, THU, FRI = (dt.date(2025, 6, d) for d in (2, 3, 4, 5, 6))


def _order(oid: str, ticker: str, side: str, qty: float, decided_on: dt.date = MON) -> Order:
    return Order(id=oid, ticker=ticker, side=side, qty=qty, decided_on=decided_on)


def _portfolio(cash: float, holdings: dict[str, tuple[float, float]] | None = None, pending=()) -> Portfolio:
    """`holdings`: ticker -> (qty, average cost in EUR)."""
    positions = {t: Position(ticker=t, qty=q, cost_eur=cents(q * c)) for t, (q, c) in (holdings or {}).items()}
    return Portfolio(
        starting_capital_eur=10_000.0, cash_eur=cash, positions=positions, pending_orders=tuple(pending)
    )


def _execute(p: Portfolio, d: dt.date, opens: dict[str, float], fx: float = FX, cfg=CFG):
    return execute_pending(p, d, opens, fx, ASSETS, CostModel.from_config(cfg.costs), cfg.portfolio.whole_shares)


# ---------------------------------------------------------------- timing


def test_an_order_waits_until_its_exchange_opens():
    o = _order("o1", "MC.PA", "buy", 3)
    p = _portfolio(10_000.0, pending=[o])
    # Only New York prices: Paris did not open, the order waits.
    res = _execute(p, TUE, {"SPY": 550.0})
    assert res.fills == [] and res.notes == []
    assert res.portfolio.pending_orders == (o,)
    assert res.portfolio.cash_eur == 10_000.0 and res.portfolio.positions == {}
    # A missing (NaN) or zero open is not an open either.
    for bad in (float("nan"), 0.0):
        res = _execute(p, TUE, {"MC.PA": bad})
        assert res.fills == [] and res.portfolio.pending_orders == (o,)
    # Then it fills at the open it was waiting for, dated that day.
    res = _execute(p, WED, {"MC.PA": 700.0})
    assert [(f.ticker, f.side, f.qty, f.date) for f in res.fills] == [("MC.PA", "buy", 3, WED)]
    assert res.fills[0].price_local == pytest.approx(700.0 * 1.0005)
    assert res.portfolio.pending_orders == ()


def test_thanksgiving_us_order_stays_pending_while_paris_fills():
    thanksgiving, friday = dt.date(2024, 11, 28), dt.date(2024, 11, 29)
    assert not is_session("XNYS", thanksgiving) and is_session("XPAR", thanksgiving)
    spy = _order("spy", "SPY", "buy", 5, dt.date(2024, 11, 27))
    lvmh = _order("mc", "MC.PA", "buy", 3, dt.date(2024, 11, 27))
    p = _portfolio(10_000.0, pending=[spy, lvmh])

    res = _execute(p, thanksgiving, {"MC.PA": 650.0})  # no SPY open: NYSE is closed
    assert [f.ticker for f in res.fills] == ["MC.PA"]
    assert res.portfolio.pending_orders == (spy,)
    assert res.portfolio.qty("MC.PA") == 3 and res.portfolio.qty("SPY") == 0

    res2 = _execute(res.portfolio, friday, {"MC.PA": 655.0, "SPY": 600.0})
    assert [(f.ticker, f.date) for f in res2.fills] == [("SPY", friday)]  # MC.PA does not fill twice
    assert res2.portfolio.pending_orders == ()
    assert res2.portfolio.qty("SPY") == 5 and res2.portfolio.qty("MC.PA") == 3


def test_may_day_paris_order_stays_pending_while_new_york_fills():
    may_day = dt.date(2025, 5, 1)
    assert not is_session("XPAR", may_day) and is_session("XNYS", may_day)
    spy = _order("spy", "SPY", "buy", 2, dt.date(2025, 4, 30))
    lvmh = _order("mc", "MC.PA", "buy", 1, dt.date(2025, 4, 30))
    res = _execute(_portfolio(10_000.0, pending=[lvmh, spy]), may_day, {"SPY": 560.0})
    assert [f.ticker for f in res.fills] == ["SPY"]
    assert res.portfolio.pending_orders == (lvmh,)


# ---------------------------------------------------------------- order of fills


def test_paris_fills_before_new_york_even_for_a_newer_decision():
    spy = _order("spy", "SPY", "buy", 5, MON)  # older, but New York opens later
    lvmh = _order("mc", "MC.PA", "buy", 3, TUE)
    res = _execute(_portfolio(3_000.0, pending=[spy, lvmh]), WED, {"SPY": 550.0, "MC.PA": 700.0})
    assert [f.ticker for f in res.fills] == ["MC.PA", "SPY"]
    assert res.fills[0].qty == 3  # Paris got the cash it needed: 2111.55
    # 888.45 EUR left at the New York open: one SPY share (501.25 all-in), not five.
    assert res.fills[1].qty == 1
    assert [(n.ticker, n.outcome, n.requested_qty, n.filled_qty) for n in res.notes] == [("SPY", "clipped", 5, 1)]
    assert res.portfolio.cash_eur == pytest.approx(3_000.0 - 2111.55 - 501.25)


def test_older_decisions_fill_first_within_an_exchange():
    newer = _order("mc", "MC.PA", "buy", 3, TUE)  # first in the book and first alphabetically
    older = _order("tte", "TTE.PA", "buy", 30, MON)  # kept pending over a holiday, say
    res = _execute(_portfolio(2_500.0, pending=[newer, older]), WED, {"MC.PA": 700.0, "TTE.PA": 60.0})
    assert [f.ticker for f in res.fills] == ["TTE.PA"]
    assert res.portfolio.cash_eur == pytest.approx(2_500.0 - 1809.90)
    # 690.10 EUR left: not one LVMH share (704.15 all-in).
    assert [(n.ticker, n.outcome) for n in res.notes] == [("MC.PA", "rejected")]
    assert "insufficient cash" in res.notes[0].reason


def test_a_sale_funds_a_purchase_on_the_same_exchange():
    buy = _order("buy", "MC.PA", "buy", 1)
    sell = _order("sell", "TTE.PA", "sell", 20)
    p = _portfolio(100.0, {"TTE.PA": (20, 55.0)}, pending=[buy, sell])
    res = _execute(p, TUE, {"MC.PA": 700.0, "TTE.PA": 60.0})
    assert [(f.ticker, f.side) for f in res.fills] == [("TTE.PA", "sell"), ("MC.PA", "buy")]
    assert res.notes == []
    assert res.portfolio.qty("MC.PA") == 1 and res.portfolio.qty("TTE.PA") == 0
    assert res.portfolio.cash_eur == pytest.approx(100.0 + 1198.20 - 704.15)


def test_a_us_sale_does_not_fund_a_paris_purchase_the_same_day():
    buy = _order("buy", "MC.PA", "buy", 1)
    sell = _order("sell", "SPY", "sell", 10)
    p = _portfolio(100.0, {"SPY": (10, 480.0)}, pending=[sell, buy])
    res = _execute(p, TUE, {"MC.PA": 700.0, "SPY": 550.0})
    assert [(f.ticker, f.side) for f in res.fills] == [("SPY", "sell")]
    assert [(n.ticker, n.outcome) for n in res.notes] == [("MC.PA", "rejected")]
    assert res.portfolio.qty("MC.PA") == 0
    assert res.portfolio.cash_eur == pytest.approx(100.0 + 4992.50)


# ---------------------------------------------------------------- checks


def test_insufficient_cash_clips_a_buy_to_what_the_cash_pays():
    o = _order("o", "MC.PA", "buy", 10)
    res = _execute(_portfolio(1_500.0, pending=[o]), TUE, {"MC.PA": 700.0})
    (f,) = res.fills
    assert f.qty == 2  # 1407.70 all-in; a third share would need 2111.55
    assert res.portfolio.cash_eur == pytest.approx(1_500.0 - 1407.70)
    (n,) = res.notes
    assert (n.order_id, n.ticker, n.outcome, n.requested_qty, n.filled_qty) == ("o", "MC.PA", "clipped", 10, 2)
    assert "insufficient cash" in n.reason and "1500.00 EUR" in n.reason and "bought 2 of 10" in n.reason
    assert n.as_dict()["reason"] == n.reason and n.as_dict()["outcome"] == "clipped"
    assert res.portfolio.pending_orders == ()  # the rest is not kept for later


def test_a_buy_that_cash_cannot_pay_for_is_rejected():
    o = _order("o", "MC.PA", "buy", 1)
    res = _execute(_portfolio(500.0, pending=[o]), TUE, {"MC.PA": 700.0})
    assert res.fills == []
    (n,) = res.notes
    assert (n.outcome, n.requested_qty, n.filled_qty) == ("rejected", 1, 0.0)
    assert n.reason == "insufficient cash: 500.00 EUR does not buy one share at the open"
    assert res.portfolio.cash_eur == 500.0 and res.portfolio.positions == {}
    assert res.portfolio.pending_orders == ()


def test_selling_more_than_held_sells_the_holding():
    o = _order("o", "CAC.PA", "sell", 8)
    res = _execute(_portfolio(0.0, {"CAC.PA": (5, 70.0)}, pending=[o]), TUE, {"CAC.PA": 75.0})
    (f,) = res.fills
    assert f.qty == 5 and f.cash_flow_eur == pytest.approx(373.81)
    (n,) = res.notes
    assert (n.outcome, n.requested_qty, n.filled_qty) == ("clipped", 8, 5)
    assert n.reason == "only 5 held: sold all of it"
    assert res.portfolio.positions == {}  # nothing shorted
    assert res.portfolio.cash_eur == pytest.approx(373.81)


def test_selling_what_is_not_held_is_rejected():
    o = _order("o", "SPY", "sell", 3)
    p = _portfolio(1_000.0, {"CAC.PA": (5, 70.0)}, pending=[o])
    res = _execute(p, TUE, {"SPY": 550.0})
    assert res.fills == []
    (n,) = res.notes
    assert (n.ticker, n.outcome, n.filled_qty, n.reason) == ("SPY", "rejected", 0.0, "nothing held to sell")
    assert res.portfolio.cash_eur == 1_000.0 and res.portfolio.positions == p.positions


def test_a_sale_whose_proceeds_do_not_cover_the_fees_is_rejected_not_overdrawn():
    # 1 share at 0.50 EUR: the 1.00 EUR minimum commission exceeds the proceeds, and cash is 0.
    o = _order("o", "CAC.PA", "sell", 1)
    res = _execute(_portfolio(0.0, {"CAC.PA": (1, 0.5)}, pending=[o]), TUE, {"CAC.PA": 0.5})
    assert res.fills == []
    (n,) = res.notes
    assert n.outcome == "rejected" and "fees" in n.reason
    assert res.portfolio.cash_eur == 0.0 and res.portfolio.qty("CAC.PA") == 1


def test_a_rejected_sale_carries_no_clipped_note():
    # Sell 2 of the 1 share held, at 0.50 EUR: clipped to 1, whose proceeds (0.50) do not pay
    # the 1.00 EUR minimum commission with no cash: rejected. Nothing is sold.
    o = _order("o", "CAC.PA", "sell", 2)
    res = _execute(_portfolio(0.0, {"CAC.PA": (1, 0.5)}, pending=[o]), TUE, {"CAC.PA": 0.5})
    assert res.fills == [] and res.portfolio.qty("CAC.PA") == 1 and res.portfolio.cash_eur == 0.0
    assert [(n.outcome, n.filled_qty) for n in res.notes] == [("rejected", 0.0)]


def test_usd_trades_convert_at_the_given_fx():
    o = _order("o", "SPY", "buy", 10)
    p = _portfolio(10_000.0, pending=[o])
    at_110 = _execute(p, TUE, {"SPY": 550.0}, fx=1.10).fills[0]
    at_125 = _execute(p, TUE, {"SPY": 550.0}, fx=1.25).fills[0]
    assert (at_110.currency, at_110.fx_eurusd, at_110.price_local) == ("USD", 1.10, pytest.approx(550.275))
    assert at_110.gross_eur == pytest.approx(5002.50)  # 5502.75 USD / 1.10
    assert at_125.gross_eur == pytest.approx(4402.20)  # 5502.75 USD / 1.25: a stronger euro pays less
    assert at_125.fx_eurusd == 1.25
    # Marked at the same USD price and fx, the position's EUR value is qty * open / fx.
    pf = _execute(p, TUE, {"SPY": 550.0}, fx=1.10).portfolio
    assert mark(pf, {"SPY": 550.0 / 1.10}).invested_eur == pytest.approx(5_000.0)


def test_french_ftt_on_french_share_purchases_only():
    pending = [
        _order("b-mc", "MC.PA", "buy", 3),
        _order("s-tte", "TTE.PA", "sell", 10),
        _order("b-cac", "CAC.PA", "buy", 10),
        _order("b-spy", "SPY", "buy", 2),
    ]
    p = _portfolio(10_000.0, {"TTE.PA": (10, 55.0)}, pending=pending)
    res = _execute(p, TUE, {"MC.PA": 700.0, "TTE.PA": 60.0, "CAC.PA": 75.0, "SPY": 550.0})
    tax = {f.order_id: f.tax_eur for f in res.fills}
    assert tax == {"b-mc": pytest.approx(8.40), "s-tte": 0.0, "b-cac": 0.0, "b-spy": 0.0}
    assert res.portfolio.costs.tax_eur == pytest.approx(8.40)


# ---------------------------------------------------------------- corporate actions


def test_dividends_credit_qty_times_dividend_in_eur():
    p = _portfolio(100.0, {"SPY": (10, 480.0), "MC.PA": (5, 690.0)})
    divs = {"SPY": 1.65, "MC.PA": 7.5, "QQQ": 0.60, "TTE.PA": float("nan")}  # QQQ is not held
    p2, fills = corporate_actions(p, TUE, divs, {}, FX, ASSETS)
    got = {f.ticker: (f.side, f.qty, f.cash_flow_eur) for f in fills}
    assert got == {"SPY": ("dividend", 10, pytest.approx(15.00)), "MC.PA": ("dividend", 5, pytest.approx(37.50))}
    assert p2.cash_eur == pytest.approx(100.0 + 15.00 + 37.50)
    assert p2.dividends_eur == pytest.approx(52.50)
    assert p2.positions == p.positions  # a dividend changes neither quantities nor cost basis
    assert p2.costs.total_eur == 0.0


def test_split_multiplies_shares_divides_cost_and_rescales_pending_orders():
    pending = [_order("s", "SPY", "sell", 4), _order("b", "MC.PA", "buy", 3)]
    p = _portfolio(100.0, {"SPY": (10, 500.0)}, pending=pending)
    p2, fills = corporate_actions(p, TUE, {}, {"SPY": 2.0, "MC.PA": 1.0, "QQQ": float("nan")}, FX, ASSETS)
    assert [(f.ticker, f.side) for f in fills] == [("SPY", "split")]
    assert p2.positions["SPY"].qty == 20 and p2.positions["SPY"].avg_cost_eur == pytest.approx(250.0)
    assert p2.positions["SPY"].cost_eur == p.positions["SPY"].cost_eur  # what was paid does not change
    assert p2.cash_eur == 100.0
    assert {o.id: o.qty for o in p2.pending_orders} == {"s": 8, "b": 3}
    # The split creates no value: pre-split 10 x 500 EUR is post-split 20 x 250 EUR.
    assert mark(p2, {"SPY": 250.0}).nav_eur == pytest.approx(mark(p, {"SPY": 500.0}).nav_eur)
    assert mark(p2, {"SPY": 250.0}).unrealised_pnl_eur == pytest.approx(0.0, abs=1e-6)


def test_split_rescales_a_pending_buy_of_a_ticker_not_yet_held():
    # Decided at the pre-split price: 3 shares at ~550 USD. After a 2-for-1 split the same
    # money buys 6 shares; left at 3, the order would buy half of what was decided.
    p = _portfolio(10_000.0, pending=[_order("b", "SPY", "buy", 3)])
    p2, fills = corporate_actions(p, TUE, {"SPY": 1.65}, {"SPY": 2.0}, FX, ASSETS)
    assert p2.pending_orders[0].qty == 6
    assert fills == [] and p2.positions == {}  # no split or dividend booked on shares not held
    assert p2.cash_eur == 10_000.0 and p2.dividends_eur == 0.0


def test_split_keeps_a_whole_share_order_whole():
    pending = [_order("w", "SPY", "buy", 3), _order("f", "SPY", "buy", 2.5)]
    p2, _ = corporate_actions(_portfolio(10_000.0, pending=pending), TUE, {}, {"SPY": 1.5}, FX, ASSETS)
    assert {o.id: o.qty for o in p2.pending_orders} == {"w": 4.0, "f": 3.75}  # 4.5 whole shares: 4


# ---------------------------------------------------------------- affordable quantity


def test_a_clipped_buy_gets_every_share_the_cash_pays_for():
    # 100 CAC.PA at 99.84 cost 9988.99 + 9.99 commission = 9998.98 EUR all-in: 10,000 EUR pays.
    assert -quote(ASSETS["CAC.PA"], "buy", 100, 99.84, FX, COSTS).cash_flow_eur <= 10_000.0
    res = _execute(_portfolio(10_000.0, pending=[_order("o", "CAC.PA", "buy", 200)]), TUE, {"CAC.PA": 99.84})
    assert res.fills[0].qty == 100


@settings(max_examples=200, deadline=None)
@given(
    ticker=st.sampled_from(["MC.PA", "CAC.PA", "SPY"]),
    open_=st.floats(1.0, 900.0).map(lambda x: round(x, 2)),
    cash=st.floats(0.0, 20_000.0).map(lambda x: round(x, 2)),
    fx=st.floats(0.95, 1.25).map(lambda x: round(x, 4)),
    whole=st.booleans(),
)
def test_affordable_qty_is_the_largest_quantity_the_cash_pays_for(ticker, open_, cash, fx, whole):
    a = ASSETS[ticker]
    q = affordable_qty(a, open_, fx, cash, COSTS, whole)
    assert q >= 0
    if whole:
        assert q == int(q)
    if q > 0:
        assert -quote(a, "buy", q, open_, fx, COSTS).cash_flow_eur <= cash
    step = 1.0 if whole else 1e-6
    assert -quote(a, "buy", round(q + step, 6), open_, fx, COSTS).cash_flow_eur > cash


def test_333_3349_buys_three_shares_for_1000_eur_with_no_fees():
    # 3 x 333.3349 = 1,000.0047 EUR, booked to the cent as 1,000.00: the cash pays for 3.
    free = CostModel.from_config(
        CFG.with_overrides(costs={"slippage_bps": 0.0, "commission_bps": 0.0, "commission_min_eur": 0.0}).costs
    )
    assert affordable_qty(ASSETS["CAC.PA"], 333.3349, FX, 1_000.0, free, True) == 3.0
    res = execute_pending(_portfolio(1_000.0, pending=[_order("o", "CAC.PA", "buy", 5)]), TUE,
                          {"CAC.PA": 333.3349}, FX, ASSETS, free, True)
    assert res.fills[0].qty == 3 and res.portfolio.cash_eur == pytest.approx(0.0)


def test_floor_qty():
    assert floor_qty(2.9999999999, True) == 3.0  # float noise is not a lost share
    assert floor_qty(2.7, True) == 2.0
    assert floor_qty(2.7, False) == 2.7
    assert floor_qty(1.23456789, False) == 1.234567


# ---------------------------------------------------------------- property: any day of orders

_TICKERS = ["MC.PA", "TTE.PA", "CAC.PA", "SPY", "QQQ", "GLD"]
_DAY = dt.date(2024, 6, 10)
_DECIDED = [dt.date(2024, 6, 5), dt.date(2024, 6, 6), dt.date(2024, 6, 7)]


def _rank(o: Order) -> tuple:
    """The promised order of fills: Paris first, older decisions first, sells before buys."""
    return (ASSETS[o.ticker].calendar != "XPAR", o.decided_on, o.side != "sell")


@settings(max_examples=200, deadline=None)
@given(
    cash=st.floats(0.0, 15_000.0).map(lambda x: round(x, 2)),
    holdings=st.dictionaries(st.sampled_from(_TICKERS), st.integers(1, 40), max_size=4),
    orders=st.lists(
        st.tuples(
            st.sampled_from(_TICKERS), st.sampled_from(["buy", "sell"]), st.integers(1, 60), st.sampled_from(_DECIDED)
        ),
        max_size=8,
    ),
    opens=st.fixed_dictionaries({t: st.floats(5.0, 800.0).map(lambda x: round(x, 2)) for t in _TICKERS}),
    paris_open=st.booleans(),
    ny_open=st.booleans(),
    fx=st.floats(0.95, 1.25).map(lambda x: round(x, 4)),
)
def test_any_day_of_orders(cash, holdings, orders, opens, paris_open, ny_open, fx):
    pending = [_order(f"o{i}", t, side, q, d) for i, (t, side, q, d) in enumerate(orders)]
    p = _portfolio(cash, {t: (q, opens[t] / 2) for t, q in holdings.items()}, pending=pending)
    is_open = {"XPAR": paris_open, "XNYS": ny_open}
    live = {t: px for t, px in opens.items() if is_open[ASSETS[t].calendar]}
    res = _execute(p, _DAY, live, fx)
    after = res.portfolio

    # Orders of a closed exchange wait, untouched and in their order; the others are done.
    waiting = tuple(o for o in pending if not is_open[ASSETS[o.ticker].calendar])
    assert after.pending_orders == waiting
    due = [o for o in pending if is_open[ASSETS[o.ticker].calendar]]
    by_id = {o.id: o for o in due}
    fills = {f.order_id: f for f in res.fills}
    notes = {n.order_id: n for n in res.notes}
    assert len(fills) == len(res.fills) and len(notes) == len(res.notes)
    for o in due:
        f, n = fills.get(o.id), notes.get(o.id)
        assert f is not None or (n is not None and n.outcome == "rejected"), f"{o.id} vanished"
        if f is not None:
            assert f.side == o.side and f.ticker == o.ticker and f.date == _DAY
            assert f.qty == o.qty or (n is not None and n.outcome == "clipped" and n.filled_qty == f.qty)
            assert f.qty == int(f.qty)
    for n in res.notes:
        o = by_id[n.order_id]
        assert isinstance(n.reason, str) and len(n.reason) > 10, "every clip/reject says why"
        assert n.requested_qty == o.qty and n.ticker == o.ticker
        if n.outcome == "rejected":
            assert n.filled_qty == 0.0 and n.order_id not in fills
        else:
            assert n.outcome == "clipped" and 0 < n.filled_qty < n.requested_qty

    # Fills come in the promised order, and each is booked on what came before it.
    ranks = [_rank(by_id[f.order_id]) for f in res.fills]
    assert ranks == sorted(ranks)
    running_cash = cash
    held = {t: float(q) for t, q in holdings.items()}
    for f in res.fills:
        running_cash = cents(running_cash + f.cash_flow_eur)
        assert running_cash >= 0, "cash never goes negative, not even between fills"
        held[f.ticker] = held.get(f.ticker, 0.0) + (f.qty if f.side == "buy" else -f.qty)
        assert held[f.ticker] >= -1e-9, "nothing is shorted"
        if f.side == "buy" and not ASSETS[f.ticker].ftt:
            assert f.tax_eur == 0.0
    assert after.cash_eur == pytest.approx(running_cash, abs=1e-9)
    assert {t: q for t, q in held.items() if q > 1e-9} == {t: pos.qty for t, pos in after.positions.items()}
