"""engine.portfolio.costs: each cost part alone against hand computations, then composed
by `quote` as a paper broker charges them. Every EUR amount is booked to the cent."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.portfolio.costs import Commission, CostModel, FrenchFTT, FxConversion, Slippage, cents
from engine.portfolio.execution import quote

CFG = load_config()
ASSETS = CFG.asset_by_ticker
COSTS = CostModel.from_config(CFG.costs)
FAST = settings(max_examples=200, deadline=None)


def _is_cent(x: float) -> bool:
    return abs(x * 100 - round(x * 100)) < 1e-6


# ---------------------------------------------------------------- cents


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.125, 0.13),  # banker's rounding would give 0.12
        (-0.125, -0.13),
        (2.675, 2.68),  # 2.675 is 2.67499999... in binary: a broker still books 2.68
        (1.005, 1.01),
        (0.995, 1.00),
        (-0.995, -1.00),
        (0.994, 0.99),
        (12.344999, 12.34),
        (0.004, 0.0),
        (0.005, 0.01),
        (-0.005, -0.01),
        (0.0, 0.0),
        (1_000_000.005, 1_000_000.01),
        (1234.5, 1234.5),
    ],
)
def test_cents_rounds_half_away_from_zero(x, expected):
    assert cents(x) == pytest.approx(expected, abs=1e-12)


@FAST
@given(n=st.integers(0, 10**6), frac=st.floats(-0.0049, 0.0049))
def test_cents_rounds_to_the_nearest_cent(n, frac):
    x = n / 100 + frac
    assert cents(x) == pytest.approx(n / 100, abs=1e-9)
    assert cents(-x) == pytest.approx(-n / 100, abs=1e-9)


@FAST
@given(n=st.integers(0, 10**6))
def test_cents_half_cent_goes_up_in_magnitude(n):
    x = (n + 0.5) / 100
    assert cents(x) == pytest.approx((n + 1) / 100, abs=1e-9)
    assert cents(-x) == pytest.approx(-(n + 1) / 100, abs=1e-9)


@FAST
@given(x=st.floats(-1e6, 1e6, allow_nan=False))
def test_cents_is_symmetric_idempotent_and_close(x):
    c = cents(x)
    assert _is_cent(c)
    assert abs(c - x) <= 0.005 + 1e-9
    assert cents(-x) == -c
    assert cents(c) == c


# ---------------------------------------------------------------- slippage


def test_slippage_buyer_pays_more_seller_gets_less():
    s = Slippage(5.0)
    assert s.fill_price(100.0, "buy") == pytest.approx(100.05)
    assert s.fill_price(100.0, "sell") == pytest.approx(99.95)
    assert Slippage(0.0).fill_price(123.45, "buy") == 123.45
    assert Slippage(0.0).fill_price(123.45, "sell") == 123.45
    assert Slippage(100.0).fill_price(50.0, "buy") == pytest.approx(50.5)
    assert Slippage(100.0).fill_price(50.0, "sell") == pytest.approx(49.5)


@FAST
@given(open_=st.floats(0.01, 1e5), bps=st.floats(0.0, 1000.0))
def test_slippage_is_always_adverse_and_symmetric(open_, bps):
    s = Slippage(bps)
    buy, sell = s.fill_price(open_, "buy"), s.fill_price(open_, "sell")
    assert sell <= open_ <= buy
    tol = open_ * 1e-12  # float resolution at this price
    assert buy - open_ == pytest.approx(open_ - sell, rel=1e-9, abs=tol)
    assert buy - open_ == pytest.approx(open_ * bps / 10_000, rel=1e-9, abs=tol)


# ---------------------------------------------------------------- commission


@pytest.mark.parametrize(
    ("notional", "expected"),
    [
        (10_000.0, 10.00),  # 10 bps
        (2_000.0, 2.00),
        (1_000.0, 1.00),  # 10 bps is exactly the minimum
        (500.0, 1.00),  # 0.50 is below the minimum: the minimum is charged
        (1.0, 1.00),
        (1_234.5, 1.23),  # 1.2345 -> 1.23
        (1_235.0, 1.24),  # 1.235 -> 1.24, half away from zero
        (123_456.0, 123.46),
    ],
)
def test_commission_bps_with_minimum(notional, expected):
    assert Commission(10.0, 1.0).fee_eur(notional) == pytest.approx(expected, abs=1e-12)


def test_commission_without_minimum_and_zero_rate():
    assert Commission(10.0, 0.0).fee_eur(500.0) == pytest.approx(0.50)
    assert Commission(0.0, 0.0).fee_eur(10_000.0) == 0.0
    assert Commission(0.0, 2.5).fee_eur(10_000.0) == 2.5


@FAST
@given(notional=st.floats(0.0, 1e6), bps=st.floats(0.0, 100.0), minimum=st.floats(0.0, 20.0))
def test_commission_is_at_least_the_minimum_and_booked_to_the_cent(notional, bps, minimum):
    fee = Commission(bps, minimum).fee_eur(notional)
    assert _is_cent(fee)
    assert fee >= cents(minimum) - 1e-9
    assert fee == pytest.approx(max(minimum, notional * bps / 10_000), abs=0.005 + 1e-9)


# ---------------------------------------------------------------- French FTT


FLAT_04 = FrenchFTT(((dt.date.min, 0.004),))


def test_ftt_on_purchases_only():
    ftt = FLAT_04
    assert ftt.tax_eur(10_000.0, "buy", True) == pytest.approx(40.00)
    assert ftt.tax_eur(1_234.56, "buy", True) == pytest.approx(4.94)  # 4.93824
    assert ftt.tax_eur(10_000.0, "sell", True) == 0.0  # sales are exempt
    assert ftt.tax_eur(10_000.0, "buy", False) == 0.0  # not a French share
    assert ftt.tax_eur(10_000.0, "sell", False) == 0.0


def test_ftt_flags_the_french_shares_and_no_etf():
    taxed = {a.ticker for a in CFG.assets if a.ftt}
    assert "MC.PA" in taxed
    for a in CFG.assets:
        if a.ftt:
            assert a.kind == "stock" and a.currency == "EUR" and a.calendar == "XPAR", a.ticker
        if a.kind == "etf":
            assert not a.ftt, f"{a.ticker} is an ETF: exempt from the French FTT"
    assert not ASSETS["CAC.PA"].ftt
    assert not ASSETS["SPY"].ftt


def test_airbus_is_not_taxed_its_registered_office_is_in_the_netherlands():
    assert not ASSETS["AIR.PA"].ftt
    buy = quote(ASSETS["AIR.PA"], "buy", 10, 150.0, 1.10, COSTS, dt.date(2025, 6, 2))
    assert buy.tax_eur == 0.0
    assert quote(ASSETS["SAF.PA"], "buy", 10, 150.0, 1.10, COSTS, dt.date(2025, 6, 2)).tax_eur > 0  # Safran is French


@pytest.mark.parametrize(
    ("day", "rate"),
    [
        (dt.date(2012, 7, 31), 0.0),  # before the tax existed
        (dt.date(2012, 8, 1), 0.002),
        (dt.date(2016, 12, 30), 0.002),
        (dt.date(2017, 1, 2), 0.003),
        (dt.date(2025, 3, 31), 0.003),
        (dt.date(2025, 4, 1), 0.004),
        (None, 0.004),  # an undated what-if: the latest rate
    ],
)
def test_ftt_rate_follows_the_dated_schedule(day, rate):
    assert COSTS.tax.rate_on(day) == rate
    assert CFG.costs.french_ftt_rate_on(day) == rate
    # 10 MC.PA at 700 EUR, no slippage: the tax is the rate of the purchase date on 7,000 EUR.
    c = CostModel.from_config(CFG.with_overrides(costs={"slippage_bps": 0.0}).costs)
    assert quote(ASSETS["MC.PA"], "buy", 10, 700.0, 1.10, c, day).tax_eur == pytest.approx(cents(7_000.0 * rate))


def test_each_ftt_rate_cites_its_law():
    assert all(r.source for r in CFG.costs.french_ftt)


def test_a_flat_ftt_rate_override_applies_on_every_date():
    c = CFG.with_overrides(costs={"french_ftt_rate": 0.001}).costs
    assert c.french_ftt_rate_on(dt.date(2001, 1, 2)) == 0.001 and c.french_ftt_rate == 0.001


def test_an_unsorted_ftt_schedule_is_a_config_error():
    from engine.errors import ConfigError

    with pytest.raises(ConfigError):
        CFG.with_overrides(costs={"french_ftt": [{"since": dt.date(2017, 1, 1), "rate": 0.003},
                                                 {"since": dt.date(2012, 8, 1), "rate": 0.002}]})


def test_ftt_charged_by_quote_on_a_french_share_purchase_only():
    buy = quote(ASSETS["MC.PA"], "buy", 3, 700.0, 1.10, COSTS)
    assert buy.tax_eur == pytest.approx(cents(buy.gross_eur * 0.004))
    assert buy.tax_eur == pytest.approx(8.40)  # 2101.05 * 0.004 = 8.4042
    assert quote(ASSETS["MC.PA"], "sell", 3, 700.0, 1.10, COSTS).tax_eur == 0.0
    assert quote(ASSETS["CAC.PA"], "buy", 40, 75.0, 1.10, COSTS).tax_eur == 0.0  # a French ETF
    assert quote(ASSETS["SPY"], "buy", 10, 550.0, 1.10, COSTS).tax_eur == 0.0


# ---------------------------------------------------------------- FX


def test_fx_orientation_eurusd_is_usd_per_euro():
    fx = FxConversion(0.0)
    assert fx.to_eur(110.0, "USD", 1.10) == pytest.approx(100.0)
    assert fx.to_eur(100.0, "USD", 1.25) == pytest.approx(80.0)  # a stronger euro buys more dollars
    assert fx.to_eur(110.0, "EUR", 1.10) == 110.0  # EUR amounts are not converted


def test_fx_fee_only_on_non_eur_trades():
    assert FxConversion(25.0).fee_eur(1_000.0, "USD") == pytest.approx(2.50)
    assert FxConversion(25.0).fee_eur(1_000.0, "EUR") == 0.0
    assert FxConversion(0.0).fee_eur(1_000.0, "USD") == 0.0
    assert FxConversion(25.0).fee_eur(1_234.0, "USD") == pytest.approx(3.09)  # 3.085 -> 3.09


# ---------------------------------------------------------------- composed


def test_cost_model_reads_the_configured_rates():
    assert COSTS == CostModel(Slippage(5.0), Commission(10.0, 1.0), FrenchFTT(
        ((dt.date(2012, 8, 1), 0.002), (dt.date(2017, 1, 1), 0.003), (dt.date(2025, 4, 1), 0.004))
    ), FxConversion(0.0))
    c = CostModel.from_config(CFG.with_overrides(costs={"fx_fee_bps": 25.0, "commission_min_eur": 2.0}).costs)
    assert c.fx.fee_bps == 25.0 and c.commission.min_eur == 2.0 and c.slippage.bps == 5.0


def test_buy_cost_factor():
    assert COSTS.buy_cost_factor(False, "EUR") == pytest.approx(1.0015)  # CAC.PA: slippage + commission
    assert COSTS.buy_cost_factor(True, "EUR") == pytest.approx(1.0055)  # MC.PA: + 0.4% FTT
    c = CostModel.from_config(CFG.with_overrides(costs={"fx_fee_bps": 25.0}).costs)
    assert c.buy_cost_factor(False, "USD") == pytest.approx(1.004)  # SPY: + FX fee
    assert c.buy_cost_factor(False, "EUR") == pytest.approx(1.0015)  # no FX fee in EUR


def test_quote_usd_buy_by_hand():
    costs = CostModel.from_config(CFG.with_overrides(costs={"fx_fee_bps": 25.0}).costs)
    q = quote(ASSETS["SPY"], "buy", 10, 550.0, 1.10, costs)
    assert q.price_local == pytest.approx(550.275)  # 5 bps above the open
    assert q.gross_eur == pytest.approx(5002.50)  # 5502.75 USD / 1.10
    assert q.slippage_eur == pytest.approx(2.50)  # vs 5000.00 EUR at the open
    assert q.commission_eur == pytest.approx(5.00)  # 5.0025
    assert q.tax_eur == 0.0
    assert q.fx_fee_eur == pytest.approx(12.51)  # 12.50625
    assert q.cash_flow_eur == pytest.approx(-5020.01)  # slippage is inside the gross, charged once


def test_quote_usd_sell_by_hand():
    costs = CostModel.from_config(CFG.with_overrides(costs={"fx_fee_bps": 25.0}).costs)
    q = quote(ASSETS["SPY"], "sell", 10, 550.0, 1.10, costs)
    assert q.price_local == pytest.approx(549.725)
    assert q.gross_eur == pytest.approx(4997.50)
    assert q.slippage_eur == pytest.approx(2.50)
    assert q.commission_eur == pytest.approx(5.00)  # 4.9975
    assert q.fx_fee_eur == pytest.approx(12.49)  # 12.49375
    assert q.cash_flow_eur == pytest.approx(4980.01)


def test_quote_french_share_buy_by_hand():
    q = quote(ASSETS["MC.PA"], "buy", 3, 700.0, 1.10, COSTS)
    assert q.gross_eur == pytest.approx(2101.05)
    assert q.slippage_eur == pytest.approx(1.05)
    assert q.commission_eur == pytest.approx(2.10)
    assert q.tax_eur == pytest.approx(8.40)
    assert q.fx_fee_eur == 0.0  # EUR: the fx rate is irrelevant
    assert q.cash_flow_eur == pytest.approx(-2111.55)
    assert quote(ASSETS["MC.PA"], "buy", 3, 700.0, 0.5, COSTS).cash_flow_eur == q.cash_flow_eur


@FAST
@given(
    ticker=st.sampled_from(["SPY", "MC.PA", "CAC.PA"]),
    side=st.sampled_from(["buy", "sell"]),
    qty=st.integers(1, 500),
    open_=st.floats(1.0, 1000.0),
    fx=st.floats(0.8, 1.5),
    fx_bps=st.sampled_from([0.0, 25.0]),
)
def test_quote_parts_are_cents_and_add_up(ticker, side, qty, open_, fx, fx_bps):
    costs = CostModel.from_config(CFG.with_overrides(costs={"fx_fee_bps": fx_bps}).costs)
    a = ASSETS[ticker]
    q = quote(a, side, qty, open_, fx, costs)
    for part in (q.gross_eur, q.slippage_eur, q.commission_eur, q.tax_eur, q.fx_fee_eur):
        assert _is_cent(part) and part >= 0.0
    assert _is_cent(q.cash_flow_eur)
    nominal = cents(qty * open_ / fx if a.currency == "USD" else qty * open_)
    fees = q.commission_eur + q.tax_eur + q.fx_fee_eur
    if side == "buy":
        assert q.gross_eur == pytest.approx(nominal + q.slippage_eur, abs=1e-6)
        assert q.cash_flow_eur == pytest.approx(-(q.gross_eur + fees), abs=1e-6)
    else:
        assert q.gross_eur == pytest.approx(nominal - q.slippage_eur, abs=1e-6)
        assert q.cash_flow_eur == pytest.approx(q.gross_eur - fees, abs=1e-6)
        assert q.tax_eur == 0.0
    if a.currency == "EUR":
        assert q.fx_fee_eur == 0.0
    assert q.commission_eur >= 1.0
    assert math.isfinite(q.cash_flow_eur)
