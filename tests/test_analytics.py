"""Decision analytics and the honest-power statistics, against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from engine.analytics import RecordCounts, cash_drag, forward_returns, round_trips, win_rates, wilson
from engine.backtest.verdict import (
    deflated_sharpe_ratio,
    excess_return_test,
    minimum_detectable_effect,
    paired_test,
    probabilistic_sharpe_ratio,
)


def _trades(rows):
    return pd.DataFrame(rows, columns=["date", "ticker", "side", "qty", "cash_flow_eur", "gross_eur"]).assign(
        date=lambda t: pd.to_datetime(t["date"]))


def test_round_trips_match_lots_first_in_first_out_and_win_rates_bucket_them():
    t = _trades([
        ("2024-01-02", "A", "buy", 10, -1000.0, 1000.0),   # 100 a share
        ("2024-01-03", "A", "buy", 10, -1200.0, 1200.0),   # 120 a share
        ("2024-01-04", "A", "sell", 15, 1650.0, 1650.0),   # 110 a share: 10 from the first lot, 5 from the second
        ("2024-03-04", "A", "sell", 5, 650.0, 650.0),      # 130 a share
    ])
    trips = round_trips(t)
    assert [(x["days"], x["qty"]) for x in trips] == [(2, 10), (1, 5), (61, 5)]
    assert [round(x["return"], 6) for x in trips] == [0.1, round(110 / 120 - 1, 6), round(130 / 120 - 1, 6)]
    rates = win_rates(trips)
    assert rates["1-3 days"]["n"] == 2 and rates["1-3 days"]["rate"] == 0.5
    assert rates["over 60 days"]["rate"] == 1.0 and rates["all"]["n"] == 3


def test_wilson_interval_matches_the_textbook_values():
    w = wilson(8, 10)  # Wilson (1927): 0.8 of 10 -> [0.490, 0.943]
    assert (round(w["low"], 3), round(w["high"], 3)) == (0.49, 0.943)
    assert math.isnan(wilson(0, 0)["rate"])


def test_forward_returns_value_a_buy_by_the_move_and_a_sale_by_the_move_avoided():
    idx = pd.bdate_range("2024-01-01", periods=30)
    close = pd.DataFrame({"A": np.linspace(100, 129, 30)}, index=idx)
    t = _trades([("2024-01-01", "A", "buy", 1, -100.0, 100.0), ("2024-01-01", "A", "sell", 1, 100.0, 100.0)])
    f = forward_returns(t, close)
    assert f["buy"]["h1"]["mean"] == pytest.approx(0.0)  # the fill day's close is the fill price here
    assert f["buy"]["h5"]["mean"] == pytest.approx(104 / 100 - 1)
    assert f["sell"]["h20"]["mean"] == pytest.approx(-(119 / 100 - 1))


def test_cash_drag_is_the_return_forgone_by_the_cash_weight():
    # Half in cash throughout; the invested half gains 1% a session: the portfolio 0.5%.
    nav = 10_000 * 1.005 ** np.arange(5)
    eq = pd.DataFrame({"nav_eur": nav, "cash_eur": nav / 2})
    d = cash_drag(eq, periods_per_year=252)
    assert d["time_in_cash"] == pytest.approx(0.5)
    assert d["cash_drag_ann"] == pytest.approx((0.01 - 0.005) * 252)


def test_cuts_and_holds_are_counted_by_rule_and_cause():
    recs = [
        {"cuts": [{"stage": "guardrail:reentry_cooldown"}, {"stage": "sizing"}], "answer": {"fallback": None}},
        {"cuts": [], "answer": {"fallback": "the LLM server answered HTTP 500: oops"}},
        {"cuts": [{"stage": "sizing"}], "answer": {"fallback": "the model refused: no"}},
        {"cuts": [], "answer": {"fallback": None}},
    ]
    c = RecordCounts.of(recs).cuts()
    assert c["by_rule"] == {"guardrail:reentry_cooldown": 1, "sizing": 2} and c["sessions_with_cuts"]["rate"] == 0.5
    f = RecordCounts.of(recs).fallbacks()
    assert f["hold_rate"]["rate"] == 0.5
    assert set(f["by_cause"]) == {"the LLM server answered HTTP 500", "the model refused"}


def test_the_minimum_detectable_effect_follows_the_power_formula_and_says_it_in_words():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.01, 252)  # one year at about 15.9% tracking error
    m = minimum_detectable_effect(d, last_date="2026-12-01")
    te = d.std(ddof=1) * math.sqrt(252)
    z = 1.6448536269514722 + 0.8416212335729143
    assert m["tracking_error_ann"] == pytest.approx(te)
    assert m["mde_ann"] == pytest.approx(z * te / 1.0)
    assert m["years_for_edge"] == pytest.approx((z * te / 0.05) ** 2)
    assert f"an edge below {m['mde_ann']:.1%} a year cannot be told from luck" in m["sentence"]
    assert m["edge_detectable_from"] == 2026 + int(m["years_for_edge"] - 1)
    # Four times the sample halves the MDE.
    m4 = minimum_detectable_effect(np.tile(d, 4))
    assert m4["mde_ann"] == pytest.approx(m["mde_ann"] / 2, rel=0.01)


def test_treatment_vs_control_is_the_bootstrap_test_of_the_paired_differences():
    rng = np.random.default_rng(1)
    c = rng.normal(0.0003, 0.01, 500)
    t = c + rng.normal(0.001, 0.002, 500)  # a clear daily edge over the control
    res = paired_test(t, c, n_boot=999)
    same = excess_return_test(t, c, n_boot=999)
    assert res["p_value"] == same["p_value"] and res["mean_excess_ann"] == same["mean_excess_ann"]
    assert res["reject_null"] and res["sentence"].startswith("treatment beats control")
    flat = paired_test(c, c + rng.normal(0, 0.002, 500), n_boot=999)
    assert "cannot tell treatment from control" in flat["sentence"]


def test_the_deflated_sharpe_ratio_is_the_psr_for_one_trial_and_lower_for_many():
    rng = np.random.default_rng(2)
    r = rng.normal(0.0005, 0.01, 750)
    one = deflated_sharpe_ratio(r, [0.05])
    assert one["dsr"] == pytest.approx(probabilistic_sharpe_ratio(r, 0.0))
    many = deflated_sharpe_ratio(r, list(rng.normal(0.03, 0.03, 10)))
    assert many["trials"] == 10 and many["sr0_per_period"] > 0 and many["dsr"] < one["dsr"]
    # Bailey & Lopez de Prado (2014): E[max of N] ~ sqrt(V) ((1-g) Z(1-1/N) + g Z(1-1/(N e))).
    srs = [0.01, 0.02, 0.03, 0.04]
    v = deflated_sharpe_ratio(r, srs)
    from statistics import NormalDist

    nd, g = NormalDist(), 0.5772156649015329
    sr0 = np.std(srs, ddof=1) * ((1 - g) * nd.inv_cdf(1 - 1 / 4) + g * nd.inv_cdf(1 - 1 / (4 * math.e)))
    assert v["sr0_per_period"] == pytest.approx(sr0)


def test_record_counts_are_taken_back_from_the_analytics_they_gave_and_add_up():
    recs = [
        {"cuts": [{"stage": "guardrail:exposure"}], "answer": {"fallback": None}},
        {"cuts": [], "answer": {"fallback": "the model refused: no"}},
        {"cuts": [{"stage": "sizing"}, {"stage": "sizing"}], "answer": {"fallback": "the daily LLM budget is spent"}},
        {"cuts": [], "answer": {"fallback": None}},
        {"cuts": [{}], "answer": {}},
    ]
    before = RecordCounts.of(recs[:3])
    written = json.loads(json.dumps({"cuts": before.cuts(), "fallbacks": before.fallbacks()}))
    again = RecordCounts.from_analytics(written)
    assert again == before
    for r in recs[3:]:
        again.add(r)
    assert again == RecordCounts.of(recs)
    # Figures that are not whole counts of their sessions, or that disagree, are not taken.
    odd = json.loads(json.dumps(written))
    odd["cuts"]["sessions_with_cuts"]["rate"] = 0.5
    assert RecordCounts.from_analytics(odd) is None
    odd = json.loads(json.dumps(written))
    odd["fallbacks"]["hold_rate"]["n"] = 4
    assert RecordCounts.from_analytics(odd) is None
    assert RecordCounts.from_analytics({"cuts": {}}) is None
