"""The decision pages: an index by month, and one page per month with a timeline per day.

A day reads in the order things happened: the fills at its open of orders decided on an
earlier day (linked to that day), what the policy saw, what it decided (a buy's percent
is of the cash available, a sell's of the position), what the checks and guardrails cut
(in shares and EUR, the stage in words), and the orders queued for the next open, with
their EUR amounts at the deciding close. A HOLD the engine wrote (a fallback) is
attributed to the engine, not to the model. Quiet days (nothing decided, nothing
filled, nothing cut) are collapsed. Every day links to its raw decision record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pandas as pd

from engine.report.escape import untrusted, untrusted_html, untrusted_pre
from engine.report.pages.common import (
    ASSET_COLUMNS,
    FRONT_MATTER_WIDE,
    Raw,
    SiteData,
    day_label,
    eur,
    fig_text,
    finite,
    html_table,
    llm_text,
    md_table,
    month_label,
    num,
    pct,
    record_date,
    synthetic_banner,
)
from engine.report.pages.common import fragment as fragment_div

STAGES = {
    "validation": "Checks of the answer",
    "sizing": "Sizing into whole shares",
    "guardrail:max_weight": "Guardrail: maximum weight per asset",
    "guardrail:exposure": "Guardrail: exposure cap (tightens with the drawdown)",
    "guardrail:min_cash": "Guardrail: cash reserve",
    "guardrail:cvar": "Guardrail: CVaR budget (tightens with the drawdown)",
}
HELD_COLUMNS = ["Held", "Qty", "Avg cost EUR", "Price EUR", "Weight", "P&L", "Prospect value"]
BRIEF_ASSET_COLUMNS = ["Asset", *ASSET_COLUMNS.values()]
COSTS = ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur")
DEPTH = 2  # a month page is built at decisions/YYYY-MM/index.html


def month_anchor(day: str) -> str:
    """The link, from a month page, to the entry of `day`."""
    return f"{day[:7]}.md#{day}"


def is_engine_hold(rec: dict[str, Any]) -> bool:
    """The engine replaced the policy's answer by an explicit HOLD (the answer failed, the budget ran out)."""
    return bool((rec.get("answer") or {}).get("fallback"))


def is_quiet(rec: dict[str, Any]) -> bool:
    return not (rec.get("orders") or rec.get("cuts") or rec.get("fills") or is_engine_hold(rec)
                or ((rec.get("answer") or {}).get("parsed") or {}).get("decisions"))


def prices_eur(rec: dict[str, Any], instruments: dict[str, Any]) -> dict[str, float]:
    """Each asset's close in EUR as the brief saw it: held positions carry it; other USD
    assets are converted at the EURUSD implied by a held USD position or a fill of the day."""
    brief = rec.get("brief") or {}
    out = {str(p.get("ticker")): p["price_eur"] for p in brief.get("positions") or [] if finite(p.get("price_eur"))}
    fx = None
    for p in brief.get("positions") or []:
        if p.get("currency") == "USD" and finite(p.get("price_local")) and finite(p.get("price_eur")) \
                and p["price_eur"] > 0:
            fx = p["price_local"] / p["price_eur"]
    for f in rec.get("fills") or []:
        if fx is None and f.get("currency") == "USD" and finite(f.get("fx_eurusd")):
            fx = f["fx_eurusd"]
    assets = brief.get("assets") or {}
    cols = list(assets.get("columns") or [])
    if "close" in cols:
        i = cols.index("close")
        for t, vals in (assets.get("rows") or {}).items():
            close = vals[i] if i < len(vals) else None
            if t in out or not finite(close):
                continue
            ccy = getattr(instruments.get(t), "currency", None)
            if ccy == "EUR":
                out[t] = close
            elif ccy == "USD" and fx:
                out[t] = close / fx
    return out


def _shares(text: object) -> float | None:
    """The share count in a cut's "buy 7" / "sell 3"; None for a percent or "dropped"."""
    parts = str(text or "").split()
    if len(parts) == 2 and parts[0] in ("buy", "sell") and not parts[1].endswith("%"):
        try:
            return float(parts[1])
        except ValueError:
            return None
    return None


def size_words(action: object, percent: object) -> Raw:
    if not finite(percent):
        return Raw("")
    if action == "buy":
        return Raw(f"{num(percent, '.3g')}% of the cash")
    if action == "sell":
        return Raw(f"{num(percent, '.3g')}% of the position")
    return Raw("")


def order_rows(rec: dict[str, Any], orders: list[dict[str, Any]],
               instruments: dict[str, Any] | None = None, esc=untrusted) -> list[list[object]]:
    price = prices_eur(rec, instruments or {})
    rows = []
    for o in orders:
        t = str(o.get("ticker"))
        amount = o["qty"] * price[t] if finite(o.get("qty")) and t in price else None
        rows.append([Raw(f"{esc(o.get('side'))} <strong>{esc(t)}</strong>"), num(o.get("qty"), ",.6g"),
                     num(amount, ",.0f") if amount is not None else Raw("n/a"), llm_text(o.get("reason"), esc)])
    return rows


# --- the index ---------------------------------------------------------------------------


def monthly_returns(data: SiteData) -> dict[str, tuple[float, float]]:
    """{"YYYY-MM": (strategy return, SPY return)} over each month, from the last close of the month before."""
    eq = data.equity
    spy = data.benchmark_columns.get("spy")
    cols = ["nav_eur"] + ([spy[0]] if spy else [])
    last = eq[cols].astype(float).groupby(eq.index.to_period("M")).last()
    start = pd.DataFrame([eq[cols].astype(float).iloc[0].to_numpy()], columns=cols)
    base = pd.concat([start, last.iloc[:-1]], ignore_index=True)
    base.index = last.index
    base.iloc[0] = data.portfolio.starting_capital_eur
    ret = last / base - 1
    return {str(k): (float(r["nav_eur"]), float(r[spy[0]]) if spy else float("nan")) for k, r in ret.iterrows()}


def decisions_index(data: SiteData) -> str:
    out = [FRONT_MATTER_WIDE, "# Decisions", "", synthetic_banner(data, "warning")]
    out.append(
        "One entry per session, in the order things happened: the fills at its open, what the policy saw, "
        "what it decided (as written, shown as plain text), what the checks and guardrails cut and why, and "
        "the orders queued. Grouped by month, newest first; each month's return against buy-and-hold SPY."
    )
    out.append("")
    rets = monthly_returns(data)
    rows = []
    for month, recs in data.months.items():
        orders = sum(len(r.get("orders") or []) for r in recs)
        cuts = sum(len(r.get("cuts") or []) for r in recs)
        holds = sum(1 for r in recs if is_engine_hold(r))
        mine, spy = rets.get(month, (float("nan"), float("nan")))
        rows.append([Raw(f"[{month_label(month)}]({month[:7]}.md)"), pct(mine, 1, signed=True),
                     pct(spy, 1, signed=True), len(recs), orders, cuts, holds])
    out.append(md_table(["Month", "Return", "SPY", "Sessions", "Orders", "Cuts", "Engine HOLDs"],
                        rows, numeric=(1, 2, 3, 4, 5, 6)))
    return "\n".join(out) + "\n"


# --- a month ----------------------------------------------------------------------------


def decisions_month(data: SiteData, month: str, records: list[dict[str, Any]],
                    newer: str | None, older: str | None) -> tuple[str, dict[str, str]]:
    """The Markdown of a month page, and the HTML of each day's entry ({date: html}).

    The entries are the heavy part of the site (a brief, the messages, the tables of a
    session): they never go through Markdown. The page holds a placeholder per day
    (:func:`fragment_placeholder`), which the build's hook replaces with its HTML after the
    Markdown pass. Month pages are left out of the search index for the same reason."""
    out = [FRONT_MATTER_WIDE.replace("---\n", "---\nsearch:\n  exclude: true\n", 1),
           f"# Decisions: {month_label(month)}", "", synthetic_banner(data, "warning")]
    links = []
    if older:
        links.append(f"[← {month_label(older)}]({older}.md)")
    links.append("[All months](index.md)")
    if newer:
        links.append(f"[{month_label(newer)} →]({newer}.md)")
    out += [" · ".join(links), ""]
    mine, spy = monthly_returns(data).get(month, (float("nan"), float("nan")))
    quiet = sum(1 for r in records if is_quiet(r))
    strip = [("Sessions", str(len(records))), ("Return", pct(mine, 1, signed=True)),
             ("SPY", pct(spy, 1, signed=True)),
             ("Orders", str(sum(len(r.get("orders") or []) for r in records))),
             ("Cuts", str(sum(len(r.get("cuts") or []) for r in records))), ("Quiet days", str(quiet))]
    out.append('<dl class="strip">' + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in strip) + "</dl>")
    out.append("")
    out.append("Newest first. Text written by the policy is shown as plain text, exactly as it was written.")
    out.append("")
    system_seen: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for rec in records:
        heading, html = decision_entry(rec, system_seen, data)
        fragments[rec["date"]] = html
        out += [heading, "", fragment_placeholder(rec["date"]), ""]
    return "\n".join(out) + "\n", fragments


def fragment_placeholder(day: str) -> str:
    """Where a day's HTML goes on its month page (site/hooks/build.py fills it)."""
    return fragment_div(day)


# The day's entry is HTML that never goes through Markdown (see decisions_month): escaped for HTML only.
esc = untrusted_html


def pre(text: object) -> str:
    return untrusted_pre(text, html_only=True)


def table(headers, rows, **kwargs) -> str:
    return html_table(headers, rows, escape=esc, **kwargs)


def decision_entry(rec: dict[str, Any], system_seen: dict[str, str], data: SiteData) -> tuple[str, str]:
    """One session's timeline: its Markdown heading (anchor: the date) and its HTML."""
    d = record_date(rec)
    day = d.isoformat()
    answer = rec.get("answer") or {}
    parsed = answer.get("parsed") or {}
    val = rec.get("valuation") or {}
    usage = rec.get("usage") or {}
    orders = rec.get("orders") or []
    cuts = rec.get("cuts") or []
    engine_hold = is_engine_hold(rec)
    who = "the engine" if engine_hold else (rec.get("model") or f"the {rec.get('policy') or 'policy'} policy")
    url, what = data.links.record(day, DEPTH)

    meta = [f'<span class="tag">{esc(rec.get("policy"))}</span>']
    if rec.get("model"):
        meta.append(f'<span class="tag">{esc(rec.get("model"))}</span>')
    meta += [f"NAV <strong>{eur(val.get('nav_eur'))}</strong>", f"drawdown {pct(val.get('drawdown'), 1)}",
             f'<a href="{esc(url)}">raw record ({what})</a>']
    steps = [fills_step(rec, data), saw_step(rec, usage, d, system_seen),
             decided_step(rec, parsed, answer, who, engine_hold), cuts_step(rec, cuts, data),
             orders_step(rec, orders, data)]
    body = ['<div class="decision">', '<p class="decision-meta">' + " · ".join(meta) + "</p>",
            '<ol class="timeline">', *[s for s in steps if s], "</ol>"]
    if usage:
        body.append('<p class="usage">' + usage_line(usage) + "</p>")
    body.append("</div>")
    html = "\n".join(body)
    if is_quiet(rec):
        html = (f'<details class="quiet"><summary>A quiet day: nothing decided, filled or cut '
                f"(NAV {eur(val.get('nav_eur'))})</summary>{html}</details>")
    return f"## {day_label(d)} {{#{day}}}", html


def _step(title: str, inner: str, css: str = "") -> str:
    return f'<li class="step {css}"><p class="step-title">{title}</p>{inner}</li>'


def fills_step(rec: dict[str, Any], data: SiteData) -> str:
    fills = rec.get("fills") or []
    notes = rec.get("execution_notes") or []
    if not fills and not notes:
        return ""
    rows = []
    for f in fills:
        decided = str(f.get("order_id") or "")[:10]
        origin: object = ""
        if decided in data.record_dates:
            origin = Raw(f'<a href="../{decided[:7]}/#{decided}">{decided}</a>')
        costs = sum(float(f.get(k) or 0.0) for k in COSTS)
        rows.append([Raw(f"{esc(f.get('side'))} <strong>{esc(f.get('ticker'))}</strong>"),
                     num(f.get("qty"), ",.6g"), Raw(f"{num(f.get('price_local'), ',.2f')} {esc(f.get('currency'))}"),
                     num(f.get("gross_eur"), ",.2f"), num(costs, ",.2f"), num(f.get("cash_flow_eur"), "+,.2f"), origin])
    inner = table(["Fill", "Shares", "Price", "EUR", "Costs EUR", "Cash flow EUR", "Decided on"], rows,
                       numeric=(1, 2, 3, 4, 5)) if rows else ""
    if notes:
        inner += table(["Order", "Outcome", "Asked", "Filled", "Why"], [
            [n.get("ticker"), n.get("outcome"), num(n.get("requested_qty"), ",.6g"),
             num(n.get("filled_qty"), ",.6g"), n.get("reason")] for n in notes], numeric=(2, 3))
    return _step("1. At the open: fills of earlier orders, dividends, splits", inner)


def saw_step(rec: dict[str, Any], usage: dict[str, Any], d: dt.date, system_seen: dict[str, str]) -> str:
    messages = usage.get("messages") or []
    if messages:
        inner = messages_html(messages, d, system_seen)
    elif rec.get("brief"):
        inner = brief_html(rec["brief"])
    else:
        return ""
    return _step("2. After the close: what it saw", inner)


def decided_step(rec: dict[str, Any], parsed: dict[str, Any], answer: dict[str, Any], who: str,
                 engine_hold: bool) -> str:
    parts = []
    if engine_hold:
        parts.append('<div class="admonition warning"><p class="admonition-title">HOLD written by the engine: '
                     f'the answer was not used</p><p>{esc(answer.get("fallback"))}</p></div>')
    summary = esc(parsed.get("summary")) or "(none)"
    parts.append(f'<p class="label">Summary, as written by {esc(who)}</p>'
                 f'<blockquote class="llm"><p>{summary}</p></blockquote>')
    decisions = parsed.get("decisions") or []
    if decisions:
        parts.append(table(["Decision", "Size", "Reason given"], [
            [Raw(f"{esc(x.get('action'))} <strong>{esc(x.get('ticker'))}</strong>"),
             size_words(x.get("action"), x.get("percent")), llm_text(x.get("reason"), esc)]
            for x in decisions]))
    elif not engine_hold:
        parts.append('<p class="hold"><strong>HOLD</strong>: the policy decided no trade.</p>')
    notes = answer.get("notes") or []
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        parts.append(f'<details class="note"><summary>Notes on the answer ({len(notes)})</summary>'
                     f"<ul>{items}</ul></details>")
    if answer.get("raw") is not None:
        parts.append('<details class="quote" data-search-exclude><summary>The raw answer, as received</summary>'
                     f"{pre(answer.get('raw'))}</details>")
    return _step("3. What it decided", "".join(parts))


def cuts_step(rec: dict[str, Any], cuts: list[dict[str, Any]], data: SiteData) -> str:
    if not cuts:
        return ""
    price = prices_eur(rec, data.config.instruments)
    rows = []
    for c in cuts:
        t = str(c.get("ticker"))
        before, after = _shares(c.get("before")), _shares(c.get("after"))
        after = 0.0 if str(c.get("after")) == "dropped" and before is not None else after
        cut_eur: object = ""
        if before is not None and after is not None and t in price:
            cut_eur = num(abs(before - after) * price[t], ",.0f")
        stage = str(c.get("stage") or "")
        rows.append([STAGES.get(stage, stage), t, c.get("before"), c.get("after"), cut_eur, c.get("reason")])
    return _step("4. What the checks and guardrails cut", table(
        ["Stage", "Asset", "Asked", "Kept", "Cut, EUR", "Why"], rows, numeric=(4,)))


def orders_step(rec: dict[str, Any], orders: list[dict[str, Any]], data: SiteData) -> str:
    if not orders:
        return ""
    return _step("5. Orders queued for the next open of each exchange", table(
        ["Order", "Shares", "About EUR", "Reason given"], order_rows(rec, orders, data.config.instruments, esc),
        numeric=(1, 2)))


def usage_line(usage: dict[str, Any]) -> str:
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    parts = [f"Model {esc(usage.get('answer_model') or usage.get('model'))}"]
    if usage.get("prompt_version"):
        parts.append(f"prompt {esc(usage.get('prompt_version'))}")
    parts.append(f"{int(usage.get('calls') or 0)} call(s), {int(usage.get('cache_hits') or 0)} from the cache")
    parts.append(f"{pt + ct:,} tokens ({pt:,} in, {ct:,} out)")
    parts.append(f"{num(usage.get('cost_usd'), ',.4f')} USD")
    if usage.get("response_format"):
        parts.append(f"format {esc(usage.get('response_format'))}")
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
            parts.append(f'<p class="label">{esc(role)}</p>')
        parts.append(pre(content))
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
    parts.append(table(["Portfolio and limits", "EUR or %"], rows, numeric=(1,), css="brief-kv", labels=False))
    positions = brief.get("positions") or []
    if positions:
        parts.append(table(HELD_COLUMNS, [
            [x.get("ticker"), num(x.get("qty"), ",.6g"), num(x.get("avg_cost_eur")), num(x.get("price_eur")),
             pct(x.get("weight"), 1), pct(x.get("pnl_pct"), 1, signed=True), num(x.get("prospect_value"), ".3f")]
            for x in positions], numeric=(1, 2, 3, 4, 5, 6), css="brief-held", labels=False))
    pending = brief.get("pending_orders") or []
    if pending:
        parts.append(table(["Pending", "Side", "Qty", "Decided on"], [
            [o.get("ticker"), o.get("side"), num(o.get("qty"), ",.6g"), o.get("decided_on")] for o in pending]))
    assets = brief.get("assets") or {}
    cols = list(assets.get("columns") or [])
    if any(c in cols for c in ASSET_COLUMNS):  # every column, always in this order: the stylesheet names them
        idx = [cols.index(c) if c in cols else None for c in ASSET_COLUMNS]
        rows = []
        for t, vals in (assets.get("rows") or {}).items():
            rows.append([t] + [fig_text(vals[i] if i is not None and i < len(vals) else None) for i in idx])
        parts.append(table(BRIEF_ASSET_COLUMNS, rows, numeric=tuple(range(1, len(ASSET_COLUMNS) + 1)),
                           css="assets brief-assets", labels=False))
    issues = brief.get("data_issues") or []
    if issues:
        parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in issues) + "</ul>")
    return ('<details class="abstract" data-search-exclude><summary>What it saw: the brief</summary>'
            + "".join(parts) + "</details>")


