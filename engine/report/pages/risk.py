"""The risk page: the limits now, how they moved, and the realised risk of the daily NAV."""

from __future__ import annotations

from collections.abc import Sequence

from engine.report.pages.charts import chart
from engine.report.pages.common import (
    FRONT_MATTER_WIDE,
    MIN_ANNUALISED_SESSIONS,
    Raw,
    SiteData,
    current_weights,
    day_label,
    md_table,
    num,
    pct,
    perf_of,
    synthetic_banner,
)


def risk_page(data: SiteData, drawn: Sequence[str]) -> str:
    eq, cfg = data.equity, data.config
    perf = perf_of(eq["nav_eur"].astype(float), data.portfolio.starting_capital_eur)
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
    out += [chart(drawn, "cvar", f"{cv} of the holdings against its budget: now {pct(port.get('cvar_95', cvar_now))} "
                  f"for a budget of {pct(limits.get('cvar_budget'))}"), ""]
    out += [chart(drawn, "guard", f"Drawdown now {pct(port.get('drawdown', dd_now), 1)}; the multiplier m(dd) "
                  f"that tightens the limits is {num(port.get('drawdown_multiplier'), '.2f')}"), ""]
    if "prospect.png" in drawn:
        out += [chart(drawn, "prospect", "Prospect value of the return since inception: now "
                      f"{num(port.get('prospect_value'), '.3f')}"), "",
                f"Prospect value v(x) of the return x since inception: x^{cfg.risk.alpha:g} for a gain, "
                f"-{cfg.risk.loss_aversion:g} (-x)^{cfg.risk.beta:g} for a loss. Below zero, a loss-averse "
                "investor would rather not have started.", ""]
    out += ["## Realised, from the daily NAV", ""]
    out.append(f"These are measured on the portfolio's own daily returns so far, not forecast from the assets' "
               f"history like the {cv} above.")
    out.append("")
    early = len(eq) < MIN_ANNUALISED_SESSIONS
    out.append(md_table(["", "Strategy"], [
        ["Annualised volatility", Raw(f"too early ({len(eq)} sessions)") if early else pct(perf.get("volatility_ann"), 1)],
        ["Max drawdown", pct(perf.get("max_drawdown"), 1)],
        ["VaR 95, 1 day", pct(perf.get("var_95"))],
        ["CVaR 95 of the realised daily returns", pct(perf.get("cvar_95"))],
        ["Sortino", Raw("too early") if early else num(perf.get("sortino"), ".2f")],
        ["Days up", pct(perf.get("hit_rate"), 1)],
    ], numeric=(1,)))
    return "\n".join(out) + "\n"

