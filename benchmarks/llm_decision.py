"""Prompt size and wall time per LLM decision, against a local OpenAI-compatible server.

    python benchmarks/llm_decision.py [DECISIONS]      (default: 20)

Runs the real daily step with the llm policy (real openai client, no response cache)
for 21 assets on the demo market, against the scripted local server of the tests
(127.0.0.1, instant answers), so the figures are this project's own overhead: building
and rendering the brief, the HTTP round trip through the client, parsing, checks,
guardrails. A real model adds its own latency on top.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import load_config  # noqa: E402
from engine.data.demo import DemoSource  # noqa: E402
from engine.indicators import compute_indicators  # noqa: E402
from engine.llm.brief import estimate_tokens  # noqa: E402
from engine.llm.cache import ResponseCache  # noqa: E402
from engine.llm.client import ChatClient  # noqa: E402
from engine.llm.policy import LLMPolicy  # noqa: E402
from engine.policies import RulesPolicy  # noqa: E402
from engine.portfolio.ledger import Portfolio  # noqa: E402
from engine.step import StepContext, run, step  # noqa: E402
from tests.fake_openai import FakeOpenAI, answer_json  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    cfg = load_config()
    market = DemoSource(seed=42).load(cfg, "2023-01-02", "2024-12-31")
    ind = compute_indicators(market, cfg)
    idx = market.index
    warm = idx[(idx >= pd.Timestamp("2024-01-02")) & (idx < pd.Timestamp("2024-09-02"))]
    p, _ = run(Portfolio.initial(10_000), warm, market, ind,
               StepContext(config=cfg, policy=RulesPolicy(cfg), source="demo", synthetic=True))
    days = idx[idx >= pd.Timestamp("2024-09-02")][:n]
    answer = {"decisions": [{"ticker": "GLD", "action": "buy", "percent": 10, "reason": "benchmark"},
                            {"ticker": "SPY", "action": "hold", "percent": 0, "reason": "benchmark"}],
              "summary": "benchmark"}
    with FakeOpenAI() as fake:
        fake.script(*[answer_json(answer)] * n)
        client = ChatClient(api_key="sk-benchmark", base_url=fake.base_url, settings=cfg.llm)
        ctx = StepContext(config=cfg, policy=LLMPolicy(cfg, client, ResponseCache(None)), source="demo", synthetic=True)
        times, sizes = [], []
        for d in days:
            t0 = time.perf_counter()
            res = step(p, d, market, ind, ctx)
            times.append(time.perf_counter() - t0)
            p = res.portfolio
            msgs = res.record["usage"]["messages"]
            sizes.append((len(msgs[0]["content"]), len(msgs[1]["content"]),
                          estimate_tokens(msgs[0]["content"]), estimate_tokens(msgs[1]["content"])))
        record_kb = len(json.dumps(res.record)) / 1024
    sys_chars, brief_chars, sys_tok, brief_tok = (max(s[i] for s in sizes) for i in range(4))
    print(f"assets in the brief: {len(res.record['brief']['assets']['rows'])}")
    print(f"system prompt: {sys_chars:,} chars, ~{sys_tok:,} tokens (estimate)")
    print(f"brief (largest of {n}): {brief_chars:,} chars, ~{brief_tok:,} tokens (estimate)")
    print(f"prompt total: ~{sys_tok + brief_tok:,} tokens")
    print(f"wall time per decision (step included, local server): median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms over {n}")
    print(f"decision record: {record_kb:.1f} KiB")


if __name__ == "__main__":
    main()
