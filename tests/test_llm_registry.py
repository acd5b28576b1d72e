"""The model registry is data with a date and a source per row, and ids find their family."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.config import load_config
from engine.llm.registry import UNKNOWN, lookup, normalise, registry

CFG = load_config()


def test_every_row_has_a_date_and_a_source():
    for row in registry():
        assert row.pattern and row.checked is not None and row.source.strip(), row.family


@pytest.mark.parametrize("model, family", [
    ("gpt-6-luna", "gpt-6-luna"),
    ("openai/gpt-6-luna", "gpt-6-luna"),                # OpenRouter
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),          # a dated snapshot
    ("models/gemini-2.5-flash", "gemini"),              # Gemini's OpenAI-compatible ids
    ("o3-mini", "o-series"),
    ("gpt-5.2", "gpt-5.x"),
    ("gpt-5-pro", "Responses-only"),
    ("qwen3:8b", "local reasoning (think tags)"),       # an Ollama tag
    ("deepseek-reasoner", "deepseek-reasoner"),
    ("mistral-small-latest", "mistral"),
])
def test_ids_are_normalised_to_their_family(model, family):
    assert lookup(model).family == family


def test_an_azure_deployment_is_mapped_through_the_config():
    cfg = CFG.with_overrides(llm={"deployments": {"prod-trader": "gpt-6-luna"}})
    assert normalise("prod-trader", cfg.llm.deployments) == "gpt-6-luna"
    assert cfg.llm.price("prod-trader").input == 0.10 and cfg.llm.cutoff("prod-trader") == dt.date(2026, 5, 18)


def test_an_unknown_model_knows_nothing_so_callers_fail_closed():
    assert lookup("my-finetune") is UNKNOWN
    assert CFG.llm.price("my-finetune") is None and CFG.llm.cutoff("my-finetune") is None


def test_the_config_overrides_the_registry():
    cfg = CFG.with_overrides(llm={"prices_usd_per_million_tokens": {"gpt-6-luna": {"input": 0.05, "output": 0.25}},
                                  "knowledge_cutoff": {"gpt-6-luna": dt.date(2026, 1, 1)}})
    assert cfg.llm.price("gpt-6-luna").input == 0.05 and cfg.llm.cutoff("gpt-6-luna") == dt.date(2026, 1, 1)


def test_the_default_model_is_current_cheap_and_not_near_shutdown():
    row = lookup(CFG.llm.model)
    assert row.known and row.api == "chat" and row.priced and row.knowledge_cutoff is not None
    assert row.shutdown is None or row.shutdown > row.checked + dt.timedelta(days=365)
    assert row.price_input <= 0.15 and row.price_output <= 0.60  # no dearer than the model it replaces


def test_what_a_reasoning_model_is_sent_follows_its_row():
    row = lookup("gpt-6-luna")
    assert row.effort("auto") == "low" and row.reasons("low") and not row.sends_sampling("low")
    assert row.sends_sampling("none") and row.lower_effort("low") == "none"
    assert not lookup("gpt-4o-mini").reasons(lookup("gpt-4o-mini").effort("auto"))
