"""engine.records: decision records stored small (each system prompt once, nothing twice),
read back exactly as the step wrote them, and old records read as they always did.

The fixture ``tests/golden/state_layout1`` is a state folder written by the engine before
layout 2 (two LLM sessions of the seed-7 demo, the second with fills): every record inline,
the system prompt in each.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import orjson
import pandas as pd
import pytest

from engine.errors import StateCorrupt
from engine.indicators import compute_indicators
from engine.llm.cache import ResponseCache, request_key
from engine.llm.client import ChatClient
from engine.llm.policy import LLMPolicy
from engine.policies import RulesPolicy
from engine.portfolio.ledger import Portfolio
from engine.records import LAYOUT, pack, prompt_path, read_record
from engine.report.site import load_site_data
from engine.state import StateStore
from engine.step import StepContext, run, step
from tests.fake_openai import FakeOpenAI, answer_json

OLD_STATE = Path(__file__).parent / "golden" / "state_layout1"
SOURCE = "demo seed=7"


@pytest.fixture(scope="module")
def ind(demo_market, config):
    return compute_indicators(demo_market, config)


@pytest.fixture(scope="module")
def held(demo_market, ind, config):
    """A portfolio the rules policy built (positions to sell, fills to come)."""
    idx = demo_market.index
    ctx = StepContext(config=config, policy=RulesPolicy(config), source=SOURCE, synthetic=True)
    days = idx[(idx >= pd.Timestamp("2024-09-01")) & (idx < pd.Timestamp("2024-10-01"))]
    p, results = run(Portfolio.initial(10_000, source=SOURCE), days, demo_market, ind, ctx)
    assert p.positions
    return p, results


def the_same(record: dict) -> dict:
    """A record as it reads back from JSON (tuples as lists, NaN as null)."""
    from engine.state import dumps

    return orjson.loads(dumps(record))


def llm_sessions(tmp_path, config, demo_market, ind, held, n, answers=None):
    """`n` LLM sessions through the real client and a local server, saved one by one after
    the rules policy's history; the requests the server received, the results, the store
    and the policy."""
    held, history = held
    days = demo_market.index[demo_market.index >= pd.Timestamp("2024-10-01")][:n]
    sell = sorted(held.positions)[0]
    answers = answers or [
        answer_json({"decisions": [{"ticker": sell, "action": "sell", "percent": 100, "reason": "trend broken"},
                                   {"ticker": "GLD", "action": "buy", "percent": 10, "reason": "the least correlated"}],
                     "summary": f"Day {k}: exit {sell}, a little gold."}) for k in range(n)]
    store = StateStore(tmp_path / "state", durable=False)
    store.save(held, history)
    with FakeOpenAI() as fake:
        fake.script(*answers)
        client = ChatClient(api_key="sk-test", base_url=fake.base_url, settings=config.llm)
        policy = LLMPolicy(config, client, ResponseCache(tmp_path / "cache"))
        ctx = StepContext(config=config, policy=policy, source=SOURCE, synthetic=True)
        p, results = held, []
        for d in days:
            res = step(p, d, demo_market, ind, ctx)
            p = res.portfolio
            store.save(p, [res])
            results.append(res)
        requests = fake.requests
    return requests, results, store, policy


def test_the_stored_record_re_creates_the_exact_request_the_model_was_sent(tmp_path, config, demo_market, ind, held):
    requests, results, store, policy = llm_sessions(tmp_path, config, demo_market, ind, held, 1)
    d = results[0].date
    sent = requests[-1].json
    rec = store.decision(d)
    messages = rec["usage"]["messages"]
    # Byte for byte: every message's text, and the request as the cache keys it.
    assert [m["role"] for m in messages] == [m["role"] for m in sent["messages"]] == ["system", "user"]
    for ours, theirs in zip(messages, sent["messages"], strict=True):
        assert ours["content"].encode("utf-8") == theirs["content"].encode("utf-8")
    cached = [p.stem for p in (tmp_path / "cache").rglob("*.json")]
    assert cached == [request_key(rec["usage"]["model"], messages, policy._intent())]
    assert rec["usage"]["prompt_sha256"] == hashlib.sha256(messages[0]["content"].encode("utf-8")).hexdigest()
    # On disk the system prompt is a reference to its file, the user message is there once.
    raw = store.decision_path(d).read_bytes()
    on_disk = orjson.loads(raw)
    assert on_disk["schema_version"] == LAYOUT
    assert on_disk["usage"]["messages"][0] == {"role": "system", "content_sha256": rec["usage"]["prompt_sha256"]}
    assert prompt_path(store.root / "decisions", rec["usage"]["prompt_sha256"]).read_text("utf-8") == policy.system
    assert policy.system[:200].encode() not in raw
    assert raw.count(orjson.dumps(messages[1]["content"])) == 1
    assert "parsed" not in on_disk["answer"]  # the raw answer is exactly the JSON: not stored twice


def test_a_record_reads_back_exactly_as_the_step_wrote_it(tmp_path, config, demo_market, ind, held):
    _, results, store, _ = llm_sessions(tmp_path, config, demo_market, ind, held, 3)
    for res in results:
        back = store.decision(res.date)
        assert back == the_same(res.record)
        assert list(back) == list(res.record)  # the key order is the step's: diffs line up
        assert list(back["answer"]) == list(res.record["answer"])
    # The second session filled the first one's orders: the previous decision's fills are
    # this record's fills, stored once and derived back.
    rec = store.decision(results[1].date)
    assert rec["fills"] and len(rec["brief"]["previous"]["fills_today"]) == len(rec["fills"])
    assert "fills_today" not in orjson.loads(store.decision_path(results[1].date).read_bytes())["brief"]["previous"]
    # Rules records keep their whole asset table (it is what the policy saw).
    store2 = StateStore(tmp_path / "rules", durable=False)
    ctx = StepContext(config=config, policy=RulesPolicy(config), source=SOURCE, synthetic=True)
    res = step(held[0], results[0].date, demo_market, ind, ctx)
    store2.save(res.portfolio, [*held[1], res])
    back = store2.decision(res.date)
    assert back == the_same(res.record)
    assert "sma_200" in back["brief"]["assets"]["columns"] and back["brief"]["positions"][0]["avg_cost_eur"] > 0


def test_the_system_prompt_is_stored_once_for_every_record_that_used_it(tmp_path, config, demo_market, ind, held):
    _, results, store, policy = llm_sessions(tmp_path, config, demo_market, ind, held, 3)
    prompts = sorted((store.root / "decisions" / "prompts").iterdir())
    assert [p.name for p in prompts] == [f"{policy.system_sha256}.txt"]
    for res in results:
        assert store.decision(res.date)["usage"]["messages"][0]["content"] == policy.system
    # An LLM record's structured brief keeps what readers use beside the message.
    brief = store.decision(results[0].date)["brief"]
    assert brief["assets"]["columns"] == ["close"]
    assert set(brief["positions"][0]) == {"ticker", "qty", "price_local", "currency", "price_eur", "value_eur"}


def test_a_changed_or_missing_prompt_file_is_a_corrupt_state_not_another_prompt(tmp_path, config, demo_market, ind,
                                                                                    held):
    _, results, store, policy = llm_sessions(tmp_path, config, demo_market, ind, held, 1)
    path = prompt_path(store.root / "decisions", policy.system_sha256)
    path.write_text(policy.system.replace("CVaR", "VaR"), encoding="utf-8")
    with pytest.raises(StateCorrupt, match="does not hold the prompt its name says"):
        StateStore(store.root).decision(results[0].date)
    path.unlink()
    with pytest.raises(StateCorrupt, match="refers to the system prompt"):
        StateStore(store.root).decision(results[0].date)
    # The next save writes it again (a prompt file is its hash's text).
    store.save(results[0].portfolio, [results[0]])
    assert StateStore(store.root).decision(results[0].date)["usage"]["messages"][0]["content"] == policy.system


def test_what_cannot_be_derived_back_exactly_is_kept(config):
    raw = 'Here it is: {"decisions": [], "summary": "hold"}'
    record = {"schema_version": 1, "fills": [], "execution_notes": [],
              "brief": {"previous": {"date": "2024-10-01", "fills_today": [{"ticker": "SPY"}], "execution_notes": []}},
              "answer": {"raw": raw, "parsed": {"decisions": [], "summary": "hold"}, "fallback": None, "notes": []}}
    stored, prompts = pack(record)
    assert stored["answer"]["parsed"] == record["answer"]["parsed"]  # text around the JSON
    assert stored["brief"]["previous"]["fills_today"] == [{"ticker": "SPY"}]  # not this record's fills
    assert "execution_notes" not in stored["brief"]["previous"] and not prompts
    assert record["brief"]["previous"]["execution_notes"] == []  # the record itself is untouched


def test_an_old_layout_state_loads_reads_and_goes_on_in_the_new_layout(tmp_path, config, demo_market, ind):
    root = tmp_path / "state"
    shutil.copytree(OLD_STATE, root)
    files = {p.relative_to(root).as_posix(): json.loads(p.read_text("utf-8"))
             for p in sorted((root / "decisions").rglob("*.json"))}
    assert [r["schema_version"] for r in files.values()] == [1, 1]
    store = StateStore(root)
    p = store.load()
    assert p.as_of == dt_date("2024-09-03")
    old = {day: store.decision(pd.Timestamp(day)) for day in ("2024-09-02", "2024-09-03")}
    assert [old[day] for day in old] == list(files.values())  # read as they are
    assert old["2024-09-02"]["usage"]["messages"][0]["role"] == "system"
    # The next session is written in layout 2 beside them; every reader gets one shape.
    d = demo_market.index[demo_market.index > pd.Timestamp("2024-09-03")][0]
    ctx = StepContext(config=config, policy=RulesPolicy(config), source=SOURCE, synthetic=True)
    res = step(p, d, demo_market, ind, ctx)
    store.save(res.portfolio, [res])
    assert orjson.loads(store.decision_path(d).read_bytes())["schema_version"] == LAYOUT
    site = load_site_data(root, config)
    assert [r["date"] for r in site.records] == ["2024-09-02", "2024-09-03", str(d.date())]
    assert site.records[0]["usage"]["messages"] == old["2024-09-02"]["usage"]["messages"]
    assert site.records[2]["brief"] == the_same(res.record)["brief"]
    assert StateStore(root).decision(pd.Timestamp("2024-09-02")) == files["decisions/2024/09-02.json"]


def test_the_site_reads_new_records_with_their_prompt_in_place(tmp_path, config, demo_market, ind, held):
    _, results, store, policy = llm_sessions(tmp_path, config, demo_market, ind, held, 2)
    site = load_site_data(store.root, config)
    llm = site.records[-2:]
    assert [r["date"] for r in llm] == [str(r.date.date()) for r in results]
    assert [r["usage"]["messages"][0]["content"] for r in llm] == [policy.system] * 2
    assert llm[1]["answer"]["parsed"] == the_same(results[1].record)["answer"]["parsed"]
    assert site.records[0]["usage"] is None and site.records[0]["brief"]["assets"]["columns"][0] == "close"


def test_a_record_that_is_not_json_is_a_corrupt_state(tmp_path):
    path = tmp_path / "decisions" / "2024" / "10-01.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{not json")
    with pytest.raises(StateCorrupt, match="cannot read"):
        read_record(path)


def dt_date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)


def _briefs(config, demo_market, ind, sessions):
    """The briefs the rules policy was given over `sessions`."""
    briefs = []

    class Keep(RulesPolicy):
        def decide(self, brief):
            briefs.append(brief)
            return super().decide(brief)

    run(Portfolio.initial(10_000), sessions, demo_market, ind,
        StepContext(config=config, policy=Keep(config), source=SOURCE, synthetic=True))
    return briefs


def test_the_brief_figures_are_rounded_to_six_significant_digits_in_one_pass(config, demo_market, ind):
    idx = demo_market.index
    b = _briefs(config, demo_market, ind, idx[idx >= pd.Timestamp("2024-06-03")][:15])[-1]
    assert b.positions
    d = b.as_dict()

    def six(x):
        return None if x != x or x in (float("inf"), float("-inf")) else float("%.6g" % x)

    assert d["assets"]["columns"] == list(next(iter(b.assets.values())))
    for t, row in d["assets"]["rows"].items():
        assert row == [six(v) for v in b.assets[t].values()]
    for pos, view in zip(d["positions"], b.positions.values(), strict=True):
        assert pos == {k: v if isinstance(v, str) else six(v) for k, v in view._asdict().items()}
    small = b.as_dict(beside_message=True)
    assert small["assets"]["columns"] == ["close"]
    assert small["assets"]["rows"] == {t: [row[0]] for t, row in d["assets"]["rows"].items()}
    assert small["positions"] == [{k: p[k] for k in p if k in ("ticker", "qty", "price_local", "currency", "price_eur",
                                                              "value_eur")} for p in d["positions"]]


def test_a_brief_renders_its_asset_table_as_the_plain_dicts_it_replaces(config, demo_market, ind):
    """A step's brief keeps its asset table as one array (engine.decision.AssetTable): it
    reads as the ticker -> figure -> value dicts it replaces, and the record renders it to
    the same JSON, on the first sessions (no last-30-sessions figures yet) and later."""
    import dataclasses

    from engine.decision import AssetTable

    idx = demo_market.index
    briefs = _briefs(config, demo_market, ind, idx[:3].append(idx[idx >= pd.Timestamp("2024-06-03")][:5]))
    assert len(next(iter(briefs[0].assets.values()))) < len(next(iter(briefs[-1].assets.values())))
    for b in briefs:
        table = b.assets
        assert isinstance(table, AssetTable) and list(table) == [t for t in config.tickers if t in table]
        plain = {t: dict(f) for t, f in table.items()}
        assert table == plain and len(table) == len(plain) and "NOPE" not in table
        with pytest.raises(KeyError):
            table["NOPE"]
        with pytest.raises(ValueError):
            table.figures[0, 0] = 1.0  # read-only: a policy only reads what it is given
        as_dicts = dataclasses.replace(b, assets=plain)
        for beside in (False, True):
            assert orjson.dumps(b.as_dict(beside_message=beside)) == orjson.dumps(as_dicts.as_dict(beside_message=beside))
        next(iter(table.values()))["close"] = -1.0  # a policy scribbling on what it was given
        assert b.as_dict()["assets"] == as_dicts.as_dict()["assets"]  # the record keeps the step's figures
