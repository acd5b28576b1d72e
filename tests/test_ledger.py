"""engine.portfolio.ledger, driven through execute_pending as the engine drives it.

The ledger's promises (module docstring): cash is EUR booked to the cent and never
negative; a position's cost basis includes the buy-side costs; selling q of n shares
removes cost * q / n (to the cent) and realises net proceeds - removed cost, so the
average cost of what remains is unchanged; a split changes the quantity, not the cost;
hence, to the cent, nav - starting capital = realised + unrealised + dividends.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.data.calendars import sessions
from engine.portfolio.costs import CostModel, cents
from engine.portfolio.execution import corporate_actions, execute_pending
from engine.portfolio.ledger import Order, Portfolio, book, mark

CFG = load_config()
ASSETS = CFG.asset_by_ticker
TICKERS = ["MC.PA", "CAC.PA", "SPY"]  # a French share (FTT), a French ETF, a US ETF (USD)
CONFIGS = {
    "default": CFG,
    "fractional+fx_fee": CFG.with_overrides(portfolio={"whole_shares": False}, costs={"fx_fee_bps": 25.0}),
}
# Dates on which both Paris and New York trade (every order below finds its exchange
# open), after the French FTT went to 0.4% on 2025-04-01.
DAYS = sorted(
    set(sessions("XPAR", "2025-04-01", "2026-03-31").date) & set(sessions("XNYS", "2025-04-01", "2026-03-31").date)
)
FAST = settings(max_examples=150, deadline=None)
COST_PARTS = ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur")


def _eur(ticker: str, price_local: float, fx: float) -> float:
    return price_local / fx if ASSETS[ticker].currency == "USD" else price_local


def _fill_once(p: Portfolio, k: int, ticker: str, side: str, qty: float, open_: float, fx: float, cfg=CFG):
    """Decide an order after the close of DAYS[k], fill it at the open of DAYS[k + 1]."""
    order = Order(id=f"{k}-{ticker}-{side}", ticker=ticker, side=side, qty=qty, decided_on=DAYS[k])
    p = p.model_copy(update={"pending_orders": (*p.pending_orders, order)})
    res = execute_pending(
        p, DAYS[k + 1], {ticker: open_}, fx, ASSETS, CostModel.from_config(cfg.costs), cfg.portfolio.whole_shares
    )
    return order, res


# ---------------------------------------------------------------- the property test

_price = st.floats(2.0, 900.0).map(lambda x: round(x, 2))
_fx = st.floats(0.95, 1.25).map(lambda x: round(x, 4))
_whole_qty = st.integers(1, 60).map(float)
_frac_qty = st.floats(0.001, 60.0).map(lambda x: round(x, 3))


def _ops(qty):
    # `held`: for a sale, an index into the positions held (None: any ticker, maybe not held),
    # so that most sales are real sales, partial or whole.
    held = st.one_of(st.none(), st.integers(0, 5), st.integers(0, 5))
    trade = st.tuples(
        st.just("trade"), st.sampled_from(TICKERS), st.sampled_from(["buy", "sell"]), qty, _price, _fx, held
    )
    div = st.tuples(st.just("div"), st.sampled_from(TICKERS), st.floats(0.01, 10.0).map(lambda x: round(x, 2)), _fx)
    split = st.tuples(st.just("split"), st.sampled_from(TICKERS), st.sampled_from([2.0, 3.0, 5.0]), _fx)
    return st.lists(st.one_of(trade, trade, trade, trade, trade, div, split), min_size=1, max_size=20)


def _check_trade(before: Portfolio, after: Portfolio, order: Order, res, open_: float, fx: float, cfg) -> None:
    t = order.ticker
    assert after.pending_orders == (), "an order whose exchange opened must not stay pending"
    assert len(res.fills) <= 1
    cash_change = after.cash_eur - before.cash_eur
    if not res.fills:
        # Rejected: nothing moved, and the user is told why, once.
        assert [n.outcome for n in res.notes] == ["rejected"]
        assert all(n.reason for n in res.notes)
        assert after.cash_eur == before.cash_eur
        assert after.positions == before.positions
        if order.side == "sell" and before.qty(t) == 0:
            assert [n.reason for n in res.notes] == ["nothing held to sell"]
        return
    f = res.fills[0]
    assert f.side == order.side and f.ticker == t and f.order_id == order.id
    assert 0 < f.qty <= order.qty
    if f.qty < order.qty:
        assert [n.outcome for n in res.notes] == ["clipped"] and res.notes[0].filled_qty == f.qty
    else:
        assert res.notes == []
    if cfg.portfolio.whole_shares:
        assert f.qty == int(f.qty)
    # The slippage is inside the gross (charged once), relative to the open converted at fx.
    nominal = cents(_eur(t, f.qty * open_, fx))
    fees = f.commission_eur + f.tax_eur + f.fx_fee_eur
    # Each cost is recorded once in the running totals.
    for part in COST_PARTS:
        assert getattr(after.costs, part) == pytest.approx(getattr(before.costs, part) + getattr(f, part), abs=1e-6)
    old = before.positions.get(t)
    if order.side == "buy":
        assert f.gross_eur == pytest.approx(nominal + f.slippage_eur, abs=1e-6)
        assert cash_change == pytest.approx(-(f.gross_eur + fees), abs=1e-6)
        assert f.cash_flow_eur == pytest.approx(cash_change, abs=1e-6)
        if ASSETS[t].ftt:
            assert f.tax_eur == pytest.approx(cents(f.gross_eur * cfg.costs.french_ftt_rate_on(f.date)))
        else:
            assert f.tax_eur == 0.0
        # The cost basis includes every buy-side cost: the position cost what the cash paid.
        new = after.positions[t]
        old_cost = old.cost_eur if old else 0.0
        assert new.qty == pytest.approx((old.qty if old else 0.0) + f.qty, abs=1e-9)
        assert new.cost_eur == pytest.approx(old_cost - cash_change, abs=1e-6)
        assert new.avg_cost_eur == pytest.approx(new.cost_eur / new.qty)
        if old is None:
            assert new.avg_cost_eur > _eur(t, open_, fx)  # costs make a share cost more than its open
        assert after.realised_pnl_eur == before.realised_pnl_eur
    else:
        assert old is not None
        assert f.qty == pytest.approx(min(order.qty, old.qty), abs=1e-9), "a sale is clipped to the holding"
        assert f.tax_eur == 0.0, "no FTT on sales"
        assert f.gross_eur == pytest.approx(nominal - f.slippage_eur, abs=1e-6)
        assert cash_change == pytest.approx(f.gross_eur - fees, abs=1e-6)
        # Realised = net proceeds - qty * average cost (the removed cost is booked to the cent).
        removed = old.cost_eur if f.qty >= old.qty - 1e-9 else cents(old.cost_eur * f.qty / old.qty)
        assert f.realised_pnl_eur == pytest.approx(cents(f.cash_flow_eur - removed), abs=1e-9)
        assert f.realised_pnl_eur == pytest.approx(f.cash_flow_eur - f.qty * old.avg_cost_eur, abs=0.005 + 1e-9)
        assert after.realised_pnl_eur == pytest.approx(before.realised_pnl_eur + f.realised_pnl_eur, abs=1e-6)
        left = after.positions.get(t)
        if f.qty < old.qty - 1e-9:
            assert left is not None and left.qty == pytest.approx(old.qty - f.qty, abs=1e-9)
            assert left.cost_eur == pytest.approx(old.cost_eur - removed, abs=1e-9)
            # A partial sale leaves the average cost unchanged (up to the cent of the basis).
            assert left.avg_cost_eur == pytest.approx(old.avg_cost_eur, abs=0.005 / left.qty + 1e-9)
        else:
            assert left is None, "a position sold out is closed"


def _check_invariants(p: Portfolio, prices_eur: dict[str, float], fills: list, capital: float, cfg) -> None:
    assert p.cash_eur >= 0
    assert p.cash_eur == cents(p.cash_eur)
    for t, pos in p.positions.items():
        assert pos.qty > 0
        if cfg.portfolio.whole_shares:
            assert pos.qty == int(pos.qty), f"{t}: whole shares only"
    val = mark(p, prices_eur)
    expected_nav = p.cash_eur + sum(pos.qty * prices_eur[t] for t, pos in p.positions.items())
    assert val.nav_eur == pytest.approx(expected_nav, rel=1e-12, abs=1e-9)
    # The P&L attribution is exact to the cent (the residue is float noise only).
    attribution = p.realised_pnl_eur + val.unrealised_pnl_eur + p.dividends_eur
    assert val.nav_eur - capital == pytest.approx(attribution, abs=1e-6)
    for t, pos in p.positions.items():
        assert pos.cost_eur == cents(pos.cost_eur), f"{t}: the cost basis is booked to the cent"
    for part in COST_PARTS:
        assert getattr(p.costs, part) == pytest.approx(sum(getattr(f, part) for f in fills), abs=1e-6)
    assert p.dividends_eur == pytest.approx(sum(f.cash_flow_eur for f in fills if f.side == "dividend"), abs=1e-6)
    assert p.realised_pnl_eur == pytest.approx(sum(f.realised_pnl_eur for f in fills), abs=1e-6)
    # Cash is the starting capital plus every booked cash flow, nothing else.
    assert p.cash_eur == pytest.approx(cents(capital) + sum(f.cash_flow_eur for f in fills), abs=1e-6)


def _run(cfg, ops, capital: float) -> None:
    p = Portfolio.initial(capital)
    prices_eur: dict[str, float] = {}
    all_fills: list = []
    for k, op in enumerate(ops):
        before = p
        t = op[1]
        if op[0] == "trade":
            _, t, side, qty, open_, fx, held = op
            if side == "sell" and held is not None and p.positions:
                t = sorted(p.positions)[held % len(p.positions)]
            order, res = _fill_once(p, k, t, side, qty, open_, fx, cfg)
            p = res.portfolio
            prices_eur[t] = _eur(t, open_, fx)
            _check_trade(before, p, order, res, open_, fx, cfg)
            new_fills = res.fills
        elif op[0] == "div":
            _, t, div, fx = op
            p, new_fills = corporate_actions(p, DAYS[k + 1], {t: div}, {}, fx, ASSETS)
            held = before.qty(t)
            expected = cents(_eur(t, held * div, fx)) if held else 0.0
            assert p.cash_eur == pytest.approx(before.cash_eur + expected, abs=1e-6)
            assert p.dividends_eur == pytest.approx(before.dividends_eur + expected, abs=1e-6)
            assert p.positions == before.positions
        else:
            _, t, ratio, fx = op
            p, new_fills = corporate_actions(p, DAYS[k + 1], {}, {t: ratio}, fx, ASSETS)
            assert p.cash_eur == before.cash_eur
            if t in before.positions:
                assert p.qty(t) == pytest.approx(before.qty(t) * ratio)
                assert p.positions[t].cost_eur == before.positions[t].cost_eur  # a split changes no cost
                assert p.positions[t].avg_cost_eur == pytest.approx(before.positions[t].avg_cost_eur / ratio)
                prices_eur[t] /= ratio  # the market price splits too
                # A split creates no value: the position is worth the same.
                assert p.qty(t) * prices_eur[t] == pytest.approx(before.qty(t) * prices_eur[t] * ratio)
            else:
                assert new_fills == []
        all_fills += new_fills
        _check_invariants(p, prices_eur, all_fills, capital, cfg)


@FAST
@given(ops=_ops(_whole_qty), capital=st.sampled_from([10_000.0, 2_500.0, 50_000.0]))
def test_ledger_invariants_whole_shares(ops, capital):
    _run(CONFIGS["default"], ops, capital)


@FAST
@given(ops=_ops(_frac_qty), capital=st.sampled_from([10_000.0, 2_500.0]))
def test_ledger_invariants_fractional_with_fx_fee(ops, capital):
    _run(CONFIGS["fractional+fx_fee"], ops, capital)


@FAST
@given(
    ticker=st.sampled_from(TICKERS),
    qty=st.integers(1, 500).map(float),
    open_=_price,
    fx=_fx,
    cfg_name=st.sampled_from(sorted(CONFIGS)),
)
def test_round_trip_at_the_same_open_loses_exactly_the_costs(ticker, qty, open_, fx, cfg_name):
    cfg = CONFIGS[cfg_name]
    capital = 1_000_000.0
    p = Portfolio.initial(capital)
    _, buy = _fill_once(p, 0, ticker, "buy", qty, open_, fx, cfg)
    _, sell = _fill_once(buy.portfolio, 1, ticker, "sell", qty, open_, fx, cfg)
    fills = buy.fills + sell.fills
    assert [f.side for f in fills] == ["buy", "sell"] and [f.qty for f in fills] == [qty, qty]
    p = sell.portfolio
    recorded = sum(f.costs_eur for f in fills)
    assert recorded > 0
    assert capital - p.cash_eur == pytest.approx(recorded, abs=1e-6)
    assert p.costs.total_eur == pytest.approx(recorded, abs=1e-6)
    assert p.positions == {}
    # The realised loss is exactly the costs.
    assert p.realised_pnl_eur == pytest.approx(-recorded, abs=1e-6)


# ---------------------------------------------------------------- hand-checked cases


def test_average_cost_includes_buy_costs_and_survives_a_partial_sale():
    p = Portfolio.initial(10_000.0)
    _, r1 = _fill_once(p, 0, "MC.PA", "buy", 3, 700.0, 1.10)
    # 3 * 700.35 = 2101.05, + commission 2.10 + FTT 8.40 = 2111.55
    assert r1.portfolio.cash_eur == pytest.approx(10_000.0 - 2111.55)
    assert r1.portfolio.positions["MC.PA"].cost_eur == pytest.approx(2111.55)
    assert r1.portfolio.positions["MC.PA"].avg_cost_eur == pytest.approx(2111.55 / 3)

    _, r2 = _fill_once(r1.portfolio, 1, "MC.PA", "buy", 2, 720.0, 1.10)
    # 2 * 720.36 = 1440.72, + commission 1.44 + FTT 5.76 = 1447.92
    assert r2.fills[0].cash_flow_eur == pytest.approx(-1447.92)
    avg = (2111.55 + 1447.92) / 5  # 3559.47 / 5 = 711.894
    assert r2.portfolio.positions["MC.PA"].cost_eur == pytest.approx(3559.47)
    assert r2.portfolio.positions["MC.PA"].avg_cost_eur == pytest.approx(avg)

    _, r3 = _fill_once(r2.portfolio, 2, "MC.PA", "sell", 2, 750.0, 1.10)
    # 2 * 749.625 = 1499.25, - commission 1.50 (1.49925), no FTT on a sale = 1497.75
    f = r3.fills[0]
    assert f.cash_flow_eur == pytest.approx(1497.75)
    assert f.tax_eur == 0.0
    # Removed cost: 2/5 of 3559.47 = 1423.788 -> 1423.79; realised 1497.75 - 1423.79 = 73.96
    assert f.realised_pnl_eur == pytest.approx(73.96)
    assert r3.portfolio.realised_pnl_eur == pytest.approx(73.96)
    pos = r3.portfolio.positions["MC.PA"]
    assert pos.qty == 3
    assert pos.cost_eur == pytest.approx(2135.68)
    assert pos.avg_cost_eur == pytest.approx(avg, abs=0.001)  # 711.8933: unchanged, to the cent of the basis
    # What remains, at 750: unrealised = 3 * 750 - 2135.68; the identity holds to the cent.
    val = mark(r3.portfolio, {"MC.PA": 750.0})
    assert val.unrealised_pnl_eur == pytest.approx(2250.0 - 2135.68)
    assert val.nav_eur - 10_000.0 == pytest.approx(r3.portfolio.realised_pnl_eur + val.unrealised_pnl_eur, abs=1e-9)


def test_usd_buy_books_every_cost_once():
    cfg = CFG.with_overrides(costs={"fx_fee_bps": 25.0})
    _, r = _fill_once(Portfolio.initial(10_000.0), 0, "SPY", "buy", 10, 550.0, 1.10, cfg)
    p = r.portfolio
    # 5502.75 USD / 1.10 = 5002.50 EUR, + commission 5.00 + FX fee 12.51; slippage 2.50 is inside
    assert p.cash_eur == pytest.approx(10_000.0 - 5020.01)
    assert p.costs.slippage_eur == pytest.approx(2.50)
    assert p.costs.commission_eur == pytest.approx(5.00)
    assert p.costs.fx_fee_eur == pytest.approx(12.51)
    assert p.costs.tax_eur == 0.0
    assert p.costs.total_eur == pytest.approx(20.01)
    assert p.positions["SPY"].cost_eur == pytest.approx(5020.01)
    assert p.positions["SPY"].avg_cost_eur == pytest.approx(502.001)
    # Marked at the open (500 EUR), the position shows exactly the costs as a loss.
    val = mark(p, {"SPY": 500.0})
    assert val.nav_eur == pytest.approx(10_000.0 - 20.01)
    assert val.unrealised_pnl_eur == pytest.approx(-20.01, abs=1e-5)


def test_whole_shares_by_default_fractions_when_configured():
    frac = CFG.with_overrides(portfolio={"whole_shares": False})
    _, r = _fill_once(Portfolio.initial(10_000.0), 0, "CAC.PA", "buy", 2.5, 80.0, 1.10, frac)
    assert r.fills[0].qty == 2.5 and r.portfolio.qty("CAC.PA") == 2.5
    # Clipped by cash: whole shares by default ...
    _, whole = _fill_once(Portfolio.initial(1_000.0), 0, "CAC.PA", "buy", 50, 75.0, 1.10)
    assert whole.fills[0].qty == 13  # 13 * 75.0375 + 1.00 = 976.49; 14 shares cost 1050.53 + 1.05
    assert whole.portfolio.cash_eur == pytest.approx(1_000.0 - 976.49)
    # ... a fraction when configured, spending (nearly) all the cash
    _, part = _fill_once(Portfolio.initial(1_000.0), 0, "CAC.PA", "buy", 50, 75.0, 1.10, frac)
    q = part.fills[0].qty
    assert q != int(q) and 13 < q < 14
    assert 0 <= part.portfolio.cash_eur < 1_000.0 - 976.49


def test_book_refuses_negative_cash_and_overselling():
    p = Portfolio.initial(100.0)
    _, r = _fill_once(p, 0, "CAC.PA", "buy", 1, 80.0, 1.10)
    p = r.portfolio
    too_big = r.fills[0].model_copy(update={"cash_flow_eur": -1_000.0})
    with pytest.raises(ValueError, match="negative"):
        book(p, too_big)
    oversell = r.fills[0].model_copy(update={"side": "sell", "qty": 2.0, "cash_flow_eur": 150.0})
    with pytest.raises(ValueError, match="cannot sell"):
        book(p, oversell)


def test_mark_refuses_a_held_position_without_price():
    _, r = _fill_once(Portfolio.initial(10_000.0), 0, "CAC.PA", "buy", 1, 80.0, 1.10)
    with pytest.raises(ValueError, match="CAC.PA"):
        mark(r.portfolio, {})
    with pytest.raises(ValueError, match="CAC.PA"):
        mark(r.portfolio, {"CAC.PA": float("nan")})
    assert mark(Portfolio.initial(10_000.0), {}).nav_eur == 10_000.0
