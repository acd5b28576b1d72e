"""The JSON layout of every state file (engine.state.dumps): nested blocks indented by one
space a level, each object or list of plain values on one line, key order kept. The writer
is tuned for speed (a backtest formats thousands of records); the reference below is the
layout's rule written plainly, and both must give the same bytes for anything."""

from __future__ import annotations

import enum
import json
import math
from itertools import repeat

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.state import dumps

_NESTED = (dict, list, tuple)


def _plain(x) -> bytes:
    return orjson.dumps(x, default=lambda v: v.item() if hasattr(v, "item") else str(v),
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def reference(x, depth: int = 0) -> bytes:
    """The layout's rule, one case at a time."""
    def flat(values) -> bool:
        return not any(map(isinstance, values, repeat(_NESTED)))

    def part(v, d):
        return reference(v, d) if isinstance(v, _NESTED) else _plain(v)

    pad, inner = b" " * depth, b" " * (depth + 1)
    if isinstance(x, dict):
        if depth > 0 and flat(x.values()):
            return _plain(x)
        if not x:
            return b"{}"
        return (b"{\n" + b",\n".join(inner + _plain(str(k)) + b": " + part(v, depth + 1) for k, v in x.items())
                + b"\n" + pad + b"}")
    if isinstance(x, (list, tuple)):
        if flat(x):
            return _plain(x)
        return b"[\n" + b",\n".join(inner + part(v, depth + 1) for v in x) + b"\n" + pad + b"]"
    return _plain(x)


class Side(str, enum.Enum):  # a str subclass used as a key: written as str() writes it
    buy = "buy"


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from([np.float64(1.5), np.int64(7)]))
keys = st.one_of(st.sampled_from(["ticker", "qty", "buy", "nav_eur", "assets"]), st.text(max_size=6), st.just(Side.buy))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                                                       st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, trees, max_size=6))
def test_the_writer_gives_the_layouts_bytes_for_any_tree(tree):
    assert dumps(tree) == reference(tree) + b"\n"
    assert dumps(tree) == dumps(tree)  # and the key cache changes nothing the second time


def test_a_record_reads_as_a_diff_wants_it():
    rec = {"date": "2025-12-31", "valuation": {"nav_eur": 10012.5, "drawdown": float("nan")},
           "brief": {"assets": {"columns": ["close", "rsi_14"], "rows": {"SPY": [601.2, 55.1], "AI.PA": [190.0, None]}},
                     "positions": [{"ticker": "SPY", "qty": 2.0}]},
           "orders": [], Side.buy: 1}
    text = dumps(rec).decode()
    assert text.splitlines() == [
        "{",
        ' "date": "2025-12-31",',
        ' "valuation": {"nav_eur":10012.5,"drawdown":null},',
        ' "brief": {',
        '  "assets": {',
        '   "columns": ["close","rsi_14"],',
        '   "rows": {',
        '    "SPY": [601.2,55.1],',
        '    "AI.PA": [190.0,null]',
        "   }",
        "  },",
        '  "positions": [',
        '   {"ticker":"SPY","qty":2.0}',
        "  ]",
        " },",
        ' "orders": [],',
        f' {json.dumps(str(Side.buy))}: 1',
        "}",
    ]
    back = json.loads(text)
    assert list(back) == ["date", "valuation", "brief", "orders", str(Side.buy)]
    assert back["valuation"]["drawdown"] is None and not math.isnan(back["valuation"]["nav_eur"])
