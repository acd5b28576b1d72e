"""Hard guardrails, applied after every policy. They can only shrink risk.

A guardrail may cut a purchase or add a trim (a sale); it never adds a purchase or
cuts a sale. They run in a fixed order, each on the result of the previous one:

1. ``max_weight``: no asset above this share of NAV after the orders;
2. ``exposure``: invested value below ``max_gross_exposure * m(drawdown)``;
3. ``min_cash``: cash after the orders at least ``min_cash`` of NAV;
4. ``cvar``: the portfolio's 1-day historical CVaR 95 after the orders within
   ``cvar_budget * m(drawdown)``.

Before them, the churn guardrails (:func:`apply_churn`) cut a purchase of a ticker sold
in the last ``reentry_cooldown_sessions`` and the purchases beyond ``max_buys_per_week``
in a rolling week.

``m`` is the drawdown multiplier (engine.risk.drawdown): 1 at the peak, tightening
non-linearly as the drawdown deepens. Existing positions are trimmed only beyond a
tolerance, so that price drift alone does not churn the portfolio. All values are
projected at the decision date's close, in EUR.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.config import ChurnConfig, GuardrailsConfig
from engine.decision import Cut
from engine.portfolio.execution import floor_qty
from engine.portfolio.ledger import ChurnMemory, Order
from engine.risk.cvar import portfolio_cvar
from engine.risk.drawdown import drawdown_multiplier


@dataclass(frozen=True)
class Limits:
    """The limits in force on a given day (the drawdown multiplier applied)."""

    max_weight: float
    min_cash: float
    exposure_cap: float
    cvar_budget: float
    multiplier: float

    @classmethod
    def for_drawdown(cls, g: GuardrailsConfig, drawdown: float) -> Limits:
        m = float(drawdown_multiplier(drawdown, g.drawdown_limit, g.drawdown_floor, g.drawdown_power))
        return cls(
            max_weight=g.max_weight,
            min_cash=g.min_cash,
            exposure_cap=g.max_gross_exposure * m,
            cvar_budget=g.cvar_budget * m,
            multiplier=m,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "max_weight": self.max_weight,
            "min_cash": self.min_cash,
            "exposure_cap": self.exposure_cap,
            "cvar_budget": self.cvar_budget,
            "drawdown_multiplier": self.multiplier,
        }


@dataclass(frozen=True)
class Book:
    """The portfolio as it will stand once the pending orders that stay have filled."""

    nav_eur: float
    cash_eur: float  # projected: pending purchases paid, pending sales received
    qty: Mapping[str, float]
    prices_eur: Mapping[str, float]
    buy_cost_factor: Mapping[str, float]
    sell_net_factor: Mapping[str, float]
    returns: np.ndarray  # T x N daily EUR returns, the risk window ending on the decision date
    returns_tickers: list[str]
    cvar_level: float


class _Plan:
    """Working copy of the orders: signed quantities per ticker."""

    def __init__(self, orders: list[Order]):
        self.orders = {o.ticker: o for o in orders}

    def qty(self, t: str, side: str) -> float:
        o = self.orders.get(t)
        return o.qty if o is not None and o.side == side else 0.0

    def set(self, t: str, qty: float, side: str, date: dt.date, reason: str) -> None:
        if qty <= 0:
            self.orders.pop(t, None)
            return
        o = self.orders.get(t)
        if o is not None and o.side == side:
            self.orders[t] = o.model_copy(update={"qty": qty})
        else:
            self.orders[t] = Order(id=f"{date.isoformat()}-{t}-{side}", ticker=t, side=side, qty=qty, decided_on=date, reason=reason)


def apply_guardrails(
    date: dt.date,
    orders: list[Order],
    book: Book,
    limits: Limits,
    g: GuardrailsConfig,
    min_order_eur: float,
    whole_shares: bool,
) -> tuple[list[Order], list[Cut]]:
    plan = _Plan(orders)
    cuts: list[Cut] = []
    nav = book.nav_eur
    price = book.prices_eur
    held = {t: q for t, q in book.qty.items() if q > 0}

    def after_sells(t: str) -> float:
        return max(held.get(t, 0.0) - plan.qty(t, "sell"), 0.0)

    def value_wo_buys() -> float:
        return sum(after_sells(t) * price[t] for t in held)

    def buys() -> dict[str, float]:
        return {t: o.qty for t, o in plan.orders.items() if o.side == "buy"}

    def cut_buy(t: str, new_qty: float, rule: str, reason: str) -> None:
        old = plan.qty(t, "buy")
        new_qty = floor_qty(max(new_qty, 0.0), whole_shares)
        if new_qty >= old:
            return
        if 0 < new_qty and new_qty * price[t] < min_order_eur:
            reason += f"; what is left ({new_qty * price[t]:.2f} EUR) is below the minimum order"
            new_qty = 0.0
        plan.set(t, new_qty, "buy", date, "")
        cuts.append(Cut(f"guardrail:{rule}", t, f"buy {old:g}", f"buy {new_qty:g}" if new_qty else "dropped", reason))

    def trim(t: str, extra_qty: float, rule: str, reason: str) -> None:
        cur = plan.qty(t, "sell")
        base = held.get(t, 0.0)
        new = min(base, cur + _ceil_qty(extra_qty, whole_shares))
        if new <= cur:
            return
        plan.set(t, new, "sell", date, f"guardrail trim: {reason}")
        cuts.append(Cut(f"guardrail:{rule}", t, f"sell {cur:g}" if cur else "none", f"sell {new:g}", reason))

    # 1. Max weight per asset.
    cap_value = limits.max_weight * nav
    for t, q in list(buys().items()):
        room = cap_value - after_sells(t) * price[t]
        if q * price[t] > room:
            cut_buy(t, room / price[t], "max_weight",
                    f"would exceed the maximum weight of {limits.max_weight:.0%} of NAV")
    for t in held:
        w = after_sells(t) * price[t] / nav
        if w > limits.max_weight + g.trim_tolerance:
            trim(t, (w - limits.max_weight) * nav / price[t], "max_weight",
                 f"weight {w:.1%} above the maximum of {limits.max_weight:.0%}")

    # 2. Gross exposure cap (falls with the drawdown).
    cap = limits.exposure_cap * nav
    base = value_wo_buys()
    if base > cap + g.trim_tolerance * nav:
        for t in list(buys()):
            cut_buy(t, 0.0, "exposure",
                    f"invested {base / nav:.1%} of NAV, already above the cap of {limits.exposure_cap:.1%}")
        factor = cap / base
        for t in held:
            trim(t, after_sells(t) * (1 - factor), "exposure",
                 f"invested {base / nav:.1%} of NAV above the cap of {limits.exposure_cap:.1%} at this drawdown")
        base = value_wo_buys()
    bv = sum(q * price[t] for t, q in buys().items())
    if bv > 0 and base + bv > cap:
        s = max(cap - base, 0.0) / bv
        for t, q in list(buys().items()):
            cut_buy(t, q * s, "exposure",
                    f"invested would reach {(base + bv) / nav:.1%} of NAV, above the cap of {limits.exposure_cap:.1%}")

    # 3. Minimum cash reserve.
    sells_in = sum(plan.qty(t, "sell") * price[t] * book.sell_net_factor[t] for t in held)
    bc = sum(q * price[t] * book.buy_cost_factor[t] for t, q in buys().items())
    floor_cash = limits.min_cash * nav
    if bc > 0 and book.cash_eur + sells_in - bc < floor_cash:
        s = max(book.cash_eur + sells_in - floor_cash, 0.0) / bc
        for t, q in list(buys().items()):
            cut_buy(t, q * s, "min_cash",
                    f"cash would fall below the reserve of {limits.min_cash:.0%} of NAV")

    # 4. Portfolio CVaR budget.
    idx = {t: i for i, t in enumerate(book.returns_tickers)}

    def cvar_of(scale_buys: float) -> float:
        w = np.zeros(len(book.returns_tickers))
        for t in held:
            if t in idx:
                w[idx[t]] += after_sells(t) * price[t] / nav
        for t, q in buys().items():
            if t in idx:
                w[idx[t]] += scale_buys * q * price[t] / nav
        return float(portfolio_cvar(book.returns, w, book.cvar_level))

    budget = limits.cvar_budget
    if book.returns.shape[0] >= 20:
        c0 = cvar_of(0.0)
        if math.isfinite(c0) and c0 > budget * (1 + g.cvar_trim_tolerance):
            for t in list(buys()):
                cut_buy(t, 0.0, "cvar", f"portfolio CVaR 95 already {c0:.2%}, above the budget of {budget:.2%}")
            factor = budget / c0  # CVaR is positively homogeneous: scaling all weights scales it
            for t in held:
                trim(t, after_sells(t) * (1 - factor), "cvar",
                     f"portfolio CVaR 95 {c0:.2%} of NAV above the budget of {budget:.2%}")
        elif buys():
            c1 = cvar_of(1.0)
            if math.isfinite(c1) and c1 > budget:
                if not math.isfinite(c0) or c0 >= budget:
                    s = 0.0
                else:
                    lo, hi = 0.0, 1.0  # CVaR is convex in the weights: one crossing on [0, 1]
                    for _ in range(30):
                        mid = (lo + hi) / 2
                        lo, hi = (mid, hi) if cvar_of(mid) <= budget else (lo, mid)
                    s = lo
                for t, q in list(buys().items()):
                    cut_buy(t, q * s, "cvar",
                            f"portfolio CVaR 95 would be {c1:.2%} of NAV, above the budget of {budget:.2%}")

    final = sorted(plan.orders.values(), key=lambda o: (o.side != "sell", o.ticker))
    return final, cuts


def _ceil_qty(q: float, whole_shares: bool) -> float:
    if whole_shares:
        return float(math.ceil(q - 1e-9))
    return math.ceil(q * 1e6 - 1e-6) / 1e6


# --------------------------------------------------------------------------- churn

@dataclass(frozen=True)
class ChurnView:
    """The churn limits in force at a session: shown in the brief, applied to the orders.

    ``cooldowns``: ticker -> (the last session it was sold, sessions of cooldown left);
    ``buys_in_week``: buy orders decided in the rolling week before this session."""

    cooldowns: Mapping[str, tuple[dt.date, int]]
    buys_in_week: int
    max_buys_per_week: int  # 0: no cap
    cooldown_sessions: int
    week_sessions: int

    def as_dict(self) -> dict[str, object]:
        return {
            "reentry_cooldown_sessions": self.cooldown_sessions,
            "max_buys_per_week": self.max_buys_per_week,
            "week_sessions": self.week_sessions,
            "buys_in_week": self.buys_in_week,
            "cooldowns": {t: {"sold_on": d.isoformat(), "sessions_left": n} for t, (d, n) in sorted(self.cooldowns.items())},
        }


def churn_view(
    last_sold: Mapping[str, dt.date], buy_dates: Sequence[dt.date], sessions_since: Callable[[dt.date], int], c: ChurnConfig
) -> ChurnView:
    """`sessions_since(x)`: sessions from `x` to the decision date (1 = the session before)."""
    cooldowns = {}
    for t, sold in last_sold.items():
        left = c.reentry_cooldown_sessions - sessions_since(sold)
        if left >= 0 and c.reentry_cooldown_sessions > 0:
            cooldowns[t] = (sold, left)
    buys = sum(1 for b in buy_dates if sessions_since(b) < c.week_sessions)
    return ChurnView(cooldowns, buys, c.max_buys_per_week, c.reentry_cooldown_sessions, c.week_sessions)


def remember_churn(
    memory: ChurnMemory, date: dt.date, sold: Sequence[str], bought: int,
    sessions_since: Callable[[dt.date], int], c: ChurnConfig,
) -> ChurnMemory:
    """The memory after a session: `sold` tickers (sales decided today) and `bought`
    buy orders added, what is past the cooldown or the week forgotten."""
    last = {t: d for t, d in memory.last_sold.items() if sessions_since(d) <= c.reentry_cooldown_sessions}
    last.update(dict.fromkeys(sold, date))
    buys = tuple(d for d in memory.buys if sessions_since(d) < c.week_sessions) + (date,) * bought
    return ChurnMemory(last_sold=dict(sorted(last.items())), buys=buys)


def apply_churn(
    date: dt.date, orders: list[Order], view: ChurnView, prices_eur: Mapping[str, float]
) -> tuple[list[Order], list[Cut]]:
    """Cut purchases that churn: a re-entry inside the cooldown, or buys beyond the rolling
    weekly cap (the largest purchases are kept). Sales are never touched."""
    cuts: list[Cut] = []
    kept: list[Order] = []
    buys: list[Order] = []
    for o in orders:
        if o.side != "buy":
            kept.append(o)
        elif o.ticker in view.cooldowns:
            sold, left = view.cooldowns[o.ticker]
            ago = view.cooldown_sessions - left
            cuts.append(Cut("guardrail:reentry_cooldown", o.ticker, f"buy {o.qty:g}", "dropped",
                            f"sold on {sold.isoformat()}, {ago} session(s) ago: no re-entry within "
                            f"{view.cooldown_sessions} sessions of a sale"))
        else:
            buys.append(o)
    room = view.max_buys_per_week - view.buys_in_week if view.max_buys_per_week > 0 else len(buys)
    buys.sort(key=lambda o: (-o.qty * prices_eur.get(o.ticker, 0.0), o.ticker))
    for n, o in enumerate(buys):
        if n < max(room, 0):
            kept.append(o)
        else:
            cuts.append(Cut("guardrail:max_buys_per_week", o.ticker, f"buy {o.qty:g}", "dropped",
                            f"{view.buys_in_week} buy(s) in the last {view.week_sessions} sessions and {n} kept "
                            f"today: the cap is {view.max_buys_per_week} a rolling week"))
    kept.sort(key=lambda o: (o.side != "sell", o.ticker))
    return kept, cuts
