"""The home page: the answer first.

From the top: one verdict box per active arm (does it beat buy-and-hold SPY?), what
10,000 EUR became against SPY, the arms side by side, the growth chart with its
excess-over-SPY panel, today's decision card, and when the figures are from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from engine.report.escape import untrusted
from engine.data.calendars import sessions_per_year
from engine.report.pages.arms import Arm, Verdict, arm_verdict, arms_of, policy_label, spy_of
from engine.report.pages.charts import chart
from engine.report.pages.common import (
    MIN_ANNUALISED_SESSIONS,
    Raw,
    SiteData,
    day_label,
    eur,
    html_table,
    llm_text,
    month_page,
    num,
    pct,
    perf_of,
    record_date,
    synthetic_banner,
)
from engine.report.pages.decisions import is_engine_hold, order_rows

SUMMARY_CHARS = 240  # of the latest decision's summary on the home page
FRONT_MATTER = "---\nhide:\n  - navigation\n  - toc\n---\n"


def home_page(data: SiteData, drawn: Sequence[str]) -> str:
    capital = data.portfolio.starting_capital_eur
    arms = arms_of(data)
    spy = spy_of(arms)
    ppy = sessions_per_year({i.calendar for i in data.config.instruments.values()})
    out = [FRONT_MATTER, "# almost surely", ""]
    out.append(synthetic_banner(data))
    out.append(intro(data))
    out.append("")
    for arm in arms:
        if not arm.passive:
            out += [verdict_box(arm, arm_verdict(arm, spy, capital, ppy) if spy else None, spy, capital), ""]
    out += ["## The arms side by side", "", leaderboard(arms, spy, capital), ""]
    out += [chart(drawn, "growth", growth_alt(arms, spy, capital), depth=0), ""]
    if "growth.png" in drawn:
        out += ['<p class="caption">Lines are named at their ends. Below: the strategy minus SPY, in EUR; the grey '
                "band is where 95% of paths of a strategy with no edge would lie. Ticks at the bottom mark sessions "
                "with fills; a dotted line, a change of model or prompt (see the "
                '<a href="downloads/#changes-of-model-prompt-and-configuration">changes log</a>).</p>', ""]
    if data.records:
        out += ["## The latest decision", "", decision_card(data.records[-1], data.config.instruments), ""]
    first = arms[0].nav_eur.index[0].date()
    n = len(data.equity)
    out.append(
        f'<p class="updated">Last update: the session of {day_label(data.as_of)} '
        f"({n} session{'s' if n != 1 else ''} since {day_label(first, False)}). "
        "Every figure is computed from the state files in the repository; the same state gives the same site. "
        '<a href="downloads/">Download the data</a>.</p>'
    )
    return "\n".join(out) + "\n"


def intro(data: SiteData) -> str:
    who = policy_label(data.records)
    decider = (f"A language model, {untrusted(who)}," if data.records and data.records[-1].get("model")
               else f"{untrusted(who).capitalize()} (plain rules, no language model)")
    return (
        f"{decider} manages a paper portfolio of {len(data.config.assets)} ETFs and Paris shares, started with "
        f"{eur(data.portfolio.starting_capital_eur, 0)}. Python computes every number and books every paper order; "
        "the policy only decides. **The null hypothesis: it cannot beat buy-and-hold SPY.** Everything it saw "
        "and did is published, so anyone can check. [How it works](methodology.md) · "
        "[the null hypothesis](about.md)"
    )


def verdict_box(arm: Arm, v: Verdict | None, spy: Arm | None, capital: float) -> str:
    """One arm's answer: the headline, the EUR outcome against SPY, the test in figures."""
    nav = float(arm.nav_eur.iloc[-1])
    title = f"{untrusted(arm.name)}: {untrusted(arm.label)}"
    if v is None or spy is None:
        return (f'<section class="verdict info" aria-label="Verdict"><p class="verdict-arm">{title}</p>'
                '<p class="verdict-headline">No verdict</p><p>There is no buy-and-hold SPY line in this state '
                f"to test against. {eur(capital, 0)} became {eur(nav, 0)}.</p></section>")
    spy_nav = float(spy.nav_eur.iloc[-1])
    figures = [
        ("Excess over SPY", f"{num(v.excess_eur, '+,.0f')} EUR"),
        ("95% interval, a year", Raw(f"{pct(v.ci_low, 1, signed=True)} to {pct(v.ci_high, 1, signed=True)}")
         if v.tested else Raw("not yet")),
        ("p-value, one-sided", num(v.p_value, ".3f") if v.tested else Raw("not yet")),
        ("Sessions", num(v.sessions, ",d")),
        ("Smallest edge it can see", Raw(f"{pct(v.mde_ann, 0)} a year") if v.tested else Raw("not yet")),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{val}</dd></div>" for k, val in figures)
    return (
        f'<section class="verdict {v.tone}" aria-label="Verdict">'
        f'<p class="verdict-arm">{title}</p>'
        f'<p class="verdict-headline">{v.headline}</p>'
        f'<p class="verdict-money">{eur(capital, 0)} became <strong>{eur(nav, 0)}</strong>; '
        f"in buy-and-hold SPY it would be <strong>{eur(spy_nav, 0)}</strong>.</p>"
        f"<p>{v.sentence}</p>"
        f'<dl class="verdict-figures">{dl}</dl>'
        "</section>"
    )


def leaderboard(arms: list[Arm], spy: Arm | None, capital: float) -> str:
    """Every arm in one small table, best NAV first; annualised figures only with enough sessions."""
    rows = []
    spy_nav = float(spy.nav_eur.iloc[-1]) if spy else math.nan
    for arm in sorted(arms, key=lambda a: -float(a.nav_eur.iloc[-1])):
        m = perf_of(arm.nav_eur, capital)
        nav = float(arm.nav_eur.iloc[-1])
        sharpe = num(m.get("sharpe"), ".2f") if len(arm.nav_eur) >= MIN_ANNUALISED_SESSIONS else Raw("too early")
        name = Raw(f"<strong>{untrusted(arm.name)}</strong><br><small>{untrusted(arm.label)}</small>")
        rows.append([name, eur(nav, 0), pct(nav / capital - 1, 1, signed=True),
                     Raw("benchmark") if arm is spy else num(nav - spy_nav, "+,.0f"),
                     pct(m.get("max_drawdown"), 1), sharpe])
    return html_table(["Arm", "NAV", "Return", "vs SPY, EUR", "Worst drawdown", "Sharpe"], rows,
                      numeric=(1, 2, 3, 4, 5), css="leaderboard")


def growth_alt(arms: list[Arm], spy: Arm | None, capital: float) -> str:
    """Alt text that states the finding, not the chart type."""
    parts = [f"{a.name} {float(a.nav_eur.iloc[-1]):,.0f} EUR" for a in arms]
    lead = f"Growth of {capital:,.0f} EUR: " + ", ".join(parts) + "."
    main = next((a for a in arms if not a.passive), None)
    if main is not None and spy is not None:
        gap = float(main.nav_eur.iloc[-1] - spy.nav_eur.iloc[-1])
        lead += f" The strategy is {abs(gap):,.0f} EUR {'ahead of' if gap >= 0 else 'behind'} SPY."
    return lead


def decision_card(rec: dict[str, Any], instruments: dict[str, Any]) -> str:
    d = record_date(rec)
    answer = rec.get("answer") or {}
    summary = str((answer.get("parsed") or {}).get("summary") or "")
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1].rstrip() + "…"
    orders = rec.get("orders") or []
    cuts = rec.get("cuts") or []
    link = f"[What it saw and did, in full]({month_page(rec['date'][:7])}#{d.isoformat()})"
    parts = ['<div class="decision-card" markdown="1">', f"**{day_label(d)}**", ""]
    if not orders:
        cause = answer.get("fallback") or ""
        who = "by the engine" if is_engine_hold(rec) else "by the policy"
        parts += [f'<p class="hold"><strong>HOLD</strong>: no order, {who}. {untrusted(cause)}</p>', ""]
    else:
        parts += [html_table(["Order", "Shares", "About EUR", "Reason given"], order_rows(rec, orders, instruments),
                             numeric=(1, 2)), ""]
    if cuts:
        parts += [f"The guardrails changed {len(cuts)} decision{'s' if len(cuts) != 1 else ''}.", ""]
    if summary:
        parts += [f"Summary: {llm_text(summary)}", ""]
    parts += [link, "", "</div>"]
    return "\n".join(parts)


