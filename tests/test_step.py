"""The daily step: timing of fills, holidays on one exchange, no look-ahead, the hold control."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine.config import Config
from engine.data.market import MarketData
from engine.decision import Action, Brief, Decision
from engine.indicators import compute_indicators
from engine.policies import HoldPolicy, PolicyAnswer, RulesPolicy
from engine.portfolio.ledger import Portfolio, Position
from engine.step import StepContext, check_data, run, step
from engine.errors import DataUnavailable
from engine.data.market import DataIssue


class Scripted:
    """A policy that answers a fixed decision on given dates and holds otherwise."""

    name = "scripted"

    def __init__(self, plan: dict[str, list[Action]]):
        self.plan = plan
        self.briefs: list[Brief] = []

    def decide(self, brief: Brief) -> PolicyAnswer:
        self.briefs.append(brief)
        return PolicyAnswer(Decision(decisions=tuple(self.plan.get(brief.date.isoformat(), [])), summary="scripted"))


def _ctx(config: Config, policy) -> StepContext:
    return StepContext(config=config, policy=policy, source="demo seed=7", synthetic=True)


def _sessions(market: MarketData, start: str, end: str) -> pd.DatetimeIndex:
    idx = market.index
    return idx[(idx >= pd.Timestamp(start)) & (idx <= pd.Timestamp(end))]


def test_orders_fill_at_next_open_of_their_own_exchange_and_wait_over_thanksgiving(config, demo_market):
    # Decided after the close of Wed 2024-11-27. Thu 28 is Thanksgiving: New York closed, Paris open.
    policy = Scripted({"2024-11-27": [
        Action(ticker="SPY", action="buy", percent=20, reason="test"),
        Action(ticker="MC.PA", action="buy", percent=20, reason="test"),
    ]})
    ind = compute_indicators(demo_market, config)
    p0 = Portfolio.initial(config.portfolio.starting_capital_eur)
    p, results = run(p0, _sessions(demo_market, "2024-11-27", "2024-11-29"), demo_market, ind, _ctx(config, policy))
    by_day = {r.date.date().isoformat(): r for r in results}
    assert [r.date.date().isoformat() for r in results] == ["2024-11-27", "2024-11-28", "2024-11-29"]

    thu = by_day["2024-11-28"]
    assert [f.ticker for f in thu.fills] == ["MC.PA"]
    mc = thu.fills[0]
    assert mc.price_local == pytest.approx(demo_market.open.at[pd.Timestamp("2024-11-28"), "MC.PA"] * (1 + config.costs.slippage_bps / 1e4))
    assert mc.tax_eur == pytest.approx(round(mc.gross_eur * config.costs.french_ftt_rate_on(mc.date), 2))
    assert [o.ticker for o in thu.portfolio.pending_orders] == ["SPY"]
    # The pending SPY order is shown to the policy on Thanksgiving.
    assert [o.ticker for o in policy.briefs[1].pending_orders] == ["SPY"]

    fri = by_day["2024-11-29"]
    assert [f.ticker for f in fri.fills] == ["SPY"]
    spy = fri.fills[0]
    fx = demo_market.fx_eurusd.at[pd.Timestamp("2024-11-29")]
    assert spy.fx_eurusd == fx
    assert spy.gross_eur == pytest.approx(spy.qty * spy.price_local / fx, abs=0.01)
    assert spy.tax_eur == 0.0  # no French tax on a US ETF
    assert p.pending_orders == ()
    assert set(p.positions) == {"SPY", "MC.PA"}


def test_us_asset_is_marked_at_its_last_close_and_todays_fx_on_a_us_holiday(config, demo_market):
    policy = Scripted({"2024-11-26": [Action(ticker="SPY", action="buy", percent=50)]})
    ind = compute_indicators(demo_market, config)
    p, results = run(Portfolio.initial(10_000), _sessions(demo_market, "2024-11-26", "2024-11-28"),
                     demo_market, ind, _ctx(config, policy))
    thu = results[-1]
    qty = p.positions["SPY"].qty
    last_close = demo_market.close.at[pd.Timestamp("2024-11-27"), "SPY"]
    fx_thu = demo_market.fx_eurusd.at[pd.Timestamp("2024-11-28")]
    assert np.isnan(demo_market.close.at[pd.Timestamp("2024-11-28"), "SPY"])
    assert thu.equity["invested_eur"] == pytest.approx(qty * last_close / fx_thu, abs=0.01)
    assert thu.equity["nav_eur"] == pytest.approx(p.cash_eur + qty * last_close / fx_thu, abs=0.01)


def test_hold_policy_keeps_nav_at_exactly_the_starting_capital(config, demo_market):
    ind = compute_indicators(demo_market, config)
    p, results = run(Portfolio.initial(10_000), _sessions(demo_market, "2024-06-03", "2024-12-31"),
                     demo_market, ind, _ctx(config, HoldPolicy()))
    assert {r.equity["nav_eur"] for r in results} == {10_000.0}
    assert p.cash_eur == 10_000.0 and not p.positions and not any(r.fills for r in results)
    # The market moved, so the flat line is the policy's doing, not the market's.
    spy = demo_market.close["SPY"].dropna()
    assert spy.loc["2024-06-03":"2024-12-31"].nunique() > 100
    # The step computes no benchmark: those are arms (tests/test_arms.py).
    assert not any(k.startswith("benchmark_") for k in results[-1].equity)


def _poisoned_after(market: MarketData, d: pd.Timestamp, seed: int = 1) -> MarketData:
    rng = np.random.default_rng(seed)
    after = market.index > d

    def poison(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        noise = rng.uniform(0.2, 5.0, size=out.shape)
        out.loc[after] = out.loc[after].to_numpy() * noise[after]
        return out

    return dataclasses.replace(
        market, open=poison(market.open), high=poison(market.high), low=poison(market.low),
        close=poison(market.close), fx_eurusd=market.fx_eurusd.where(~after, market.fx_eurusd * 1.3),
    )


def test_no_look_ahead_future_prices_do_not_change_decisions_or_nav_up_to_d(config, demo_market):
    d = pd.Timestamp("2024-09-30")
    sessions = _sessions(demo_market, "2024-01-02", "2024-12-31")
    clean_ind = compute_indicators(demo_market, config)
    poisoned = _poisoned_after(demo_market, d)
    poisoned_ind = compute_indicators(poisoned, config)
    _, clean = run(Portfolio.initial(10_000), sessions, demo_market, clean_ind, _ctx(config, RulesPolicy(config)))
    _, dirty = run(Portfolio.initial(10_000), sessions, poisoned, poisoned_ind, _ctx(config, RulesPolicy(config)))
    upto = [i for i, r in enumerate(clean) if r.date <= d]
    assert len(upto) > 150
    for i in upto:
        assert clean[i].record == dirty[i].record, f"decision at {clean[i].date.date()} changed"
        assert clean[i].equity == dirty[i].equity
    assert any(r.fills for r in clean[: len(upto)]), "the rules policy should have traded by then"
    # ... and the poison does change what comes after, so the comparison above can fail.
    assert clean[-1].equity["nav_eur"] != dirty[-1].equity["nav_eur"]


def test_rules_policy_keeps_every_invariant_over_a_year(config, demo_market):
    ind = compute_indicators(demo_market, config)
    sessions = _sessions(demo_market, "2024-01-02", "2024-12-31")
    p, results = run(Portfolio.initial(10_000), sessions, demo_market, ind, _ctx(config, RulesPolicy(config)))
    g = config.guardrails
    for r in results:
        e = r.equity
        assert e["cash_eur"] >= 0
        assert e["nav_eur"] == pytest.approx(e["cash_eur"] + e["invested_eur"], abs=0.02)
        pnl = e["realised_pnl_eur"] + e["unrealised_pnl_eur"] + e["dividends_eur"]
        assert e["nav_eur"] - 10_000 == pytest.approx(pnl, abs=0.05)
        for c in r.record["cuts"]:
            assert c["reason"], "every cut says why"
        for o in r.record["orders"]:
            assert o["qty"] > 0 and float(o["qty"]).is_integer()
    n_trades = sum(1 for r in results for f in r.fills if f.side in ("buy", "sell"))
    assert n_trades > 10
    # The guardrails hold at every close within their tolerance (prices drift between decisions).
    weights = [pos["weight"] for r in results for pos in r.record["brief"]["positions"]]
    assert max(weights) <= g.max_weight + g.trim_tolerance + 0.05
    assert max(r.equity["gross_exposure"] for r in results) <= g.max_gross_exposure + g.trim_tolerance + 0.05


def test_step_on_a_date_missing_from_the_data_is_a_clear_error(config, demo_market):
    ind = compute_indicators(demo_market, config)
    with pytest.raises(DataUnavailable, match="2024-12-25 is not in the market data"):
        step(Portfolio.initial(10_000), pd.Timestamp("2024-12-25"), demo_market, ind, _ctx(config, HoldPolicy()))


def test_bad_data_on_a_held_asset_stops_the_run_but_is_skipped_when_not_needed(config, demo_market):
    broken = demo_market.drop(["KER.PA"]).with_issues(
        [DataIssue("KER.PA", "stale", "no bar for 2024-12-31, last bar 2024-12-27")]
    )
    check_data(broken, Portfolio.initial(10_000), config)  # not held: proceed without it
    held = Portfolio.initial(10_000).model_copy(
        update={"positions": {"KER.PA": Position(ticker="KER.PA", qty=1, cost_eur=200)}}
    )
    with pytest.raises(DataUnavailable, match="KER.PA .stale: no bar for 2024-12-31"):
        check_data(broken, held, config)


def test_a_fading_high_water_mark_lets_an_old_drawdown_heal(config, demo_market):
    faded = config.with_overrides(guardrails={"drawdown_peak_half_life_sessions": 20})
    ind = compute_indicators(demo_market, config)
    sessions = _sessions(demo_market, "2024-06-03", "2024-09-30")
    peak_high = Portfolio.initial(10_000).model_copy(update={"nav_peak_eur": 20_000.0})  # a 50% drawdown
    _, fixed = run(peak_high, sessions, demo_market, ind, _ctx(config, HoldPolicy()))
    _, fading = run(peak_high, sessions, demo_market, ind, _ctx(faded, HoldPolicy()))
    assert fixed[-1].equity["drawdown"] == pytest.approx(-0.5)  # the all-time peak never forgets
    # A 20-session half-life halves the mark in 20 sessions: the 50% drawdown heals.
    assert fading[5].equity["drawdown"] < fading[15].equity["drawdown"] < 0
    assert fading[25].equity["drawdown"] == pytest.approx(0.0)
    assert fading[-1].equity["drawdown"] == pytest.approx(0.0)


def test_arms_stepping_one_session_share_its_figures_but_never_their_changes(config, demo_market):
    """The figures of a session are computed once for the arms that step at it: a policy
    that scribbles on its brief changes nothing another arm (or another market) reads."""
    from engine.data.demo import DemoSource

    class Scribbler(RulesPolicy):
        def decide(self, brief):
            for figures in brief.assets.values():
                figures["close"] = -1.0
                figures["ret_30s_eur"] = 99.0
            return super().decide(brief)

    other = DemoSource(seed=8).load(config, pd.Timestamp("2023-01-02"), pd.Timestamp("2024-12-31"))
    ind, ind_other = compute_indicators(demo_market, config), compute_indicators(other, config)
    days = _sessions(demo_market, "2024-03-01", "2024-03-15")
    alone = run(Portfolio.initial(10_000, "demo seed=7"), days, demo_market, ind, _ctx(config, RulesPolicy(config)))[1]
    alone_other = run(Portfolio.initial(10_000, "demo seed=8"), days, other, ind_other,
                      _ctx(config, RulesPolicy(config)))[1]
    p = {k: Portfolio.initial(10_000, f"demo seed={k}") for k in ("7", "7b", "8")}
    together, together_other = [], []
    for d in days:  # in lockstep: a scribbler first, then an arm on the same market, then another market's
        p["7b"] = step(p["7b"], d, demo_market, ind, _ctx(config, Scribbler(config))).portfolio
        res = step(p["7"], d, demo_market, ind, _ctx(config, RulesPolicy(config)))
        p["7"] = res.portfolio
        together.append(res)
        res = step(p["8"], d, other, ind_other, _ctx(config, RulesPolicy(config)))
        p["8"] = res.portfolio
        together_other.append(res)
    assert [r.record for r in together] == [r.record for r in alone]
    assert [r.record for r in together_other] == [r.record for r in alone_other]
    assert [r.record["orders"] for r in together] != [r.record["orders"] for r in together_other]


@pytest.mark.parametrize("layout", ["F", "C"])
@pytest.mark.parametrize("lookback", [250, 30, 12, 1])
def test_the_recent_figures_of_every_session_are_those_of_its_own_window_to_the_last_bit(monkeypatch, lookback, layout):
    """The brief's last-30-sessions figures come from a table computed once per run: on real
    prices (skfolio's S&P 500 stocks) they are, at every session, those of the window
    itself, bit for bit, from the first sessions (shorter windows) through chunk edges,
    whether the returns are laid out by asset (as pandas gives them) or by session."""
    import engine.step as step_module
    from tests.realdata import sp500_closes

    closes = sp500_closes().iloc[:800]
    ind = type("Ind", (), {})()  # what _recent_rows reads of the indicators
    ind.returns_matrix = np.asarray(np.nan_to_num(closes.pct_change().to_numpy(dtype=float)), order=layout)
    ind.tickers = list(closes.columns)
    monkeypatch.setattr(step_module, "_RECENT_CHUNK", 97)  # many chunk edges
    monkeypatch.setattr(step_module, "_RECENT_TABLE", [])
    r = ind.returns_matrix
    for j in range(len(r)):
        got = step_module._recent_rows(ind, j, lookback, 252.0)
        want = step_module._recent_block(r[max(0, j - lookback + 1) : j + 1], 252.0)
        got, want = (None if a is None else a.tolist() for a in (got, want))
        assert got == want, f"session {j}"  # floats compared exactly (no NaN: missing returns are 0)
    assert step_module._recent_rows(ind, len(r) - 1, lookback, 252.0) is not None or lookback == 1
