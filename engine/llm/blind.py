"""Blind mode: what would let a model recall history is hidden from it.

An LLM may remember what a ticker did in 2022. In blind mode the brief names assets
"Asset A", "Asset B", ... (tickers ``ASSET_A`` ...) with their sector hidden, every
date is replaced by ``[date]``, and price levels are rebased to 100 at the start of
the run (returns, volatilities, CVaR and every other ratio are unchanged, as are the
portfolio's EUR amounts). The model's answer is mapped back to the real tickers; a
name it invents stays unknown and is cut like any unknown ticker.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections.abc import Mapping

from engine.config import Config
from engine.decision import Brief, Decision
from engine.policies import PolicyAnswer

PRICE_FIGURES = ("close", "sma_20", "sma_50", "sma_200", "bb_upper", "bb_lower")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _letters(i: int) -> str:
    letters = string.ascii_uppercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


class Blind:
    def __init__(self, config: Config, anchors_local: Mapping[str, float]):
        self.alias = {t: f"ASSET_{_letters(i)}" for i, t in enumerate(config.tickers)}
        self.real = {v: k for k, v in self.alias.items()}
        self.factor = {t: 100.0 / float(p) for t, p in anchors_local.items() if p and p == p}
        assets = [
            {**a.model_dump(), "ticker": self.alias[a.ticker], "name": f"Asset {self.alias[a.ticker][6:]}",
             "sector": "hidden"}
            for a in config.assets
        ]
        benchmarks = [
            {**b.model_dump(), "ticker": self.alias.get(b.ticker, f"BENCH_{i}"), "name": "benchmark"}
            for i, b in enumerate(config.benchmarks)
        ]
        self.config = config.with_overrides(assets=assets, benchmarks=benchmarks)
        # Longest first, so that "MC.PA" is replaced before a shorter name inside it could be.
        names = dict(self.alias)
        names.update({config.asset_by_ticker[t].name: a for t, a in self.alias.items()})
        self._names = sorted(names.items(), key=lambda kv: -len(kv[0]))
        self._pattern = re.compile("|".join(re.escape(k) for k, _ in self._names))
        self._map = dict(self._names)

    def scrub(self, text: str) -> str:
        """Replace every real ticker or asset name by its alias, every date by [date]."""
        return DATE.sub("[date]", self._pattern.sub(lambda m: self._map[m.group(0)], text))

    def _t(self, t: str) -> str:
        return self.alias.get(t, t)

    def mask(self, b: Brief) -> Brief:
        assets = {}
        for t, fig in b.assets.items():
            f = dict(fig)
            k = self.factor.get(t)
            for name in PRICE_FIGURES:
                if k is not None and f.get(name) is not None:
                    f[name] = f[name] * k
            assets[self._t(t)] = f
        positions = {}
        for t, pv in b.positions.items():
            k = self.factor.get(t, 1.0)
            positions[self._t(t)] = dataclasses.replace(
                pv, ticker=self._t(t), avg_cost_eur=pv.avg_cost_eur * k, price_local=pv.price_local * k,
                price_eur=pv.price_eur * k,
            )
        corr = b.correlation
        if corr is not None:
            corr = corr.rename(index=self.alias, columns=self.alias)
        previous = json.loads(self.scrub(json.dumps(b.previous))) if b.previous is not None else None
        return dataclasses.replace(
            b,
            assets=assets,
            positions=positions,
            prices_eur={self._t(t): p for t, p in b.prices_eur.items()},
            pending_orders=tuple(o.model_copy(update={"ticker": self._t(o.ticker)}) for o in b.pending_orders),
            data_issues=tuple({k: self.scrub(str(v)) for k, v in i.items()} for i in b.data_issues),
            tradable=tuple(self._t(t) for t in b.tradable),
            previous=previous,
            correlation=corr,
        )

    def unmask(self, d: Decision) -> Decision:
        actions = tuple(a.model_copy(update={"ticker": self.real.get(a.ticker, a.ticker)}) for a in d.decisions)
        return d.model_copy(update={"decisions": actions})


class BlindPolicy:
    """Wraps the llm policy: it sees the masked brief, its answer is mapped back."""

    name = "llm"
    wants_correlation = True

    def __init__(self, inner, blind: Blind):
        self.inner = inner
        self.blind = blind

    def decide(self, brief: Brief) -> PolicyAnswer:
        ans = self.inner.decide(self.blind.mask(brief))
        note = "blind mode: tickers, names and dates hidden, prices rebased to 100 at the start of the run"
        return dataclasses.replace(ans, decision=self.blind.unmask(ans.decision), notes=[*ans.notes, note])

