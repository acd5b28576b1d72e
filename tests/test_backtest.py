"""Backtests: the daily step in a loop, judged honestly against buy-and-hold."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from engine.backtest.benchmarks import standard_benchmarks
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


def test_buy_and_hold_spy_matches_a_hand_computation():
    market = DemoSource(seed=4).load(CFG, "2023-06-01", "2024-03-28")
    sessions = market.index[market.index >= pd.Timestamp("2024-01-02")]
    nav = standard_benchmarks(market, CFG, sessions, 10_000.0)["buy_and_hold_spy"]
    # Decided at the close of 2024-01-02, bought at the open of 2024-01-03 with every cost.
    d1 = pd.Timestamp("2024-01-03")
    fx1 = market.fx_eurusd[d1]
    fill = market.open.at[d1, "SPY"] * (1 + 5 / 1e4)
    unit_eur = fill / fx1
    qty = 10_000 / (unit_eur * (1 + 10 / 1e4))  # commission 10 bps (above the 1 EUR minimum)
    cash = 10_000 - round(qty * unit_eur, 2) - round(qty * unit_eur * 10 / 1e4, 2)
    last = sessions[-1]
    hand = cash + qty * market.close.at[last, "SPY"] / market.fx_eurusd[last]
    assert nav.iloc[0] == 10_000.0  # inception: still cash
    assert nav.iloc[-1] == pytest.approx(hand, abs=0.02)
    assert -1e-6 <= cash < 0.02  # fractional shares: (almost) fully invested


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
    fake.script(*[answer_json(alias_answer)] * 4)
    code, out, err = bt(capsys, "--policy", "llm", "--blind", "--start", "2024-03-04", "--end", "2024-03-07",
                        "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    assert len(fake.requests) == 4
    sent = "\n".join(m["content"] for r in fake.requests for m in r.json["messages"])
    for t in CFG.tickers + ["^FCHI", "EURUSD"]:
        assert not re.search(rf"(?<![A-Z_]){re.escape(t)}(?![A-Z])", sent), f"{t} leaked"
    for a in CFG.assets:
        assert a.name not in sent, f"{a.name} leaked"
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", sent), "a date leaked"
    assert "ASSET_C" in sent
    # The alias the model chose is the third asset of the universe: GLD, traded for real.
    rec = json.loads((tmp_path / "state" / "decisions" / "2024" / "03-04.json").read_text())
    assert [o["ticker"] for o in rec["orders"]] == [CFG.tickers[2]]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["blind"] is True and m["run"]["in_sample"] is False


def test_a_run_before_the_knowledge_cutoff_is_labelled_in_sample(tmp_path, capsys, llm_env):
    llm_env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 3)
    code, out, err = bt(capsys, "--policy", "llm", "--start", "2023-03-01", "--end", "2023-03-03",
                        "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    assert "IN-SAMPLE" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["run"]["in_sample"] is True and m["run"]["knowledge_cutoff"] == "2026-05-18"  # the registry's, gpt-6-luna


def test_the_run_budget_stops_before_overspending_and_keeps_what_was_done(tmp_path, capsys, llm_env):
    llm_env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 10)
    # One call costs about 0.0004 USD (3,700 + 150 tokens) but is estimated up to ~0.0053 beforehand
    # (the answer's budget and the reasoning headroom, at gpt-6-luna's output price).
    code, _, err = bt(capsys, "--policy", "llm", "--budget-usd", "0.008", "--start", "2024-03-04",
                      "--end", "2024-03-29", "--out", str(tmp_path), "--no-charts", "--cache", str(tmp_path / "cache"))
    assert code == 6 and err.startswith("error: the run's LLM budget of 0.008 USD would be exceeded")
    saved = pd.read_parquet(tmp_path / "state" / "equity.parquet")
    assert 1 <= len(saved) < 20
    spent = json.loads((tmp_path / "state" / "portfolio.json").read_text())["llm"]["cost_usd"]
    assert spent <= 0.008


def test_a_sweep_runs_in_parallel_and_writes_one_comparison(tmp_path, capsys):
    code = main(["sweep", "--out", str(tmp_path), "--policies", "rules,hold", "--seeds", "1,2",
                 "--windows", "2024-01-02:2024-03-28", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert len(table) == 4 and set(table["policy"]) == {"rules", "hold"}
    assert (table.loc[table["policy"] == "hold", "cagr"] == 0).all()
