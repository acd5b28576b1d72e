"""The site's generated pages: Markdown (and the charts they show) from the state.

Each ``*_page`` function is a pure function of :class:`SiteData` that returns the
Markdown of one page; the charts are drawn by :func:`draw_charts`. Nothing here reads
the state or the clock: :mod:`engine.report.site` loads the data and runs the build.

Two kinds of text reach a page. What the site writes itself (labels, formatted numbers,
links between pages) is Markdown or HTML. Everything read from a decision record, an
alert or a report that a policy could have written is untrusted and goes through
:func:`engine.report.escape.untrusted` (or :func:`~engine.report.escape.safe_markdown`
for the weekly reports): see that module. HTML tables built here escape every cell
unless it is wrapped in :class:`Raw`, which is only ever made from the site's own
markup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from engine.backtest.metrics import performance
from engine.config import Config
from engine.portfolio.ledger import Portfolio
from engine.report import site_charts as charts
from engine.report.escape import safe_markdown, untrusted, untrusted_pre

SUMMARY_CHARS = 240  # of the latest decision's summary on the home page
RECENT_FILLS = 20
TOP_BUCKETS = 8  # assets drawn on their own in the allocation chart; the rest are "Other"
ASSET_COLUMNS = ("close", "sma_50", "sma_200", "rsi_14", "vol_20_ann", "cvar_95", "half_kelly", "prospect_20d",
                 "ret_20d")
BACKTEST_LABELS = {
    "strategy": "Strategy",
    "buy_and_hold_spy": "Buy-and-hold SPY",
    "buy_and_hold_cac40_tracker": "Buy-and-hold CAC 40 tracker",
    "cac40_index": "CAC 40 index (no costs)",
    "equal_weight": "Equal weight, 21 assets",
}


BACKTEST_SHORT = {"strategy": "Strategy", "buy_and_hold_spy": "SPY", "buy_and_hold_cac40_tracker": "CAC 40 ETF",
                  "cac40_index": "CAC 40 index", "equal_weight": "Equal weight"}


# A page with no sections of its own: the navigation sidebar would only repeat its name.
FRONT_MATTER_WIDE = "---\nhide:\n  - navigation\n---\n"


class Raw(str):
    """Markup the site wrote itself, never text from a record: inserted as it is."""


@dataclass(frozen=True)
class Backtest:
    metrics: dict[str, Any]
    lines: pd.DataFrame | None  # benchmarks.parquet: date x (strategy, benchmarks), EUR
    charts: tuple[Path, ...] = ()  # the run's own PNGs, used when there is no benchmarks.parquet


@dataclass(frozen=True)
class SiteData:
    config: Config
    portfolio: Portfolio
    equity: pd.DataFrame  # indexed by session date
    trades: pd.DataFrame
    records: list[dict[str, Any]]  # decision records, oldest first
    reports: list[tuple[str, str]] = field(default_factory=list)  # (name, Markdown), oldest first
    alerts: list[dict[str, Any]] = field(default_factory=list)  # as appended, oldest first
    backtest: Backtest | None = None

    @property
    def synthetic(self) -> bool:
        return self.portfolio.source.startswith("demo")

    @property
    def as_of(self) -> dt.date:
        if self.portfolio.as_of is not None:
            return self.portfolio.as_of
        return pd.Timestamp(self.equity.index[-1]).date()

    @property
    def benchmark_columns(self) -> dict[str, tuple[str, str]]:
        """{key: (column, label)} of the benchmarks present in the equity file."""
        out = {}
        for b in self.config.benchmarks:
            col = f"benchmark_{b.key}_eur"
            if col in self.equity.columns:
                out[b.key] = (col, b.name)
        return out

    @cached_property
    def record_dates(self) -> frozenset[str]:
        return frozenset(r["date"] for r in self.records)

    @cached_property
    def months(self) -> dict[str, list[dict[str, Any]]]:
        """Decision records by month ("YYYY-MM"), newest month first, newest day first."""
        by: dict[str, list[dict[str, Any]]] = {}
        for rec in reversed(self.records):
            by.setdefault(rec["date"][:7], []).append(rec)
        return by


# --- formatting: the site's own text --------------------------------------------------


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: object, fmt: str = ",.2f") -> Raw:
    """A number, or "n/a"; a value that is not a number is shown escaped. Safe markup."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return Raw("n/a")
    if _finite(x):
        return Raw(format(x, fmt))
    return Raw(untrusted(x))


def eur(x: object, digits: int = 2) -> Raw:
    return Raw("n/a") if num(x) == "n/a" else Raw(f"{num(x, f',.{digits}f')} EUR")


def pct(x: object, digits: int = 2, signed: bool = False) -> Raw:
    return num(x, f"{'+' if signed else ''}.{digits}%")


def points(x: object) -> Raw:
    """A difference of two returns, in percentage points."""
    return Raw("n/a" if not _finite(x) else f"{100 * x:+.2f} pts")


def day_label(d: dt.date, weekday: bool = True) -> str:
    return f"{d:%a} {d.day} {d:%b %Y}" if weekday else f"{d.day} {d:%B %Y}"


def month_label(month: str) -> str:
    return dt.date.fromisoformat(month + "-01").strftime("%B %Y")


def month_page(month: str) -> str:
    return f"decisions/{month}.md"


def _record_date(rec: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(rec["date"])


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = (),
               css: str = "") -> str:
    """An HTML table on one line per row; every cell is escaped unless it is :class:`Raw`."""
    def cell(tag: str, i: int, v: object) -> str:
        align = ' class="num"' if i in numeric else ""
        text = v if isinstance(v, Raw) else untrusted(v)
        return f"<{tag}{align}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = ()) -> str:
    """A Markdown table (its links are checked by the strict build); cells escaped unless :class:`Raw`."""
    def cell(v: object) -> str:
        return v if isinstance(v, Raw) else untrusted(v)

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("--:" if i in numeric else ":--" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def llm_text(text: object) -> Raw:
    """What the model wrote, escaped, marked as its words."""
    return Raw(f'<span class="llm">{untrusted(text)}</span>')


def kpi(label: str, value: str, sub: str = "", tone: str = "") -> str:
    cls = f"kpi {tone}".strip()
    sub_html = f'<span class="kpi-sub">{sub}</span>' if sub else ""
    return (f'<div class="{cls}"><span class="kpi-label">{label}</span>'
            f'<span class="kpi-value">{value}</span>{sub_html}</div>')


def tone(x: object) -> str:
    return "" if not _finite(x) or x == 0 else ("good" if x > 0 else "bad")


def synthetic_banner(data: SiteData, level: str = "danger") -> str:
    if not data.synthetic:
        return ""
    return (
        f'!!! {level} "Synthetic data: this is a demo, not a real portfolio"\n'
        f"    Every price on this site comes from a seeded synthetic market (source "
        f"{untrusted(data.portfolio.source)}), not from any exchange. The figures show how the engine "
        "works; they say nothing about real markets or about any model's skill.\n\n"
    )


def _perf(nav: pd.Series, capital: float) -> dict[str, Any]:
    return performance(nav.astype(float), capital=capital)


def _lines(data: SiteData) -> dict[str, tuple[str, pd.Series]]:
    eq = data.equity
    lines = {"strategy": ("Strategy", eq["nav_eur"].astype(float))}
    for key, (col, label) in data.benchmark_columns.items():
        lines[key] = (label, eq[col].astype(float))
    return lines


def short(label: str) -> str:
    """ "Buy-and-hold SPY" -> "SPY": for legends and tiles, where the title says buy-and-hold."""
    return label.removeprefix("Buy-and-hold ")


# --- charts -----------------------------------------------------------------------------


def record_series(data: SiteData) -> pd.DataFrame:
    """Per session, from the decision records: the risk limits and figures the brief held."""
    rows = []
    for rec in data.records:
        brief = rec.get("brief") or {}
        port = brief.get("portfolio") or {}
        limits = brief.get("limits") or {}
        rows.append({
            "date": pd.Timestamp(rec["date"]),
            "cvar_budget": limits.get("cvar_budget"),
            "exposure_cap": limits.get("exposure_cap"),
            "multiplier": port.get("drawdown_multiplier", limits.get("drawdown_multiplier")),
            "prospect_value": port.get("prospect_value"),
        })
    frame = pd.DataFrame(rows, columns=["date", "cvar_budget", "exposure_cap", "multiplier", "prospect_value"])
    return frame.set_index("date").apply(pd.to_numeric, errors="coerce").sort_index()


def allocation_history(data: SiteData) -> pd.DataFrame:
    """Weights of NAV at each session's close (dates x tickers + Cash), from the records' briefs."""
    rows: dict[pd.Timestamp, dict[str, float]] = {}
    for rec in data.records:
        brief = rec.get("brief") or {}
        port = brief.get("portfolio") or {}
        nav = port.get("nav_eur")
        if not _finite(nav) or nav <= 0:
            continue
        w = {}
        for pos in brief.get("positions") or []:
            v = pos.get("value_eur")
            if _finite(v):
                w[str(pos.get("ticker"))] = v / nav
        cash = port.get("cash_eur")
        w["Cash"] = cash / nav if _finite(cash) else max(0.0, 1 - sum(w.values()))
        rows[pd.Timestamp(rec["date"])] = w
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0).sort_index()
    if frame.empty:
        return frame
    assets = [c for c in frame.columns if c != "Cash"]
    top = list(frame[assets].mean().sort_values(ascending=False).index[:TOP_BUCKETS])
    out = frame[top].copy()
    rest = [c for c in assets if c not in top]
    if rest:
        out["Other"] = frame[rest].sum(axis=1)
    out["Cash"] = frame["Cash"]
    return out


def current_weights(data: SiteData) -> dict[str, float]:
    rows = positions_rows(data)
    nav = float(data.equity["nav_eur"].iloc[-1])
    w = {r["ticker"]: r["value_eur"] / nav for r in rows if _finite(r["value_eur"]) and nav > 0}
    w["Cash"] = data.portfolio.cash_eur / nav if nav > 0 else 0.0
    return w


def draw_charts(data: SiteData, folder: Path) -> list[str]:
    """Every chart the pages show, into `folder`; returns the file names drawn."""
    syn = data.synthetic
    eq = data.equity
    cfg = data.config
    done = []

    def draw(name: str, fn, *args, **kwargs) -> None:
        fn(*args, folder / name, **kwargs)
        done.append(name)

    lines = {k: (short(label), s) for k, (label, s) in _lines(data).items()}
    draw("equity.png", charts.nav_chart, lines, synthetic=syn,
         title="NAV, EUR: strategy vs buy-and-hold")
    draw("drawdown.png", charts.drawdown_chart, lines, synthetic=syn, title="Drawdown from the peak")
    w = current_weights(data)
    draw("allocation.png", charts.allocation_bars, w, synthetic=syn)
    hist = allocation_history(data)
    if len(hist) >= 2:
        draw("allocation_history.png", charts.allocation_area, hist, synthetic=syn)
    rs = record_series(data)
    cvar = pd.to_numeric(eq["cvar_95"], errors="coerce").dropna() if "cvar_95" in eq else pd.Series(dtype=float)
    if len(cvar) >= 2:
        draw("cvar.png", charts.cvar_chart, cvar, rs["cvar_budget"].dropna(), synthetic=syn,
             label=f"CVaR {100 * cfg.risk.cvar_level:g}")
    if "drawdown" in eq and len(rs["multiplier"].dropna()) >= 2:
        draw("guard.png", charts.guard_chart, eq["drawdown"].astype(float), rs["multiplier"].dropna(),
             cfg.guardrails.drawdown_limit, synthetic=syn)
    if len(rs["prospect_value"].dropna()) >= 2:
        draw("prospect.png", charts.line_chart, rs["prospect_value"].dropna(), synthetic=syn,
             title="Prospect value since inception")
    g, r = cfg.guardrails, cfg.risk
    draw("drawdown_multiplier.png", charts.multiplier_curve, g.drawdown_limit, g.drawdown_floor, g.drawdown_power)
    draw("prospect_value.png", charts.prospect_curve, r.alpha, r.beta, r.loss_aversion)
    bt = data.backtest
    if bt is not None and bt.lines is not None and len(bt.lines) >= 2:
        frame = bt.lines
        bt_syn = bool(bt.metrics.get("run", {}).get("synthetic"))
        colour_key = {"buy_and_hold_spy": "spy", "cac40_index": "cac40"}
        bt_lines = {colour_key.get(c, c): (BACKTEST_SHORT.get(c, c), frame[c].astype(float))
                    for c in frame.columns}
        draw("backtest_equity.png", charts.nav_chart, bt_lines, synthetic=bt_syn,
             title="Backtest: NAV, EUR")
        draw("backtest_drawdown.png", charts.drawdown_chart, bt_lines, synthetic=bt_syn,
             title="Backtest: drawdown")
    return done


# --- home -------------------------------------------------------------------------------


def home_page(data: SiteData, drawn: Sequence[str]) -> str:
    p, eq, cfg = data.portfolio, data.equity, data.config
    capital = p.starting_capital_eur
    nav = eq["nav_eur"].astype(float)
    perf = _perf(nav, capital)
    ret = float(nav.iloc[-1] / capital - 1)
    first = pd.Timestamp(eq.index[0]).date()
    bench = {key: (label, float(eq[col].iloc[-1] / capital - 1))
             for key, (col, label) in data.benchmark_columns.items()}
    dd_now = float(eq["drawdown"].iloc[-1]) if "drawdown" in eq else math.nan
    cvar_now = float(eq["cvar_95"].iloc[-1]) if "cvar_95" in eq else math.nan
    last = data.records[-1] if data.records else None
    budget = (((last or {}).get("brief") or {}).get("limits") or {}).get("cvar_budget")
    cv = f"CVaR {100 * cfg.risk.cvar_level:g}"

    tiles = [kpi("NAV, EUR", num(nav.iloc[-1]), f"{pct(ret, signed=True)} since {day_label(first, False)}", tone(ret))]
    for label, r in bench.values():
        name = untrusted(short(label))
        tiles.append(kpi(f"vs {name}", points(ret - r), f"{name} {pct(r, signed=True)}", tone(ret - r)))
    tiles.append(kpi("Drawdown", pct(dd_now, 1), f"worst {pct(perf.get('max_drawdown'), 1)}", ""))
    tiles.append(kpi("Sharpe", num(perf.get("sharpe"), ".2f"), "annualised, daily returns"))
    tiles.append(kpi(f"{cv}, 1 day", pct(cvar_now), f"budget {pct(budget)} of NAV" if _finite(budget) else "of NAV"))

    out = [FRONT_MATTER_WIDE.replace("  - navigation\n", "  - navigation\n  - toc\n"), "# almost surely", ""]
    out.append(synthetic_banner(data))
    out.append(
        f"A language model manages a paper portfolio of {len(cfg.assets)} ETFs and Paris shares, started with "
        f"{eur(capital, 0)}. Python computes every number and books every paper order; the model only decides. "
        "**The null hypothesis: it cannot beat buy-and-hold SPY.** Everything it saw and did is published "
        "below, so anyone can check. [How it works](methodology.md) · [the null hypothesis](about.md)"
    )
    out += ["", '<div class="kpis">', *tiles, "</div>", ""]
    out += ["![NAV of the strategy against buy-and-hold SPY and CAC 40, in EUR](charts/equity.png)", ""]
    if last is not None:
        out += [latest_decision_line(last), ""]
    out += ["![Drawdown of the strategy and the benchmarks](charts/drawdown.png)", ""]
    out += ["## Against the benchmarks", "", comparison_table(data), ""]
    sessions = len(eq)
    out.append(
        f'<p class="updated">Last update: the session of {day_label(data.as_of)} '
        f"({sessions} session{'s' if sessions != 1 else ''} since {day_label(first, False)}). "
        "Every figure is computed from the state files in the repository; the same state gives the same site.</p>"
    )
    return "\n".join(out) + "\n"


def latest_decision_line(rec: dict[str, Any]) -> str:
    d = _record_date(rec)
    answer = rec.get("answer") or {}
    summary = str((answer.get("parsed") or {}).get("summary") or "")
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1].rstrip() + "…"
    n_orders, n_cuts = len(rec.get("orders") or []), len(rec.get("cuts") or [])
    who = untrusted(rec.get("model") or rec.get("policy") or "policy")
    hold = " **Explicit HOLD.**" if answer.get("fallback") else ""
    return (
        f"**Latest decision** ({day_label(d)}, {who}):{hold} "
        f"{llm_text(summary)} "
        f"{n_orders} order{'s' if n_orders != 1 else ''}, {n_cuts} cut{'s' if n_cuts != 1 else ''}. "
        f"[See what it saw and did]({month_page(rec['date'][:7])}#{d.isoformat()})"
    )


def comparison_table(data: SiteData) -> str:
    capital = data.portfolio.starting_capital_eur
    rows = []
    for label, s in _lines(data).values():
        m = _perf(s, capital)
        rows.append([label, eur(m.get("final_nav_eur")), pct(m.get("total_return"), signed=True),
                     num(m.get("sharpe"), ".2f"), pct(m.get("max_drawdown"), 1), pct(m.get("cvar_95"))])
    return md_table(["", "NAV", "Return", "Sharpe", "Max drawdown", "CVaR 95 of daily returns"], rows,
                    numeric=(1, 2, 3, 4, 5))


# --- portfolio --------------------------------------------------------------------------


def positions_rows(data: SiteData) -> list[dict[str, Any]]:
    """The positions of portfolio.json, priced at the last session's close (from its record)."""
    last = data.records[-1] if data.records else {}
    seen = {str(x.get("ticker")): x for x in ((last.get("brief") or {}).get("positions") or [])}
    nav = float(data.equity["nav_eur"].iloc[-1])
    rows = []
    for t, pos in data.portfolio.positions.items():
        view = seen.get(t, {})
        price_eur = view.get("price_eur")
        value = pos.qty * price_eur if _finite(price_eur) else math.nan
        rows.append({
            "ticker": t, "qty": pos.qty, "price_local": view.get("price_local"),
            "currency": view.get("currency") or getattr(data.config.instruments.get(t), "currency", ""),
            "value_eur": value, "weight": value / nav if nav > 0 else math.nan,
            "cost_eur": pos.cost_eur, "avg_cost_eur": pos.avg_cost_eur,
            "pnl_eur": value - pos.cost_eur, "pnl_pct": value / pos.cost_eur - 1 if pos.cost_eur > 0 else math.nan,
        })
    rows.sort(key=lambda r: -(r["value_eur"] if _finite(r["value_eur"]) else 0))
    return rows


def portfolio_page(data: SiteData, drawn: Sequence[str]) -> str:
    p, cfg = data.portfolio, data.config
    nav = float(data.equity["nav_eur"].iloc[-1])
    names = {a.ticker: a.name for a in cfg.assets}
    out = [FRONT_MATTER_WIDE, "# Portfolio", "", synthetic_banner(data, "warning")]
    out.append(f"Positions at the close of {day_label(data.as_of)}, in EUR (USD assets at that day's EURUSD).")
    out.append("")
    rows = []
    held = positions_rows(data)
    for r in held:
        rows.append([Raw(f"**{untrusted(r['ticker'])}**<br><small>{untrusted(names.get(r['ticker'], ''))}</small>"),
                     num(r["qty"], ",.6g"), Raw(f"{num(r['price_local'])} {untrusted(r['currency'])}"),
                     num(r["value_eur"]), pct(r["weight"], 1), num(r["avg_cost_eur"]), num(r["pnl_eur"], "+,.2f"),
                     pct(r["pnl_pct"], 1, signed=True)])
    invested = sum(r["value_eur"] for r in held if _finite(r["value_eur"]))
    rows.append([Raw("**Cash**"), "", "", num(p.cash_eur), pct(p.cash_eur / nav if nav else math.nan, 1),
                 "", "", ""])
    rows.append([Raw("**NAV**"), "", "", Raw(f"**{num(nav)}**"), "100%", "", "", ""])
    out.append(md_table(["Position", "Quantity", "Price", "Value EUR", "Weight", "Average cost EUR",
                         "P&L EUR", "P&L"], rows, numeric=(1, 2, 3, 4, 5, 6, 7)))
    out += ["", f"Invested {eur(invested)} ({pct(invested / nav if nav else math.nan, 1)} of NAV). P&L is against "
            "the average cost, buy costs included.", ""]
    out += ["![Allocation now, % of NAV](charts/allocation.png)", ""]
    if "allocation_history.png" in drawn:
        out += ["![Allocation over time, % of NAV](charts/allocation_history.png)", ""]

    out += ["## Pending orders", ""]
    if p.pending_orders:
        out.append("Decided after a close; each fills at the next open of its own exchange.")
        out.append("")
        out.append(md_table(["Decided on", "Ticker", "Side", "Quantity", "Reason given"], [
            [o.decided_on.isoformat(), o.ticker, o.side, num(o.qty, ",.6g"), llm_text(o.reason)]
            for o in p.pending_orders], numeric=(3,)))
    else:
        out.append("None.")
    out.append("")

    out += ["## What it cost", ""]
    c = p.costs
    cap = p.starting_capital_eur
    out.append(md_table(["", "EUR", "% of the starting capital"], [
        ["Commission", num(c.commission_eur), pct(c.commission_eur / cap)],
        ["French financial transaction tax", num(c.tax_eur), pct(c.tax_eur / cap)],
        ["Slippage", num(c.slippage_eur), pct(c.slippage_eur / cap)],
        ["FX conversion", num(c.fx_fee_eur), pct(c.fx_fee_eur / cap)],
        [Raw("**Total**"), Raw(f"**{num(c.total_eur)}**"), pct(c.total_eur / cap)],
    ], numeric=(1, 2)))
    out += ["", f"Realised P&L {eur(p.realised_pnl_eur)}, dividends {eur(p.dividends_eur)}."]
    llm = p.llm
    if llm.calls or llm.cache_hits:
        out.append(f"Model usage so far: {llm.calls:,} calls, {llm.cache_hits:,} answers replayed from the cache, "
                   f"{llm.prompt_tokens + llm.completion_tokens:,} tokens, {llm.cost_usd:,.4f} USD.")
    out.append("")

    out += ["## Recent fills", ""]
    tr = data.trades
    if len(tr):
        tr = tr.assign(_d=pd.to_datetime(tr["date"])).sort_values("_d", kind="stable").iloc[::-1][:RECENT_FILLS]
        rows = []
        for f in tr.to_dict("records"):
            d = pd.Timestamp(f["_d"]).date()
            link = Raw(f"[{d.isoformat()}]({month_page(d.isoformat()[:7])}#{d.isoformat()})") \
                if _has_record(data, d) else d.isoformat()
            link = Raw(f'<span class="nowrap">{link if isinstance(link, Raw) else untrusted(link)}</span>')
            costs = sum(float(f.get(k) or 0.0) for k in ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur"))
            rows.append([link, f.get("ticker"), f.get("side"), num(f.get("qty"), ",.6g"),
                         Raw(f"{num(f.get('price_local'))} {untrusted(f.get('currency'))}"), num(costs),
                         num(f.get("cash_flow_eur"), "+,.2f")])
        out.append(md_table(["Filled on", "Ticker", "Side", "Quantity", "Price", "Costs EUR", "Cash flow EUR"],
                            rows, numeric=(3, 4, 5, 6)))
        out += ["", f"The last {min(RECENT_FILLS, len(data.trades))} of {len(data.trades):,}; every fill is in its "
                "session's entry under [Decisions](decisions/index.md) and in `state/trades.parquet`."]
    else:
        out.append("No fill yet.")
    return "\n".join(out) + "\n"


def _has_record(data: SiteData, d: dt.date) -> bool:
    return d.isoformat() in data.record_dates


# --- decisions --------------------------------------------------------------------------


def decisions_index(data: SiteData) -> str:
    out = ["# Decisions", "", synthetic_banner(data, "warning")]
    out.append(
        "One entry per session: what the policy saw, what it answered (as written, shown as plain text), "
        "what the checks and guardrails cut and why, the orders it queued, the fills, and what the model "
        "cost. Grouped by month, newest first."
    )
    out.append("")
    rows = []
    for month, recs in data.months.items():
        orders = sum(len(r.get("orders") or []) for r in recs)
        fills = sum(1 for r in recs for f in (r.get("fills") or []) if f.get("side") in ("buy", "sell"))
        cuts = sum(len(r.get("cuts") or []) for r in recs)
        holds = sum(1 for r in recs if (r.get("answer") or {}).get("fallback"))
        tokens = sum(int((r.get("usage") or {}).get("prompt_tokens") or 0)
                     + int((r.get("usage") or {}).get("completion_tokens") or 0) for r in recs)
        cost = sum(float((r.get("usage") or {}).get("cost_usd") or 0.0) for r in recs)
        rows.append([Raw(f"[{month_label(month)}]({month[:7]}.md)"), len(recs), orders, fills, cuts, holds,
                     f"{tokens:,}", f"{cost:,.4f}"])
    out.append(md_table(["Month", "Sessions", "Orders", "Fills", "Cuts", "Explicit HOLDs", "Tokens", "Cost USD"],
                        rows, numeric=(1, 2, 3, 4, 5, 6, 7)))
    return "\n".join(out) + "\n"


def decisions_month(data: SiteData, month: str, records: list[dict[str, Any]],
                    newer: str | None, older: str | None) -> str:
    out = [f"# Decisions: {month_label(month)}", "", synthetic_banner(data, "warning")]
    links = []
    if older:
        links.append(f"[← {month_label(older)}]({older}.md)")
    links.append("[All months](index.md)")
    if newer:
        links.append(f"[{month_label(newer)} →]({newer}.md)")
    out += [" · ".join(links), ""]
    out.append(
        f"{len(records)} session{'s' if len(records) != 1 else ''}, newest first. Text written by the policy is "
        "shown as plain text, exactly as it was written."
    )
    out.append("")
    system_seen: dict[str, str] = {}
    for rec in records:
        out.append(decision_entry(rec, system_seen))
    return "\n".join(out) + "\n"


def decision_entry(rec: dict[str, Any], system_seen: dict[str, str]) -> str:
    """One session's entry: a heading (anchor: the date) and one raw HTML block."""
    d = _record_date(rec)
    answer = rec.get("answer") or {}
    parsed = answer.get("parsed") or {}
    val = rec.get("valuation") or {}
    usage = rec.get("usage") or {}
    fills = rec.get("fills") or []
    orders = rec.get("orders") or []
    cuts = rec.get("cuts") or []
    who = rec.get("model") or rec.get("policy") or "policy"

    body: list[str] = ['<div class="decision">']
    meta = [f'<span class="tag">{untrusted(rec.get("policy"))}</span>']
    if rec.get("model"):
        meta.append(f'<span class="tag">{untrusted(rec.get("model"))}</span>')
    meta.append(f"NAV <strong>{eur(val.get('nav_eur'))}</strong>")
    meta.append(f"drawdown {pct(val.get('drawdown'), 1)}")
    meta.append(f"CVaR {pct(val.get('cvar_95'))}")
    meta.append(f"{len(orders)} order{'s' if len(orders) != 1 else ''} queued, "
                f"{len(fills)} fill{'s' if len(fills) != 1 else ''}, {len(cuts)} cut{'s' if len(cuts) != 1 else ''}")
    body.append('<p class="decision-meta">' + " · ".join(meta) + "</p>")
    body.append(f'<p class="label">Summary, as written by {untrusted(who)}</p>')
    body.append(f'<blockquote class="llm"><p>{untrusted(parsed.get("summary")) or "(none)"}</p></blockquote>')
    if answer.get("fallback"):
        body.append('<div class="admonition warning"><p class="admonition-title">Explicit HOLD: the answer was not '
                    f'used</p><p>{untrusted(answer.get("fallback"))}</p></div>')
    decisions = parsed.get("decisions") or []
    if decisions:
        body.append('<p class="label">What it decided</p>')
        body.append(html_table(["Ticker", "Action", "Percent", "Reason given"], [
            [x.get("ticker"), x.get("action"), num(x.get("percent"), ".4g"), llm_text(x.get("reason"))]
            for x in decisions], numeric=(2,)))
    if cuts:
        body.append('<p class="label">What the checks and guardrails changed</p>')
        body.append(html_table(["Stage", "Ticker", "Before", "After", "Why"], [
            [c.get("stage"), c.get("ticker"), c.get("before"), c.get("after"), c.get("reason")] for c in cuts]))
    if orders:
        body.append('<p class="label">Orders queued for the next open of each exchange</p>')
        body.append(html_table(["Ticker", "Side", "Quantity"], [
            [o.get("ticker"), o.get("side"), num(o.get("qty"), ",.6g")] for o in orders], numeric=(2,)))
    if fills:
        body.append('<p class="label">Fills at this session\'s open (orders of the previous session), '
                    "dividends and splits</p>")
        rows = []
        for f in fills:
            costs = sum(float(f.get(k) or 0.0) for k in ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur"))
            rows.append([f.get("ticker"), f.get("side"), num(f.get("qty"), ",.6g"),
                         Raw(f"{num(f.get('price_local'), ',.4f')} {untrusted(f.get('currency'))}"),
                         num(f.get("gross_eur")),
                         num(costs), num(f.get("tax_eur")), num(f.get("cash_flow_eur"), "+,.2f")])
        body.append(html_table(["Ticker", "Side", "Quantity", "Price", "Gross EUR", "Costs EUR", "of which FTT",
                                "Cash flow EUR"], rows, numeric=(2, 3, 4, 5, 6, 7)))
    notes = rec.get("execution_notes") or []
    if notes:
        body.append('<p class="label">Execution notes</p>')
        body.append(html_table(["Order", "Ticker", "Outcome", "Asked", "Filled", "Why"], [
            [n.get("order_id"), n.get("ticker"), n.get("outcome"), num(n.get("requested_qty"), ",.6g"),
             num(n.get("filled_qty"), ",.6g"), n.get("reason")] for n in notes]))
    if usage:
        body.append('<p class="usage">' + usage_line(usage) + "</p>")
    if answer.get("notes"):
        items = "".join(f"<li>{untrusted(n)}</li>" for n in answer["notes"])
        body.append(f'<details class="note"><summary>Notes on the answer ({len(answer["notes"])})</summary>'
                    f"<ul>{items}</ul></details>")
    if answer.get("raw") is not None:
        body.append('<details class="quote" data-search-exclude><summary>The raw answer, as received</summary>'
                    f"{untrusted_pre(answer.get('raw'))}</details>")
    messages = usage.get("messages") or []
    if messages:
        body.append(messages_html(messages, d, system_seen))
    brief = rec.get("brief")
    if brief and not messages:
        body.append(brief_html(brief))
    body.append("</div>")
    return f"## {day_label(d)} {{#{d.isoformat()}}}\n\n" + "\n".join(body) + "\n"


def usage_line(usage: dict[str, Any]) -> str:
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    parts = [f"Model {untrusted(usage.get('answer_model') or usage.get('model'))}"]
    if usage.get("prompt_version"):
        parts.append(f"prompt {untrusted(usage.get('prompt_version'))}")
    parts.append(f"{int(usage.get('calls') or 0)} call(s), {int(usage.get('cache_hits') or 0)} from the cache")
    parts.append(f"{pt + ct:,} tokens ({pt:,} in, {ct:,} out)")
    parts.append(f"{num(usage.get('cost_usd'), ',.4f')} USD")
    if usage.get("response_format"):
        parts.append(f"format {untrusted(usage.get('response_format'))}")
    return " · ".join(parts)


def messages_html(messages: list[dict[str, Any]], d: dt.date, system_seen: dict[str, str]) -> str:
    """The exact messages sent, each as plain text; a system prompt already shown on the
    page is named by its hash instead of repeated."""
    parts = []
    for m in messages:
        role = str(m.get("role") or "?")
        content = str(m.get("content") or "")
        if role == "system":
            sha = hashlib.sha256(content.encode("utf-8", "replace")).hexdigest()
            if sha in system_seen:
                parts.append(f'<p class="label">system: the same prompt as on {system_seen[sha]} '
                             f"(sha256 {sha[:12]}…)</p>")
                continue
            system_seen[sha] = day_label(d)
            parts.append(f'<p class="label">system (sha256 {sha[:12]}…)</p>')
        else:
            parts.append(f'<p class="label">{untrusted(role)}</p>')
        parts.append(untrusted_pre(content))
    return (f'<details class="abstract" data-search-exclude><summary>What it saw: the {len(messages)} messages '
            "sent to the model</summary>" + "".join(parts) + "</details>")


def brief_html(brief: dict[str, Any]) -> str:
    """The brief a non-LLM policy was given, as tables."""
    port = brief.get("portfolio") or {}
    limits = brief.get("limits") or {}
    parts = []
    rows = [
        ["NAV", num(port.get("nav_eur"))], ["Cash", num(port.get("cash_eur"))],
        ["Cash available", num(port.get("cash_available_eur"))], ["Invested", num(port.get("invested_eur"))],
        ["Gross exposure", pct(port.get("gross_exposure"), 1)], ["Peak NAV", num(port.get("nav_peak_eur"))],
        ["Drawdown", pct(port.get("drawdown"), 2)],
        ["Drawdown multiplier", num(port.get("drawdown_multiplier"), ".4f")],
        ["CVaR 95, 1 day", pct(port.get("cvar_95"))], ["Prospect value", num(port.get("prospect_value"), ".4f")],
        ["Max weight", pct(limits.get("max_weight"), 1)], ["Min cash", pct(limits.get("min_cash"), 1)],
        ["Exposure cap", pct(limits.get("exposure_cap"), 1)], ["CVaR budget", pct(limits.get("cvar_budget"))],
    ]
    parts.append(html_table(["Portfolio and limits", "EUR or %"], rows, numeric=(1,)))
    positions = brief.get("positions") or []
    if positions:
        parts.append(html_table(["Held", "Qty", "Avg cost EUR", "Price EUR", "Weight", "P&L", "Prospect value"], [
            [x.get("ticker"), num(x.get("qty"), ",.6g"), num(x.get("avg_cost_eur")), num(x.get("price_eur")),
             pct(x.get("weight"), 1), pct(x.get("pnl_pct"), 1, signed=True), num(x.get("prospect_value"), ".3f")]
            for x in positions], numeric=(1, 2, 3, 4, 5, 6)))
    pending = brief.get("pending_orders") or []
    if pending:
        parts.append(html_table(["Pending", "Side", "Qty", "Decided on"], [
            [o.get("ticker"), o.get("side"), num(o.get("qty"), ",.6g"), o.get("decided_on")] for o in pending]))
    assets = brief.get("assets") or {}
    cols = list(assets.get("columns") or [])
    keep = [c for c in ASSET_COLUMNS if c in cols]
    if keep:
        idx = [cols.index(c) for c in keep]
        rows = []
        for t, vals in (assets.get("rows") or {}).items():
            rows.append([t] + [_fig(vals[i] if i < len(vals) else None) for i in idx])
        parts.append(html_table(["Asset", *keep], rows, numeric=tuple(range(1, len(keep) + 1)), css="assets"))
    issues = brief.get("data_issues") or []
    if issues:
        parts.append("<ul>" + "".join(f"<li>{untrusted(i)}</li>" for i in issues) + "</ul>")
    return ('<details class="abstract" data-search-exclude><summary>What it saw: the brief</summary>'
            + "".join(parts) + "</details>")


def _fig(x: object) -> str:
    if not _finite(x):
        return num(x)
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.2f}"
    return f"{x:.4f}"


# --- risk -------------------------------------------------------------------------------


def risk_page(data: SiteData, drawn: Sequence[str]) -> str:
    eq, cfg = data.equity, data.config
    perf = _perf(eq["nav_eur"].astype(float), data.portfolio.starting_capital_eur)
    last = (data.records[-1].get("brief") or {}) if data.records else {}
    port, limits = last.get("portfolio") or {}, last.get("limits") or {}
    cv = f"CVaR {100 * cfg.risk.cvar_level:g}"
    weights = current_weights(data)
    largest = max((w for t, w in weights.items() if t != "Cash"), default=0.0)
    dd_now = eq["drawdown"].iloc[-1] if "drawdown" in eq else None
    cvar_now = eq["cvar_95"].iloc[-1] if "cvar_95" in eq else None
    out = [FRONT_MATTER_WIDE, "# Risk", "", synthetic_banner(data, "warning")]
    out.append(
        f"The model is told to treat {cv} (the average loss on the worst {1 - cfg.risk.cvar_level:.0%} of days, "
        f"over the last {cfg.risk.lookback_sessions} sessions) as its main risk measure, and a drawdown tightens "
        "every limit. The guardrails enforce both after each decision. [How](methodology.md)"
    )
    out += ["", f"## Now ({day_label(data.as_of)})", ""]
    out.append(md_table(["", "Now", "Limit"], [
        [f"{cv} of the holdings, 1 day", pct(port.get("cvar_95", cvar_now)),
         pct(limits.get("cvar_budget"))],
        ["Invested, % of NAV", pct(port.get("gross_exposure"), 1), pct(limits.get("exposure_cap"), 1)],
        ["Drawdown from the high-water mark", pct(port.get("drawdown", dd_now), 2),
         Raw(f"m(dd) = {num(port.get('drawdown_multiplier'), '.3f')}")],
        ["Largest position, % of NAV", pct(largest, 1), pct(limits.get("max_weight"), 1)],
        ["Cash, % of NAV", pct(weights.get("Cash"), 1), Raw(f"at least {pct(limits.get('min_cash'), 1)}")],
        ["Prospect value of the return since inception", num(port.get("prospect_value"), ".4f"), ""],
    ], numeric=(1, 2)))
    out += ["", "## Over time", ""]
    if "cvar.png" in drawn:
        out += [f"![{cv} of the holdings against its budget](charts/cvar.png)", ""]
    if "guard.png" in drawn:
        out += ["![Drawdown and the drawdown multiplier](charts/guard.png)", ""]
    if "prospect.png" in drawn:
        out += ["![Prospect value of the return since inception](charts/prospect.png)", "",
                f"Prospect value v(x) of the return x since inception: x^{cfg.risk.alpha:g} for a gain, "
                f"-{cfg.risk.loss_aversion:g} (-x)^{cfg.risk.beta:g} for a loss. Below zero, a loss-averse "
                "investor would rather not have started.", ""]
    if not any(n in drawn for n in ("cvar.png", "guard.png", "prospect.png")):
        out += ["Not enough sessions yet to draw these.", ""]
    out += ["## Realised, from the daily NAV", ""]
    out.append(md_table(["", "Strategy"], [
        ["Annualised volatility", pct(perf.get("volatility_ann"), 1)],
        ["Max drawdown", pct(perf.get("max_drawdown"), 1)],
        ["VaR 95, 1 day", pct(perf.get("var_95"))],
        ["CVaR 95, 1 day", pct(perf.get("cvar_95"))],
        ["Sortino", num(perf.get("sortino"), ".2f")],
        ["Days up", pct(perf.get("hit_rate"), 1)],
    ], numeric=(1,)))
    return "\n".join(out) + "\n"


# --- reports, alerts --------------------------------------------------------------------


def reports_index(data: SiteData) -> str:
    out = ["# Weekly reports", ""]
    if not data.reports:
        out.append("No weekly report has been written yet. They appear here once `python -m engine weekly` has run.")
        return "\n".join(out) + "\n"
    out.append("Written by the engine after each week (from `state/reports/`), newest first.")
    out.append("")
    out += [f"- [{name}]({name}.md)" for name, _ in reversed(data.reports)]
    return "\n".join(out) + "\n"


def report_page(name: str, text: str, images: frozenset[str] = frozenset()) -> str:
    """A weekly report: Markdown the engine wrote, quoting the model through its own
    escaping; rendered through :func:`safe_markdown` all the same (only the report's own
    chart, drawn by the site, stays an image)."""
    body = safe_markdown(text, images)
    if not body.lstrip().startswith("# "):
        body = f"# Weekly report {name}\n\n" + body
    return body if body.endswith("\n") else body + "\n"


ALERT_FIRST = ("date", "time_utc", "ticker", "move", "price_local", "previous_close", "message", "source")


def alerts_page(data: SiteData) -> str:
    out = [FRONT_MATTER_WIDE, "# Alerts", ""]
    if not data.alerts:
        out.append("No alert so far. The intraday monitor writes one to `state/alerts.jsonl` when a held or watched "
                   "asset, or the portfolio, moves by more than its threshold.")
        return "\n".join(out) + "\n"
    keys: list[str] = [k for k in ALERT_FIRST if any(k in a for a in data.alerts)]
    counts = Counter(k for a in data.alerts for k in a if k not in keys)
    keys += sorted(counts)
    out.append(f"{len(data.alerts):,} alert{'s' if len(data.alerts) != 1 else ''}, newest first, from "
               "`state/alerts.jsonl`.")
    out.append("")
    newest = sorted(reversed(data.alerts), key=lambda a: (str(a.get("date", "")), str(a.get("time_utc", ""))),
                    reverse=True)
    rows = [[pct(a.get(k), 2, signed=True) if k == "move" and _finite(a.get(k)) else _alert_value(a.get(k))
             for k in keys] for a in newest]
    out.append(html_table([ALERT_HEADERS.get(k, k.replace("_", " ").capitalize()) for k in keys], rows,
                          numeric=tuple(i for i, k in enumerate(keys) if k in ALERT_NUMBERS)))
    return "\n".join(out) + "\n"


ALERT_NUMBERS = ("move", "price_local", "previous_close")
ALERT_HEADERS = {"time_utc": "Time (UTC)", "price_local": "Price", "previous_close": "Previous close"}


def _alert_value(v: object) -> str:
    if isinstance(v, float):
        return _fig(v)
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return "" if v is None else str(v)


# --- backtests --------------------------------------------------------------------------


CAVEATS = "methodology.md#backtests-and-what-they-cannot-show"
METRIC_ROWS = (
    ("final_nav_eur", "Final NAV, EUR", ",.2f"),
    ("total_return", "Total return", "+.2%"),
    ("cagr", "CAGR", "+.2%"),
    ("volatility_ann", "Volatility, annualised", ".1%"),
    ("sharpe", "Sharpe", ".2f"),
    ("sortino", "Sortino", ".2f"),
    ("max_drawdown", "Max drawdown", ".1%"),
    ("max_drawdown_sessions", "Longest drawdown, sessions", ",d"),
    ("calmar", "Calmar", ".2f"),
    ("var_95", "VaR 95, 1 day", ".2%"),
    ("cvar_95", "CVaR 95, 1 day", ".2%"),
    ("hit_rate", "Days up", ".1%"),
    ("turnover_ann", "Turnover, annualised", ".2f"),
    ("costs_eur", "Costs, EUR", ",.2f"),
    ("taxes_eur", "Taxes (FTT), EUR", ",.2f"),
    ("llm_tokens", "LLM tokens", ",d"),
    ("llm_cost_usd", "LLM cost, USD", ",.4f"),
)


def backtests_page(data: SiteData, drawn: Sequence[str]) -> str:
    out = [FRONT_MATTER_WIDE, "# Backtests", ""]
    bt = data.backtest
    if bt is None:
        out.append("No backtest has been published yet. A backtest replays the same daily step over past sessions "
                   f"and tests the null hypothesis; see [the methodology]({CAVEATS}).")
        return "\n".join(out) + "\n"
    m = bt.metrics
    run = m.get("run") or {}
    verdict = m.get("verdict") or {}
    if run.get("synthetic"):
        out.append('!!! danger "Synthetic data: a demo backtest"\n    This run used the seeded synthetic market '
                   f"({untrusted(run.get('source'))}): it shows how the test works, not how any model does.\n")
    if run.get("in_sample"):
        out.append('!!! warning "In-sample: the model may remember this period"\n    The run starts before the '
                   f"knowledge cutoff of {untrusted(run.get('model'))} ({untrusted(run.get('knowledge_cutoff'))}): the "
                   "model may know what happened next. Only a window after the cutoff is an out-of-sample test "
                   "(a blind run hides names and dates; it is labelled blind, not out-of-sample).\n")
    if verdict.get("sentence"):
        level = "success" if verdict.get("reject_null") else "info"
        out.append(f'!!! {level} "Verdict on the null hypothesis"\n    {untrusted(verdict.get("sentence"))}\n')
    else:
        out.append("This run has no verdict (it had no buy-and-hold SPY benchmark to test against).\n")
    policy = untrusted(run.get("policy"))
    if run.get("model"):
        policy += f" ({untrusted(run.get('model'))}{', blind' if run.get('blind') else ''})"
    out.append(md_table(["Run", ""], [
        ["Policy", Raw(policy)],
        ["Window", Raw(f"{untrusted(run.get('start'))} to {untrusted(run.get('end'))}, "
                       f"{num(run.get('sessions'), ',d')} sessions")],
        ["Market data", run.get("source")],
        ["In-sample for the model", "yes" if run.get("in_sample") else "no"],
    ]))
    out += ["", "## Strategy against the benchmarks", ""]
    cols = [("strategy", m.get("strategy") or {})] + list((m.get("benchmarks") or {}).items())
    headers = [""] + [BACKTEST_LABELS.get(k, k) for k, _ in cols]
    rows = []
    for key, label, fmt in METRIC_ROWS:
        if all(v.get(key) is None for _, v in cols):
            continue
        rows.append([label] + [num(v.get(key), fmt) for _, v in cols])
    out.append(md_table(headers, rows, numeric=tuple(range(1, len(headers)))))
    if verdict:
        out += ["", "## The test", ""]
        out.append(md_table(["", ""], [
            ["Mean excess return over SPY, annualised", pct(verdict.get("mean_excess_ann"), 1, signed=True)],
            [Raw(f"{num(verdict.get('confidence'), '.0%')} confidence interval"),
             Raw(f"{pct(verdict.get('ci_low'), 1, signed=True)} to {pct(verdict.get('ci_high'), 1, signed=True)}")],
            ["One-sided p-value (stationary block bootstrap)", num(verdict.get("p_value"), ".3f")],
            ["Bootstrap: replicates, mean block length",
             Raw(f"{num(verdict.get('n_boot'), ',d')}, {num(verdict.get('mean_block'), '.1f')}")],
            ["Probabilistic Sharpe ratio (vs 0, vs SPY)",
             Raw(f"{num(verdict.get('psr'), '.2f')}, {num(verdict.get('psr_vs_benchmark'), '.2f')}")],
            ["Sessions (years)", Raw(f"{num(verdict.get('n'), ',d')} ({num(verdict.get('years'), '.1f')})")],
        ]))
    out.append("")
    if "backtest_equity.png" in drawn:
        out += ["![Backtest: NAV of the strategy and the benchmarks](charts/backtest_equity.png)", "",
                "![Backtest: drawdowns](charts/backtest_drawdown.png)", ""]
    else:
        for p in bt.charts:
            out += [f"![Backtest chart {p.stem}](charts/backtest_{p.name})", ""]
    out.append(f"A single backtest is one path of history: read the caveats in [the methodology]({CAVEATS}).")
    return "\n".join(out) + "\n"
