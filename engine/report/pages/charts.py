"""The charts the pages show, and how a page shows one.

:func:`draw_charts` draws every chart of the state in every variant of
:data:`engine.report.site_charts.VARIANTS`; :func:`chart` is the HTML a page puts where a
chart goes: the light and the dark image (the theme shows one), or a
placeholder when there were too few sessions to draw it. The alt text states what the
chart shows, not that it is a chart.
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from pathlib import Path

import pandas as pd

from engine.report import site_charts as charts
from engine.report.chart_cache import ChartCache, chart_key
from engine.report.escape import untrusted
from engine.report.pages.common import BACKTEST_SHORT, SiteData, current_weights, finite, lines_of, short

log = logging.getLogger("engine.site")

TOP_BUCKETS = 8  # assets drawn on their own in the allocation chart; the rest are "Other"
PLACEHOLDER = "This chart appears once there are at least two sessions to draw."


def chart(drawn: Sequence[str], name: str, alt: str, *, depth: int = 1, placeholder: str = PLACEHOLDER) -> str:
    """The HTML of chart `name` (drawn into charts/ by :func:`draw_charts`) for a page
    `depth` folders deep in the built site, or a placeholder if it was not drawn."""
    if f"{name}.png" not in drawn:
        return f'<p class="chart-placeholder">{untrusted(placeholder)}</p>'
    base = "../" * depth + "charts/" + name
    text = untrusted(alt)
    out = [f'<img class="chart-{theme}" src="{base}{suffix}.png" alt="{text}">'
           for theme, suffix in (("light", ""), ("dark", "-dark"))]
    return '<figure class="chart">' + "".join(out) + "</figure>"


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
        if not finite(nav) or nav <= 0:
            continue
        w = {}
        for pos in brief.get("positions") or []:
            v = pos.get("value_eur")
            if finite(v):
                w[str(pos.get("ticker"))] = v / nav
        cash = port.get("cash_eur")
        w["Cash"] = cash / nav if finite(cash) else max(0.0, 1 - sum(w.values()))
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


def draw_charts(data: SiteData, folder: Path, cache: ChartCache | None = None) -> list[str]:
    """Every chart the pages show, into `folder`, in every variant; returns the names drawn
    ("equity.png"). A chart whose inputs are unchanged since a build that kept `cache` is
    copied from it (a rebuild of the same state, the methodology's curves)."""
    syn = data.synthetic
    eq = data.equity
    cfg = data.config
    cache = cache or ChartCache(None)
    done = []

    def draw(name: str, fn, *args, **kwargs) -> None:
        light = folder / name
        dark = charts.dark_path(light)
        key = chart_key(charts.__file__, fn.__name__, [list(args), kwargs])
        if not (cache.fetch(key, light) and cache.fetch(key + "-dark", dark)):
            charts.variants(fn, *args, path=light, **kwargs)
            cache.store(key, light)
            cache.store(key + "-dark", dark)
        done.append(name)

    lines = {k: (short(label), s) for k, (label, s) in lines_of(data).items()}
    if len(eq) >= 2:
        if "spy" in lines:
            draw("growth.png", charts.growth_chart, lines, synthetic=syn,
                 capital=data.portfolio.starting_capital_eur, trades=trade_dates(data), changes=changes_of(data))
        draw("equity.png", charts.nav_chart, lines, synthetic=syn, title="NAV, EUR: strategy vs buy-and-hold")
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
        colour_key = {"buy_and_hold_spy": "spy", "cac40_index": "cac40", "buy_and_hold_cac40_tracker": "cac40_tracker"}
        bt_lines = {colour_key.get(c, c): (BACKTEST_SHORT.get(c, c), frame[c].astype(float))
                    for c in frame.columns}
        draw("backtest_equity.png", charts.nav_chart, bt_lines, synthetic=bt_syn, title="Backtest: NAV, EUR")
        draw("backtest_drawdown.png", charts.drawdown_chart, bt_lines, synthetic=bt_syn, title="Backtest: drawdown")
    return done


def trade_dates(data: SiteData) -> list[pd.Timestamp]:
    tr = data.trades
    if tr.empty or "date" not in tr:
        return []
    fills = tr[tr["side"].isin(["buy", "sell"])] if "side" in tr else tr
    return sorted(pd.to_datetime(fills["date"]).unique())


def changes_of(data: SiteData) -> list[tuple[pd.Timestamp, str]]:
    """Sessions where the model or the prompt version changed from the session before."""
    out, last = [], None
    for rec in data.records:
        now = (rec.get("model"), (rec.get("usage") or {}).get("prompt_version"))
        if last is not None and now != last and rec.get("model"):
            out.append((pd.Timestamp(rec["date"]), " ".join(str(x) for x in now if x)))
        last = now
    return out


def week_charts(data: SiteData, weeks: Sequence[str]) -> dict[str, str]:
    """The chart of each weekly report in `weeks` ("2024-W52"): inline SVG, from the equity
    already loaded (sessions up to the state's as_of). A week that cannot be drawn is
    logged and left out (its report then shows the link to its image as text)."""
    from engine.report.weekly import week_lines

    eq = data.equity[data.equity.index <= pd.Timestamp(data.as_of)].reset_index()
    names = {b.key: short(b.name) for b in data.config.benchmarks}
    out = {}
    for week in weeks:
        try:
            lines = {k: ("Strategy" if k == "strategy" else names.get(k, k), s) for k, s in week_lines(eq, week).items()}
        except Exception as exc:  # a missing chart must not stop the publication of everything else
            log.warning("site: no chart for the report %s (%s: %s): its link is shown as text",
                        week, type(exc).__name__, exc)
            continue
        nav = lines["strategy"][1]
        alt = f"{week}: the strategy went from {nav.iloc[0]:,.0f} to {nav.iloc[-1]:,.0f} EUR"
        if "spy" in lines:
            spy = lines["spy"][1]
            alt += f"; buy-and-hold SPY from {spy.iloc[0]:,.0f} to {spy.iloc[-1]:,.0f} EUR"
        out[week] = charts.week_svg(lines, title=f"{week}: NAV in EUR against buy-and-hold", alt=alt + ".",
                                    synthetic=data.synthetic)
    return out
