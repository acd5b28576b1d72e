"""Arms: several paper portfolios on one market, the baselines as arms, churn limits,
the random luck calibrator, a failing llm arm that stops alone, treatment vs control."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from engine.arms import headline_spec, open_experiment, run_experiment, select_arms
from engine.cli import main
from engine.config import load_config
from engine.decision import Action, Brief, Decision
from engine.indicators import compute_indicators
from engine.policies import PolicyAnswer, RandomPolicy, Turnover
from engine.portfolio.ledger import Portfolio, Position
from engine.step import StepContext, run
from tests.fake_openai import FakeOpenAI, answer_json

OFFLINE_ARMS = {"rules", "random", "buy_and_hold_spy", "buy_and_hold_cac40_tracker", "equal_weight"}
STATE_FILES = {"portfolio.json", "equity.parquet", "trades.parquet", "decisions"}


def _eq(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "equity.parquet")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--out", str(out), "--sessions", "60", "--end", "2024-12-31", "--seed", "5", "--no-site"])
    assert code == 0
    return out / "state", buf.getvalue()


def test_the_demo_runs_every_offline_arm_each_in_its_own_state_folder(demo_out):
    state, printed = demo_out
    assert {p.name for p in (state / "arms").iterdir()} == OFFLINE_ARMS
    for arm in OFFLINE_ARMS:
        assert STATE_FILES <= {p.name for p in (state / "arms" / arm).iterdir()}, arm
        assert len(_eq(state / "arms" / arm)) == 60, arm
    manifest = json.loads((state / "arms.json").read_text())
    assert manifest["headline"] == "rules" and set(manifest["arms"]) == OFFLINE_ARMS
    # The root mirrors the headline arm, so the site, the weekly report and the monitor read it as before.
    pd.testing.assert_frame_equal(_eq(state), _eq(state / "arms" / "rules"))
    assert "Arms (5)" in printed and "ms per session" in printed


def test_the_benchmark_lines_are_the_baseline_arms_navs(demo_out, config):
    state, _ = demo_out
    head = _eq(state)
    for key, arm in (("spy", "buy_and_hold_spy"), ("cac40_tracker", "buy_and_hold_cac40_tracker")):
        assert (head[f"benchmark_{key}_eur"].to_numpy() == _eq(state / "arms" / arm)["nav_eur"].to_numpy()).all()
    # The one line no arm fills is the price index: units at the first close, no costs, no dividends.
    from engine.data.demo import DemoSource

    market = DemoSource(seed=5).load(config, "2024-01-02", "2024-12-31")
    d0, d1 = head["date"].iloc[0], head["date"].iloc[-1]
    cac = market.close["^FCHI"]
    assert head["benchmark_cac40_eur"].iloc[-1] == pytest.approx(10_000 * cac[d1] / cac[d0], abs=0.01)
    # Bought through the same execution: SPY's arm paid costs on its one purchase.
    trades = pd.read_parquet(state / "arms" / "buy_and_hold_spy" / "trades.parquet")
    assert list(trades["side"]) == ["buy"] and trades["commission_eur"].iloc[0] > 0


def test_the_weekly_report_shows_the_verdicts_benchmark_numbers(demo_out, config):
    from engine.report.weekly import build_report

    state, _ = demo_out
    report = build_report(state, config, None)
    spy = next(b for b in report.benchmarks if b.name == "Buy-and-hold SPY")
    assert spy.nav_eur == pytest.approx(_eq(state / "arms" / "buy_and_hold_spy")["nav_eur"].iloc[-1], abs=0.005)


def test_the_verdict_and_analytics_are_computed_for_every_arm(demo_out):
    state, _ = demo_out
    exp = json.loads((state / "experiment.json").read_text())
    assert set(exp["arms"]) == OFFLINE_ARMS and exp["reference"] == "buy_and_hold_spy"
    for name, arm in exp["arms"].items():
        assert {"performance", "analytics"} <= set(arm)
        assert {"win_rate_by_holding", "turnover_ann", "time_in_cash", "cash_drag_ann", "cuts", "fallbacks",
                "forward_returns"} <= set(arm["analytics"])
        if name != "buy_and_hold_spy":
            assert "buy-and-hold SPY" in arm["verdict"]["sentence"]
            assert "cannot be told from luck" in arm["mde"]["sentence"]
    # Only the active arms are trials for the deflated Sharpe ratio.
    assert exp["trials"] == 2 and "deflated" in exp["arms"]["rules"] and "deflated" not in exp["arms"]["equal_weight"]



def test_a_daily_verdict_reads_only_the_new_records_and_equals_the_full_recomputation(demo_out, tmp_path, config):
    import shutil

    from engine.arms import arm_folders, read_manifest
    from engine.backtest.evaluate import close_eur
    from engine.backtest.experiment import _counted, _record_names, judge_arms
    from engine.data.demo import DemoSource
    from engine.state import StateStore, dumps

    state = tmp_path / "state"
    shutil.copytree(demo_out[0], state)
    before = json.loads((state / "experiment.json").read_text())
    assert main(["daily", "--state", str(state), "--source", "demo", "--seed", "5", "--date", "2025-01-02"]) == 0
    stores = {name: StateStore(folder) for name, folder in arm_folders(state).items()}
    for name, store in stores.items():  # the day before's counts are those of all records but the new one
        store.load()
        names = _record_names(store.root / "decisions")
        counts = _counted(before["arms"][name], names, store.equity())
        assert counts is not None and counts.sessions == len(names) - 1 == 60, name
    assert sum(before["arms"]["random"]["analytics"]["cuts"]["by_rule"].values()) > 0  # there is something to count
    close = close_eur(DemoSource(seed=5).load(config, "2024-01-02", "2025-01-02"), config)
    full = dumps(judge_arms(stores, config, read_manifest(state), close))
    assert dumps(judge_arms(stores, config, read_manifest(state), close, previous=before)) == full
    # Verdicts that are not this folder's are not taken over: another arm's counts (as many
    # sessions, another NAV), or counts whose last record is not the one on their last session
    # (a record has appeared before it).
    swapped = {**before, "arms": {**before["arms"], "random": before["arms"]["rules"]}}
    names = _record_names(stores["random"].root / "decisions")
    assert _counted(swapped["arms"]["random"], names, stores["random"].equity()) is None
    assert dumps(judge_arms(stores, config, read_manifest(state), close, previous=swapped)) == full
    rules = stores["rules"].root / "decisions"
    (rules / "2024" / "10-05.json").write_text(json.dumps({"cuts": [{"stage": "sizing"}], "answer": {}}))
    full = dumps(judge_arms(stores, config, read_manifest(state), close))
    assert dumps(judge_arms(stores, config, read_manifest(state), close, previous=before)) == full

def test_a_backtests_verdicts_count_the_records_it_wrote_as_reading_them_back_would(tmp_path, config):
    """A backtest counts its arms' records as it saves them; its verdicts are those of a
    re-evaluation that reads every record (and counts that do not match the folder, as
    many records as it holds, are not taken)."""
    from engine.analytics import RecordCounts
    from engine.arms import arm_folders, read_manifest
    from engine.backtest.evaluate import close_eur
    from engine.backtest.experiment import judge_arms, record_counts
    from engine.data.demo import DemoSource
    from engine.state import StateStore, dumps

    out = tmp_path / "bt"
    assert main(["backtest", "--source", "demo", "--policy", "rules", "--start", "2024-01-02", "--end", "2024-05-31",
                 "--no-charts", "--out", str(out)]) == 0
    written = json.loads((out / "metrics.json").read_text())["experiment"]["arms"]
    stores = {name: StateStore(folder) for name, folder in arm_folders(out / "state").items()}
    close = close_eur(DemoSource(seed=42).load(config, "2024-01-02", "2024-05-31"), config)
    again = judge_arms(stores, config, read_manifest(out / "state"), close)["arms"]
    assert set(written) == OFFLINE_ARMS
    for name in written:
        assert written[name]["analytics"] == json.loads(dumps(again[name]["analytics"])), name
    assert sum(written["random"]["analytics"]["cuts"]["by_rule"].values()) > 0  # there was something to count
    store = stores["random"]
    full = record_counts(store, store.equity())
    assert record_counts(store, store.equity(), known=RecordCounts(sessions=3, with_cut=3)) == full
    assert full.sessions == len(store.equity()) and full.with_cut > 0


class Scripted:
    name = "scripted"

    def __init__(self, plan):
        self.plan = plan
        self.briefs: list[Brief] = []

    def decide(self, brief: Brief) -> PolicyAnswer:
        self.briefs.append(brief)
        return PolicyAnswer(Decision(decisions=tuple(self.plan.get(brief.date.isoformat(), [])), summary="scripted"))


def _sessions(market, start, end):
    idx = market.index
    return idx[(idx >= pd.Timestamp(start)) & (idx <= pd.Timestamp(end))]


def test_a_buy_of_a_ticker_sold_two_sessions_ago_is_cut_with_its_reason(config, demo_market):
    ind = compute_indicators(demo_market, config)
    policy = Scripted({
        "2024-06-03": [Action(ticker="MC.PA", action="sell", percent=100, reason="exit")],
        "2024-06-05": [Action(ticker="MC.PA", action="buy", percent=10, reason="back in"),
                       Action(ticker="OR.PA", action="buy", percent=10, reason="new")],
    })
    p0 = Portfolio.initial(10_000).model_copy(update={
        "cash_eur": 8_000.0, "positions": {"MC.PA": Position(ticker="MC.PA", qty=3, cost_eur=2_000.0)}})
    ctx = StepContext(config=config, policy=policy, source="demo seed=7", synthetic=True)
    _, results = run(p0, _sessions(demo_market, "2024-06-03", "2024-06-05"), demo_market, ind, ctx)
    last = results[-1].record
    cut = [c for c in last["cuts"] if c["ticker"] == "MC.PA"]
    assert cut == [{"stage": "guardrail:reentry_cooldown", "ticker": "MC.PA", "before": cut[0]["before"],
                    "after": "dropped", "reason": "sold on 2024-06-03, 2 session(s) ago: no re-entry within "
                                                  f"{config.churn.reentry_cooldown_sessions} sessions of a sale"}]
    assert [o["ticker"] for o in last["orders"]] == ["OR.PA"]  # the other purchase stands
    # The model was shown the cooldown in its brief, before it decided.
    churn = policy.briefs[-1].churn
    assert churn["cooldowns"]["MC.PA"] == {"sold_on": "2024-06-03",
                                           "sessions_left": config.churn.reentry_cooldown_sessions - 2}
    assert last["brief"]["churn"] == churn


def test_buys_beyond_the_weekly_cap_are_cut_keeping_the_largest(config, demo_market):
    cfg = config.with_overrides(churn={"max_buys_per_week": 2})
    ind = compute_indicators(demo_market, cfg)
    policy = Scripted({"2024-06-03": [Action(ticker=t, action="buy", percent=pct, reason="x")
                                      for t, pct in (("OR.PA", 10), ("SAN.PA", 20), ("AI.PA", 15))],
                       "2024-06-04": [Action(ticker="DG.PA", action="buy", percent=10, reason="x")]})
    ctx = StepContext(config=cfg, policy=policy, source="demo seed=7", synthetic=True)
    _, results = run(Portfolio.initial(10_000), _sessions(demo_market, "2024-06-03", "2024-06-04"), demo_market, ind, ctx)
    first, second = results[0].record, results[1].record
    assert len(first["orders"]) == 2
    capped = [c for c in first["cuts"] if c["stage"] == "guardrail:max_buys_per_week"]
    assert len(capped) == 1 and "the cap is 2 a rolling week" in capped[0]["reason"]
    assert second["orders"] == [] and second["cuts"][0]["stage"] == "guardrail:max_buys_per_week"


def _brief(config, demo_market, d="2024-06-03", positions=None, cash=10_000.0) -> Brief:
    ind = compute_indicators(demo_market, config)
    seen = []

    class Look:
        name = "look"

        def decide(self, brief):
            seen.append(brief)
            return PolicyAnswer(Decision())

    p = Portfolio.initial(10_000).model_copy(update={"cash_eur": cash, "positions": positions or {}})
    run(p, _sessions(demo_market, d, d), demo_market, ind, StepContext(config=config, policy=Look(), source="demo seed=7", synthetic=True))
    return seen[0]


def test_the_random_policy_is_seeded_and_replays_the_reference_turnover(config, demo_market):
    held = {"MC.PA": Position(ticker="MC.PA", qty=2, cost_eur=1_500.0), "SPY": Position(ticker="SPY", qty=3, cost_eur=1_300.0)}
    brief = _brief(config, demo_market, positions=held, cash=6_000.0)
    ref = Turnover(trades=(("buy", 0.10), ("buy", 0.05), ("sell", 0.02)))

    def decide(seed):
        pol = RandomPolicy(seed)
        pol.reference[brief.date] = ref
        return pol.decide(brief).decision.decisions

    a, b, c = decide(1), decide(1), decide(2)
    assert a == b and a != c  # seeded by (seed, date): a re-run decides the same
    buys = [x for x in a if x.action == "buy"]
    assert len(buys) == 2 and not {x.ticker for x in buys} & set(held)
    values = sorted(x.percent / 100 * brief.cash_available_eur / brief.nav_eur for x in buys)
    assert values == pytest.approx([0.05, 0.10], rel=1e-6)  # the same fractions of NAV as the reference
    sells = [x for x in a if x.action == "sell"]
    sold_value = sum(x.percent / 100 * brief.positions[x.ticker].value_eur for x in sells)
    assert sold_value == pytest.approx(0.02 * brief.nav_eur, rel=1e-6)


def test_dividends_go_only_to_holders_before_the_ex_date(tmp_path, config, demo_market):
    # SPY's baseline is decided on 2024-06-03 and fills at the open of 06-04: a dividend with
    # ex-date 06-04 is not its; one with ex-date 06-10 is.
    divs = demo_market.dividends.copy()
    divs.loc[pd.Timestamp("2024-06-04"), "SPY"] = 1.5
    divs.loc[pd.Timestamp("2024-06-10"), "SPY"] = 2.0
    market = dataclasses.replace(demo_market, dividends=divs)
    cfg = config
    head = headline_spec(cfg, "rules")
    specs = [a for a in select_arms(cfg, head, with_llm=False) if a.name in ("rules", "buy_and_hold_spy")]
    exp = open_experiment(tmp_path, cfg, specs, head, "demo seed=7", True, None, durable=False)
    run_experiment(exp, list(_sessions(market, "2024-06-03", "2024-06-12")), market, compute_indicators(market, cfg))
    trades = pd.read_parquet(tmp_path / "arms" / "buy_and_hold_spy" / "trades.parquet")
    div = trades[trades["side"] == "dividend"]
    assert list(div["date"].dt.strftime("%Y-%m-%d")) == ["2024-06-10"]
    qty = trades.loc[trades["side"] == "buy", "qty"].iloc[0]
    fx = market.fx_eurusd[pd.Timestamp("2024-06-10")]
    assert div["cash_flow_eur"].iloc[0] == pytest.approx(qty * 2.0 / fx, abs=0.01)


def test_a_state_from_before_the_arms_becomes_the_headline_arms_history(tmp_path, capsys):
    from engine.data.demo import DemoSource
    from engine.policies import RulesPolicy
    from engine.state import StateStore

    cfg = load_config()
    market = DemoSource(seed=42).load(cfg, "2023-06-01", "2024-06-28")
    store = StateStore(tmp_path / "state")
    ctx = StepContext(config=cfg, policy=RulesPolicy(cfg), source="demo seed=42", synthetic=True)
    # A state written before the arms existed: one portfolio at the root.
    p, results = run(Portfolio.initial(10_000, "demo seed=42"), _sessions(market, "2024-06-03", "2024-06-07"),
                     market, compute_indicators(market, cfg), ctx)
    store.save(p, results)
    assert main(["daily", "--state", str(tmp_path / "state"), "--source", "demo", "--date", "2024-06-10"]) == 0
    out = capsys.readouterr().out
    assert "5 arms" in out
    rules = _eq(tmp_path / "state" / "arms" / "rules")
    assert len(rules) == 6 and str(rules["date"].iloc[0].date()) == "2024-06-03"  # the old history, kept
    spy = _eq(tmp_path / "state" / "arms" / "buy_and_hold_spy")
    assert list(spy["date"].dt.strftime("%Y-%m-%d")) == ["2024-06-10"]  # a new arm starts when it is added
    # Running the same date again changes nothing.
    assert main(["daily", "--state", str(tmp_path / "state"), "--source", "demo", "--date", "2024-06-10"]) == 0
    assert "already done" in capsys.readouterr().out


@pytest.mark.parametrize("arms, message", [
    ('[[arms.arm]]\nname = "spy"\npolicy = "buy_and_hold"\nweights = { "AAPL" = 1.0 }\n', "outside the universe: AAPL"),
    ('[[arms.arm]]\nname = "r"\npolicy = "rules"\n', "'treatment' is not a declared arm"),
])
def test_a_bad_arms_config_is_one_line_with_exit_code_2(tmp_path, capsys, arms, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(arms)
    code = main(["demo", "--out", str(tmp_path / "out"), "--sessions", "5", "--config", str(bad), "--no-site"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# --- the llm arms on the scripted server --------------------------------------------

KEY = "sk-test-arms"


@pytest.fixture
def llm_env(monkeypatch):
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake


def test_a_demo_backtest_shows_treatment_vs_control(tmp_path, capsys, llm_env):
    buy = answer_json({"decisions": [{"ticker": "GLD", "action": "buy", "percent": 30, "reason": "low CVaR 95"}],
                       "summary": "buy gold"})
    hold = answer_json({"decisions": [], "summary": "nothing to do"})
    llm_env.script(*[buy, hold] * 15)  # each session: the treatment asks first, then the control
    code = main(["backtest", "--policy", "llm", "--start", "2024-03-04", "--end", "2024-03-22", "--out", str(tmp_path),
                 "--no-charts", "--cache", str(tmp_path / "cache"), "--seed", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads((tmp_path / "metrics.json").read_text())
    tc = m["experiment"]["treatment_vs_control"]
    assert tc["n"] == 15 and 0 < tc["p_value"] <= 1 and ("treatment" in tc["sentence"] and "control" in tc["sentence"])
    assert "cannot be told from luck" in tc["mde"]["sentence"]
    assert "Treatment vs control:" in out
    assert set(m["experiment"]["arms"]) == OFFLINE_ARMS | {"treatment", "control"}
    # Same brief, different prompts: the control's system prompt has none of the behavioural language.
    system = {r.json["messages"][0]["content"] for r in llm_env.requests}
    assert len(system) == 2
    neutral = next(s for s in system if "prospect" not in s.lower())
    for word in ("prospect", "cvar", "kelly", "loss aversion", "risk-averse", "drawdown sensitivity"):
        assert word not in neutral.lower(), word
    rec = json.loads((tmp_path / "state" / "arms" / "control" / "decisions" / "2024" / "03-04.json").read_text())
    assert rec["usage"]["prompt_version"].startswith("neutral-")
    t_trades = pd.read_parquet(tmp_path / "state" / "arms" / "treatment" / "trades.parquet")
    c_trades = pd.read_parquet(tmp_path / "state" / "arms" / "control" / "trades.parquet")
    assert "GLD" in set(t_trades["ticker"]) and c_trades.empty
    manifest = json.loads((tmp_path / "state" / "arms.json").read_text())
    assert manifest["headline"] == "treatment"
    assert manifest["arms"]["control"]["versions"][0]["prompt_version"] == rec["usage"]["prompt_version"]


def test_a_failing_llm_arm_stops_alone(tmp_path, capsys, llm_env):
    # The control asks a model whose price makes its first call exceed the run's budget.
    cfg = tmp_path / "pricey.toml"
    arms = (Path(__file__).parents[1] / "engine" / "config.toml").read_text().split("[arms]", 1)[1]
    cfg.write_text('[llm.prices_usd_per_million_tokens]\n"pricey" = { input = 100000.0, output = 100000.0 }\n\n[arms]'
                   + arms.replace('prompt = "neutral"', 'prompt = "neutral"\nmodel = "pricey"'))
    llm_env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 10)
    code = main(["backtest", "--policy", "llm", "--config", str(cfg), "--budget-usd", "1", "--start", "2024-03-04",
                 "--end", "2024-03-08", "--out", str(tmp_path / "bt"), "--no-charts", "--cache", str(tmp_path / "cache")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "arm control FAILED" in err
    state = tmp_path / "bt" / "state"
    assert len(_eq(state / "arms" / "treatment")) == 5 and len(_eq(state / "arms" / "rules")) == 5
    manifest = json.loads((state / "arms.json").read_text())
    assert "budget" in manifest["arms"]["control"]["failure"]
    assert not (state / "arms" / "control" / "equity.parquet").exists() or len(_eq(state / "arms" / "control")) == 0


def test_blind_mode_shuffles_aliases_per_run_and_gives_no_price_level_or_currency_away(config, demo_market):
    from engine.llm.blind import Blind
    from engine.llm.brief import render_brief

    held = {"MC.PA": Position(ticker="MC.PA", qty=2, cost_eur=1_500.0), "SPY": Position(ticker="SPY", qty=3, cost_eur=1_300.0)}
    brief = _brief(config, demo_market, positions=held, cash=6_000.0)
    anchors = demo_market.close.ffill().loc[pd.Timestamp("2024-01-02")].to_dict()
    a, b = Blind(config, anchors, seed=1), Blind(config, anchors, seed=2)
    assert a.alias != b.alias and set(a.alias.values()) == set(b.alias.values())
    masked = a.mask(brief)
    for t, pos in brief.positions.items():
        m = masked.positions[a.alias[t]]
        assert m.value_eur == pos.value_eur and m.qty * m.price_eur == pytest.approx(pos.value_eur)
        assert m.qty != pos.qty and m.currency == "EUR"
    text = render_brief(masked, a.config)
    assert "USD" not in text and "MC.PA" not in text and "SPY" not in text
    assert list(masked.assets) == sorted(masked.assets)  # the universe's order would tell the names
