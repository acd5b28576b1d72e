"""Backtests: the daily step in a loop, judged honestly against buy-and-hold."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_config
from engine.data.demo import DemoSource
from engine.policies import RulesPolicy
from tests.fake_openai import FakeOpenAI, answer_json
from tests.test_state import snapshot

CFG = load_config()


def bt(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["backtest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_hold_keeps_nav_at_exactly_the_capital_and_the_metrics_say_so(tmp_path, capsys):
    code, out, err = bt(capsys, "--policy", "hold", "--start", "2024-01-02", "--end", "2024-06-28",
                        "--out", str(tmp_path), "--seed", "3")
    assert code == 0, err
    equity = pd.read_parquet(tmp_path / "state" / "equity.parquet")
    assert set(equity["nav_eur"]) == {10_000.0}
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["strategy"]["total_return"] == 0.0 and m["strategy"]["final_nav_eur"] == 10_000.0
    assert set(m["benchmarks"]) == {"buy_and_hold_spy", "buy_and_hold_cac40_tracker", "cac40_index", "equal_weight"}
    assert m["run"]["synthetic"] is True and m["run"]["sessions"] == len(equity)
    assert "sentence" in m["verdict"] and "cannot reject the null" in m["verdict"]["sentence"]
    assert (tmp_path / "charts" / "equity.png").stat().st_size > 10_000
    assert (tmp_path / "charts" / "drawdown.png").exists()
    assert "Verdict:" in out and "SYNTHETIC" in out


def test_buy_and_hold_spy_is_an_arm_that_matches_a_hand_computation(tmp_path, capsys):
    code, _, err = bt(capsys, "--start", "2024-01-02", "--end", "2024-03-28", "--out", str(tmp_path), "--seed", "4",
                      "--no-charts")
    assert code == 0, err
    market = DemoSource(seed=4).load(CFG, "2023-06-01", "2024-03-28")
    arm = tmp_path / "state" / "arms" / "buy_and_hold_spy"
    trades = pd.read_parquet(arm / "trades.parquet")
    buy = trades[trades["side"] == "buy"]
    assert list(buy["ticker"]) == ["SPY"]  # one purchase, never a sale
    # Decided at the close of 2024-01-02, bought at the open of 2024-01-03 with every cost.
    d1 = pd.Timestamp("2024-01-03")
    row = buy.iloc[0]
    assert pd.Timestamp(row["date"]) == d1
    assert row["price_local"] == pytest.approx(market.open.at[d1, "SPY"] * (1 + 5 / 1e4))
    qty, fx1 = float(row["qty"]), market.fx_eurusd[d1]
    gross = qty * row["price_local"] / fx1
    commission = max(round(gross * 10 / 1e4, 2), 1.0)
    cash = 10_000 - round(gross, 2) - commission
    # Sized at the decision's close, filled at the next open: the gap leaves a little cash.
    assert 0 <= cash < 100
    last = market.index[-1]
    divs = trades[trades["side"] == "dividend"]["cash_flow_eur"].sum()
    hand = cash + divs + qty * market.close.at[last, "SPY"] / market.fx_eurusd[last]
    equity = pd.read_parquet(arm / "equity.parquet")
    assert equity["nav_eur"].iloc[0] == pytest.approx(10_000.0)  # inception: still cash
    assert equity["nav_eur"].iloc[-1] == pytest.approx(hand, abs=0.01)
    # One implementation: the verdict's benchmark, the headline's benchmark column and the arm agree.
    m = json.loads((tmp_path / "metrics.json").read_text())
    head = pd.read_parquet(tmp_path / "state" / "equity.parquet")
    assert m["benchmarks"]["buy_and_hold_spy"]["final_nav_eur"] == equity["nav_eur"].iloc[-1]
    assert (head["benchmark_spy_eur"].to_numpy() == equity["nav_eur"].to_numpy()).all()


def test_a_backtest_and_the_daily_command_write_identical_state(tmp_path, capsys):
    code, _, err = bt(capsys, "--start", "2024-11-25", "--end", "2024-12-03", "--out", str(tmp_path / "bt"),
                      "--seed", "9", "--no-charts")
    assert code == 0, err
    daily = tmp_path / "daily" / "state"
    for day in pd.bdate_range("2024-11-25", "2024-12-03"):
        assert main(["daily", "--init", "--state", str(daily), "--source", "demo", "--seed", "9", "--date", str(day.date())]) == 0
    capsys.readouterr()
    assert snapshot(daily) == snapshot(tmp_path / "bt" / "state")


def test_an_interrupted_backtest_resumes_to_the_same_result(tmp_path, capsys, monkeypatch):
    args = ("--start", "2024-01-02", "--end", "2024-04-30", "--seed", "2", "--no-charts")
    assert bt(capsys, *args, "--out", str(tmp_path / "straight"))[0] == 0

    real = RulesPolicy.decide
    calls = {"n": 0}

    def interrupt_once(self, brief):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt
        return real(self, brief)

    monkeypatch.setattr(RulesPolicy, "decide", interrupt_once)
    code, _, err = bt(capsys, *args, "--out", str(tmp_path / "resumed"))
    assert code == 130 and "interrupted" in err
    saved = pd.read_parquet(tmp_path / "resumed" / "state" / "equity.parquet")
    assert len(saved) == 39  # every session before the interruption was kept
    code, _, err = bt(capsys, *args, "--out", str(tmp_path / "resumed"))
    assert code == 0, err
    a, b = snapshot(tmp_path / "straight" / "state"), snapshot(tmp_path / "resumed" / "state")
    assert a == b
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert ma == mb


def test_bad_ranges_are_one_line_errors(tmp_path, capsys):
    assert bt(capsys, "--start", "2024-05-01", "--end", "2024-04-01", "--out", str(tmp_path))[0] == 2
    code, _, err = bt(capsys, "--start", "2024-12-25", "--end", "2024-12-25", "--out", str(tmp_path))
    assert code == 2 and "need at least 2" in err
    code, _, err = bt(capsys, "--start", "2024-01-02", "--end", "2024-02-01", "--out", str(tmp_path), "--blind")
    assert code == 2 and "--policy llm only" in err


# --- LLM backtests that do not fool themselves ----------------------------------------------

KEY = "sk-test-backtest"


@pytest.fixture
def llm_env(monkeypatch):
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake


def test_blind_mode_leaks_no_ticker_name_or_date_and_maps_answers_back(tmp_path, capsys, llm_env):
    fake = llm_env
    alias_answer = {"decisions": [{"ticker": "ASSET_C", "action": "buy", "percent": 30, "reason": "low CVaR"}],
                    "summary": "buy Asset C"}
    fake.script(*[answer_json(alias_answer)] * 8)
    code, out, err = bt(capsys, "--policy", "llm", "--blind", "--start", "2024-03-04", "--end", "2024-03-07",
                        "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    assert len(fake.requests) == 8  # treatment and control, 4 sessions
    sent = "\n".join(m["content"] for r in fake.requests for m in r.json["messages"])
    for t in CFG.tickers + ["^FCHI", "EURUSD"]:
        assert not re.search(rf"(?<![A-Z_]){re.escape(t)}(?![A-Z])", sent), f"{t} leaked"
    for a in CFG.assets:
        assert a.name not in sent, f"{a.name} leaked"
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", sent), "a date leaked"
    assert "ASSET_C" in sent
    assert not re.search(r"\bUSD\b", sent), "a currency leaked"
    # The alias the model chose is the asset the run's shuffle called ASSET_C, traded for real.
    from engine.llm.blind import Blind

    real = Blind(CFG, {}, seed=42).real["ASSET_C"]
    assert real != CFG.tickers[2]  # shuffled: not the universe's order
    rec = json.loads((tmp_path / "state" / "decisions" / "2024" / "03-04.json").read_text())
    assert [o["ticker"] for o in rec["orders"]] == [real]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["blind"] is True and m["run"]["in_sample"] is False and m["run"]["label"] == "blind"


def test_a_run_before_the_knowledge_cutoff_is_labelled_in_sample(tmp_path, capsys, llm_env):
    llm_env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 3)
    code, out, err = bt(capsys, "--policy", "llm", "--start", "2023-03-01", "--end", "2023-03-03",
                        "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    assert "IN-SAMPLE" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["in_sample"] is True and m["run"]["knowledge_cutoff"] == "2026-05-18"  # the registry's, gpt-6-luna


def test_the_run_budget_stops_before_overspending_and_keeps_what_was_done(tmp_path, capsys, llm_env):
    llm_env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 40)  # treatment and control alternate
    # The budget is per llm arm. One call costs about 0.0004 USD (3,700 + 150 tokens) but is estimated up to ~0.0053
    # beforehand (the answer's budget and the reasoning headroom, at the default model's output price).
    code, _, err = bt(capsys, "--policy", "llm", "--budget-usd", "0.008", "--start", "2024-03-04",
                      "--end", "2024-03-29", "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 6 and err.strip().splitlines()[-1].startswith("error: the run's LLM budget of 0.008 USD would be exceeded")
    saved = pd.read_parquet(tmp_path / "state" / "equity.parquet")
    assert 1 <= len(saved) < 20
    spent = json.loads((tmp_path / "state" / "portfolio.json").read_text())["llm"]["cost_usd"]
    assert spent <= 0.008
    # The offline arms were not stopped by the llm arms' budget: they ran every session.
    rules = pd.read_parquet(tmp_path / "state" / "arms" / "rules" / "equity.parquet")
    assert str(rules["date"].iloc[-1].date()) == "2024-03-28" and len(rules) > len(saved)  # 03-29: Good Friday
    manifest = json.loads((tmp_path / "state" / "arms.json").read_text())
    assert "budget" in manifest["arms"]["treatment"]["failure"]


def test_a_sweep_runs_in_parallel_and_writes_one_comparison(tmp_path, capsys):
    code = main(["sweep", "--out", str(tmp_path), "--policies", "rules,hold", "--seeds", "1,2",
                 "--windows", "2024-01-02:2024-03-28", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = pd.read_csv(tmp_path / "comparison.csv")
    # One row per run and arm: the headline arms, and the offline arms that ran beside them.
    head = table[table["arm"] == table["policy"]]
    assert len(head) == 4 and set(head["policy"]) == {"rules", "hold"}
    assert (head.loc[head["policy"] == "hold", "cagr"] == 0).all()
    assert len(table[table["arm"] == "buy_and_hold_spy"]) == 4


def test_the_progress_bar_ends_on_the_last_session_and_its_nav_told_in_batches(tmp_path, config, demo_market,
                                                                                 monkeypatch):
    """The bar counts every session and shows the last one's date and NAV, though it is
    updated at most every 50 ms, not after each session (drawn 10 times a second)."""
    import rich.progress

    from engine.arms import headline_spec, open_experiment
    from engine.cli import _run_experiment

    updates = []
    real = rich.progress.Progress.update
    monkeypatch.setattr(rich.progress.Progress, "update",
                        lambda self, task, **kw: updates.append(kw) or real(self, task, **kw))
    idx = demo_market.index
    sessions = list(idx[(idx >= pd.Timestamp("2024-01-02")) & (idx <= pd.Timestamp("2024-06-28"))])
    head = headline_spec(config, "rules")
    exp = open_experiment(tmp_path, config, [head], head, "demo seed=7", True, None, durable=False)
    _run_experiment(exp, sessions, demo_market, progress=True)
    assert sum(u["advance"] for u in updates) == len(sessions)
    assert len(updates) < len(sessions) / 2
    nav = exp.headline.store.equity()["nav_eur"].iloc[-1]
    assert updates[-1]["day"] == f"{sessions[-1].date()}  rules NAV {nav:,.2f} EUR"
