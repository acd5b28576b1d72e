"""Decision analytics from the audit trail: what the decisions did, with their uncertainty.

Pure functions over an arm's trades, equity rows and decision records (and, for forward
returns, the EUR closes), so that every arm is measured the same way:

* :func:`forward_returns`: each buy's and sell's forward 1/5/20-session return against not
  trading (a buy earns the asset's move from the fill; a sale *avoids* it, so its value is
  minus the move), mean and 95% interval;
* :func:`round_trips` / :func:`win_rates`: buys matched to later sales first-in first-out,
  the win rate by holding period (Wilson 95% interval);
* turnover (engine.backtest.metrics.turnover) and :func:`cash_drag`: the average cash
  weight and the return forgone against the same weights fully invested;
* :class:`RecordCounts`: how often the checks and guardrails changed the answer, by rule,
  and how often the answer was an explicit HOLD, by cause.

Uncertainty is honest and simple: a mean's interval is ``mean +- 1.96 s / sqrt(n)`` (the
trades of one arm overlap in time, so it is optimistic; it is labelled as such), a rate's
the Wilson score interval.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
HORIZONS = (1, 5, 20)
HOLDING_BUCKETS = ((0, 3, "1-3 days"), (4, 20, "4-20 days"), (21, 60, "21-60 days"), (61, 10**9, "over 60 days"))


def mean_interval(x: Iterable[float]) -> dict[str, float | int]:
    """Mean with a normal 95% interval; NaN bounds with fewer than 2 values."""
    a = np.asarray([v for v in x if v == v], dtype=float)
    n = int(a.size)
    if n == 0:
        return {"n": 0, "mean": math.nan, "low": math.nan, "high": math.nan}
    m = float(a.mean())
    if n < 2:
        return {"n": n, "mean": m, "low": math.nan, "high": math.nan}
    half = Z95 * float(a.std(ddof=1)) / math.sqrt(n)
    return {"n": n, "mean": m, "low": m - half, "high": m + half}


def wilson(successes: int, n: int) -> dict[str, float | int]:
    """A proportion with its Wilson score 95% interval (Wilson 1927)."""
    if n <= 0:
        return {"n": 0, "rate": math.nan, "low": math.nan, "high": math.nan}
    p = successes / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"n": n, "rate": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def _fills(trades: pd.DataFrame) -> pd.DataFrame:
    if trades is None or trades.empty:
        return pd.DataFrame(columns=["date", "ticker", "side", "qty", "cash_flow_eur", "gross_eur"])
    t = trades[trades["side"].isin(["buy", "sell"])].copy()
    t["date"] = pd.to_datetime(t["date"])
    return t.sort_values(["date", "ticker"], kind="stable")


def forward_returns(
    trades: pd.DataFrame, close_eur: pd.DataFrame, horizons: Sequence[int] = HORIZONS
) -> dict[str, dict[str, dict[str, float | int]]]:
    """{side: {"h1": interval, ...}} of the value of each fill against not trading over h
    sessions: the asset's EUR return from the fill (its price with costs, EUR per share)
    to the close h - 1 sessions after the fill day (h = 1: the fill day's close) for a buy,
    minus that for a sale. Fills whose horizon is past the data are left out."""
    return _forward_returns(_fills(trades), close_eur, horizons)


def _forward_returns(t: pd.DataFrame, close_eur: pd.DataFrame,
                     horizons: Sequence[int]) -> dict[str, dict[str, dict[str, float | int]]]:
    close = close_eur.sort_index()
    idx = close.index
    values = close.to_numpy(dtype=float)
    col = {t: j for j, t in enumerate(close.columns)}
    at = idx.searchsorted(pd.DatetimeIndex(t["date"])) if len(t) else []
    out: dict[str, dict[str, list[float]]] = {"buy": defaultdict(list), "sell": defaultdict(list)}
    for row, i in zip(t.itertuples(index=False), at, strict=True):
        if row.ticker not in col:
            continue
        i = int(i)
        if i >= len(idx):
            continue
        base = abs(float(row.cash_flow_eur)) / float(row.qty)
        for h in horizons:
            if i + h - 1 < len(idx) and base > 0:
                r = float(values[i + h - 1, col[row.ticker]] / base - 1)
                if r != r:
                    continue
                out[row.side][f"h{h}"].append(r if row.side == "buy" else -r)
    return {side: {f"h{h}": mean_interval(v.get(f"h{h}", [])) for h in horizons} for side, v in out.items()}


def round_trips(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Buys matched to later sales of the same ticker, first in first out: one entry per
    matched lot with its holding period (calendar days) and return (net of costs)."""
    return _round_trips(_fills(trades))


def _round_trips(fills: pd.DataFrame) -> list[dict[str, Any]]:
    lots: dict[str, deque[list[float]]] = defaultdict(deque)  # [qty, cost per share, date ordinal]
    trips = []
    for row in fills.itertuples(index=False):
        q = float(row.qty)
        if row.side == "buy":
            lots[row.ticker].append([q, -float(row.cash_flow_eur) / q, row.date.toordinal()])
            continue
        price = float(row.cash_flow_eur) / q
        while q > 1e-9 and lots[row.ticker]:
            lot = lots[row.ticker][0]
            take = min(q, lot[0])
            trips.append({"ticker": row.ticker, "days": row.date.toordinal() - int(lot[2]), "qty": take,
                          "return": price / lot[1] - 1 if lot[1] > 0 else math.nan})
            lot[0] -= take
            q -= take
            if lot[0] <= 1e-9:
                lots[row.ticker].popleft()
    return trips


def win_rates(trips: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """The share of round trips that made money, by holding period, with Wilson intervals."""
    out = {}
    for lo, hi, label in HOLDING_BUCKETS:
        rs = [t["return"] for t in trips if lo <= t["days"] <= hi and t["return"] == t["return"]]
        out[label] = wilson(sum(r > 0 for r in rs), len(rs))
    rs = [t["return"] for t in trips if t["return"] == t["return"]]
    out["all"] = wilson(sum(r > 0 for r in rs), len(rs))
    return out


def cash_drag(equity: pd.DataFrame, periods_per_year: float = 252) -> dict[str, float]:
    """Average cash weight, and the return a year forgone against holding the same
    invested weights fully invested: ``r_full = r / w_invested`` (the previous session's
    weight; sessions with nothing invested count as the invested part's 0 return)."""
    if len(equity) < 2:
        return {"time_in_cash": math.nan, "cash_drag_ann": math.nan}
    nav = equity["nav_eur"].to_numpy(dtype=float)
    cash_w = equity["cash_eur"].to_numpy(dtype=float) / nav
    r = nav[1:] / nav[:-1] - 1
    w = 1 - cash_w[:-1]
    full = np.where(w > 0.01, r / np.where(w > 0.01, w, 1.0), 0.0)
    return {"time_in_cash": float(cash_w.mean()), "cash_drag_ann": float((full - r).mean() * periods_per_year)}


def _cause(reason: str) -> str:
    """A HOLD reason reduced to its cause ("the model refused", "the LLM server answered HTTP 500")."""
    text = reason.strip()
    m = re.match(r"(the LLM server answered HTTP \d+|the LLM server did not answer|the model refused|"
                 r"the answer did not parse|the daily LLM budget)", text)
    if m:
        return m.group(1)
    return text.split(":")[0][:60]


@dataclass
class RecordCounts:
    """What the analytics count of an arm's decision records: the sessions, those with at
    least one cut, the cuts by stage and rule, and the explicit HOLDs by cause.

    Counts add up, so a day's records can be added to the counts of the days before
    (:meth:`from_analytics` takes them back from a verdict written earlier) instead of
    every record being read again."""

    sessions: int = 0
    with_cut: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    holds: Counter[str] = field(default_factory=Counter)

    def add(self, record: Mapping[str, Any]) -> None:
        self.sessions += 1
        cuts = record.get("cuts") or []
        self.with_cut += bool(cuts)
        self.by_rule.update(c.get("stage", "?") for c in cuts)
        reason = (record.get("answer") or {}).get("fallback")
        if reason:
            self.holds[_cause(str(reason))] += 1

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> RecordCounts:
        counts = cls()
        for r in records:
            counts.add(r)
        return counts

    @classmethod
    def from_analytics(cls, analytics: Mapping[str, Any]) -> RecordCounts | None:
        """The counts behind the ``cuts`` and ``fallbacks`` of :func:`analyse`'s answer (a
        rate times its sessions gives back its whole count), or None when they are not all
        there, whole and consistent."""
        try:
            cuts, holds = analytics["cuts"], analytics["fallbacks"]
            n = cuts["sessions_with_cuts"]["n"]
            if not (type(n) is int and n >= 0 and holds["hold_rate"]["n"] == n):
                return None
            by_rule = {str(k): v for k, v in cuts["by_rule"].items()}
            causes = {str(k): _whole(v, n) for k, v in holds["by_cause"].items()}
            counts = cls(sessions=n, with_cut=_whole(cuts["sessions_with_cuts"], n), by_rule=Counter(by_rule),
                         holds=Counter(causes))
        except (KeyError, TypeError, AttributeError, ValueError):
            return None
        if not all(type(v) is int and v >= 0 for v in counts.by_rule.values()):
            return None
        if counts.cuts() != cuts or counts.fallbacks() != holds:  # what it says is what it counted
            return None
        return counts

    def cuts(self) -> dict[str, Any]:
        """How often the checks and guardrails changed the answer: per stage and rule, and the
        share of sessions with at least one cut (Wilson interval)."""
        return {"by_rule": dict(sorted(self.by_rule.items())), "sessions_with_cuts": wilson(self.with_cut, self.sessions)}

    def fallbacks(self) -> dict[str, Any]:
        """How often the answer was replaced by an explicit HOLD, by cause, with intervals."""
        n = self.sessions
        return {"hold_rate": wilson(sum(self.holds.values()), n),
                "by_cause": {k: wilson(v, n) for k, v in sorted(self.holds.items())}}


def _whole(interval: Mapping[str, Any], n: int) -> int:
    """The count behind a Wilson interval of `n` trials (0 when n is 0: its rate is NaN)."""
    if n == 0:
        return 0
    k = round(float(interval["rate"]) * n)
    if wilson(k, n) != interval:
        raise ValueError("not a count of n")
    return k


def _turnover(fills: pd.DataFrame, equity: pd.DataFrame) -> float:
    from engine.backtest.metrics import turnover

    if equity.empty:
        return math.nan
    nav = pd.Series(equity["nav_eur"].to_numpy(dtype=float), index=pd.DatetimeIndex(equity["date"]))
    return float(turnover(fills, nav))


def analyse(
    trades: pd.DataFrame, equity: pd.DataFrame, records: RecordCounts,
    close_eur: pd.DataFrame | None = None, periods_per_year: float = 252,
) -> dict[str, Any]:
    """Every decision analytic of one arm (`records`: the counts of its decision records)."""
    fills = _fills(trades)  # the buys and sales, in order, read once for every figure
    trips = _round_trips(fills)
    out: dict[str, Any] = {
        "fills": int(len(fills)),
        "round_trips": len(trips),
        "win_rate_by_holding": win_rates(trips),
        "turnover_ann": _turnover(fills, equity),
        **cash_drag(equity, periods_per_year),
        "cuts": records.cuts(),
        "fallbacks": records.fallbacks(),
        "note": "intervals are 95%: normal for means (optimistic: an arm's trades overlap in time), Wilson for rates",
    }
    if close_eur is not None:
        out["forward_returns"] = _forward_returns(fills, close_eur, HORIZONS)
    return out
