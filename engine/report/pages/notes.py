"""The weekly reports and the alerts."""

from __future__ import annotations

import json
import re
from collections import Counter

from engine.report.escape import safe_markdown
from engine.report.pages.common import FRONT_MATTER_WIDE, fragment, SiteData, fig_text, finite, html_table, pct

def reports_index(data: SiteData) -> str:
    out = ["# Weekly reports", ""]
    if not data.reports:
        out.append("No weekly report has been written yet. They appear here once `python -m engine weekly` has run.")
        return "\n".join(out) + "\n"
    out.append("Written by the engine after each week (from `state/reports/`), newest first.")
    out.append("")
    out += [f"- [{name}]({name}.md)" for name, _ in reversed(data.reports)]
    return "\n".join(out) + "\n"


def report_page(name: str, text: str, *, chart: bool = False) -> str:
    """A weekly report: Markdown the engine wrote, quoting the model through its own
    escaping; rendered through :func:`safe_markdown` all the same. With `chart`, its image
    ``](NAME.png)`` becomes the placeholder of the chart the site drew (an inline SVG, see
    :func:`~engine.report.pages.charts.week_charts`); without, the link shows as text. Its
    ``##`` sections stay out of the search index (the figures and tables of 500 weeks would
    make the index that every page view loads several times larger); its title and opening
    lines are found."""
    body = safe_markdown(text, frozenset([f"{name}.png"]) if chart else frozenset())
    if chart:
        body = re.sub(r"!\[[^\]\n]*\]\(" + re.escape(f"{name}.png") + r"\)", lambda _: fragment("chart"), body)
    body = SECTION.sub(lambda m: m.group(0) + " { data-search-exclude }", body)
    if not body.lstrip().startswith("# "):
        body = f"# Weekly report {name}\n\n" + body
    return body if body.endswith("\n") else body + "\n"


# The engine's own "## " headings (a heading line quoted from the model cannot start with "#":
# the report escapes it).
SECTION = re.compile(r"^## [^\n{]*[^\s{]$", re.M)


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
    rows = [[pct(a.get(k), 2, signed=True) if k == "move" and finite(a.get(k)) else _alert_value(a.get(k))
             for k in keys] for a in newest]
    out.append(html_table([ALERT_HEADERS.get(k, k.replace("_", " ").capitalize()) for k in keys], rows,
                          numeric=tuple(i for i, k in enumerate(keys) if k in ALERT_NUMBERS)))
    return "\n".join(out) + "\n"


ALERT_NUMBERS = ("move", "price_local", "previous_close")
ALERT_HEADERS = {"time_utc": "Time (UTC)", "price_local": "Price", "previous_close": "Previous close"}


def _alert_value(v: object) -> str:
    if isinstance(v, float):
        return fig_text(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return "" if v is None else str(v)

