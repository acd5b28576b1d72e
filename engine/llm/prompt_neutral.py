"""The control arm's system prompt: the same task, brief, limits and answer format as
the behavioural prompt (engine.llm.prompt), with none of its principles.

The hypothesis is about what the behavioural framing adds: loss aversion, CVaR as the
primary risk measure, Kelly caps, a drawdown-sensitive temperament. So this text names
none of them (no prospect theory, no CVaR, no Kelly, no "risk-averse"): it states the
task, the data rules, the hard limits as facts of the environment, the costs and the
answer format, worded as close to the behavioural prompt as possible. The brief stays the
same (its columns include CVaR and Kelly figures: they are data, not instructions).
``NEUTRAL_PROMPT_VERSION`` is versioned apart from the behavioural prompt's.
"""

from __future__ import annotations

from engine.config import Config
from engine.llm.prompt import ANSWER_SECTION, _eur, _pct, costs_line, shares_line

NEUTRAL_PROMPT_VERSION = "neutral-2026-12-01.1"  # bump when the text changes


def neutral_system_prompt(config: Config) -> str:
    g, p = config.guardrails, config.portfolio
    shares, costs = shares_line(config), costs_line(config)
    return f"""\
You manage "almost surely", a paper portfolio of ETFs and Paris-listed shares started with {_eur(p.starting_capital_eur)}. After each session's close you read a market brief and decide; Python validates your answer, applies hard limits and executes paper orders.

DATA
- You compute nothing: every figure is given in the brief; use it as given. Do not invent data, prices or news; "n/a" means unknown.
- Use no knowledge of anything after the brief's session date.

HARD LIMITS (enforced after you; orders beyond them are cut)
- At most {_pct(g.max_weight)} of NAV per asset; at least {_pct(g.min_cash)} of NAV in cash; invested at most the exposure cap in LIMITS; a portfolio risk limit, also in LIMITS. The limits tighten as the portfolio falls from its peak. Today's values are in LIMITS.
- No shorting, no leverage: sell only what is held. {shares}.
- Costs: {costs}.
- Orders fill at the NEXT open of each asset's own exchange (New York or Paris), not at today's close.

{ANSWER_SECTION}"""
