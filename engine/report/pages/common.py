"""What every page shares: the data a build reads, the site's own formatting, tables.

Two kinds of text reach a page. What the site writes itself (labels, formatted numbers,
links between pages) is Markdown or HTML. Everything read from a decision record, an
alert or a report that a policy could have written is untrusted and goes through
:func:`engine.report.escape.untrusted` (or :func:`~engine.report.escape.safe_markdown`
for the weekly reports). HTML tables built here escape every cell unless it is wrapped
in :class:`Raw`, which is only ever made from the site's own markup.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from engine.backtest.metrics import performance
from engine.config import Config
from engine.portfolio.ledger import Portfolio
from engine.report.escape import untrusted

RECENT_FILLS = 20
# Annualised figures (Sharpe, CAGR, volatility) of fewer sessions than this are noise: shown
# with their interval or not at all (about a quarter of a year).
MIN_ANNUALISED_SESSIONS = 60
ASSET_COLUMNS = {"close": "Close", "sma_50": "SMA 50", "sma_200": "SMA 200", "rsi_14": "RSI 14",
                 "vol_20_ann": "Volatility 20d, ann.", "cvar_95": "CVaR 95, 1 day", "half_kelly": "Half-Kelly",
                 "prospect_20d": "Prospect value 20d", "ret_20d": "Return 20d"}
BACKTEST_LABELS = {
    "strategy": "Strategy",
    "buy_and_hold_spy": "Buy-and-hold SPY",
    "buy_and_hold_cac40_tracker": "Buy-and-hold CAC 40 tracker",
    "cac40_index": "CAC 40 index (no costs)",
    "equal_weight": "Equal weight, 21 assets",
}
BACKTEST_SHORT = {"strategy": "Strategy", "buy_and_hold_spy": "SPY", "buy_and_hold_cac40_tracker": "CAC 40 ETF",
                  "cac40_index": "CAC 40 index", "equal_weight": "Equal weight"}


@dataclass(frozen=True)
class Links:
    """Where a day's raw decision record can be read: at the commit that wrote it in the
    repository (when the build knows the repository's URL and its history), else in the
    site's own copy under ``data/decisions/``."""

    repo_url: str | None = None  # https://github.com/owner/name
    head: str | None = None  # the commit being built
    commits: dict[str, str] = field(default_factory=dict)  # record date -> commit that last wrote it
    state_path: str = "state"  # the state folder, relative to the repository's root

    @property
    def remote(self) -> bool:
        """The records are linked in the repository (else in the site's copy)."""
        return bool(self.repo_url and (self.head or self.commits))

    def record(self, day: str, depth: int) -> tuple[str, str]:
        """(URL, what it is) of the record of `day`, from a page `depth` folders deep."""
        path = f"{self.state_path}/decisions/{day[:4]}/{day[5:]}.json"
        sha = self.commits.get(day) or self.head
        if self.repo_url and sha:
            return f"{self.repo_url}/blob/{sha}/{path}", f"at commit {sha[:7]}"
        return "../" * depth + f"data/decisions/{day[:4]}/{day[5:]}.json", "the site's copy"


FRONT_MATTER_WIDE = "---\nhide:\n  - navigation\n---\n"


def fragment(key: str) -> str:
    """The placeholder of a block of HTML the engine rendered outside Markdown: the build's
    hook (site/hooks/build.py) replaces it with the block, from the page's fragment file."""
    return f'<div class="fragment" data-key="{key}"></div>'


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
    links: Links = field(default_factory=Links)
    # The other active arms of the experiment (state/arms/<arm>/), beside the headline the
    # state root mirrors: (name, label, NAV in EUR per session).
    other_arms: list[tuple[str, str, pd.Series]] = field(default_factory=list)

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


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: object, fmt: str = ",.2f") -> Raw:
    """A number, or "n/a"; a value that is not a number is shown escaped. Safe markup."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return Raw("n/a")
    if finite(x):
        return Raw(format(x, fmt))
    return Raw(untrusted(x))


def eur(x: object, digits: int = 2) -> Raw:
    return Raw("n/a") if num(x) == "n/a" else Raw(f"{num(x, f',.{digits}f')} EUR")


def pct(x: object, digits: int = 2, signed: bool = False) -> Raw:
    return num(x, f"{'+' if signed else ''}.{digits}%")


def points(x: object) -> Raw:
    """A difference of two returns, in percentage points."""
    return Raw("n/a" if not finite(x) else f"{100 * x:+.2f} pts")


def day_label(d: dt.date, weekday: bool = True) -> str:
    return f"{d:%a} {d.day} {d:%b %Y}" if weekday else f"{d.day} {d:%B %Y}"


def month_label(month: str) -> str:
    return dt.date.fromisoformat(month + "-01").strftime("%B %Y")


def month_page(month: str) -> str:
    return f"decisions/{month}.md"


def record_date(rec: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(rec["date"])


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = (),
               css: str = "", labels: bool = True, escape: Callable[[object], str] = untrusted) -> str:
    """An HTML table on one line per row; every cell is escaped (by `escape`: pass
    :func:`~engine.report.escape.untrusted_html` for HTML that skips Markdown) unless it is
    :class:`Raw`.

    Each cell carries its column's name (``data-label``), so that on a phone the
    stylesheet can show every row as a card of "name: value" lines (class ``cards``,
    always set) instead of a table wider than the screen. A table whose columns never
    change (the brief's) passes ``labels=False``: the stylesheet names its columns once
    (``table.brief-*`` in almost-surely.css) instead of every cell of every day."""
    names = [escape(h) for h in headers]

    def cell(tag: str, i: int, v: object) -> str:
        align = ' class="num"' if i in numeric else ""
        label = f' data-label="{names[i]}"' if labels and tag == "td" and i < len(names) and names[i] else ""
        text = v if isinstance(v, Raw) else escape(v)
        return f"<{tag}{align}{label}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    cls = " ".join(dict.fromkeys(["cards", *css.split()]))
    return f'<table class="{cls}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = ()) -> str:
    """A Markdown table (its links are checked by the strict build); cells escaped unless :class:`Raw`."""
    def cell(v: object) -> str:
        return v if isinstance(v, Raw) else untrusted(v)

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("--:" if i in numeric else ":--" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def llm_text(text: object, escape: Callable[[object], str] = untrusted) -> Raw:
    """What the model wrote, escaped, marked as its words."""
    return Raw(f'<span class="llm">{escape(text)}</span>')


def kpi(label: str, value: str, sub: str = "", tone: str = "") -> str:
    cls = f"kpi {tone}".strip()
    sub_html = f'<span class="kpi-sub">{sub}</span>' if sub else ""
    return (f'<div class="{cls}"><span class="kpi-label">{label}</span>'
            f'<span class="kpi-value">{value}</span>{sub_html}</div>')


def tone(x: object) -> str:
    return "" if not finite(x) or x == 0 else ("good" if x > 0 else "bad")


def synthetic_banner(data: SiteData, level: str = "danger") -> str:
    """The one synthetic-data warning of the home page (every other page has the theme's bar)."""
    if not data.synthetic or level != "danger":
        return ""
    return (
        f'!!! {level} "Synthetic data: this is a demo, not a real portfolio"\n'
        f"    Every price on this site comes from a seeded synthetic market (source "
        f"{untrusted(data.portfolio.source)}), not from any exchange. The figures show how the engine "
        "works; they say nothing about real markets or about any model's skill.\n\n"
    )


def perf_of(nav: pd.Series, capital: float) -> dict[str, Any]:
    return performance(nav.astype(float), capital=capital)


def lines_of(data: SiteData) -> dict[str, tuple[str, pd.Series]]:
    eq = data.equity
    lines = {"strategy": ("Strategy", eq["nav_eur"].astype(float))}
    for key, (col, label) in data.benchmark_columns.items():
        lines[key] = (label, eq[col].astype(float))
    return lines


def short(label: str) -> str:
    """ "Buy-and-hold SPY" -> "SPY": for legends and tiles, where the title says buy-and-hold."""
    return label.removeprefix("Buy-and-hold ").removesuffix(" (index)")


def current_weights(data: SiteData) -> dict[str, float]:
    rows = positions_rows(data)
    nav = float(data.equity["nav_eur"].iloc[-1])
    w = {r["ticker"]: r["value_eur"] / nav for r in rows if finite(r["value_eur"]) and nav > 0}
    w["Cash"] = data.portfolio.cash_eur / nav if nav > 0 else 0.0
    return w



def positions_rows(data: SiteData) -> list[dict[str, Any]]:
    """The positions of portfolio.json, priced at the last session's close (from its record)."""
    last = data.records[-1] if data.records else {}
    seen = {str(x.get("ticker")): x for x in ((last.get("brief") or {}).get("positions") or [])}
    nav = float(data.equity["nav_eur"].iloc[-1])
    rows = []
    for t, pos in data.portfolio.positions.items():
        view = seen.get(t, {})
        price_eur = view.get("price_eur")
        value = pos.qty * price_eur if finite(price_eur) else math.nan
        rows.append({
            "ticker": t, "qty": pos.qty, "price_local": view.get("price_local"),
            "currency": view.get("currency") or getattr(data.config.instruments.get(t), "currency", ""),
            "value_eur": value, "weight": value / nav if nav > 0 else math.nan,
            "cost_eur": pos.cost_eur, "avg_cost_eur": pos.avg_cost_eur,
            "pnl_eur": value - pos.cost_eur, "pnl_pct": value / pos.cost_eur - 1 if pos.cost_eur > 0 else math.nan,
        })
    rows.sort(key=lambda r: -(r["value_eur"] if finite(r["value_eur"]) else 0))
    return rows



def has_record(data: SiteData, d: dt.date) -> bool:
    return d.isoformat() in data.record_dates



def fig_text(x: object) -> str:
    if not finite(x):
        return num(x)
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.2f}"
    return f"{x:.4f}"


