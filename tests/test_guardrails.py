"""Guardrails only shrink risk, and each limit holds after them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.portfolio.ledger import Order
from engine.risk.cvar import portfolio_cvar
from engine.risk.guardrails import Book, Limits, apply_guardrails
from tests.helpers import DAY

G = load_config().guardrails
TICKERS = ["A", "B", "C"]


def returns(seed: int = 0, n: int = 250, vol=(0.02, 0.015, 0.01)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_t(4, size=(n, len(vol))) * np.array(vol) / np.sqrt(2)


def book(qty: dict[str, float], cash: float, nav: float | None = None, r: np.ndarray | None = None) -> Book:
    prices = {"A": 100.0, "B": 50.0, "C": 20.0}
    nav = nav if nav is not None else cash + sum(q * prices[t] for t, q in qty.items())
    return Book(nav_eur=nav, cash_eur=cash, qty=qty, prices_eur=prices, buy_cost_factor=dict.fromkeys(prices, 1.0),
                sell_net_factor=dict.fromkeys(prices, 1.0), returns=returns() if r is None else r,
                returns_tickers=TICKERS, cvar_level=0.95)


def buy(t: str, q: float) -> Order:
    return Order(id=f"b-{t}", ticker=t, side="buy", qty=q, decided_on=DAY)


def sell(t: str, q: float) -> Order:
    return Order(id=f"s-{t}", ticker=t, side="sell", qty=q, decided_on=DAY)


def guard(orders, b, dd=0.0, **limits):
    lim = Limits.for_drawdown(G, dd)
    if limits:
        lim = Limits(**{**lim.__dict__, **limits})
    return apply_guardrails(DAY, orders, b, lim, G, min_order_eur=0.0, whole_shares=True)


def test_a_buy_is_capped_at_the_maximum_weight():
    out, cuts = guard([buy("A", 30)], book({}, 10_000), cvar_budget=1.0)
    assert [(o.ticker, o.qty) for o in out] == [("A", 20.0)]  # 20% of 10,000 at 100
    assert cuts[0].stage == "guardrail:max_weight" and "maximum weight of 20%" in cuts[0].reason


def test_an_overweight_position_is_trimmed_only_beyond_the_tolerance():
    out, _ = guard([], book({"A": 21}, 7_900), cvar_budget=1.0)  # 21%: within 20% + 2%
    assert out == []
    out, cuts = guard([], book({"A": 30}, 7_000), cvar_budget=1.0)  # 30%
    assert [(o.ticker, o.side, o.qty) for o in out] == [("A", "sell", 10.0)]
    assert "weight 30.0% above the maximum of 20%" in cuts[0].reason


def test_the_exposure_cap_falls_with_drawdown_and_cuts_buys():
    lim_0, lim_15 = Limits.for_drawdown(G, 0.0), Limits.for_drawdown(G, -0.15)
    assert lim_0.exposure_cap == pytest.approx(0.95)
    assert lim_15.exposure_cap == pytest.approx(0.95 * (1 - 0.75**2))  # about 41.6%
    orders = [buy("A", 20), buy("B", 40), buy("C", 100)]  # 20% each of a 10,000 NAV
    out, cuts = guard(orders, book({}, 10_000), dd=-0.15, cvar_budget=1.0)
    invested = sum(o.qty * {"A": 100, "B": 50, "C": 20}[o.ticker] for o in out)
    assert invested <= lim_15.exposure_cap * 10_000 + 1e-9
    assert invested > 0.35 * 10_000  # cut to the cap, not to nothing
    assert all(c.stage == "guardrail:exposure" for c in cuts)


def test_the_cash_reserve_is_kept():
    out, cuts = guard([buy("A", 10), buy("B", 18)], book({"C": 400}, 2_000), cvar_budget=1.0, max_weight=1.0, exposure_cap=1.0)
    spent = sum(o.qty * {"A": 100, "B": 50}[o.ticker] for o in out)
    assert 2_000 - spent >= 0.05 * 10_000
    assert any(c.stage == "guardrail:min_cash" for c in cuts)


def test_buys_are_scaled_to_the_cvar_budget():
    r = returns(vol=(0.03, 0.03, 0.03))
    out, cuts = guard([buy("A", 60)], book({}, 10_000, r=r), max_weight=1.0, exposure_cap=1.0)
    w = np.array([out[0].qty * 100 / 10_000, 0, 0]) if out else np.zeros(3)
    assert portfolio_cvar(r, w, 0.95) <= G.cvar_budget + 1e-12
    assert out and out[0].qty < 60 and cuts[0].stage == "guardrail:cvar"
    # One more share would have broken the budget: the cut is as small as it can be.
    w_plus = w + np.array([100 / 10_000, 0, 0])
    assert portfolio_cvar(r, w_plus, 0.95) > G.cvar_budget


def test_a_portfolio_far_over_the_cvar_budget_is_trimmed_back():
    r = returns(vol=(0.05, 0.05, 0.05))
    out, cuts = guard([], book({"A": 50}, 5_000, r=r), max_weight=1.0, exposure_cap=1.0)
    assert [o.side for o in out] == ["sell"]
    left = 50 - out[0].qty
    assert portfolio_cvar(r, np.array([left * 100 / 10_000, 0, 0]), 0.95) <= G.cvar_budget * 1.0001
    assert "above the budget" in cuts[0].reason


@settings(max_examples=150, deadline=None)
@given(
    held=st.dictionaries(st.sampled_from(TICKERS), st.integers(1, 200), max_size=3),
    cash=st.floats(0, 20_000),
    wants=st.dictionaries(st.sampled_from(TICKERS), st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 300)), max_size=3),
    dd=st.floats(-0.5, 0.0),
)
def test_guardrails_never_add_a_buy_nor_cut_a_sell(held, cash, wants, dd):
    held_f = {t: float(q) for t, q in held.items()}
    orders = [buy(t, q) if side == "buy" else sell(t, q) for t, (side, q) in wants.items()
              if side == "buy" or t in held]
    orders = [o if o.side == "buy" else o.model_copy(update={"qty": min(o.qty, held_f[o.ticker])}) for o in orders]
    out, cuts = guard(orders, book(held_f, cash), dd=dd)
    before = {(o.ticker, o.side): o.qty for o in orders}
    for o in out:
        if o.side == "buy":
            assert o.qty <= before.get((o.ticker, "buy"), 0.0)
        else:
            assert o.qty >= before.get((o.ticker, "sell"), 0.0)
            assert o.qty <= held_f[o.ticker]
    for (t, side), q in before.items():
        if side == "sell":
            assert any(o.ticker == t and o.side == "sell" and o.qty >= q for o in out)
    assert all(c.reason for c in cuts)
