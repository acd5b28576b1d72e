"""The llm policy against strict emulators of the servers people run (tests/fake_openai.py's
profiles): OpenAI reasoning models, strict structured outputs, think tags, reasoning fields,
Mistral's 422 on `seed`, llama-cpp-python's 500 on json_schema, a small context window.

Each scenario runs the real daily step through the real openai client, so what is checked
is what the audit trail shows: the requests actually sent, the decision executed (never a
draft from the reasoning), the explicit HOLD and its reason, the error that stops the run,
and a consistent ledger.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.config import load_config
from engine.errors import LLMUnusable
from engine.indicators import compute_indicators
from engine.llm.cache import ResponseCache
from engine.llm.client import ChatClient
from engine.llm.policy import LLMPolicy
from engine.policies import RulesPolicy
from engine.portfolio.ledger import Portfolio
from engine.step import StepContext, run, step
from tests.fake_openai import FakeOpenAI, answer_json, completion, error

KEY = "sk-test-providers-0000"
D = pd.Timestamp("2024-10-15")
DEFAULT = load_config()  # the shipped configuration, unchanged
FAST = DEFAULT.with_overrides(llm={"timeout_seconds": 2, "reasoning_timeout_seconds": 2, "max_retries": 1})
FINAL = {"decisions": [{"ticker": "GLD", "action": "buy", "percent": 60, "reason": "diversifier, low CVaR"}],
         "summary": "final answer"}


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def ind(demo_market):
    return compute_indicators(demo_market, DEFAULT)


@pytest.fixture(scope="module")
def held(demo_market, ind):
    ctx = StepContext(config=DEFAULT, policy=RulesPolicy(DEFAULT), source="demo seed=7", synthetic=True)
    idx = demo_market.index
    p, _ = run(Portfolio.initial(10_000), idx[(idx >= pd.Timestamp("2024-06-03")) & (idx < D)], demo_market, ind, ctx)
    return p


def make_policy(fake, cache_dir=None, cfg=FAST, model=None) -> LLMPolicy:
    client = ChatClient(api_key=KEY, base_url=fake.base_url, settings=cfg.llm, sleep=lambda s: None)
    return LLMPolicy(cfg, client, ResponseCache(cache_dir), model=model)


def decide(pol, held, demo_market, ind, day=D):
    ctx = StepContext(config=pol.cfg, policy=pol, source="demo seed=7", synthetic=True)
    res = step(held, day, demo_market, ind, ctx)
    e = res.equity
    assert e["nav_eur"] == pytest.approx(e["cash_eur"] + e["invested_eur"], abs=0.02)
    return res


def chat(fake):
    return [r.json for r in fake.requests if r.path.endswith("/chat/completions")]


def ordered(res):
    return {o["ticker"]: o["side"] for o in res.record["orders"]}


# --- Done when: a reasoning model decides with the default config in at most 2 requests ------

def test_a_reasoning_model_decides_with_the_default_config_in_one_request(fake, held, demo_market, ind):
    fake.use_profile("openai-reasoning")
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake, cfg=DEFAULT), held, demo_market, ind)
    sent = chat(fake)
    assert len(sent) <= 2 and len(sent) == 1
    assert res.record["answer"]["fallback"] is None and ordered(res) == {"GLD": "buy"}
    u = res.record["usage"]
    assert u["reasoning_tokens"] == 1500 and u["completion_tokens"] == 1650 and u["finish_reason"] == "stop"
    assert u["params_sent"]["max_completion_tokens"] == 9500 and u["params_sent"]["reasoning_effort"] == "low"
    assert res.portfolio.llm.calls == 1 and res.portfolio.llm.reasoning_tokens == 1500  # summed in the state
    assert res.portfolio.llm.http_attempts == 1


def test_an_unknown_reasoning_model_is_negotiated_from_its_errors_and_remembered(fake, held, demo_market, ind):
    # A model the registry does not know gets max_tokens and temperature; the server's errors
    # name what to change, and the second session sends the right request at once.
    cfg = FAST.with_overrides(llm={"prices_usd_per_million_tokens": {"o9-preview": {"input": 1, "output": 4}}})
    fake.use_profile("openai-reasoning")
    fake.script(answer_json(FINAL), answer_json(FINAL))
    pol = make_policy(fake, cfg=cfg, model="o9-preview")
    res = decide(pol, held, demo_market, ind)
    sent = chat(fake)
    # max_tokens rejected, temperature rejected, then an answer cut by its reasoning (the
    # registry did not know it reasons), then the answer with the reasoning headroom.
    assert ["max_tokens" in s for s in sent] == [True, False, False, False]
    assert ["temperature" in s for s in sent] == [True, True, False, False]
    assert [s.get("max_completion_tokens") for s in sent] == [None, 1500, 1500, 9500]
    assert res.record["answer"]["fallback"] is None and ordered(res) == {"GLD": "buy"}
    notes = res.record["answer"]["notes"]
    assert any("rejected max_tokens" in n for n in notes) and any("rejected temperature" in n for n in notes)
    assert all(s["response_format"]["type"] == "json_schema" for s in sent)  # no format downgrade
    assert res.record["usage"]["http_attempts"] == 4 and res.record["usage"]["calls"] == 2
    decide(pol, held, demo_market, ind, day=pd.Timestamp("2024-10-16"))
    assert len(chat(fake)) == 5  # remembered: one request for the second session
    assert chat(fake)[-1]["max_completion_tokens"] == 9500 and "temperature" not in chat(fake)[-1]


# --- Done when: the think-tags profile executes the final answer ------------------------------

@pytest.mark.parametrize("profile", ["think-tags", "reasoning-fields"])
def test_the_final_answer_is_executed_never_the_draft_in_the_reasoning(fake, held, demo_market, ind, profile):
    fake.use_profile(profile)
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake), held, demo_market, ind)
    assert res.record["answer"]["parsed"]["summary"] == "final answer"
    assert "SPY" not in ordered(res) and ordered(res) == {"GLD": "buy"}
    assert "draft: all in" in res.record["usage"]["reasoning"]  # kept for reading, not executed


def test_in_text_mode_the_last_top_level_object_is_taken_not_an_inner_one(fake, held, demo_market, ind):
    fake.reject_response_formats("json_schema", "json_object")
    text = ("Considering {\"decisions\": [{\"ticker\": \"SPY\", \"action\": \"buy\", \"percent\": 100, "
            "\"reason\": \"x\"}], \"summary\": \"first thought\"} ... final:\n" + json.dumps(FINAL))
    fake.script(completion(text))
    res = decide(make_policy(fake), held, demo_market, ind)
    assert res.record["answer"]["parsed"]["summary"] == "final answer" and ordered(res) == {"GLD": "buy"}


def test_a_json_mode_answer_with_prose_is_not_mined_for_an_object(fake, held, demo_market, ind):
    fake.script(completion("Sure! " + json.dumps(FINAL)), answer_json(FINAL))
    res = decide(make_policy(fake), held, demo_market, ind)
    assert len(chat(fake)) == 2  # the repair round, not extraction from prose in json_schema mode
    assert "whole answer must be one JSON object" in chat(fake)[1]["messages"][-1]["content"]
    assert res.record["answer"]["fallback"] is None


# --- Done when: a non-format 400 causes no format downgrade -----------------------------------

def test_a_context_length_400_is_no_format_problem_and_stops_the_run(fake, held, demo_market, ind):
    fake.use_profile("openai-chat-strict", context=2000)
    with pytest.raises(LLMUnusable, match="does not fit .*context_length_exceeded"):
        decide(make_policy(fake), held, demo_market, ind)
    sent = chat(fake)
    assert len(sent) == 1 and sent[0]["response_format"]["type"] == "json_schema"


def test_mistral_s_422_on_seed_drops_the_seed_and_keeps_the_format(fake, held, demo_market, ind):
    cfg = FAST.with_overrides(llm={"prices_usd_per_million_tokens": {"my-proxy-model": {"input": 0, "output": 0}}})
    fake.use_profile("mistral")
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake, cfg=cfg, model="my-proxy-model"), held, demo_market, ind)
    sent = chat(fake)
    assert [("seed" in s, s["response_format"]["type"]) for s in sent] == [(True, "json_schema"), (False, "json_schema")]
    assert ordered(res) == {"GLD": "buy"} and "seed" not in res.record["usage"]["params_sent"]


def test_the_strict_profile_accepts_the_answer_schema(fake, held, demo_market, ind):
    fake.use_profile("openai-chat-strict")
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake, cfg=DEFAULT.with_overrides(llm={"model": "gpt-4o-mini"})), held, demo_market, ind)
    assert len(chat(fake)) == 1 and res.record["usage"]["response_format"] == "json_schema"
    assert chat(fake)[0]["temperature"] == 0.2 and chat(fake)[0]["seed"] == 7 and chat(fake)[0]["max_tokens"] == 1500


def test_llama_cpp_python_s_500_on_json_schema_steps_to_json_object_without_retrying(fake, held, demo_market, ind):
    cfg = FAST.with_overrides(llm={"max_retries": 3, "prices_usd_per_million_tokens": {"local": {"input": 0, "output": 0}}})
    fake.use_profile("llama-cpp-python")
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake, cfg=cfg, model="local"), held, demo_market, ind)
    assert [s.get("response_format", {}).get("type") for s in chat(fake)] == ["json_schema", "json_object"]
    assert ordered(res) == {"GLD": "buy"}
    assert any("rejected response_format json_schema (HTTP 500)" in n for n in res.record["answer"]["notes"])


def test_a_500_that_is_not_about_the_format_is_retried_and_changes_no_format(fake, held, demo_market, ind):
    fake.script(error(500), answer_json(FINAL))
    res = decide(make_policy(fake), held, demo_market, ind)
    assert [s["response_format"]["type"] for s in chat(fake)] == ["json_schema", "json_schema"]
    assert res.record["usage"]["http_attempts"] == 2 and ordered(res) == {"GLD": "buy"}


# --- Done when: a `length` answer gets one bigger retry and is not cached ---------------------

def test_a_length_answer_gets_one_bigger_retry_with_lower_effort_never_a_repair(fake, held, demo_market, ind, tmp_path):
    cfg = FAST.with_overrides(llm={"reasoning_effort": "medium", "reasoning_headroom_tokens": 1000})
    fake.use_profile("openai-reasoning")
    fake.script(answer_json(FINAL))
    res = decide(make_policy(fake, tmp_path / "c", cfg=cfg), held, demo_market, ind)
    sent = chat(fake)
    assert [(s["max_completion_tokens"], s["reasoning_effort"]) for s in sent] == [(2500, "medium"), (5000, "low")]
    assert sent[0]["messages"] == sent[1]["messages"]  # the same question, no repair prompt
    assert res.record["answer"]["fallback"] is None and ordered(res) == {"GLD": "buy"}
    assert any("finish_reason length" in n for n in res.record["answer"]["notes"])


def test_an_answer_cut_twice_is_a_hold_and_is_not_cached(fake, held, demo_market, ind, tmp_path):
    cut = completion("", finish_reason="length", completion_tokens=9500, reasoning_tokens=9500)
    fake.script(cut, cut)
    res = decide(make_policy(fake, tmp_path / "c"), held, demo_market, ind)
    assert "cut by the token limit twice" in res.record["answer"]["fallback"]
    assert len(chat(fake)) == 2 and not list((tmp_path / "c").rglob("*.json"))
    fake.script(answer_json(FINAL))  # a re-run asks again instead of replaying the failure
    again = decide(make_policy(fake, tmp_path / "c"), held, demo_market, ind)
    assert len(chat(fake)) == 3 and ordered(again) == {"GLD": "buy"}


def test_a_content_filter_stop_is_a_hold_naming_it_and_is_not_cached(fake, held, demo_market, ind, tmp_path):
    fake.script(completion("", finish_reason="content_filter"))
    res = decide(make_policy(fake, tmp_path / "c"), held, demo_market, ind)
    assert "content filter" in res.record["answer"]["fallback"] and res.record["orders"] == []
    assert len(chat(fake)) == 1 and not list((tmp_path / "c").rglob("*.json"))


# --- context: the server's count against the estimate --------------------------------------

def test_a_prompt_truncated_by_a_small_context_stops_the_run(fake, held, demo_market, ind):
    fake.use_profile("small-context", context=2048)
    fake.script(answer_json(FINAL))
    with pytest.raises(LLMUnusable, match="truncated the prompt"):
        decide(make_policy(fake), held, demo_market, ind)


def test_a_prompt_that_cannot_fit_the_registry_s_window_is_refused_before_any_call(fake, held, demo_market, ind):
    # gemma 3 serves 32K in the registry: a 40,000-token answer budget cannot fit
    cfg = FAST.with_overrides(llm={"max_tokens": 40_000})
    with pytest.raises(LLMUnusable, match="context window of 32,768"):
        decide(make_policy(fake, cfg=cfg, model="gemma-3-270m"), held, demo_market, ind)
    assert fake.requests == []


# --- the command line: permanent errors exit non-zero before any download -------------------

def daily(tmp_path, *extra, config=None):
    from engine.cli import main

    argv = ["daily", "--init", "--state", str(tmp_path / "state"), "--source", "demo", "--policy", "llm",
            "--date", "2024-10-15", "--cache", str(tmp_path / "cache"), *extra]
    if config:
        (tmp_path / "my.toml").write_text(config)
        argv += ["--config", str(tmp_path / "my.toml")]
    return main(argv)


@pytest.fixture
def env(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    return fake


def test_an_unpriced_model_with_a_budget_refuses_to_run(env, tmp_path, capsys):
    assert daily(tmp_path, "--model", "my-finetune-v3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my-finetune-v3 has no price" in err and "prices_usd_per_million_tokens" in err
    assert chat(env) == [] and not (tmp_path / "state").exists()


def test_an_unpriced_model_runs_once_told_a_price(env, tmp_path, capsys):
    env.script(answer_json(FINAL))
    toml = '[llm.prices_usd_per_million_tokens]\n"my-finetune-v3" = { input = 0.3, output = 1.2 }\n'
    assert daily(tmp_path, "--model", "my-finetune-v3", config=toml) == 0
    assert "model my-finetune-v3" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    (lambda f: setattr(f, "key", "sk-another"), "refused the key (HTTP 401): check OPENAI_API_KEY"),
    (lambda f: setattr(f, "models", ["gpt-4o-mini", "gpt-6-luna-fast"]), "does not serve model 'gpt-6-luna'"),
])
def test_a_bad_key_or_an_unserved_model_fails_before_the_download(env, tmp_path, capsys, setup, message):
    setup(env)
    code = daily(tmp_path)
    err = capsys.readouterr().err
    assert code == 7 and err.count("\n") == 1 and message in err, err
    assert KEY not in err and chat(env) == [] and not (tmp_path / "state").exists()


def test_a_responses_only_or_shut_down_model_fails_loudly(env, tmp_path, capsys):
    toml = '[llm.prices_usd_per_million_tokens]\n"gpt-5-pro" = { input = 15, output = 120 }\n'
    assert daily(tmp_path, "--model", "gpt-5-pro", config=toml) == 7
    assert "Responses API only" in capsys.readouterr().err
    toml = '[llm.prices_usd_per_million_tokens]\n"o3-mini" = { input = 1.1, output = 4.4 }\n'
    assert daily(tmp_path, "--model", "o3-mini", config=toml) == 7
    assert "shut down on 2026-10-23" in capsys.readouterr().err
    assert chat(env) == []


def test_a_parameter_still_rejected_after_negotiation_exits_7_with_one_line(env, tmp_path, capsys):
    env.models = ["gpt-6-luna"]
    # Both llm arms (treatment and control) meet the same rejection.
    env.script(*[error(400, "Invalid value for 'tools': not supported.", type_="invalid_request_error",
                       code="invalid_value")] * 2)
    assert daily(tmp_path) == 7
    err = capsys.readouterr().err
    assert "rejects the request as configured (HTTP 400 invalid_value" in err.strip().splitlines()[-1]
    # Nothing of the failed arms is saved: their last good state (none yet) stays.
    for arm in ("treatment", "control"):
        saved = tmp_path / "state" / "arms" / arm / "portfolio.json"
        assert not saved.exists() or json.loads(saved.read_text())["as_of"] is None


def test_a_transient_429_after_retries_is_a_hold_and_exit_0(env, tmp_path, capsys):
    env.script(*[error(429, "Rate limit reached", type_="requests", code="rate_limit_exceeded",
                       headers={"retry-after-ms": "10"})] * 8)
    assert daily(tmp_path) == 0
    out = capsys.readouterr().out
    assert "explicit HOLD: the LLM server answered HTTP 429" in out
    assert len(chat(env)) == 8  # each llm arm (treatment, control): one try and max_retries=3


def test_models_lists_the_registry_and_resolves_an_id(capsys):
    from engine.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gpt-6-luna" in out and "0.1/0.5" in out and "2026-05-18" in out and "default model: gpt-6-luna" in out
    assert main(["models", "openai/gpt-4o-mini-2024-07-18"]) == 0
    out = capsys.readouterr().out
    assert "registry row:     gpt-4o-mini" in out and "shutdown:         2027-01-14" in out
    assert '"max_tokens": 1500' in out


def test_a_backtest_of_a_model_without_a_known_cutoff_is_in_sample(env, tmp_path, capsys):
    from engine.cli import main

    env.script(*[answer_json({"decisions": [], "summary": "hold"})] * 3)
    toml = '[llm.prices_usd_per_million_tokens]\n"my-finetune-v3" = { input = 0, output = 0 }\n'
    (tmp_path / "my.toml").write_text(toml)
    code = main(["backtest", "--source", "demo", "--policy", "llm", "--model", "my-finetune-v3", "--start", "2024-03-04",
                 "--end", "2024-03-06", "--out", str(tmp_path / "bt"), "--no-charts", "--config", str(tmp_path / "my.toml"),
                 "--cache", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0 and "IN-SAMPLE" in out and "cutoff is unknown" in out
    m = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert m["run"]["in_sample"] is True and m["run"]["knowledge_cutoff"] is None


def test_a_count_just_under_a_context_size_is_flagged_and_only_under_half_stops_the_run():
    from engine.llm.policy import _truncated

    # A real tokenizer counts 70-120% of the estimate: 4,012 of 5,355 can be honest, and is only
    # flagged; 2,048 of 5,355 cannot, and stops the run; a count above the estimate is fine.
    assert _truncated(4_012, 5_355) == "suspected"
    assert _truncated(2_048, 5_355) == "certain"
    assert _truncated(4_500, 5_355) is None and _truncated(6_000, 5_355) is None
