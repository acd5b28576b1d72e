"""The system prompt: the configuration's numbers, the principles, the answer format."""

from __future__ import annotations

import hashlib
import re

import pytest

from engine.config import Config
from engine.llm.brief import estimate_tokens
from engine.llm.prompt import PROMPT_VERSION, prompt_sha256, system_prompt

OVERRIDES = {
    "risk": {"loss_aversion": 3.0, "alpha": 0.8, "beta": 0.9, "kelly_fraction": 0.25, "lookback_sessions": 500,
             "cvar_level": 0.99},
    "guardrails": {"max_weight": 0.15, "min_cash": 0.1, "max_gross_exposure": 0.9, "cvar_budget": 0.03,
                   "drawdown_limit": 0.25, "drawdown_floor": 0.3, "drawdown_power": 3.0},
    "portfolio": {"starting_capital_eur": 20_000.0, "min_order_eur": 200.0},
    "costs": {"french_ftt_rate": 0.003, "slippage_bps": 7.0, "commission_bps": 12.0},
}


@pytest.fixture(scope="module")
def default_text(config: Config) -> str:
    return system_prompt(config)


@pytest.fixture(scope="module")
def changed_text(config: Config) -> str:
    return system_prompt(config.with_overrides(**OVERRIDES))


def test_states_the_default_numbers_of_the_config(default_text):
    t = default_text
    for s in [
        "loss weighs 2.25 times an equal gain",
        "x^0.88 for gains, -2.25 * (-x)^0.88 for losses",
        "Tversky & Kahneman 1992",
        "CVaR 95 (1-day, historical over 250 sessions, fraction of NAV",
        "worst 5% of days",
        "Portfolio CVaR 95 budget: 2% of NAV",
        "m(dd) = max(0.25, 1 - (dd/20%)^2)",
        "dd 5% -> 0.94", "dd 10% -> 0.75", "dd 15% -> 0.44", "dd 20%+ -> 0.25",
        "half-Kelly",
        "At most 20% of NAV per asset", "at least 5% of NAV in cash", "invested at most 95% of NAV x m(dd)",
        "Whole shares only", "orders under EUR 150 are dropped",
        "French FTT 0.4% on purchases of French shares",
        "slippage 5 bps, commission 10 bps (min EUR 1)",
        "EUR 10,000",
    ]:
        assert s in t, s


def test_numbers_follow_the_config_and_none_is_hard_coded(default_text, changed_text):
    t = changed_text
    for s in [
        "loss weighs 3 times an equal gain",
        "x^0.8 for gains, -3 * (-x)^0.9 for losses",
        "CVaR 99 (1-day, historical over 500 sessions",
        "worst 1% of days",
        "Portfolio CVaR 99 budget: 3% of NAV",
        "m(dd) = max(0.3, 1 - (dd/25%)^3)",
        "dd 12.5% -> 0.88",  # 1 - 0.5^3 = 0.875
        "dd 25%+ -> 0.30",
        "0.25 x Kelly",
        "At most 15% of NAV per asset", "at least 10% of NAV in cash", "invested at most 90% of NAV x m(dd)",
        "portfolio CVaR 99 at most 3% of NAV x m(dd)",
        "orders under EUR 200 are dropped",
        "French FTT 0.3%",
        "slippage 7 bps, commission 12 bps",
        "EUR 20,000",
    ]:
        assert s in t, s
    for default in ["2.25", "x^0.88", "CVaR 95", "20% of NAV", "EUR 150", "EUR 10,000", "half-Kelly", "0.4%", "250 sessions"]:
        assert default in default_text and default not in t, default


def test_fractional_shares_and_no_tax_are_said_when_configured(config):
    t = system_prompt(config.with_overrides(portfolio={"whole_shares": False, "min_order_eur": 0.0},
                                            costs={"french_ftt_rate": 0.0, "fx_fee_bps": 25.0}))
    assert "Fractional shares allowed" in t and "Whole shares" not in t
    assert "dropped" not in t  # no minimum order
    assert "FTT" not in t
    assert "FX fee 25 bps on USD assets" in t


def test_principles_cvar_primary_reference_points_and_no_computation(default_text):
    t = default_text
    assert "PRIMARY risk measure" in t and t.index("CVaR") < t.index("PRIMARY")
    assert "risk-averse" in t
    assert "cost basis" in t and "starting capital of EUR 10,000" in t  # the reference points
    assert "You compute nothing" in t and "Do not invent data" in t
    assert "no knowledge of anything after the brief's session date" in t
    assert "CAP on the asset's weight, never a target" in t  # Kelly figures are caps, given
    assert "non-linearly" in t
    assert "No shorting" in t
    assert "NEXT open of each asset's own exchange" in t


def test_answer_format_exactly(default_text):
    t = default_text
    assert ('{"decisions": [{"ticker": str, "action": "buy"|"sell"|"hold", "percent": number 0-100, '
            '"reason": str}], "summary": str}') in t
    assert "buy: percent = % of the CASH AVAILABLE at decision time" in t
    assert "sell: percent = % of the current position; 100 closes it" in t
    assert "hold: percent is ignored" in t
    assert "Only tickers from the brief's ASSETS, at most one entry each" in t
    assert "omit tickers with nothing to do (or use hold)" in t
    assert "nothing outside it" in t
    assert "reason: one short sentence citing the brief's figures" in t


def test_no_unfilled_template_field(default_text, changed_text):
    for t in (default_text, changed_text):
        # Only the JSON braces of the answer format remain: no {name} left by the f-string.
        assert not re.search(r"\{[a-z_]+\}", t)
        assert "None" not in t and "nan" not in t.lower().replace("financial", "")


def test_hash_is_the_sha256_of_the_text_and_changes_with_it(config, default_text, changed_text):
    h = prompt_sha256(default_text)
    assert h == hashlib.sha256(default_text.encode("utf-8")).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert prompt_sha256(system_prompt(config)) == h  # deterministic
    assert prompt_sha256(changed_text) != h
    assert prompt_sha256(default_text + " ") != h


def test_version_is_dated():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\d+", PROMPT_VERSION)


def test_stays_compact(default_text, changed_text):
    for t in (default_text, changed_text):
        assert len(t) < 3_200
        # The estimate is conservative (~25% high on prose): the default prompt measured
        # exactly offline is 787 cl100k_base / 778 o200k_base tokens.
        assert estimate_tokens(t) < 1_100
