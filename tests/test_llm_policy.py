"""The llm policy end to end with the real openai client against a local scripted server.

Each scenario runs the real daily step on the demo market, so what is checked is what a
reader of the audit trail would see: the orders, the cuts with their reasons, the
explicit HOLD and why, the tokens and the cost, and a ledger that stays consistent.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from engine.config import load_config
from engine.indicators import compute_indicators
from engine.llm.cache import ResponseCache
from engine.llm.client import ChatClient
from engine.llm.policy import LLMPolicy
from engine.policies import RulesPolicy
from engine.portfolio.ledger import Portfolio
from engine.step import StepContext, run, step
from tests.fake_openai import FakeOpenAI, answer_json, completion, count_prompt_tokens, error, hang

KEY = "sk-test-THIS-KEY-MUST-NEVER-BE-WRITTEN-4242"
D = pd.Timestamp("2024-10-15")
CFG = load_config().with_overrides(llm={"timeout_seconds": 0.5, "reasoning_timeout_seconds": 0.5, "max_retries": 1})


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def ind(demo_market):
    return compute_indicators(demo_market, CFG)


@pytest.fixture(scope="module")
def held(demo_market, ind):
    """The portfolio the rules policy built by D's previous session (so there is something to sell)."""
    ctx = StepContext(config=CFG, policy=RulesPolicy(CFG), source="demo seed=7", synthetic=True)
    idx = demo_market.index
    p, _ = run(Portfolio.initial(10_000), idx[(idx >= pd.Timestamp("2024-03-01")) & (idx < D)], demo_market, ind, ctx)
    assert p.positions, "the scenario needs positions"
    return p


def policy(fake, tmp_path, cfg=CFG, cache=True) -> LLMPolicy:
    client = ChatClient(api_key=KEY, base_url=fake.base_url, settings=cfg.llm)
    return LLMPolicy(cfg, client, ResponseCache(tmp_path / "llm" if cache else None))


def decide(fake, tmp_path, held, demo_market, ind, *replies, cfg=CFG, pol=None):
    fake.script(*replies)
    pol = pol or policy(fake, tmp_path, cfg)
    ctx = StepContext(config=cfg, policy=pol, source="demo seed=7", synthetic=True)
    res = step(held, D, demo_market, ind, ctx)
    # Whatever happened, the ledger is consistent and marked to market.
    e = res.equity
    assert e["nav_eur"] == pytest.approx(e["cash_eur"] + e["invested_eur"], abs=0.02)
    assert res.portfolio.as_of == D.date()
    return res


def answer(*entries, summary="test"):
    return answer_json({"decisions": [dict(zip(("ticker", "action", "percent", "reason"), e, strict=True)) for e in entries],
                        "summary": summary})


def a_held(p):
    return sorted(p.positions)[0]


def reasons(res):
    return [c["reason"] for c in res.record["cuts"]]


def test_a_valid_answer_becomes_orders_and_everything_is_recorded(fake, tmp_path, held, demo_market, ind):
    t = a_held(held)
    res = decide(fake, tmp_path, held, demo_market, ind,
                 answer(("GLD", "buy", 40, "diversifier"), (t, "sell", 100, "trend broken"), ("SPY", "hold", 0, "wait")))
    orders = {o["ticker"]: o for o in res.record["orders"]}
    assert orders[t]["side"] == "sell" and orders[t]["qty"] == held.positions[t].qty
    assert orders[t]["reason"] == "trend broken"
    assert "GLD" in orders or any(c["ticker"] == "GLD" for c in res.record["cuts"])
    rec = res.record
    assert rec["answer"]["fallback"] is None
    assert json.loads(rec["answer"]["raw"])["summary"] == "test"
    u = rec["usage"]
    pt = u["prompt_tokens"]
    assert u["calls"] == 1 and u["http_attempts"] == 1 and pt > 1000 and u["completion_tokens"] == 150
    assert u["cost_usd"] == pytest.approx((pt * 0.10 + 150 * 0.50) / 1e6, abs=1e-6)  # gpt-6-luna, from the registry
    assert u["response_format"] == "json_schema" and len(u["prompt_sha256"]) == 64
    assert u["finish_reason"] == "stop" and u["system_fingerprint"] == "fp_fake" and u["answer_model"] == "gpt-6-luna"
    sent = fake.requests[0].json
    assert sent["messages"] == u["messages"]  # the exact messages, replayable
    # The default model reasons: the answer's budget plus the headroom, a low effort, and no
    # temperature or seed (it takes them only with reasoning effort none).
    assert sent["model"] == "gpt-6-luna" and sent["max_completion_tokens"] == 1500 + 8000
    assert sent["reasoning_effort"] == "low" and "temperature" not in sent and "seed" not in sent
    assert "max_tokens" not in sent
    assert u["params_sent"] == {k: v for k, v in sent.items() if k not in ("messages", "response_format")} | {
        "response_format": "json_schema"}
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert res.portfolio.llm.calls == 1 and res.portfolio.llm.cost_usd == pytest.approx(u["cost_usd"])
    assert res.portfolio.last_decision.summary == "test"


def test_malformed_json_gets_one_repair_round_showing_the_error(fake, tmp_path, held, demo_market, ind):
    res = decide(fake, tmp_path, held, demo_market, ind,
                 completion('{"decisions": [{"ticker": "GLD", "action": "buy", "percent": 10'),
                 answer(("GLD", "buy", 10, "fixed")))
    assert len(fake.requests) == 2
    repair = fake.requests[1].json["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-1]["role"] == "user"
    assert "could not be used: in json_schema mode the whole answer must be one JSON object" in repair[-1]["content"]
    assert res.record["answer"]["fallback"] is None
    assert any("did not parse" in n for n in res.record["answer"]["notes"])
    u = res.record["usage"]
    assert u["calls"] == 2 and u["prompt_tokens"] == sum(count_prompt_tokens(r) for r in fake.requests)


def test_an_answer_that_stays_malformed_is_an_explicit_hold(fake, tmp_path, held, demo_market, ind):
    res = decide(fake, tmp_path, held, demo_market, ind, completion("BUY EVERYTHING!!!"), completion("I insist: buy."))
    rec = res.record
    assert rec["orders"] == []
    assert rec["answer"]["fallback"].startswith("the answer did not parse after one repair round")
    assert rec["answer"]["parsed"]["summary"].startswith("HOLD (fallback)")
    assert rec["answer"]["raw"] == "I insist: buy."
    assert res.portfolio.positions == held.positions and res.portfolio.last_decision.fallback


def test_prose_around_the_json_is_tolerated_in_text_mode_and_noted(fake, tmp_path, held, demo_market, ind):
    fake.reject_response_formats("json_schema", "json_object")
    text = "After careful thought, here is my decision:\n" + json.dumps(
        {"decisions": [{"ticker": "GLD", "action": "buy", "percent": 20, "reason": "x"}], "summary": "s"}) + "\nGood luck!"
    res = decide(fake, tmp_path, held, demo_market, ind, completion(text))
    assert res.record["answer"]["parsed"]["decisions"][0]["ticker"] == "GLD"
    assert "the JSON was extracted from text around it" in res.record["answer"]["notes"]


def test_hallucinated_tickers_overspending_and_selling_what_is_not_held_are_cut(fake, tmp_path, held, demo_market, ind):
    not_held = next(t for t in CFG.tickers if t not in held.positions)
    res = decide(fake, tmp_path, held, demo_market, ind,
                 answer(("NVDA", "buy", 50, "AI!"), ("GLD", "buy", 150, "a"), ("TLT", "buy", 100, "b"),
                        (not_held, "sell", 100, "c")))
    r = reasons(res)
    assert "unknown ticker: not in the universe" in r
    assert "cannot sell: not held (no shorting)" in r
    assert any("buys add up to 250.0% of cash: all scaled down to 100%" in x for x in r)
    assert all(o["ticker"] != "NVDA" and o["ticker"] != not_held for o in res.record["orders"])
    assert res.portfolio.cash_eur >= 0


@pytest.mark.parametrize(
    ("replies", "fallback"),
    [
        ((completion(""), completion(None)), "did not parse after one repair round: the answer was empty"),
        ((completion(None, refusal="I can't help with trading."),), "the model refused: I can't help with trading."),
    ],
)
def test_empty_answers_and_refusals_end_in_hold(fake, tmp_path, held, demo_market, ind, replies, fallback):
    res = decide(fake, tmp_path, held, demo_market, ind, *replies)
    assert fallback in res.record["answer"]["fallback"]
    assert res.record["orders"] == []


def test_a_500_then_success_is_retried_by_the_client(fake, tmp_path, held, demo_market, ind):
    res = decide(fake, tmp_path, held, demo_market, ind, error(500), answer(("GLD", "buy", 10, "x")))
    assert len(fake.requests) == 2 and res.record["answer"]["fallback"] is None


def test_429_with_retry_after_is_honoured(fake, tmp_path, held, demo_market, ind):
    t0 = time.monotonic()
    res = decide(fake, tmp_path, held, demo_market, ind,
                 error(429, "rate limited", headers={"retry-after-ms": "300"}, type_="rate_limit_error"),
                 answer(("GLD", "buy", 10, "x")))
    gap = fake.requests[1].received_at - fake.requests[0].received_at
    assert gap >= 0.3 and time.monotonic() - t0 < 10
    assert res.record["answer"]["fallback"] is None


def test_a_hang_past_the_timeout_is_a_hold_naming_the_timeout(fake, tmp_path, held, demo_market, ind):
    res = decide(fake, tmp_path, held, demo_market, ind, hang(5), hang(5))
    assert "did not answer (APITimeoutError" in res.record["answer"]["fallback"]
    assert len(fake.requests) == 2  # one try and max_retries=1 retry


def test_a_server_that_never_recovers_is_a_hold_with_its_status(fake, tmp_path, held, demo_market, ind):
    res = decide(fake, tmp_path, held, demo_market, ind, error(503, "overloaded"), error(503, "overloaded"))
    assert res.record["answer"]["fallback"] == "the LLM server answered HTTP 503: overloaded"
    assert res.record["orders"] == []


def test_a_server_without_structured_outputs_is_asked_with_json_object_then_text(fake, tmp_path, held, demo_market, ind):
    fake.reject_response_formats("json_schema", "json_object")
    res = decide(fake, tmp_path, held, demo_market, ind, answer(("GLD", "buy", 10, "x")))
    assert [r.response_format_type for r in fake.requests] == ["json_schema", "json_object", None]
    assert res.record["usage"]["response_format"] == "text"
    notes = res.record["answer"]["notes"]
    assert any("rejected response_format json_schema" in n for n in notes)


def test_the_budget_stops_before_spending(fake, tmp_path, held, demo_market, ind):
    cfg = CFG.with_overrides(llm={"daily_budget_usd": 0.0001})
    res = decide(fake, tmp_path, held, demo_market, ind, cfg=cfg)
    assert fake.requests == []
    assert res.record["answer"]["fallback"].startswith("the daily LLM budget of 0.00 USD would be exceeded")


def test_a_warm_cache_replays_the_decision_without_any_call(fake, tmp_path, held, demo_market, ind):
    first = decide(fake, tmp_path, held, demo_market, ind, answer(("GLD", "buy", 10, "x")))
    again = decide(fake, tmp_path, held, demo_market, ind)  # nothing scripted: a call would fail
    assert len(fake.requests) == 1
    assert again.record["orders"] == first.record["orders"]
    assert again.record["usage"]["cache_hits"] == 1 and again.record["usage"]["calls"] == 0
    assert again.record["usage"]["cost_usd"] == 0.0


# --- the command line, with the key in the environment only --------------------------------

def test_llm_without_a_key_is_one_line_naming_the_variable(tmp_path, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["daily", "--init", "--state", str(tmp_path / "state"), "--source", "demo", "--policy", "llm", "--date", "2024-10-15"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "OPENAI_API_KEY is not set" in err and "--policy rules" in err
    assert not (tmp_path / "state").exists()


def test_the_api_key_never_reaches_state_cache_or_logs(fake, tmp_path, capsys, caplog, monkeypatch):
    import logging

    from engine.cli import main

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    fake.script(error(500), answer(("GLD", "buy", 30, "x")), completion("not json"), answer(("SPY", "buy", 10, "y")))
    argv = ["-v", "daily", "--init", "--state", str(tmp_path / "state"), "--source", "demo", "--policy", "llm",
            "--cache", str(tmp_path / "cache")]
    assert main([*argv, "--date", "2024-10-14"]) == 0
    assert main([*argv, "--date", "2024-10-15"]) == 0
    out, err = capsys.readouterr()
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was used ...
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "llm" in p.parts for p in written)  # the cache was written
    for p in written:  # ... and is nowhere else
        assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in out + err + caplog.text
    assert "model gpt-6-luna" in out and "tokens" in out


def test_a_rerun_with_a_warm_cache_makes_no_call(fake, tmp_path, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    fake.script(*[answer(("GLD", "buy", 10, "x"))] * 10)
    argv = ["demo", "--sessions", "5", "--end", "2024-10-15", "--policy", "llm", "--cache", str(tmp_path / "cache"), "--no-site"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert len(fake.requests) == 10  # two llm arms (treatment and control), 5 sessions
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert len(fake.requests) == 10  # not one more
    capsys.readouterr()
    a = pd.read_parquet(tmp_path / "a" / "state" / "equity.parquet")
    b = pd.read_parquet(tmp_path / "b" / "state" / "equity.parquet")
    pd.testing.assert_frame_equal(a.drop(columns=["llm_tokens", "llm_cost_usd"]), b.drop(columns=["llm_tokens", "llm_cost_usd"]))
    assert b["llm_cost_usd"].iloc[-1] == 0.0 and a["llm_cost_usd"].iloc[-1] > 0
