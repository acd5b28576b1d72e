"""What a policy sees (the brief), what it answers (a decision), and how an answer
becomes orders.

The answer format is the public audit format, the same for every policy::

    {"decisions": [{"ticker": "MC.PA", "action": "buy", "percent": 25, "reason": "..."}],
     "summary": "..."}

``buy`` percent is a share of the cash available at decision time (cash minus what
pending purchases will need); ``sell`` percent is a share of the position (100 closes
it); ``hold`` ignores percent. An answer is checked here, whoever wrote it: unknown or
untradable tickers, duplicates, contradictions, sells of what is not held and buys over
100% of the cash are rejected or scaled, each with a :class:`Cut` saying why.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.portfolio.execution import floor_qty
from engine.portfolio.ledger import Order


class Action(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticker: str
    action: Literal["buy", "sell", "hold"]
    percent: float = 0.0
    reason: str = ""


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    decisions: tuple[Action, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class Cut:
    """One change made to a policy's answer, and why. Shown verbatim in the audit trail."""

    stage: str  # "validation", "sizing", or "guardrail:<rule>"
    ticker: str
    before: str
    after: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class PositionView(NamedTuple):
    """A held position as the brief shows it. A named tuple: as immutable as a frozen
    dataclass, and made in half the time (every position, every session, every arm)."""

    ticker: str
    qty: float
    avg_cost_eur: float
    price_local: float
    currency: str
    price_eur: float
    value_eur: float
    weight: float
    pnl_eur: float
    pnl_pct: float
    prospect_value: float  # v(pnl_pct): the reference point is the cost basis


class AssetTable(Mapping[str, dict[str, float]]):
    """The brief's asset table, ticker -> figure -> value, kept as one (ticker x figure)
    array: a step builds it without a dict per asset, and a record renders the array at
    once. Each asset's figures are a dict made when first read. Read-only."""

    __slots__ = ("tickers", "columns", "figures", "_at", "_rows")

    def __init__(self, tickers: Sequence[str], columns: Sequence[str], figures: np.ndarray):
        figures = np.asarray(figures, dtype=float)
        if figures.shape != (len(tickers), len(columns)):
            raise ValueError(f"an asset table of {len(tickers)} x {len(columns)} figures, given {figures.shape}")
        self.tickers, self.columns, self.figures = tuple(tickers), tuple(columns), figures
        self._at = {t: i for i, t in enumerate(self.tickers)}
        self._rows: dict[str, dict[str, float]] = {}

    def __getitem__(self, ticker: str) -> dict[str, float]:
        row = self._rows.get(ticker)
        if row is None:
            row = self._rows[ticker] = dict(zip(self.columns, self.figures[self._at[ticker]].tolist(), strict=True))
        return row

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._at

    def __iter__(self) -> Iterator[str]:
        return iter(self.tickers)

    def __len__(self) -> int:
        return len(self.tickers)

    def __repr__(self) -> str:
        return f"AssetTable({dict(self)!r})"


# What the structured brief of a record keeps beside a rendered message (Brief.as_dict).
MESSAGE_ASSET_COLUMNS = ("close",)
MESSAGE_POSITION_FIELDS = frozenset({"ticker", "qty", "price_local", "currency", "price_eur", "value_eur"})


@dataclass(frozen=True)
class Brief:
    """Everything a policy is given at the close of `date`. Every number is computed here;
    a policy only decides."""

    date: dt.date
    source: str
    synthetic: bool
    nav_eur: float
    cash_eur: float
    cash_available_eur: float
    invested_eur: float
    gross_exposure: float
    nav_peak_eur: float
    drawdown: float
    drawdown_multiplier: float
    cvar_95: float  # 1-day portfolio CVaR, fraction of NAV
    limits: dict[str, float]
    positions: dict[str, PositionView]
    assets: Mapping[str, Mapping[str, float]]  # ticker -> indicator and risk figures as of `date` (AssetTable)
    prices_eur: dict[str, float]
    pending_orders: tuple[Order, ...] = ()
    data_issues: tuple[dict[str, str], ...] = ()
    tradable: tuple[str, ...] = field(default=())
    # Held assets whose data is flagged bad but whose last price is known: they may
    # only be sold (an exit stays possible), never bought.
    sell_only: tuple[str, ...] = field(default=())
    starting_capital_eur: float = 0.0
    inception: dt.date | None = None
    prospect_value: float = 0.0  # v(NAV / starting capital - 1): the reference point is the capital
    # The previous decision and what came of it at today's open (fills, clips, rejections).
    previous: dict[str, Any] | None = None
    # Pairwise correlations of daily EUR returns, only computed for policies that want them.
    correlation: Any = None
    # The churn limits in force (engine.risk.guardrails.ChurnView.as_dict); None when unguarded.
    churn: dict[str, Any] | None = None

    def held_qty(self, ticker: str) -> float:
        """Shares held once the pending orders have filled."""
        pos = self.positions.get(ticker)
        q = pos.qty if pos else 0.0
        for o in self.pending_orders:
            if o.ticker == ticker:
                q += o.qty if o.side == "buy" else -o.qty
        return max(q, 0.0)

    def as_dict(self, beside_message: bool = False) -> dict[str, Any]:
        """The brief as a JSON-ready record (rounded so that diffs stay readable).

        `beside_message`: the record of a policy that was given the brief as a rendered
        message, which the record keeps verbatim (what the model saw, every figure it
        read). The structured brief then holds only what the readers of records use beside
        it (engine.report, the weekly report): of the asset table the close, of each
        position its quantity, prices and value."""
        table = self.assets
        array = isinstance(table, AssetTable)
        if array:
            every = list(table.columns) if len(table) else []
        else:
            every = list(next(iter(table.values())).keys()) if table else []
        columns = [c for c in MESSAGE_ASSET_COLUMNS if c in every] if beside_message else every
        values: Any
        if array:
            values = table.figures if columns == every else table.figures[:, [every.index(c) for c in columns]]
        elif columns == every:
            values = [list(fig.values()) for fig in table.values()]
        else:
            values = [[fig[c] for c in columns] for fig in table.values()]
        names, numbers, held = self._position_rows(beside_message)
        table, held = _json_tables(values, held)
        rows = dict(zip(self.assets, table, strict=True))
        texts = [(i, f) for i, f in enumerate(names) if f in _POSITION_TEXT]  # their places among the figures
        positions = []
        for p, figures in zip(self.positions.values(), held, strict=True):
            for i, f in texts:
                figures.insert(i, getattr(p, f))
            positions.append(dict(zip(names, figures, strict=True)))
        return {
            "date": self.date.isoformat(),
            "source": self.source,
            "synthetic": self.synthetic,
            "portfolio": {
                "nav_eur": round(self.nav_eur, 2),
                "cash_eur": round(self.cash_eur, 2),
                "cash_available_eur": round(self.cash_available_eur, 2),
                "invested_eur": round(self.invested_eur, 2),
                "gross_exposure": round(self.gross_exposure, 4),
                "nav_peak_eur": round(self.nav_peak_eur, 2),
                "drawdown": round(self.drawdown, 4),
                "drawdown_multiplier": round(self.drawdown_multiplier, 4),
                "cvar_95": _clean(self.cvar_95),
                "prospect_value": _clean(self.prospect_value),
            },
            "limits": {k: round(v, 4) for k, v in self.limits.items()},
            "positions": positions,
            "pending_orders": [o.model_dump(mode="json") for o in self.pending_orders],
            "assets": {"columns": list(columns), "rows": rows},
            "data_issues": list(self.data_issues),
            "previous": self.previous,
            **({"churn": self.churn} if self.churn is not None else {}),
        }


    def _position_rows(self, beside_message: bool) -> tuple[list[str], list[str], list[list[float]]]:
        """The position fields the record keeps, the numeric ones, and their values."""
        names = [f for f in _POSITION_FIELDS if not beside_message or f in MESSAGE_POSITION_FIELDS]
        numbers = [f for f in names if f not in _POSITION_TEXT]
        if len(numbers) > 1:  # attrgetter of one name gives the value, not a tuple
            get = attrgetter(*numbers)
            return names, numbers, [get(p) for p in self.positions.values()]
        return names, numbers, [[getattr(p, f) for f in numbers] for p in self.positions.values()]


class BriefRecord(Mapping[str, Any]):
    """A brief as its decision record stores it (:meth:`Brief.as_dict`), rendered when first
    read: a backtest's records are written by its saving process, so the rounding of each
    session's tables runs there, beside the next sessions' steps (the saver is a fork: it
    reads the brief from memory, nothing is copied)."""

    __slots__ = ("_brief", "_beside_message", "_dict")

    def __init__(self, brief: Brief, beside_message: bool = False):
        self._brief: Brief | None = brief
        self._beside_message = beside_message
        self._dict: dict[str, Any] | None = None

    def rendered(self) -> dict[str, Any]:
        if self._dict is None:
            assert self._brief is not None
            self._dict, self._brief = self._brief.as_dict(beside_message=self._beside_message), None
        return self._dict

    def __getitem__(self, key: str) -> Any:
        return self.rendered()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rendered())

    def __len__(self) -> int:
        return len(self.rendered())


_POSITION_FIELDS = PositionView._fields
_POSITION_TEXT = frozenset({"ticker", "currency"})


def _json_tables(*tables: list[list[float]]) -> list[list[list[float | None]]]:
    """Tables (lists of rows) of figures, rounded to 6 significant digits with NaN and
    infinities as None: all of them in one vectorised pass (numpy's cost here is per call,
    not per figure). A table whose rows differ in length is read figure by figure."""
    shapes = [(len(t), len(t[0]) if len(t) else 0) for t in tables]
    # A 2-d array is even by construction (an AssetTable's figures); a list's rows are checked.
    if all(isinstance(t, np.ndarray) and t.ndim == 2 or all(len(row) == width for row in t)
           for t, (_, width) in zip(tables, shapes, strict=True)):
        flat = np.concatenate([np.asarray(t, dtype=float).reshape(-1) for t in tables]) if tables else np.empty(0)
    else:
        flat = np.fromiter((v for t in tables for row in t for v in row), dtype=float)
        shapes = []
    rounded = round_sig(flat)
    finite = np.isfinite(flat)
    if not finite.all():  # None where a figure is NaN or infinite (a float array cannot hold it)
        rounded = rounded.astype(object)
        rounded[~finite] = None
    out, i = [], 0
    if shapes:
        for n, width in shapes:
            out.append(rounded[i:i + n * width].reshape(n, width).tolist() if n else [])
            i += n * width
        return out
    values = rounded.tolist()
    for t in tables:
        rows = []
        for row in t:
            rows.append(values[i:i + len(row)])
            i += len(row)
        out.append(rows)
    return out


_POW10 = 10.0 ** np.arange(23)


def round_sig(a: np.ndarray, digits: int = 6) -> np.ndarray:
    """Round to `digits` significant digits, vectorised (NaN stays NaN).

    Dividing an integer by an exact power of ten gives the double nearest the decimal,
    so the numbers print short (1032.45, not 1032.4500000000001).
    """
    a = np.asarray(a, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = digits - 1 - np.floor(np.log10(np.abs(a)))
    k[~np.isfinite(k)] = 0
    k = k.astype(int)
    up = _POW10[np.minimum(np.maximum(k, 0), 22)]
    down = _POW10[np.minimum(np.maximum(-k, 0), 22)]
    return np.round(a * up / down) * down / up


def _clean(v: Any) -> Any:
    """A float for the record: 6 significant digits (readable diffs), NaN as null."""
    if isinstance(v, float):
        if v != v or v in (math.inf, -math.inf):
            return None
        return float("%.6g" % v)
    if hasattr(v, "item"):  # numpy scalar
        return _clean(v.item())
    return v


def check_decision(decision: Decision, brief: Brief, universe: Set[str]) -> tuple[list[Action], list[Cut]]:
    """Reject or repair what cannot be executed as asked. Returns the actions to size."""
    cuts: list[Cut] = []
    by_ticker: dict[str, list[Action]] = {}
    for a in decision.decisions:
        by_ticker.setdefault(a.ticker, []).append(a)

    kept: list[Action] = []
    for ticker, acts in by_ticker.items():
        first = acts[0]
        if ticker not in universe:
            cuts.append(Cut("validation", ticker, _desc(first), "dropped", "unknown ticker: not in the universe"))
            continue
        if len({a.action for a in acts}) > 1:
            cuts.append(
                Cut(
                    "validation", ticker, " + ".join(_desc(a) for a in acts), "dropped",
                    "contradictory actions for the same ticker: none is executed",
                )
            )
            continue
        for dup in acts[1:]:
            cuts.append(Cut("validation", ticker, _desc(dup), "dropped", "duplicate entry: the first one is kept"))
        a = first
        if a.action == "hold":
            continue
        if not math.isfinite(a.percent) or a.percent <= 0:
            cuts.append(Cut("validation", ticker, _desc(a), "dropped", f"percent must be in (0, 100], got {a.percent}"))
            continue
        if a.action == "sell" and a.percent > 100:
            # (Buys above 100% are scaled with the others below, keeping their proportions.)
            cuts.append(Cut("validation", ticker, _desc(a), "sell 100%", "percent above 100 clipped to 100"))
            a = a.model_copy(update={"percent": 100.0})
        if ticker not in brief.tradable and not (a.action == "sell" and ticker in brief.sell_only):
            cuts.append(Cut("validation", ticker, _desc(a), "dropped", "no valid market data today"))
            continue
        if a.action == "sell" and brief.held_qty(ticker) <= 0:
            cuts.append(Cut("validation", ticker, _desc(a), "dropped", "cannot sell: not held (no shorting)"))
            continue
        kept.append(a)

    buy_total = sum(a.percent for a in kept if a.action == "buy")
    if buy_total > 100 + 1e-9:
        scale = 100 / buy_total
        scaled = []
        for a in kept:
            if a.action == "buy":
                new = a.model_copy(update={"percent": a.percent * scale})
                cuts.append(
                    Cut(
                        "validation", a.ticker, _desc(a), _desc(new),
                        f"buys add up to {buy_total:.1f}% of cash: all scaled down to 100%",
                    )
                )
                a = new
            scaled.append(a)
        kept = scaled
    return kept, cuts


def _desc(a: Action) -> str:
    return a.action if a.action == "hold" else f"{a.action} {a.percent:g}%"


def size_orders(
    actions: list[Action],
    brief: Brief,
    buy_cost_factor: Mapping[str, float],
    min_order_eur: float,
    whole_shares: bool,
) -> tuple[list[Order], list[Cut]]:
    """Turn checked actions into share quantities at the close of the decision date."""
    orders: list[Order] = []
    cuts: list[Cut] = []
    for a in actions:
        price = brief.prices_eur[a.ticker]
        oid = f"{brief.date.isoformat()}-{a.ticker}-{a.action}"
        if a.action == "buy":
            amount = brief.cash_available_eur * a.percent / 100
            qty = floor_qty(amount / (price * buy_cost_factor[a.ticker]), whole_shares)
            value = qty * price
            if qty <= 0:
                cuts.append(
                    Cut("sizing", a.ticker, _desc(a), "dropped", f"{amount:.2f} EUR does not buy one share at {price:.2f} EUR")
                )
                continue
            if value < min_order_eur:
                cuts.append(
                    Cut("sizing", a.ticker, _desc(a), "dropped", f"{value:.2f} EUR is below the minimum order of {min_order_eur:.0f} EUR")
                )
                continue
        else:
            held = brief.held_qty(a.ticker)
            qty = held if a.percent >= 100 else floor_qty(held * a.percent / 100, whole_shares)
            if qty <= 0:
                cuts.append(Cut("sizing", a.ticker, _desc(a), "dropped", f"{a.percent:g}% of {held:g} shares is less than one share"))
                continue
            if qty < held and qty * price < min_order_eur:
                cuts.append(
                    Cut("sizing", a.ticker, _desc(a), "dropped", f"{qty * price:.2f} EUR is below the minimum order of {min_order_eur:.0f} EUR")
                )
                continue
        orders.append(Order(id=oid, ticker=a.ticker, side=a.action, qty=qty, decided_on=brief.date, reason=a.reason))
    return orders, cuts
