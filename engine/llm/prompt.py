"""The system prompt: who the model is, what it weighs, the limits it works in, and the
exact answer format.

Every number in the text comes from the :class:`~engine.config.Config` (loss aversion,
value-function exponents, CVaR level and budget, drawdown multiplier, guardrails, costs),
so a changed configuration changes the prompt, and the prompt's SHA-256 recorded with
each decision says which text the model was given. ``PROMPT_VERSION`` names the wording:
bump it whenever the template below changes.

The model computes nothing: the brief (engine.llm.brief) gives every figure, and Python
validates the answer, applies the guardrails and executes the paper orders.
"""

from __future__ import annotations

import hashlib

from engine.config import Config
from engine.risk.drawdown import drawdown_multiplier

PROMPT_VERSION = "2026-11-24.1"  # bump when the text changes

# Drawdowns at which the prompt quotes the multiplier m(dd), as fractions of the limit.
_DD_POINTS = (0.25, 0.5, 0.75, 1.0)


# The answer format, the same for every prompt family (the public audit format).
ANSWER_SECTION = """\
ANSWER: one JSON object, nothing outside it (no prose, no code fence):
{"decisions": [{"ticker": str, "action": "buy"|"sell"|"hold", "percent": number 0-100, "reason": str}], "summary": str}
- buy: percent = % of the CASH AVAILABLE at decision time (in the brief), not of NAV; all buys together at most 100.
- sell: percent = % of the current position; 100 closes it.
- hold: percent is ignored.
- Only tickers from the brief's ASSETS, at most one entry each; omit tickers with nothing to do (or use hold).
- reason: one short sentence citing the brief's figures. summary: one to three sentences.
- Doing nothing is valid: {"decisions": [], "summary": "..."}.
"""


def _pct(x: float, decimals: int = 2) -> str:
    """A fraction as a percentage, trailing zeros dropped: 0.2 -> '20%', 0.004 -> '0.4%',
    0.125 -> '12.5%'."""
    s = f"{100 * x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s + "%"


def _num(x: float) -> str:
    return f"{x:g}"


def _eur(x: float) -> str:
    return f"EUR {x:,.0f}" if float(x).is_integer() else f"EUR {x:,.2f}"


def cvar_label(config: Config) -> str:
    """'CVaR 95' for the default level: the name the brief uses too."""
    return f"CVaR {100 * config.risk.cvar_level:g}"


def kelly_name(fraction: float) -> str:
    """How the prompt and the brief call the Kelly fraction of the configuration."""
    if fraction == 0.5:
        return "half-Kelly"
    if fraction == 1.0:
        return "full Kelly"
    return f"{fraction:g} x Kelly"


def _multiplier_points(config: Config) -> str:
    g = config.guardrails
    parts = []
    for k in _DD_POINTS:
        dd = g.drawdown_limit * k
        m = float(drawdown_multiplier(dd, g.drawdown_limit, g.drawdown_floor, g.drawdown_power))
        more = "+" if k == 1.0 else ""
        parts.append(f"dd {_pct(dd)}{more} -> {m:.2f}")
    return ", ".join(parts)


def shares_line(config: Config) -> str:
    """What an order may be, in words (the same for every prompt family)."""
    p = config.portfolio
    shares = "Whole shares only" if p.whole_shares else "Fractional shares allowed"
    if p.min_order_eur > 0:
        shares += f"; orders under {_eur(p.min_order_eur)} are dropped"
    return shares


def costs_line(config: Config) -> str:
    """The costs of a fill, in words (the same for every prompt family)."""
    c = config.costs
    costs = f"slippage {_num(c.slippage_bps)} bps, commission {_num(c.commission_bps)} bps (min {_eur(c.commission_min_eur)})"
    if c.fx_fee_bps > 0:
        costs += f", FX fee {_num(c.fx_fee_bps)} bps on USD assets"
    if c.french_ftt_rate > 0:
        costs += f"; French FTT {_pct(c.french_ftt_rate)} on purchases of French shares (ftt=y in ASSETS; ETFs exempt)"
    return costs


def system_prompt(config: Config) -> str:
    """The system message, with the configuration's numbers written in."""
    r, g, p = config.risk, config.guardrails, config.portfolio
    cv = cvar_label(config)
    tail = _pct(1 - r.cvar_level)
    kelly = kelly_name(r.kelly_fraction)
    la, a, b = _num(r.loss_aversion), _num(r.alpha), _num(r.beta)
    shares, costs = shares_line(config), costs_line(config)
    return f"""\
You manage "almost surely", a paper portfolio of ETFs and Paris-listed shares started with {_eur(p.starting_capital_eur)}. You are deliberately risk-averse. After each session's close you read a market brief and decide; Python validates your answer, applies hard guardrails and executes paper orders.

DATA
- You compute nothing: every figure is given in the brief; use it as given. Do not invent data, prices or news; "n/a" means unknown.
- Use no knowledge of anything after the brief's session date.

LOSS AVERSION (prospect theory, Tversky & Kahneman 1992)
- Value of a return x: x^{a} for gains, -{la} * (-x)^{b} for losses: a loss weighs {la} times an equal gain.
- Reference points: each position's cost basis (average cost, buy costs included); for the portfolio, the starting capital of {_eur(p.starting_capital_eur)}. The brief gives these prospect values.
- Avoid losses first, but never keep a loser hoping to break even: judge each position on today's figures.

RISK
- {cv} (1-day, historical over {r.lookback_sessions} sessions, fraction of NAV: the average loss on the worst {tail} of days) is your PRIMARY risk measure.
- Portfolio {cv} budget: {_pct(g.cvar_budget)} of NAV at no drawdown.
- Drawdown sensitivity rises non-linearly: m(dd) = max({_num(g.drawdown_floor)}, 1 - (dd/{_pct(g.drawdown_limit)})^{_num(g.drawdown_power)}), dd being the drawdown from the peak NAV, multiplies the exposure cap and the {cv} budget: {_multiplier_points(config)}. The deeper the drawdown, the more cautious you are.
- Kelly-inspired sizing: the brief gives each asset's {kelly} weight. It is a CAP on the asset's weight, never a target; 0 means no edge: do not buy.

HARD GUARDRAILS (enforced after you; orders beyond them are cut)
- At most {_pct(g.max_weight)} of NAV per asset; at least {_pct(g.min_cash)} of NAV in cash; invested at most {_pct(g.max_gross_exposure)} of NAV x m(dd); portfolio {cv} at most {_pct(g.cvar_budget)} of NAV x m(dd). Today's values are in LIMITS.
- No shorting, no leverage: sell only what is held. {shares}.
- Costs: {costs}.
- Orders fill at the NEXT open of each asset's own exchange (New York or Paris), not at today's close.

{ANSWER_SECTION}"""


def prompt_sha256(text: str) -> str:
    """The SHA-256 (hex) of the UTF-8 text: recorded with each decision."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PROMPTS = ("behavioural", "neutral")  # the prompt families an llm arm may use


def prompt_for(family: str, config: Config) -> tuple[str, str]:
    """(system prompt, version) of a prompt family: "behavioural" (this module, the
    treatment) or "neutral" (engine.llm.prompt_neutral, the control)."""
    if family == "behavioural":
        return system_prompt(config), PROMPT_VERSION
    if family == "neutral":
        from engine.llm.prompt_neutral import NEUTRAL_PROMPT_VERSION, neutral_system_prompt

        return neutral_system_prompt(config), NEUTRAL_PROMPT_VERSION
    raise ValueError(f"unknown prompt family {family!r}: choose one of {', '.join(PROMPTS)}")
