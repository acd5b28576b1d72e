"""Blind mode: what would let a model recall history is hidden from it.

An LLM may remember what a ticker did in 2022. In blind mode the brief names assets
"Asset A", "Asset B", ... (tickers ``ASSET_A`` ...) in an order shuffled per run (the
seed), with their sector hidden, every date is replaced by ``[date]``, and price levels
are rebased to 100 at the start of the run. Quantities are rescaled the other way (a
position's value, a fill's EUR amount are unchanged; its price and share count are not
the real ones), so neither a position nor yesterday's fills give a price level away.
Currencies and the French-tax flag are not shown either (USD + ETF or ftt = y would
narrow an asset down to a handful): every asset reads as EUR, untaxed, and the costs
Python books stay the real ones. Returns, volatilities, CVaR and every other ratio are
unchanged, as are the portfolio's EUR amounts. The model's answer is mapped back to the
real tickers; a name it invents stays unknown and is cut like any unknown ticker.

A blind run is labelled "blind", never "out-of-sample": hiding names does not prove the
model cannot recognise a path.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections.abc import Mapping

import numpy as np

from engine.config import Config
from engine.decision import Brief, Decision
from engine.policies import PolicyAnswer

PRICE_FIGURES = ("close", "sma_20", "sma_50", "sma_200", "bb_upper", "bb_lower")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _letters(i: int) -> str:
    letters = string.ascii_uppercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


class Blind:
    def __init__(self, config: Config, anchors_local: Mapping[str, float], seed: int | None = None):
        order = list(config.tickers)
        if seed is not None:
            np.random.default_rng(seed).shuffle(order)
        self.alias = {t: f"ASSET_{_letters(i)}" for i, t in enumerate(order)}
        self.real = {v: k for k, v in self.alias.items()}
        self.factor = {t: 100.0 / float(p) for t, p in anchors_local.items() if p and p == p}
        assets = [
            {**a.model_dump(), "ticker": self.alias[a.ticker], "name": f"Asset {self.alias[a.ticker][6:]}",
             "sector": "hidden", "currency": "EUR", "ftt": False, "kind": "stock"}
            for a in sorted(config.assets, key=lambda a: self.alias[a.ticker])
        ]
        benchmarks = [
            {**b.model_dump(), "ticker": self.alias.get(b.ticker, f"BENCH_{i}"), "name": "benchmark"}
            for i, b in enumerate(config.benchmarks)
        ]
        # The model's view only (its prompt and brief): the arms name real tickers, so none here.
        self.config = config.with_overrides(assets=assets, benchmarks=benchmarks,
                                            arms={"arm": [], "treatment": None, "control": None, "reference": None})
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
            positions[self._t(t)] = pv._replace(
                ticker=self._t(t), qty=pv.qty / k, avg_cost_eur=pv.avg_cost_eur * k, price_local=pv.price_local * k,
                price_eur=pv.price_eur * k, currency="EUR",
            )
        corr = b.correlation
        if corr is not None:
            corr = corr.rename(index=self.alias, columns=self.alias)
        previous = self._previous(b.previous)
        return dataclasses.replace(
            b,
            assets=dict(sorted(assets.items())),  # in alias order: the universe's order would tell
            positions=dict(sorted(positions.items())),
            prices_eur={self._t(t): p * self.factor.get(t, 1.0) for t, p in b.prices_eur.items()},
            pending_orders=tuple(o.model_copy(update={"ticker": self._t(o.ticker), "qty": o.qty / self.factor.get(o.ticker, 1.0)})
                                 for o in b.pending_orders),
            data_issues=tuple({k: self.scrub(str(v)) for k, v in i.items()} for i in b.data_issues),
            tradable=tuple(sorted(self._t(t) for t in b.tradable)),
            previous=previous,
            correlation=corr,
        )

    def _previous(self, prev: dict | None) -> dict | None:
        """Yesterday's decision with its orders' and fills' quantities and prices rescaled."""
        if prev is None:
            return None
        prev = json.loads(json.dumps(prev))
        for key in ("orders", "fills_today"):
            for item in prev.get(key, []):
                k = self.factor.get(item.get("ticker"), 1.0)
                if "qty" in item:
                    item["qty"] = item["qty"] / k
                if "price_local" in item:
                    item["price_local"] = round(item["price_local"] * k, 4)
                if "currency" in item:
                    item["currency"] = "EUR"
        return json.loads(self.scrub(json.dumps(prev)))

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
        note = ("blind mode: tickers (shuffled), names, sectors, currencies, tax flags and dates hidden, prices "
                "rebased to 100 at the start of the run and quantities rescaled")
        return dataclasses.replace(ans, decision=self.blind.unmask(ans.decision), notes=[*ans.notes, note])

