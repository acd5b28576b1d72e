"""The weekly report, ``state/reports/YYYY-Www.md``: committed with the state, part of the audit trail.

Every figure is derived from the state files (``portfolio.json``, ``equity.parquet``,
``trades.parquet``, ``decisions/``): no clock, no network, so writing a week's report
twice gives the same bytes, and anyone can recompute it from the committed state.

How the figures are computed (the *baseline* is the close of the previous week's last
session, or the starting capital for the week of inception):

* the week's P&L is the NAV at the week's last session minus the baseline NAV; the
  cumulative P&L is that NAV minus the starting capital;
* the benchmarks are the ``benchmark_<key>_eur`` columns of ``equity.parquet``
  (the starting capital put in buy-and-hold at inception's close), over the same
  baseline, so the comparison is like for like, in EUR;
* a position's P&L for the week is its value at the week's last close, minus its value
  at the baseline, minus what was put into it during the week (purchases with their
  costs, less sales and dividends: the trades' cash flows). The values are the
  decision records' positions at those closes (quantity times the EUR price). Cash earns
  nothing, so the positions' P&L add up to the week's NAV change, up to the rounding
  of the records; the report prints both;
* the trades, costs and taxes are the ``trades.parquet`` rows dated in the week.

Text written by the model (summaries, fallback reasons) passes through
:func:`engine.report.text.untrusted_md`. The report links a chart ``YYYY-Www.png``
beside it; charts are not committed, so whoever publishes the report draws it with
:func:`weekly_chart`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config import Config
from engine.data import calendars
from engine.errors import ConfigError, StateCorrupt
from engine.portfolio.ledger import Portfolio
from engine.report.text import untrusted_md
from engine.state import StateStore, atomic_write_bytes, state_lock

REPORTS_DIR = "reports"
SUMMARY_MAX_CHARS = 200
SPARK = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_BENCHMARK_COLUMN = re.compile(r"benchmark_(.+)_eur")


# --- weeks -----------------------------------------------------------------------


def iso_week(d: dt.date) -> str:
    """``2024-W25``: the ISO week holding `d`."""
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


def parse_week(text: str) -> tuple[dt.date, dt.date]:
    """The Monday and the Sunday of an ISO week ``YYYY-Www``; ConfigError if there is none."""
    m = _WEEK.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"--week: expected an ISO week such as 2026-W07, got {text!r}")
    year, week = int(m[1]), int(m[2])
    weeks_in_year = dt.date(year, 12, 28).isocalendar().week
    if not 1 <= week <= weeks_in_year:
        raise ConfigError(f"--week: {text} does not exist: {year} has weeks W01 to W{weeks_in_year}")
    monday = dt.date.fromisocalendar(year, week, 1)
    return monday, monday + dt.timedelta(days=6)


# --- the figures -------------------------------------------------------------------


@dataclass(frozen=True)
class PositionWeek:
    ticker: str
    qty_start: float
    qty_end: float
    value_start_eur: float
    value_end_eur: float
    net_bought_eur: float  # purchases with their costs, less sales and dividends
    pnl_eur: float
    price_move: float | None  # close to close in the asset's currency; None without a baseline


@dataclass(frozen=True)
class BenchmarkWeek:
    name: str
    start_eur: float  # at the baseline
    nav_eur: float
    week_return: float
    total_return: float


@dataclass(frozen=True)
class DecisionLine:
    date: dt.date
    policy: str
    summary: str
    orders: int
    cuts: int
    fallback: str | None


@dataclass(frozen=True)
class WeeklyReport:
    week: str
    monday: dt.date
    sunday: dt.date
    sessions: tuple[dt.date, ...]
    sessions_in_week: int  # on the exchange calendars: more than `sessions` while the week runs
    source: str
    synthetic: bool
    inception: dt.date
    capital_eur: float
    baseline_date: dt.date | None  # None: the week of inception (baseline = the capital)
    baseline_nav_eur: float
    nav_eur: tuple[float, ...]  # at each session of the week
    benchmarks: tuple[BenchmarkWeek, ...]
    positions: tuple[PositionWeek, ...]  # best first
    trades: pd.DataFrame  # the trades.parquet rows of the week, in date order
    decisions: tuple[DecisionLine, ...]

    @property
    def nav_end_eur(self) -> float:
        return self.nav_eur[-1]

    @property
    def week_pnl_eur(self) -> float:
        return self.nav_end_eur - self.baseline_nav_eur

    @property
    def week_return(self) -> float:
        return self.nav_end_eur / self.baseline_nav_eur - 1

    @property
    def total_pnl_eur(self) -> float:
        return self.nav_end_eur - self.capital_eur

    @property
    def total_return(self) -> float:
        return self.nav_end_eur / self.capital_eur - 1

    def cost(self, column: str) -> float:
        return float(self.trades[column].sum()) if len(self.trades) else 0.0

    @property
    def costs_eur(self) -> float:
        return sum(self.cost(c) for c in ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur"))

    @property
    def dividends_eur(self) -> float:
        t = self.trades
        return float(t.loc[t["side"] == "dividend", "cash_flow_eur"].sum()) if len(t) else 0.0


@dataclass(frozen=True)
class _Loaded:
    store: StateStore
    portfolio: Portfolio
    equity: pd.DataFrame  # sessions up to as_of only
    week: str
    monday: dt.date
    sunday: dt.date
    in_week: pd.DataFrame
    before: pd.DataFrame


def _load(state: Path, week: str | None) -> _Loaded:
    store = StateStore(Path(state))
    p = store.load()
    equity = store.equity()
    if p is None or p.as_of is None or equity.empty:
        raise ConfigError(f"{state} holds no session yet: nothing to report (run python -m engine daily first)")
    # Rows after as_of belong to a save that did not finish; the next run redoes them.
    dates = pd.to_datetime(equity["date"])
    equity = equity.loc[dates <= pd.Timestamp(p.as_of)].assign(date=dates).sort_values("date", kind="stable")
    if week is None:
        week = iso_week(p.as_of)
    monday, sunday = parse_week(week)
    week = iso_week(monday)
    day = equity["date"].dt.date
    in_week = equity.loc[(day >= monday) & (day <= sunday)]
    if in_week.empty:
        first, last = day.iloc[0], day.iloc[-1]
        raise ConfigError(f"{week} has no session in {state}, which holds {first} .. {last}")
    return _Loaded(store, p, equity, week, monday, sunday, in_week, equity.loc[day < monday])


def build_report(state: Path, config: Config, week: str | None = None) -> WeeklyReport:
    """The figures of one ISO week (default: the week of the state's last session)."""
    w = _load(state, week)
    p, store = w.portfolio, w.store
    capital = p.starting_capital_eur
    sessions = tuple(w.in_week["date"].dt.date)
    baseline = w.before.iloc[-1] if len(w.before) else None
    baseline_date = baseline["date"].date() if baseline is not None else None

    benchmarks = []
    names = {b.key: b.name for b in config.benchmarks}
    for col in w.equity.columns:
        m = _BENCHMARK_COLUMN.fullmatch(col)
        if m is None:
            continue
        end = float(w.in_week[col].iloc[-1])
        start = float(baseline[col]) if baseline is not None else capital
        benchmarks.append(BenchmarkWeek(names.get(m[1], m[1]), start, end, end / start - 1, end / capital - 1))

    trades = store.trades()
    if len(trades):
        tday = pd.to_datetime(trades["date"]).dt.date
        trades = trades.loc[(tday >= w.monday) & (tday <= min(w.sunday, p.as_of))]
        trades = trades.sort_values("date", kind="stable").reset_index(drop=True)

    records = {d: store.decision(pd.Timestamp(d)) for d in sessions}
    start_record = store.decision(pd.Timestamp(baseline_date)) if baseline_date is not None else None
    positions = _positions(start_record, records[sessions[-1]], trades)
    decisions = tuple(_decision_line(d, r) for d, r in records.items())
    codes = {i.calendar for i in config.instruments.values()}
    return WeeklyReport(
        week=w.week,
        monday=w.monday,
        sunday=w.sunday,
        sessions=sessions,
        sessions_in_week=max(len(calendars.union_sessions(codes, w.monday, w.sunday)), len(sessions)),
        source=p.source,
        synthetic=p.source.startswith("demo"),
        inception=p.inception or w.equity["date"].iloc[0].date(),
        capital_eur=capital,
        baseline_date=baseline_date,
        baseline_nav_eur=float(baseline["nav_eur"]) if baseline is not None else capital,
        nav_eur=tuple(float(x) for x in w.in_week["nav_eur"]),
        benchmarks=tuple(benchmarks),
        positions=positions,
        trades=trades,
        decisions=decisions,
    )


def _record_part(record: dict[str, Any], *keys: str) -> Any:
    x: Any = record
    try:
        for k in keys:
            x = x[k]
    except (KeyError, TypeError, IndexError):
        raise StateCorrupt(f"the decision record of {record.get('date', '?')} lacks {'.'.join(keys)}") from None
    return x


def _holdings(record: dict[str, Any] | None) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """(ticker -> (qty, value EUR)) held at the record's close, and every asset's local close."""
    if record is None:
        return {}, {}
    held = {}
    for pos in _record_part(record, "brief", "positions"):
        qty = float(pos["qty"])
        value = pos.get("value_eur")
        held[pos["ticker"]] = (qty, float(value) if value is not None else qty * float(pos["price_eur"]))
    assets = _record_part(record, "brief", "assets")
    closes = {}
    if "close" in assets.get("columns", []):
        j = assets["columns"].index("close")
        closes = {t: row[j] for t, row in assets.get("rows", {}).items() if row[j] is not None}
    return held, closes


def _positions(
    start_record: dict[str, Any] | None, end_record: dict[str, Any], trades: pd.DataFrame
) -> tuple[PositionWeek, ...]:
    start, start_close = _holdings(start_record)
    end, end_close = _holdings(end_record)
    flows = trades.groupby("ticker", sort=True)["cash_flow_eur"].sum().to_dict() if len(trades) else {}
    out = []
    for t in sorted(set(start) | set(end) | set(flows)):
        q0, v0 = start.get(t, (0.0, 0.0))
        q1, v1 = end.get(t, (0.0, 0.0))
        net_bought = -float(flows.get(t, 0.0))
        move = end_close[t] / start_close[t] - 1 if t in start_close and t in end_close else None
        out.append(PositionWeek(t, q0, q1, v0, v1, net_bought, v1 - v0 - net_bought, move))
    out.sort(key=lambda x: (-x.pnl_eur, x.ticker))
    return tuple(out)


def _decision_line(day: dt.date, r: dict[str, Any]) -> DecisionLine:
    answer = _record_part(r, "answer")
    model = r.get("model")
    return DecisionLine(
        date=day,
        policy=f"{r.get('policy', '?')} ({model})" if model else str(r.get("policy", "?")),
        summary=str(_record_part(answer, "parsed", "summary") or ""),
        orders=len(_record_part(r, "orders")),
        cuts=len(_record_part(r, "cuts")),
        fallback=answer.get("fallback") or None,
    )


# --- the page --------------------------------------------------------------------------


def sparkline(values: Sequence[float]) -> str:
    """``▁▃█▅``: one block per value, from the lowest to the highest (flat: all middle)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo <= 1e-9 * max(abs(hi), 1.0):
        return SPARK[3] * len(vals)
    top = len(SPARK) - 1
    return "".join(SPARK[min(top, int((v - lo) / (hi - lo) * top + 0.5))] for v in vals)


def _eur(x: float, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "n/a"
    x = round(x, 2) + 0.0  # no "-0.00"
    return f"{x:+,.2f}" if sign else f"{x:,.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.2%}"


def _qty(x: float) -> str:
    return f"{x:,.6g}"


def _table(head: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(r) + " |" for r in (head, rule, *rows)]


def render(r: WeeklyReport) -> str:
    """The report as Markdown (a pure function of the figures)."""
    md = untrusted_md
    first, last = r.sessions[0], r.sessions[-1]
    out = [f"# Weekly report {r.week}", ""]
    if r.synthetic:
        out += [f"**SYNTHETIC market** ({md(r.source)}): simulated prices, not real ones.", ""]
    n = len(r.sessions)
    line = f"{n} session{'s' if n != 1 else ''}, {first} .. {last}"
    if n < r.sessions_in_week:
        line += f" {IN_PROGRESS} {n} of {r.sessions_in_week} sessions)"
    out += [line + f". Prices: {md(r.source)}. Every figure is computed from the state folder.", ""]

    # performance
    out += ["## Performance", ""]
    start = f"the close of {r.baseline_date}" if r.baseline_date else f"the starting capital (inception {r.inception})"
    spark = sparkline([r.baseline_nav_eur, *r.nav_eur])
    nav_line = f"NAV `{spark}` from {_eur(r.baseline_nav_eur)} EUR at {start} to {_eur(r.nav_end_eur)} EUR"
    out += [
        f"{nav_line} at the close of {last}.",
        "",
        f"![NAV against buy-and-hold, {r.week}]({r.week}.png)",
        "",
    ]
    rows = [["Portfolio", _eur(r.nav_end_eur), _eur(r.week_pnl_eur, True), _pct(r.week_return),
             _eur(r.total_pnl_eur, True), _pct(r.total_return)]]
    for b in r.benchmarks:
        rows.append([md(b.name), _eur(b.nav_eur), _eur(b.nav_eur - b.start_eur, True),
                     _pct(b.week_return), _eur(b.nav_eur - r.capital_eur, True), _pct(b.total_return)])
    out += _table(["", "NAV EUR", "week EUR", "week", "since inception EUR", "since inception"], "lrrrrr", rows)
    out.append("")
    for b in r.benchmarks:
        out.append(f"Against {md(b.name)}: {_points(r.week_return - b.week_return)} this week, "
                   f"{_points(r.total_return - b.total_return)} since inception ({r.inception}).")
    out.append("")

    # positions
    out += ["## Positions", ""]
    if not r.positions:
        out += ["No position was held this week.", ""]
    else:
        best, worst = r.positions[0], r.positions[-1]
        if len(r.positions) == 1:
            out.append(f"One position: **{md(best.ticker)}** {_eur(best.pnl_eur, True)} EUR.")
        else:
            out.append(f"Best: **{md(best.ticker)}** {_eur(best.pnl_eur, True)} EUR. "
                       f"Worst: **{md(worst.ticker)}** {_eur(worst.pnl_eur, True)} EUR.")
        out.append("")
        rows = [[md(x.ticker), _qty(x.qty_start), _qty(x.qty_end), _eur(x.value_start_eur), _eur(x.value_end_eur),
                 _eur(x.net_bought_eur, True), _eur(x.pnl_eur, True), _pct(x.price_move)] for x in r.positions]
        out += _table(["ticker", "qty start", "qty end", "value start EUR", "value end EUR", "net bought EUR",
                       "P&L EUR", "price move"], "lrrrrrrr", rows)
        total = sum(x.pnl_eur for x in r.positions)
        out.append("")
        out.append("P&L = value at the end - value at the start - net bought (purchases with their costs, less sales "
                   "and dividends); the price move is close to close in the asset's own currency. "
                   f"The positions add up to {_eur(total, True)} EUR; the NAV moved by {_eur(r.week_pnl_eur, True)} "
                   "EUR (cash earns nothing: any difference is the rounding of the records).")
    out.append("")

    # trades
    out += ["## Trades", ""]
    t = r.trades
    if not len(t):
        out += ["No fill this week.", ""]
    else:
        out += [f"{len(t)} fill{'s' if len(t) != 1 else ''} (dividends and splits included):", ""]
        rows = []
        for f in t.itertuples(index=False):
            costs = f.slippage_eur + f.commission_eur + f.tax_eur + f.fx_fee_eur
            rows.append([str(pd.Timestamp(f.date).date()), md(f.ticker), md(f.side), _qty(f.qty),
                         f"{f.price_local:,.4f} {md(f.currency)}", _eur(f.gross_eur), _eur(costs), _eur(f.tax_eur),
                         _eur(f.cash_flow_eur, True)])
        out += _table(["date", "ticker", "side", "qty", "price", "gross EUR", "costs EUR", "of which FTT EUR",
                       "cash flow EUR"], "llllrrrrr", rows)
        out.append("")
    out.append(f"Costs paid this week: {_eur(r.costs_eur)} EUR, of which slippage {_eur(r.cost('slippage_eur'))}, "
               f"commission {_eur(r.cost('commission_eur'))}, FX {_eur(r.cost('fx_fee_eur'))} and taxes (French FTT) "
               f"{_eur(r.cost('tax_eur'))}. Dividends received: {_eur(r.dividends_eur)} EUR.")
    out.append("")

    # decisions
    out += ["## Decisions", ""]
    rows = []
    for d in r.decisions:
        text = md(d.summary, SUMMARY_MAX_CHARS)
        if d.fallback:
            text = f"**HOLD (fallback):** {md(d.fallback, SUMMARY_MAX_CHARS)}" + (f" ({text})" if text else "")
        rows.append([str(d.date), md(d.policy), str(d.orders), str(d.cuts), text])
    out += _table(["date", "policy", "orders", "cuts", "summary"], "llrrl", rows)
    out += ["", "Each session's full record (brief, answer, cuts, orders) is in `decisions/YYYY/MM-DD.json`.", ""]
    return "\n".join(out)


def _points(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.2f} points"


def report_path(state: Path, week: str) -> Path:
    return Path(state) / REPORTS_DIR / f"{week}.md"


def write_weekly(state: Path, config: Config, week: str | None) -> Path:
    """Write ``state/reports/YYYY-Www.md`` (default: the week of the last session), atomically."""
    with state_lock(Path(state), create=False):  # one writer: the report reads what daily writes
        report = build_report(state, config, week)
        path = report_path(state, report.week)
        atomic_write_bytes(path, render(report).encode("utf-8"))
    return path


IN_PROGRESS = "(week in progress:"


def refresh_previous_week(state: Path, config: Config) -> Path | None:
    """Rewrite the report of the ISO week before the state's last session when it was written
    while that week was still in progress (the weekly job ran before Friday's daily was
    stored) and the state now holds more of it; returns its path, or None when nothing changed."""
    p = StateStore(Path(state)).load()
    if p is None or p.as_of is None:
        return None
    monday, _ = parse_week(iso_week(p.as_of))
    week = iso_week(monday - dt.timedelta(days=7))
    path = report_path(state, week)
    if not path.exists() or IN_PROGRESS not in path.read_text(encoding="utf-8"):
        return None
    text = render(build_report(state, config, week)).encode("utf-8")
    if text == path.read_bytes():
        return None
    atomic_write_bytes(path, text)
    return path


def week_lines(equity: pd.DataFrame, week: str) -> dict[str, pd.Series]:
    """The lines of a week's chart, in EUR: the NAV (``"strategy"``) and each benchmark
    column (by its key, ``benchmark_<key>_eur``), from the baseline close (the last session
    before the week) to the week's last session; indexed by labels, not dates ("Mon 02
    Mar"), one evenly spaced point per session, no weekend gap. `equity` has a ``date``
    column of Timestamps, sorted, and no row after the state's as_of. ConfigError if the
    week holds no session."""
    monday, sunday = parse_week(week)
    day = equity["date"].dt.date
    in_week = equity.loc[(day >= monday) & (day <= sunday)]
    if in_week.empty:
        raise ConfigError(f"{iso_week(monday)} has no session in the state")
    before = equity.loc[day < monday]
    frame = pd.concat([before.tail(1), in_week]) if len(before) else in_week
    frame = frame.set_index(frame["date"].dt.strftime("%a %d %b"))
    lines = {"strategy": frame["nav_eur"].astype(float)}
    for col in frame.columns:
        m = _BENCHMARK_COLUMN.fullmatch(col)
        if m is not None:
            lines[m[1]] = frame[col].astype(float)
    return lines


def weekly_chart(state: Path, week: str, path: Path, config: Config | None = None) -> Path:
    """The week's NAV against the buy-and-hold benchmarks, in EUR, from the baseline close,
    as a PNG at `path` (the report links it as ``YYYY-Www.png`` beside itself). `config`
    only names the benchmarks (default: the default configuration)."""
    from engine.config import load_config
    from engine.report.charts import equity_chart

    w = _load(state, week)
    names = {b.key: b.name for b in (config or load_config()).benchmarks}
    lines = {names.get(k, k) if k != "strategy" else k: s for k, s in week_lines(w.equity, w.week).items()}
    return equity_chart(lines, Path(path),
                        synthetic=w.portfolio.source.startswith("demo"),
                        title=f"{w.week}: NAV in EUR against buy-and-hold")
