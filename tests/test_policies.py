"""The offline rules policy: trend, loss aversion and CVaR-budgeted sizing as plain rules."""

from __future__ import annotations

from engine.config import load_config
from engine.policies import HoldPolicy, RulesPolicy, make_policy
from engine.errors import ConfigError
from tests.helpers import brief, figures

import pytest

CFG = load_config()


def actions(answer):
    return {a.ticker: a for a in answer.decision.decisions}


def test_a_broken_trend_closes_the_position_and_says_why():
    b = brief(prices={"MC.PA": 90.0}, positions={"MC.PA": (10, 95.0)},
              assets={"MC.PA": figures(close=90.0, sma_200=100.0)})
    a = actions(RulesPolicy(CFG).decide(b))["MC.PA"]
    assert (a.action, a.percent) == ("sell", 100)
    assert "below its 200-day average" in a.reason and "2.25x" in a.reason


def test_a_loss_beyond_the_stop_is_cut_even_in_an_uptrend():
    b = brief(prices={"MC.PA": 110.0}, positions={"MC.PA": (10, 130.0)}, assets={"MC.PA": figures(close=110.0)})
    a = actions(RulesPolicy(CFG).decide(b))["MC.PA"]
    assert (a.action, a.percent) == ("sell", 100) and "stop" in a.reason


def test_buys_only_uptrends_that_are_not_overbought_ranked_by_prospect_value():
    assets = {
        "UP1": figures(prospect_20d=0.03),
        "UP2": figures(prospect_20d=0.01),
        "HOT": figures(rsi_14=78.0),                    # overbought: not chased
        "DOWN": figures(close=95.0, sma_50=98.0),       # below SMA 200
        "FLAT": figures(sma_50=99.0),                   # SMA 50 under SMA 200
    }
    b = brief(prices={t: 110.0 if t != "DOWN" else 95.0 for t in assets}, assets=assets)
    acts = actions(RulesPolicy(CFG).decide(b))
    assert set(acts) == {"UP1", "UP2"} and all(a.action == "buy" for a in acts.values())
    assert "prospect value rank 1/2" in acts["UP1"].reason


def test_riskier_assets_get_smaller_targets_and_never_more_than_max_positions():
    assets = {f"T{i}": figures(cvar_95=0.01 * (1 + i % 3), prospect_20d=0.001 * i) for i in range(12)}
    b = brief(prices=dict.fromkeys(assets, 50.0), assets=assets, nav=100_000.0)
    acts = actions(RulesPolicy(CFG).decide(b))
    assert len(acts) == CFG.rules.max_positions
    by_cvar = {}
    for t, a in acts.items():
        by_cvar.setdefault(assets[t]["cvar_95"], set()).add(round(a.percent, 6))
    assert max(by_cvar[0.03]) < min(by_cvar[0.01])
    assert sum(a.percent for a in acts.values()) <= 100.0 + 1e-9


def test_missing_figures_mean_no_buy():
    b = brief(prices={"NEW": 100.0}, assets={"NEW": figures(sma_200=float("nan"))})
    assert RulesPolicy(CFG).decide(b).decision.decisions == ()


def test_hold_never_trades_and_unknown_policies_are_refused():
    b = brief(prices={"MC.PA": 90.0}, positions={"MC.PA": (10, 95.0)})
    assert HoldPolicy().decide(b).decision.decisions == ()
    with pytest.raises(ConfigError, match="unknown policy 'yolo'"):
        make_policy("yolo", CFG)
