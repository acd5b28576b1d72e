"""Charts from the state (matplotlib, PNG): equity against the benchmarks, drawdowns.

Readable on a phone: one message per chart, large type, a legend that names what is
drawn, and a SYNTHETIC stamp when the market is the demo one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

LABELS = {
    "strategy": "Strategy",
    "buy_and_hold_spy": "Buy-and-hold SPY",
    "buy_and_hold_cac40_tracker": "Buy-and-hold CAC 40 tracker",
    "cac40_index": "CAC 40 index",
    "equal_weight": "Equal weight, 21 assets",
}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.spines.top": False, "axes.spines.right": False})
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    return plt, fig, ax


def _finish(plt, fig, ax, path: Path, title: str, synthetic: bool) -> Path:
    ax.set_title(title, loc="left", fontweight="bold")
    ax.grid(alpha=0.3)
    if synthetic:
        fig.text(0.99, 0.01, "SYNTHETIC market (demo)", ha="right", va="bottom", color="#b00", fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def equity_chart(series: Mapping[str, pd.Series], path: Path, *, synthetic: bool, title: str = "NAV in EUR") -> Path:
    plt, fig, ax = _figure()
    for key, s in series.items():
        ax.plot(s.index, s.to_numpy(), label=LABELS.get(key, key), linewidth=2.2 if key == "strategy" else 1.3)
    ax.set_ylabel("EUR")
    ax.legend(frameon=False, fontsize=9)
    return _finish(plt, fig, ax, path, title, synthetic)


def drawdown_chart(series: Mapping[str, pd.Series], path: Path, *, synthetic: bool) -> Path:
    plt, fig, ax = _figure()
    for key, s in series.items():
        dd = 100 * (s / s.cummax() - 1)
        ax.plot(dd.index, dd.to_numpy(), label=LABELS.get(key, key), linewidth=2.2 if key == "strategy" else 1.2)
    ax.set_ylabel("% below the peak")
    ax.legend(frameon=False, fontsize=9)
    return _finish(plt, fig, ax, path, "Drawdown", synthetic)
