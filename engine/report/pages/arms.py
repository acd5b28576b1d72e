"""The arms of the experiment as the home page shows them, and each arm's verdict.

An :class:`Arm` is one portfolio: a name, the policy and model that run it, its NAV in
EUR per session, and its decision records. The home page renders a list of them (one
verdict box per active arm, one leaderboard row per arm), so that more arms are one
loader change: :func:`arms_of` reads them from :class:`SiteData`. Today a state holds one
portfolio, whose equity file also carries buy-and-hold benchmarks: the portfolio is the
one active arm and each benchmark column a passive arm.

:func:`arm_verdict` is the verdict of :mod:`engine.backtest.verdict` (excess daily return
over buy-and-hold SPY, stationary block bootstrap) put in the reader's terms: the excess
in EUR at the end, the 95% interval and one-sided p-value of the annualised excess, the
minimum edge the sample could detect, and one plain sentence; "too early to tell" until
there are enough sessions to test anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import pandas as pd

from engine.backtest.metrics import returns_from_nav
from engine.backtest.verdict import verdict
from engine.report.pages.common import SiteData, finite

MIN_TEST_SESSIONS = 20  # fewer daily excess returns than this: no test is run at all
ALPHA = 0.05
POWER = 0.80
N_BOOT = 2000  # enough for a 95% interval to two digits; the backtests use more


@dataclass(frozen=True)
class Arm:
    name: str  # short, for legends and tables: "Strategy", "SPY"
    label: str  # what runs it, in words: "the rules policy", "gpt-4o-mini (prompt v3)"
    nav_eur: pd.Series  # per session
    records: list[dict[str, Any]] = field(default_factory=list)
    passive: bool = False  # a buy-and-hold baseline: no decisions, no verdict box
    key: str = "strategy"  # its colour and line style in the charts


@dataclass(frozen=True)
class Verdict:
    sessions: int
    excess_eur: float  # NAV at the end minus SPY's, same capital, same dates
    mean_excess_ann: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    mde_ann: float = math.nan  # the smallest annual edge this sample detects with 80% power
    headline: str = "Too early to tell"
    tone: str = "info"  # info | good | bad
    sentence: str = ""

    @property
    def tested(self) -> bool:
        return finite(self.p_value)


def policy_label(records: list[dict[str, Any]]) -> str:
    """Who decides, from the latest record: "the rules policy", or the model and its prompt."""
    if not records:
        return "no policy yet"
    last = records[-1]
    policy = str(last.get("policy") or "policy")
    model = last.get("model")
    if model:
        prompt = (last.get("usage") or {}).get("prompt_version")
        return f"{model}" + (f" (prompt {prompt})" if prompt else "")
    return f"the {policy} policy"


def arms_of(data: SiteData) -> list[Arm]:
    """The arms of the state: its headline portfolio, the other active arms of the experiment, then
    each benchmark column (the baseline arms' NAVs) as a passive arm."""
    eq = data.equity
    arms = [Arm("Strategy", policy_label(data.records), eq["nav_eur"].astype(float), data.records)]
    for name, label, nav in data.other_arms:  # the experiment's other active arms
        arms.append(Arm(name, label, nav.reindex(eq.index).astype(float), key=f"arm:{name}"))
    for key, (col, label) in data.benchmark_columns.items():
        name = label.removeprefix("Buy-and-hold ").removesuffix(" (index)")
        arms.append(Arm(name, "buy and hold, no decisions", eq[col].astype(float), passive=True, key=key))
    return arms


def spy_of(arms: list[Arm]) -> Arm | None:
    return next((a for a in arms if a.passive and a.key == "spy"), None)


def arm_verdict(arm: Arm, spy: Arm, capital: float, periods_per_year: float = 252) -> Verdict:
    both = pd.concat([arm.nav_eur.rename("a"), spy.nav_eur.rename("s")], axis=1, join="inner").dropna()
    sessions = len(both)
    excess_eur = float(both["a"].iloc[-1] - both["s"].iloc[-1]) if sessions else math.nan
    if sessions - 1 < MIN_TEST_SESSIONS:
        return Verdict(sessions, excess_eur, headline="Too early to tell", tone="info",
                       sentence=f"{sessions} session{'s' if sessions != 1 else ''} so far: a test needs at least "
                                f"{MIN_TEST_SESSIONS + 1}, and far more to see a modest edge.")
    v = verdict(returns_from_nav(both["a"], capital), returns_from_nav(both["s"], capital), alpha=ALPHA,
                n_boot=N_BOOT, periods_per_year=periods_per_year)
    lo, hi, p = float(v["ci_low"]), float(v["ci_high"]), float(v["p_value"])
    z = NormalDist().inv_cdf
    se = (hi - lo) / (2 * z(0.5 + float(v.get("confidence", 0.95)) / 2))
    mde = (z(1 - ALPHA) + z(POWER)) * se
    if v["reject_null"]:
        headline, tone = "Beats buy-and-hold SPY", "good"
        sentence = f"The excess return over SPY is positive beyond chance (one-sided p = {p:.3f})."
    elif hi < 0:
        headline, tone = "Worse than buy-and-hold SPY", "bad"
        sentence = "The whole 95% interval of the excess return lies below zero: it trails SPY by more than chance."
    elif v["short_sample"]:
        headline, tone = "Too early to tell", "info"
        sentence = (f"No evidence of an edge over SPY yet (p = {p:.2f}). With {sessions} sessions, only an edge "
                    f"above {mde:.0%} a year would show.")
    else:
        headline, tone = "No evidence it beats SPY", "info"
        sentence = (f"The null hypothesis stands (p = {p:.2f}): the interval still allows edges from "
                    f"{lo:+.0%} to {hi:+.0%} a year.")
    return Verdict(sessions, excess_eur, float(v["mean_excess_ann"]), lo, hi, p, mde, headline, tone, sentence)
