"""``python -m engine models``: the registry as a table, or what one model id resolves to."""

from __future__ import annotations

import json

from engine.config import Config
from engine.llm.registry import ModelInfo, normalise, registry


def _price(row: ModelInfo) -> str:
    return f"{row.price_input:g}/{row.price_output:g}" if row.priced else "unpriced"


def _sent(row: ModelInfo, cfg: Config) -> str:
    effort = row.effort(cfg.llm.reasoning_effort)
    parts = [row.token_param]
    if row.sends_sampling(effort):
        parts.append("temperature" + (", seed" if row.seed else ""))
    if effort:
        parts.append(f"effort {effort}")
    parts.append("json_schema" if row.json_schema else "json_object")
    return ", ".join(parts)


def models_text(cfg: Config, model: str | None = None) -> str:
    if model is not None:
        return _one(cfg, model)
    head = ("pattern", "family", "price in/out USD/M", "cutoff", "shutdown", "sent", "checked")
    rows = [head]
    for r in registry():
        rows.append((" ".join(r.pattern), r.family, _price(r), str(r.knowledge_cutoff or "unknown"),
                     str(r.shutdown or "-"), "Responses API only: refused" if r.api == "responses" else _sent(r, cfg),
                     str(r.checked or "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"default model: {cfg.llm.model}. Sources: engine/llm/models.toml; "
                 "`python -m engine models ID` shows one id and the request it would get.")
    return "\n".join(lines)


def _one(cfg: Config, model: str) -> str:
    from engine.llm.client import ChatClient  # builds the request without sending it

    info = cfg.llm.info(model)
    price = cfg.llm.price(model)
    cutoff = cfg.llm.cutoff(model)
    client = ChatClient(api_key="unused", base_url="http://127.0.0.1:9/v1", settings=cfg.llm)
    params = client.params(model)
    if "response_format" in params:
        params["response_format"] = params["response_format"]["type"]
    lines = [
        f"model:            {model} (normalised: {normalise(model, cfg.llm.deployments)})",
        f"registry row:     {info.family} ({info.provider})" if info.known else "registry row:     none (unknown model)",
        f"price USD/M:      {f'{price.input:g} in, {price.output:g} out' if price else 'unknown: a budgeted run refuses it'}",
        f"knowledge cutoff: {cutoff or 'unknown: every backtest is labelled in-sample'}",
        f"shutdown:         {info.shutdown or 'none announced'}",
        f"context window:   {f'{info.context_window:,}' if info.context_window else 'unknown'}",
        f"api:              {'Responses only (refused)' if info.api == 'responses' else 'Chat Completions'}",
        f"first request:    {json.dumps(params)}",
        f"source:           {info.source or '-'} (checked {info.checked or '-'})",
    ]
    return "\n".join(lines)
