"""The market brief: the user message the model decides on, rendered from a :class:`Brief`.

Python has computed every figure; this module only lays them out, compactly and the
same way every day, so that the model reads tables rather than raw prices:

* a header (session date, data source, a ``SYNTHETIC market`` line for the demo);
* PORTFOLIO, LIMITS (in force today), POSITIONS and PENDING ORDERS;
* ASSETS: one row per asset tradable today (untradable ones are not listed), with the
  indicators and risk figures that matter, then LAST 30 SESSIONS and CORRELATIONS
  (skipped when the brief has none);
* PREVIOUS DECISION and what came of it, DATA ISSUES, and a closing line recalling the
  answer format.

Tables are ``|``-separated without padding (aligned columns cost about a token per cell
in spaces alone). Fractions are shown as percentages without the % sign: 1 decimal, 2
for 1-day figures (return, VaR, CVaR, worst day), none for volatilities, the 1-year
drawdown, RSI, the Kelly cap and ``maxbuy``; in tables only negatives carry a sign.
Prices and EUR amounts have 2 decimals, prospect values 3, correlations 2. NaN, inf and
missing figures print as ``n/a``.

Text written by the model itself (the previous summary, order reasons) and error texts
go back to the model as plain text: they are kept, on one line, and truncated so that a
runaway answer cannot bloat the next prompt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine.config import Config
from engine.decision import Brief
from engine.llm.prompt import cvar_label
from engine.llm.prompt import kelly_name as _kelly_label

NA = "n/a"
MAX_SUMMARY_CHARS = 300  # the previous decision's summary (model-written)
MAX_REASON_CHARS = 160  # an order's reason (model-written), a fallback or error text
MAX_DETAIL_CHARS = 200  # a data issue's detail
TRUNCATED = " [...]"
# The window of the ret_30s_eur .. max_dd_30s figures: engine.step.RECENT_SESSIONS (not
# imported: engine.step imports the policies, which will import the LLM policy and so this).
RECENT_SESSIONS = 30
N_PAIRS = 5  # most and least correlated pairs shown

# Section titles, in the order they appear (SECTIONS[0] is the header line's prefix).
TITLE = "# MARKET BRIEF"
PORTFOLIO = "## PORTFOLIO"
LIMITS = "## LIMITS IN FORCE TODAY"
POSITIONS = "## POSITIONS"
PENDING = "## PENDING ORDERS"
CHURN = "## CHURN LIMITS"
ASSETS = "## ASSETS"
RECENT = f"## LAST {RECENT_SESSIONS} SESSIONS"
CORRELATIONS = "## CORRELATIONS"
PREVIOUS = "## PREVIOUS DECISION"
DATA_ISSUES = "## DATA ISSUES"
ANSWER = "## ANSWER"
SECTIONS: tuple[str, ...] = (
    TITLE, PORTFOLIO, LIMITS, POSITIONS, PENDING, CHURN, ASSETS, RECENT, CORRELATIONS, PREVIOUS, DATA_ISSUES, ANSWER,
)

ASSET_COLUMNS: tuple[str, ...] = (
    "ticker", "name", "sector", "ccy", "ftt", "close", "vs20", "vs50", "vs200", "rsi", "%b", "vol20",
    "52wH", "mdd1y", "r1d", "r20d", "var", "cvar", "kelly", "pv20", "maxbuy",
)
RECENT_COLUMNS: tuple[str, ...] = ("ticker", "return", "vol", "worst day", "max DD")
POSITION_COLUMNS: tuple[str, ...] = ("ticker", "qty", "avg cost", "price", "value", "weight", "P&L EUR", "P&L %", "pv")


# --------------------------------------------------------------------------- formatting


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _num(x: Any, decimals: int = 2, signed: bool = False) -> str:
    """A number with fixed decimals, ``n/a`` when missing; never ``-0.0``."""
    if not _finite(x):
        return NA
    v = round(float(x), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{v:+.{decimals}f}" if signed and v != 0 else f"{v:.{decimals}f}"


def _pct(x: Any, decimals: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage number (no % sign: the header or label says so).

    In tables only negatives carry a sign: ``|+`` costs a BPE tokenizer two tokens."""
    return _num(100 * float(x), decimals, signed) if _finite(x) else NA


def _qty(x: Any) -> str:
    return f"{float(x):g}" if _finite(x) else NA


def _text(s: Any, limit: int) -> str:
    """Untrusted text on one line (whitespace and control characters collapsed), at most
    `limit` characters plus the truncation mark."""
    if s is None:
        return ""
    t = re.sub(r"[\s\x00-\x1f\x7f]+", " ", str(s)).strip()
    if len(t) > limit:
        t = t[:limit].rstrip() + TRUNCATED
    return t


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A header line and one line per row, cells separated by ``|`` with no padding:
    aligned columns would cost about one token per cell for the spaces alone."""
    return ["|".join(columns)] + ["|".join(c.replace("|", "/") for c in r) for r in rows]


def _vs(close: Any, sma: Any) -> str:
    if not (_finite(close) and _finite(sma)) or float(sma) == 0:
        return NA
    return _pct(float(close) / float(sma) - 1, 1)


def _kelly(x: Any) -> str:
    """The (fractional) Kelly weight as % of NAV; raw Kelly can be huge: shown as >100."""
    if not _finite(x):
        return NA
    return ">100" if float(x) > 1 else _pct(x, 0)


# --------------------------------------------------------------------------- sections


def _header(b: Brief, cfg: Config) -> list[str]:
    lines = [
        f"{TITLE}: session of {b.date.isoformat()} (figures at the close; orders fill at the next open)",
        f"source: {_text(b.source, 80) or NA}" + (f" | inception {b.inception.isoformat()}" if b.inception else ""),
        "Tables: cells separated by |; percentages without the % sign (2.5 = 2.5%); n/a = not available.",
    ]
    if b.synthetic:
        lines.append("SYNTHETIC market: simulated prices, not real history.")
    return lines


def _pending_value(b: Brief, side: str) -> float:
    return sum(o.qty * b.prices_eur.get(o.ticker, 0.0) for o in b.pending_orders if o.side == side)


def _portfolio(b: Brief, cfg: Config) -> list[str]:
    cv = cvar_label(cfg)
    start = b.starting_capital_eur
    vs_start = b.nav_eur / start - 1 if start > 0 else float("nan")
    lines = [
        f"{PORTFOLIO} (EUR)",
        (
            f"NAV {_num(b.nav_eur)} | cash {_num(b.cash_eur)} | cash available for buys {_num(b.cash_available_eur)}"
            f" | invested {_num(b.invested_eur)} ({_pct(b.gross_exposure)}% of NAV)"
        ),
        (
            f"vs starting capital {_num(start)}: {_pct(vs_start, 1, signed=True)}%"
            f" (prospect value {_num(b.prospect_value, 3, signed=True)})"
        ),
        (
            f"peak NAV {_num(b.nav_peak_eur)} | drawdown from peak {_pct(b.drawdown, 1, signed=True)}%"
            f" | drawdown multiplier m {_num(b.drawdown_multiplier)}"
        ),
        f"portfolio {cv} (1-day): {_pct(b.cvar_95, 2)}% of NAV"
        + (f" | budget today {_pct(b.limits['cvar_budget'], 2)}%" if "cvar_budget" in b.limits else ""),
    ]
    cash = b.cash_available_eur
    if cash > 0 and b.nav_eur > 0:
        line = f"1% of NAV = {_pct(b.nav_eur / 100 / cash, 1)}% of cash available"
        rooms = []
        if "min_cash" in b.limits:
            rooms.append(cash - b.limits["min_cash"] * b.nav_eur)
        if "exposure_cap" in b.limits:
            invested_after = b.invested_eur + _pending_value(b, "buy") - _pending_value(b, "sell")
            rooms.append(b.limits["exposure_cap"] * b.nav_eur - invested_after)
        if rooms:
            room = min(max(min(rooms) / cash, 0.0), 1.0)
            line += f" | buys totalling up to about {_pct(room, 0)}% of cash available stay within min cash and exposure cap"
        lines.append(line)
    else:
        lines.append("no cash available: nothing can be bought today")
    return lines


_LIMIT_LABELS: dict[str, tuple[str, int, str]] = {
    # key: (label, decimals of the percentage, unit text); the multiplier is not a percentage.
    "max_weight": ("max weight", 1, "% of NAV per asset"),
    "min_cash": ("min cash", 1, "% of NAV"),
    "exposure_cap": ("exposure cap", 1, "% of NAV invested"),
    "cvar_budget": ("{cv} budget", 2, "% of NAV"),
}


def _limits(b: Brief, cfg: Config) -> list[str]:
    parts = []
    for key, value in b.limits.items():
        if key in _LIMIT_LABELS:
            label, decimals, unit = _LIMIT_LABELS[key]
            parts.append(f"{label.format(cv=cvar_label(cfg))} {_pct(value, decimals)}{unit}")
        elif key == "drawdown_multiplier":
            parts.append(f"drawdown multiplier m {_num(value)}")
        else:
            parts.append(f"{key} {_num(value, 4)}")
    return [f"{LIMITS} (drawdown multiplier applied)", " | ".join(parts) if parts else "none"]


def _positions(b: Brief, cfg: Config) -> list[str]:
    lines = [f"{POSITIONS} ({len(b.positions)}; amounts in EUR; pv = prospect value of P&L % vs the cost basis)"]
    if not b.positions:
        return lines + ["none: all cash"]
    rows, untradable = [], False
    for t, p in b.positions.items():
        mark = "" if t in b.tradable else "*"
        untradable |= bool(mark)
        rows.append([
            t + mark, _qty(p.qty), _num(p.avg_cost_eur), _num(p.price_eur), _num(p.value_eur), _pct(p.weight),
            _num(p.pnl_eur, 2), _pct(p.pnl_pct, 1), _num(p.prospect_value, 3),
        ])
    lines += _table(POSITION_COLUMNS, rows)
    if untradable:
        lines.append("* no valid market data today: cannot be traded, valued at its last price")
    return lines


def _pending(b: Brief, cfg: Config) -> list[str]:
    lines = [f"{PENDING} (fill at the next open of their own exchange)"]
    if not b.pending_orders:
        return lines + ["none"]
    for o in b.pending_orders:
        reason = _text(o.reason, MAX_REASON_CHARS)
        lines.append(f"{o.side} {_qty(o.qty)} {o.ticker} (decided {o.decided_on.isoformat()})" + (f": {reason}" if reason else ""))
    return lines


def _churn(b: Brief, cfg: Config) -> list[str]:
    c = b.churn
    if c is None:
        return []
    cap = c["max_buys_per_week"]
    head = (f"re-entry cooldown {c['reentry_cooldown_sessions']} sessions after a sale; buys this rolling week "
            f"({c['week_sessions']} sessions): {c['buys_in_week']}" + (f" of at most {cap}" if cap else " (no cap)"))
    cool = c["cooldowns"]
    if not cool:
        return [CHURN, head, "in cooldown: none"]
    return [CHURN, head, "in cooldown (a buy is cut): " + ", ".join(
        f"{t} (sold {v['sold_on']}, {v['sessions_left']} more session(s))" for t, v in cool.items())]


def _max_buy(b: Brief, t: str, fig: Mapping[str, Any], cfg: Config) -> str:
    """The buy percent of cash available that takes `t` to min(max weight, Kelly cap)."""
    price = b.prices_eur.get(t)
    cash = b.cash_available_eur
    if not _finite(price) or b.nav_eur <= 0:
        return NA
    if cash <= 0:
        return "0"
    cap = b.limits.get("max_weight", cfg.guardrails.max_weight)
    hk = fig.get("half_kelly")
    if _finite(hk):
        cap = min(cap, float(hk))
    room = cap * b.nav_eur - b.held_qty(t) * float(price)
    if room < cfg.portfolio.min_order_eur:
        return "0"
    return _pct(min(room / cash, 1.0), 0)


def _assets(b: Brief, cfg: Config) -> list[str]:
    tickers = [t for t in b.tradable if t in b.assets]
    lines = [f"{ASSETS} ({len(tickers)} tradable today)"]
    rows = []
    for t in tickers:
        f = b.assets[t]
        a = cfg.asset_by_ticker.get(t)
        close = f.get("close")
        rows.append([
            t,
            a.name if a else NA,
            a.sector if a else NA,
            a.currency if a else NA,
            ("y" if a.ftt else "-") if a else NA,
            _num(close),
            _vs(close, f.get("sma_20")),
            _vs(close, f.get("sma_50")),
            _vs(close, f.get("sma_200")),
            _num(f.get("rsi_14"), 0),
            _num(f.get("bb_pct_b"), 2),
            _pct(f.get("vol_20_ann"), 0),
            _pct(f.get("dist_52w_high"), 1),
            _pct(f.get("max_drawdown_1y"), 0),
            _pct(f.get("ret_1d"), 2),
            _pct(f.get("ret_20d"), 1),
            _pct(f.get("var_95"), 2),
            _pct(f.get("cvar_95"), 2),
            _kelly(f.get("half_kelly")),
            _num(f.get("prospect_20d"), 3),
            _max_buy(b, t, f, cfg),
        ])
    if not rows:
        return lines + ["none: no asset can be traded today"]
    r = cfg.risk
    cv = cvar_label(cfg)
    lines += _table(ASSET_COLUMNS, rows)
    lines.append(
        "close: last close, in ccy. ftt y: French tax on purchases. vs20/vs50/vs200: close vs its 20/50/200-session"
        " average. rsi: RSI 14. %b: Bollinger %B (20 sessions, 2 sd). vol20: 20-session volatility, annualised. 52wH:"
        " close vs the 52-week high. mdd1y: max drawdown in 1 year. r1d/r20d: 1/20-session return."
        f" var/cvar: 1-day historical VaR/{cv} of EUR returns over {r.lookback_sessions} sessions (a loss)."
        f" kelly: {_kelly_label(r.kelly_fraction)} weight cap, % of NAV. pv20: mean prospect value of"
        f" {r.prospect_horizon_sessions}-session EUR returns. maxbuy: buy % of cash available that takes the asset to"
        " min(max weight, kelly), pending orders included."
    )
    return lines


def _recent(b: Brief, cfg: Config) -> list[str]:
    tickers = [t for t in b.tradable if t in b.assets]
    lines = [f"{RECENT} (EUR returns; vol annualised)"]
    rows = [
        [
            t,
            _pct(b.assets[t].get("ret_30s_eur"), 1),
            _pct(b.assets[t].get("vol_30s_ann"), 0),
            _pct(b.assets[t].get("worst_day_30s"), 2),
            _pct(b.assets[t].get("max_dd_30s"), 1),
        ]
        for t in tickers
    ]
    if not rows:
        return lines + ["none"]
    return lines + _table(RECENT_COLUMNS, rows)


def _correlations(b: Brief, cfg: Config) -> list[str]:
    corr = b.correlation
    if corr is None:
        return []
    if not isinstance(corr, pd.DataFrame):
        return []
    keep = [t for t in b.tradable if t in corr.index and t in corr.columns]
    lines = [f"{CORRELATIONS} (daily EUR returns, last {cfg.risk.lookback_sessions} sessions)"]
    if len(keep) < 2:
        return lines + ["n/a: fewer than two assets"]
    c = corr.loc[keep, keep].to_numpy(dtype=float)
    n = len(keep)
    off = ~np.eye(n, dtype=bool)
    held = [i for i, t in enumerate(keep) if t in b.positions]
    rows = []
    for i, t in enumerate(keep):
        others = c[i][off[i]]
        others = others[np.isfinite(others)]
        row = [t, _num(others.mean()) if others.size else NA]
        if held:
            h = np.array([c[i, j] for j in held if j != i], dtype=float)
            h = h[np.isfinite(h)]
            row.append(_num(h.mean()) if h.size else NA)
        rows.append(row)
    columns = ["ticker", "avg to others"] + (["avg to held"] if held else [])
    lines += _table(columns, rows)
    iu = np.triu_indices(n, k=1)
    pairs = [(float(c[i, j]), keep[i], keep[j]) for i, j in zip(*iu, strict=True) if math.isfinite(c[i, j])]
    if pairs:
        k = min(N_PAIRS, len(pairs))
        most = sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))[:k]
        least = sorted(pairs, key=lambda p: (p[0], p[1], p[2]))[:k]
        lines.append("most correlated: " + ", ".join(f"{x}-{y} {_num(v)}" for v, x, y in most))
        lines.append("least correlated: " + ", ".join(f"{x}-{y} {_num(v)}" for v, x, y in least))
    return lines


def _fill(f: Mapping[str, Any]) -> str:
    return (
        f"{f.get('side', '?')} {_qty(f.get('qty'))} {f.get('ticker', '?')} @ {_num(f.get('price_local'))}"
        f" {f.get('currency', '')} (cash {_num(f.get('cash_flow_eur'), 2, signed=True)} EUR)"
    )


def _note(n: Mapping[str, Any]) -> str:
    return (
        f"{n.get('ticker', '?')} {n.get('outcome', '?')}: filled {_qty(n.get('filled_qty'))}"
        f" of {_qty(n.get('requested_qty'))} ({_text(n.get('reason'), MAX_REASON_CHARS)})"
    )


def _cut(c: Mapping[str, Any]) -> str:
    return (
        f"{c.get('ticker', '?')} {_text(c.get('before'), 40)} -> {_text(c.get('after'), 40)}"
        f" ({_text(c.get('reason'), MAX_REASON_CHARS)})"
    )


def _previous(b: Brief, cfg: Config) -> list[str]:
    prev = b.previous
    if not prev:
        return [PREVIOUS, "none: this is the first session"]
    lines = [f"{PREVIOUS} (of {prev.get('date', NA)}) and what came of it"]
    fallback = prev.get("fallback")
    if fallback:
        lines.append(f"it was an explicit HOLD (fallback): {_text(fallback, MAX_REASON_CHARS)}")
    summary = _text(prev.get("summary"), MAX_SUMMARY_CHARS)
    lines.append(f'summary: "{summary}"' if summary else "summary: none")
    orders = prev.get("orders") or []
    lines.append(
        "orders sent (after checks and guardrails): "
        + ("; ".join(f"{o.get('side', '?')} {_qty(o.get('qty'))} {o.get('ticker', '?')}" for o in orders) or "none")
    )
    fills = prev.get("fills_today") or []
    lines.append("fills at today's open (and dividends, splits): " + ("; ".join(_fill(f) for f in fills) or "none"))
    cuts = prev.get("cuts")
    if cuts:  # not given by engine.step today; shown when it is
        lines.append("changed by the checks and guardrails: " + "; ".join(_cut(c) for c in cuts))
    notes = prev.get("execution_notes") or []
    lines.append("clipped or rejected at the open: " + ("; ".join(_note(n) for n in notes) or "none"))
    return lines


def _data_issues(b: Brief, cfg: Config) -> list[str]:
    lines = [DATA_ISSUES]
    universe = set(cfg.tickers)
    excluded = [t for t in cfg.tickers if t not in b.tradable]
    seen: set[str] = set()
    for issue in b.data_issues:
        t = str(issue.get("ticker", "?"))
        if t in universe and t not in b.tradable:
            status = "excluded today"
            seen.add(t)
        elif t in b.tradable:
            status = "warning, data used"
        else:
            status = "not a tradable asset"
        lines.append(f"{t} ({status}): {issue.get('kind', '?')}: {_text(issue.get('detail'), MAX_DETAIL_CHARS)}")
    for t in excluded:
        if t not in seen:
            lines.append(f"{t} (excluded today): no valid market data")
    if len(lines) == 1:
        lines.append("none")
    return lines


def _answer(b: Brief, cfg: Config) -> list[str]:
    return [
        ANSWER,
        (
            'One JSON object only: {"decisions": [{"ticker", "action": "buy"|"sell"|"hold", "percent", "reason"}],'
            f' "summary"}}. buy percent: % of the cash available ({_num(b.cash_available_eur)} EUR); sell percent:'
            " % of the position (100 closes it). Only tickers from ASSETS."
        ),
    ]


_RENDERERS = (
    _header, _portfolio, _limits, _positions, _pending, _churn, _assets, _recent, _correlations, _previous, _data_issues, _answer,
)


def render_brief(brief: Brief, config: Config) -> str:
    """The brief as the user message: sections separated by a blank line."""
    blocks = [r(brief, config) for r in _RENDERERS]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


# --------------------------------------------------------------------------- token estimate

# Pieces shaped like the pre-tokenizer of OpenAI's cl100k_base / o200k_base encodings: a
# word with an optional leading space or mark, a run of 1-3 digits, a run of punctuation,
# a run of whitespace. A BPE token never spans two pieces, so each is at least one token.
_PIECES = re.compile(r"[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s+")
_SAFETY = 1.1


def estimate_tokens(text: str) -> int:
    """A conservative estimate of what `text` costs a GPT-style BPE tokenizer.

    No tokenizer (nor its vocabulary) can be downloaded here, and ``ceil(chars / 4)``, the
    usual rule for English prose, falls far short on the brief: its tables are numbers
    and separators, about 2 characters a token. So the text is split the way those
    tokenizers pre-split it and each piece is counted:

    * a run of 1-3 digits: 1 token (they are all in the vocabulary);
    * a punctuation run: 1 token per mark (``|-`` is one token, ``|+`` two);
    * a word: 1 token, plus 1 per further 6 letters; an all-caps word of 3 or more
      letters (tickers, NAV) ``ceil(len / 2)``; plus 1 for a leading mark (``|EUR``);
    * a whitespace run: 1; every non-ASCII character: 1 more;

    then 10% is added, and the result is never below ``ceil(chars / 4)``.

    Checked offline against exact cl100k_base and o200k_base encoders: it overestimates
    the larger of the two by 19% on a 21-asset brief, 25% on the system prompt, 17-31%
    on prose, code, JSON and French text, 10% on bare numbers; only random punctuation
    soup comes out 2% under.
    """
    if not text:
        return 0
    n = 0
    for m in _PIECES.finditer(text):
        piece = m.group()
        core = piece.strip()
        if not core:
            n += 1
        elif core[-1].isalpha():
            word = core.lstrip("".join(ch for ch in core if not ch.isalpha()))
            marked = len(word) < len(core) and not piece.startswith(" ")
            if word.isupper() and len(word) >= 3:
                n += math.ceil(len(word) / 2)
            else:
                n += 1 + max(0, (len(word) - 2) // 6)
            n += int(marked)
        elif core.isdigit():
            n += 1
        else:
            n += len(core)
    n += sum(1 for ch in text if ord(ch) > 127)
    return max(math.ceil(n * _SAFETY), math.ceil(len(text) / 4))
