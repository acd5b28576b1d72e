"""The portfolio page: what is held now (value, weight and P&L first), pending orders, costs, fills."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from engine.report.escape import untrusted
from engine.report.pages.charts import chart
from engine.report.pages.common import (
    RECENT_FILLS,
    Raw,
    SiteData,
    current_weights,
    day_label,
    eur,
    finite,
    has_record,
    html_table,
    llm_text,
    md_table,
    FRONT_MATTER_WIDE,
    month_page,
    num,
    pct,
    positions_rows,
    synthetic_banner,
)



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
                     num(r["value_eur"]), pct(r["weight"], 1), num(r["pnl_eur"], "+,.2f"),
                     pct(r["pnl_pct"], 1, signed=True), num(r["qty"], ",.6g"),
                     Raw(f"{num(r['price_local'])} {untrusted(r['currency'])}"), num(r["avg_cost_eur"])])
    invested = sum(r["value_eur"] for r in held if finite(r["value_eur"]))
    rows.append([Raw("**Cash**"), num(p.cash_eur), pct(p.cash_eur / nav if nav else math.nan, 1),
                 "", "", "", "", ""])
    rows.append([Raw("**NAV**"), Raw(f"**{num(nav)}**"), "100%", "", "", "", "", ""])
    out.append(html_table(["Position", "Value EUR", "Weight", "P&L EUR", "P&L", "Shares", "Price",
                           "Average cost EUR"], rows, numeric=(1, 2, 3, 4, 5, 6, 7)))
    out += ["", f"Invested {eur(invested)} ({pct(invested / nav if nav else math.nan, 1)} of NAV). P&L is against "
            "the average cost, buy costs included.", ""]
    top = max(((t, w) for t, w in current_weights(data).items() if t != "Cash"), key=lambda tw: tw[1],
              default=("nothing", 0.0))
    cash_w = p.cash_eur / nav if nav else math.nan
    out += [chart(drawn, "allocation", f"Allocation now: {pct(cash_w, 0)} in cash; the largest position is "
                  f"{top[0]} at {top[1]:.0%} of NAV."), ""]
    out += [chart(drawn, "allocation_history", "How the allocation moved since the start, % of NAV"), ""]

    out += ["## Pending orders", ""]
    if p.pending_orders:
        out.append("Decided after a close; each fills at the next open of its own exchange.")
        out.append("")
        out.append(html_table(["Decided on", "Ticker", "Side", "Shares", "Reason given"], [
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
            link = Raw(f'<a href="../{month_page(d.isoformat()[:7])[:-3]}/#{d.isoformat()}">{d.isoformat()}</a>') \
                if has_record(data, d) else d.isoformat()
            costs = sum(float(f.get(k) or 0.0) for k in ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur"))
            rows.append([link, f.get("ticker"), f.get("side"), num(f.get("qty"), ",.6g"),
                         Raw(f"{num(f.get('price_local'))} {untrusted(f.get('currency'))}"), num(costs),
                         num(f.get("cash_flow_eur"), "+,.2f")])
        out.append(html_table(["Filled on", "Ticker", "Side", "Shares", "Price", "Costs EUR", "Cash flow EUR"],
                              rows, numeric=(3, 4, 5, 6)))
        out += ["", f"The last {min(RECENT_FILLS, len(data.trades))} of {len(data.trades):,}; every fill is in its "
                "session's entry under [Decisions](decisions/index.md) and in `state/trades.parquet`."]
    else:
        out.append("No fill yet.")
    return "\n".join(out) + "\n"

