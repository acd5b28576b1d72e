"""Turning the model's text into a decision: what parses, what is extracted, what is refused."""

from __future__ import annotations

import json

import pytest

from engine.decision import Action
from engine.llm.schema import ANSWER_SCHEMA, AnswerInvalid, parse_answer, response_format, split_reasoning

GOOD = {"decisions": [{"ticker": "MC.PA", "action": "buy", "percent": 25, "reason": "uptrend"}], "summary": "one buy"}


def test_a_valid_answer_parses_to_the_public_format():
    d, extracted = parse_answer(json.dumps(GOOD))
    assert d.decisions == (Action(ticker="MC.PA", action="buy", percent=25, reason="uptrend"),)
    assert d.summary == "one buy" and not extracted


@pytest.mark.parametrize(
    "text",
    [
        "Here is my decision:\n" + json.dumps(GOOD) + "\nLet me know if you need more.",
        "```json\n" + json.dumps(GOOD) + "\n```",
        "I think {not json} but then " + json.dumps(GOOD),
    ],
)
def test_json_wrapped_in_prose_or_fences_is_extracted(text):
    d, _ = parse_answer(text)
    assert d.decisions[0].ticker == "MC.PA"


def test_extraction_is_reported():
    _, extracted = parse_answer("Sure. " + json.dumps(GOOD))
    assert extracted


def test_lenient_on_case_and_whitespace_strict_on_meaning():
    d, _ = parse_answer(json.dumps({"decisions": [{"ticker": " SPY ", "action": "SELL", "percent": 50}], "summary": ""}))
    assert d.decisions[0] == Action(ticker="SPY", action="sell", percent=50, reason="")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "empty"),
        ("   ", "empty"),
        ("I would rather not trade today.", "no JSON object"),
        ('{"decisions": "buy everything"}', "decisions: Input should be a valid list"),
        ('{"summary": "no decisions key"}', "decisions: Field required"),
        ('{"decisions": [{"ticker": "SPY", "action": "short", "percent": 10}]}', "decisions.0.action"),
        ('{"decisions": [{"ticker": "SPY", "action": "buy", "percent": "lots"}]}', "percent must be a number"),
        ("[1, 2, 3]", "must be a JSON object"),
        ('{"decisions": [{"ticker": "SPY", "action": "buy", "percent": 10', "no JSON object"),  # truncated
    ],
)
def test_what_is_not_an_answer_is_refused_with_a_message_for_the_repair_round(text, message):
    with pytest.raises(AnswerInvalid, match=message):
        parse_answer(text)


def test_out_of_range_percent_parses_and_is_left_to_the_checks():
    # 250% of cash is not a parse error: check_decision scales it with a recorded reason.
    d, _ = parse_answer(json.dumps({"decisions": [{"ticker": "SPY", "action": "buy", "percent": 250, "reason": ""}], "summary": ""}))
    assert d.decisions[0].percent == 250


def test_the_strict_schema_names_exactly_the_audit_fields():
    item = ANSWER_SCHEMA["properties"]["decisions"]["items"]
    assert set(item["properties"]) == set(item["required"]) == {"ticker", "action", "percent", "reason"}
    assert item["properties"]["action"]["enum"] == ["buy", "sell", "hold"]
    assert ANSWER_SCHEMA["required"] == ["decisions", "summary"]
    assert response_format("json_schema")["json_schema"]["strict"] is True
    assert response_format("json_object") == {"type": "json_object"}
    assert response_format("text") is None


# --- reasoning text and where the answer is -------------------------------------------------

DRAFT = '{"decisions": [{"ticker": "SPY", "action": "buy", "percent": 100, "reason": "draft"}], "summary": "draft"}'
FINAL = '{"decisions": [{"ticker": "GLD", "action": "buy", "percent": 10, "reason": "final"}], "summary": "final"}'


@pytest.mark.parametrize("text", [
    f"<think>first idea {DRAFT} no</think>\n{FINAL}",
    f"<THINK>\n{DRAFT}\n</THINK>{FINAL}",
    f"reasoning opened by the template {DRAFT}</think>\n\n{FINAL}",  # a lone closing tag
])
@pytest.mark.parametrize("mode", ["json_schema", "json_object", "text"])
def test_think_blocks_are_never_parsed(text, mode):
    decision, _ = parse_answer(text, mode)
    assert decision.summary == "final" and decision.decisions[0].ticker == "GLD"


def test_an_answer_cut_inside_its_reasoning_has_no_answer():
    with pytest.raises(AnswerInvalid, match="only reasoning"):
        parse_answer(f"<think>still thinking {DRAFT}", "text")


def test_text_mode_takes_the_last_top_level_object_never_an_inner_one():
    nested = '{"note": ' + DRAFT + ', "decisions": [], "summary": "outer"}'
    decision, extracted = parse_answer(f"draft: {DRAFT}\nthen: {nested}", "text")
    assert extracted and decision.summary == "outer" and decision.decisions == ()


def test_json_modes_want_the_whole_content_to_be_the_object():
    with pytest.raises(AnswerInvalid, match="whole answer must be one JSON object"):
        parse_answer(f"Here you go: {FINAL}", "json_object")
    assert parse_answer(f"```json\n{FINAL}\n```", "json_schema")[0].summary == "final"


def test_split_reasoning_keeps_the_reasoning_for_the_record():
    answer, reasoning = split_reasoning(f"<think>why {DRAFT}</think>{FINAL}")
    assert answer == FINAL and "why" in reasoning and DRAFT in reasoning
