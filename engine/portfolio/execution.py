"""Execution: pending orders become fills at the open, as a careful paper broker does it.

Timing. Orders are decided after the close of session D and fill at the *next open of
their own exchange*: Paris orders at the next XPAR open, US orders at the next XNYS
open. While an exchange is closed (US Thanksgiving, 1 May in Paris) its orders stay
pending; the other exchange's orders fill as usual.

Order of fills on a day: by exchange opening time (Paris opens before New York); within
an exchange, older decisions first (an order kept pending over a holiday goes before the
ones decided since, which were decided knowing it), then sells before buys, so that a
sale's proceeds can pay for a purchase on the same exchange. A US sale does not fund a
Paris purchase of the same day. Orders are never merged or replaced: like a broker's
order book, each fills on its own, and a policy sees the pending ones in its brief.

Checks. Cash never goes negative (a buy is clipped to what the cash pays for, or
rejected), nothing is shorted, nothing not held is sold. Every clip and rejection is
returned as an :class:`ExecutionNote` with its reason, for the decision record.

Corporate actions are booked before the open: a dividend (ex-date D) pays the shares
held at the previous close; a split multiplies the shares and divides their cost basis,
and rescales pending orders decided before it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from engine.config import Asset
from engine.data.calendars import open_time_utc
from engine.data.market import SPLIT_TOLERANCE
from engine.portfolio.costs import CostModel, cents
from engine.portfolio.ledger import Fill, Portfolio, book

QTY_DECIMALS = 6


@dataclass(frozen=True)
class ExecutionNote:
    order_id: str
    ticker: str
    outcome: Literal["clipped", "rejected", "waiting"]
    requested_qty: float
    filled_qty: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ExecutionResult:
    portfolio: Portfolio
    fills: list[Fill] = field(default_factory=list)
    notes: list[ExecutionNote] = field(default_factory=list)


def floor_qty(q: float, whole_shares: bool) -> float:
    if whole_shares:
        return float(math.floor(q + 1e-9))
    return math.floor(q * 10**QTY_DECIMALS + 1e-6) / 10**QTY_DECIMALS


def quote(
    asset: Asset,
    side: Literal["buy", "sell"],
    qty: float,
    open_local: float,
    fx_eurusd: float,
    costs: CostModel,
    d: dt.date | None = None,
    order_id: str = "",
) -> Fill:
    """What filling `qty` at this open would cost or bring, every part in EUR, as the fill
    that would be booked on `d` (a what-if quote needs no date: it is taxed at the
    latest rate)."""
    fill_local = costs.slippage.fill_price(open_local, side)
    gross = cents(costs.fx.to_eur(qty * fill_local, asset.currency, fx_eurusd))
    nominal = cents(costs.fx.to_eur(qty * open_local, asset.currency, fx_eurusd))
    commission = costs.commission.fee_eur(gross)
    tax = costs.tax.tax_eur(gross, side, asset.ftt, d)
    fx_fee = costs.fx.fee_eur(gross, asset.currency)
    fees = commission + tax + fx_fee
    return Fill(
        date=d or dt.date.min,
        ticker=asset.ticker,
        side=side,
        qty=qty,
        price_local=fill_local,
        currency=asset.currency,
        fx_eurusd=fx_eurusd,
        gross_eur=gross,
        slippage_eur=cents(abs(gross - nominal)),
        commission_eur=commission,
        tax_eur=tax,
        fx_fee_eur=fx_fee,
        cash_flow_eur=cents(-(gross + fees) if side == "buy" else gross - fees),
        order_id=order_id,
    )


def affordable_qty(
    asset: Asset,
    open_local: float,
    fx_eurusd: float,
    cash_eur: float,
    costs: CostModel,
    whole_shares: bool,
    d: dt.date | None = None,
) -> float:
    """The largest quantity whose all-in cost on `d` fits in `cash_eur`."""
    def fits(q: float) -> bool:
        return -quote(asset, "buy", q, open_local, fx_eurusd, costs, d).cash_flow_eur <= cash_eur

    # The cost is increasing in the quantity, but rounding to the cent and the commission
    # minimum make it awkward to invert: bisect on whole shares (or on millionths).
    unit = 1.0 if whole_shares else 10**-QTY_DECIMALS
    unit_eur = costs.fx.to_eur(costs.slippage.fill_price(open_local, "buy"), asset.currency, fx_eurusd)
    # The estimate ignores the rounding to the cent, which can make one more unit fit
    # (EUR 1,000 at 333.3349 with no fees buys 3: 1,000.0047 books as 1,000.00), so
    # grow `hi` until it really does not fit.
    lo, hi = 0, max(int(cash_eur / (unit_eur * unit)), 0) + 1  # in units
    while fits(hi * unit):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid * unit) else (lo, mid)
    return float(lo) if whole_shares else round(lo * unit, QTY_DECIMALS)


def execute_pending(
    p: Portfolio,
    d: dt.date,
    opens_local: Mapping[str, float],
    fx_eurusd: float,
    assets: Mapping[str, Asset],
    costs: CostModel,
    whole_shares: bool,
    not_traded: Mapping[str, str] | None = None,
) -> ExecutionResult:
    """Fill the pending orders whose exchange opened on `d` (those with an open price).

    `not_traded`: ticker -> why its bar of `d` did not trade (carried forward, a
    repeated stale bar, zero volume). Its orders wait, as over a holiday, with a note:
    a fill at a price nobody traded at would be fiction.
    """
    due, waiting = [], []
    notes: list[ExecutionNote] = []
    for o in p.pending_orders:
        px = opens_local.get(o.ticker)
        if px is not None and px == px and px > 0 and not_traded and o.ticker in not_traded:
            notes.append(ExecutionNote(o.id, o.ticker, "waiting", o.qty, 0.0, not_traded[o.ticker]))
            waiting.append(o)
            continue
        (due if px is not None and px == px and px > 0 else waiting).append(o)
    if not due:
        return ExecutionResult(p, [], notes)
    day = dt.datetime(d.year, d.month, d.day)
    due.sort(key=lambda o: (open_time_utc(assets[o.ticker].calendar, day), o.decided_on, o.side != "sell", o.ticker))
    p = p.model_copy(update={"pending_orders": tuple(waiting)})
    fills: list[Fill] = []
    for o in due:
        asset = assets[o.ticker]
        px = float(opens_local[o.ticker])
        qty = o.qty
        if o.side == "sell":
            held = p.qty(o.ticker)
            if held <= 0:
                notes.append(ExecutionNote(o.id, o.ticker, "rejected", o.qty, 0.0, "nothing held to sell"))
                continue
            qty = min(qty, held)
            q = quote(asset, "sell", qty, px, fx_eurusd, costs, d, o.id)
            if p.cash_eur + q.cash_flow_eur < 0:
                notes.append(
                    ExecutionNote(o.id, o.ticker, "rejected", o.qty, 0.0, "the proceeds would not cover the fees")
                )
                continue
            if o.qty > held + 1e-9:
                notes.append(
                    ExecutionNote(o.id, o.ticker, "clipped", o.qty, held, f"only {held:g} held: sold all of it")
                )
        else:
            q = quote(asset, "buy", qty, px, fx_eurusd, costs, d, o.id)
            if -q.cash_flow_eur > p.cash_eur:
                fit = affordable_qty(asset, px, fx_eurusd, p.cash_eur, costs, whole_shares, d)
                if fit <= 0:
                    notes.append(
                        ExecutionNote(
                            o.id, o.ticker, "rejected", o.qty, 0.0,
                            f"insufficient cash: {p.cash_eur:.2f} EUR does not buy one share at the open",
                        )
                    )
                    continue
                notes.append(
                    ExecutionNote(
                        o.id, o.ticker, "clipped", o.qty, fit,
                        f"insufficient cash at the open ({p.cash_eur:.2f} EUR): bought {fit:g} of {o.qty:g}",
                    )
                )
                q = quote(asset, "buy", fit, px, fx_eurusd, costs, d, o.id)
        p, booked = book(p, q)
        fills.append(booked)
    return ExecutionResult(p, fills, notes)


def corporate_actions(
    p: Portfolio,
    d: dt.date,
    dividends_local: Mapping[str, float],
    split_ratios: Mapping[str, float],
    fx_eurusd: float,
    assets: Mapping[str, Asset],
) -> tuple[Portfolio, list[Fill]]:
    """Book dividends (ex-date `d`) and splits on the positions held before the open of `d`."""
    fills: list[Fill] = []
    affected = sorted(set(p.positions) | {o.ticker for o in p.pending_orders})
    for t in affected:
        asset = assets[t]
        ratio = split_ratios.get(t, 1.0)
        if ratio == ratio and ratio > 0 and abs(ratio - 1.0) > SPLIT_TOLERANCE:
            pos = p.positions.get(t)
            if pos is not None:
                f = Fill(
                    date=d, ticker=t, side="split", qty=pos.qty, price_local=ratio, currency=asset.currency,
                    fx_eurusd=fx_eurusd, gross_eur=0.0, cash_flow_eur=0.0, note=f"split {ratio:g}-for-1",
                )
                p, f = book(p, f)
                fills.append(f)
            orders = tuple(
                o.model_copy(update={"qty": _split_qty(o.qty, ratio)}) if o.ticker == t else o
                for o in p.pending_orders
            )
            p = p.model_copy(update={"pending_orders": orders})
        div = dividends_local.get(t, 0.0)
        qty = p.qty(t)
        if div == div and div > 0 and qty > 0:
            gross = cents(qty * div / fx_eurusd if asset.currency == "USD" else qty * div)
            f = Fill(
                date=d, ticker=t, side="dividend", qty=qty, price_local=div, currency=asset.currency,
                fx_eurusd=fx_eurusd, gross_eur=gross, cash_flow_eur=gross, note="dividend, gross of withholding tax",
            )
            p, f = book(p, f)
            fills.append(f)
    return p, fills


def _split_qty(qty: float, ratio: float) -> float:
    """A pending order's quantity after a split; an order in whole shares stays whole."""
    q = qty * ratio
    return float(math.floor(q + 1e-9)) if float(qty).is_integer() else round(q, QTY_DECIMALS)
