"""The backtests page: a published backtest's verdict, metrics and charts."""

from __future__ import annotations

from collections.abc import Sequence

from engine.report.escape import untrusted
from engine.report.pages.charts import chart
from engine.report.pages.common import (
    BACKTEST_LABELS,
    BACKTEST_SHORT,
    FRONT_MATTER_WIDE,
    Raw,
    SiteData,
    md_table,
    num,
    pct,
)


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
        hi = verdict.get("ci_high")
        if verdict.get("reject_null"):
            level, headline = "success", "Beats buy-and-hold SPY."
        elif isinstance(hi, (int, float)) and hi < 0:
            level, headline = "failure", "Worse than buy-and-hold SPY: the whole interval is below zero."
        else:
            level, headline = "info", "No evidence that it beats buy-and-hold SPY."
        out.append(f'!!! {level} "Verdict on the null hypothesis"\n    **{headline}** In full: '
                   f'{untrusted(verdict.get("sentence"))}\n')
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
        final = (m.get("strategy") or {}).get("final_nav_eur")
        out += [chart(drawn, "backtest_equity", f"Backtest: the strategy ends at {num(final, ',.0f')} EUR; "
                      + ", ".join(f"{BACKTEST_SHORT.get(k, k)} {num(v.get('final_nav_eur'), ',.0f')} EUR"
                                  for k, v in (m.get("benchmarks") or {}).items())), "",
                chart(drawn, "backtest_drawdown", "Backtest: the strategy's worst drawdown was "
                      f"{pct((m.get('strategy') or {}).get('max_drawdown'), 1)}"), ""]
    else:
        for p in bt.charts:
            out += [f"![Backtest chart {p.stem}](charts/backtest_{p.name})", ""]
    out.append(f"A single backtest is one path of history: read the caveats in [the methodology]({CAVEATS}).")
    return "\n".join(out) + "\n"
