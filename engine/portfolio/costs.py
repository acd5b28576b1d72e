"""The cost model: small parts, each with one job, composed by execution.

Following zipline's commission/slippage objects: a cost can be changed or tested
alone. Every amount returned is in EUR and rounded to the cent, as a broker books it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal

from engine.config import CostsConfig

Side = Literal["buy", "sell"]


def cents(x: float) -> float:
    """Round half away from zero to the cent (a broker's rounding, not banker's)."""
    return math.copysign(math.floor(abs(x) * 100 + 0.5 + 1e-9) / 100, x)


@dataclass(frozen=True)
class Slippage:
    """A fill is worse than the quoted open by `bps`: buyers pay more, sellers get less."""

    bps: float

    def fill_price(self, open_local: float, side: Side) -> float:
        sign = 1.0 if side == "buy" else -1.0
        return open_local * (1.0 + sign * self.bps / 10_000)


@dataclass(frozen=True)
class Commission:
    """`bps` of the traded value, with a minimum per fill."""

    bps: float
    min_eur: float

    def fee_eur(self, notional_eur: float) -> float:
        return cents(max(self.min_eur, notional_eur * self.bps / 10_000))


@dataclass(frozen=True)
class FrenchFTT:
    """French financial transaction tax: purchases of the shares it applies to (sales are
    exempt), at the rate in force on the date of the purchase.

    `schedule` is ``((since, rate), ...)`` in increasing dates; no tax before the first.
    An undated quote (a what-if) uses the latest rate.
    """

    schedule: tuple[tuple[dt.date, float], ...]

    def rate_on(self, d: dt.date | None) -> float:
        rate = 0.0
        for since, r in self.schedule:
            if d is not None and since > d:
                break
            rate = r
        return rate

    def tax_eur(self, notional_eur: float, side: Side, applies: bool, d: dt.date | None = None) -> float:
        return cents(notional_eur * self.rate_on(d)) if applies and side == "buy" else 0.0


@dataclass(frozen=True)
class FxConversion:
    """Converts local amounts to EUR at the day's EURUSD (USD per 1 EUR), with a fee."""

    fee_bps: float

    @staticmethod
    def to_eur(amount_local: float, currency: str, fx_eurusd: float) -> float:
        return amount_local / fx_eurusd if currency == "USD" else amount_local

    def fee_eur(self, notional_eur: float, currency: str) -> float:
        return cents(notional_eur * self.fee_bps / 10_000) if currency != "EUR" else 0.0


@dataclass(frozen=True)
class CostModel:
    slippage: Slippage
    commission: Commission
    tax: FrenchFTT
    fx: FxConversion

    @classmethod
    def from_config(cls, c: CostsConfig) -> CostModel:
        return cls(
            slippage=Slippage(c.slippage_bps),
            commission=Commission(c.commission_bps, c.commission_min_eur),
            tax=FrenchFTT(tuple((r.since, r.rate) for r in c.french_ftt)),
            fx=FxConversion(c.fx_fee_bps),
        )

    def buy_cost_factor(self, ftt: bool, currency: str, d: dt.date | None = None) -> float:
        """All-in EUR cost of 1 EUR of quoted value bought on `d` (ignoring the commission
        minimum; the latest tax rate when `d` is None).

        Used to size orders at decision time, before the fill price is known.
        """
        f = 1.0 + (self.slippage.bps + self.commission.bps) / 10_000
        if ftt:
            f += self.tax.rate_on(d)
        if currency != "EUR":
            f += self.fx.fee_bps / 10_000
        return f
