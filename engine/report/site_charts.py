"""The site's charts (matplotlib, PNG), drawn for a phone first.

A phone shows a chart about 350 CSS pixels wide: the figures are 5.4 x 3.6 inches at
180 dpi (972 x 648 pixels, sharp on a dense screen) with 13-point type, so that the
text stays about 12 pixels high there. One message per chart, short titles, a legend
below the plot (never over the lines), dates labelled concisely, and a SYNTHETIC
watermark across the plot when the market is the demo one.

Figures are built with the object API (no pyplot state), so drawing is safe to repeat
in one process and gives the same bytes for the same data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

STRATEGY = "#3949ab"
PALETTE = {"strategy": STRATEGY, "spy": "#ef6c00", "cac40": "#2e7d32", "cash": "#b0bec5", "other": "#78909c"}
OTHERS = ["#8e24aa", "#00897b", "#c0ca33", "#6d4c41", "#d81b60", "#1e88e5", "#fdd835", "#5e35b1", "#43a047"]
STYLE = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 12,
    "legend.frameon": False,
}
SIZE = (5.4, 3.6)
DPI = 180
PNG_METADATA = {"Software": None}  # the same data gives the same bytes
P = ParamSpec("P")


def _styled(draw: Callable[P, Path]) -> Callable[P, Path]:
    """Draw under the site's style (rcParams are read when each artist is made)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Path:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _figure(nrows: int = 1, height_ratios: Sequence[float] | None = None) -> tuple[Figure, list]:
    fig = Figure(figsize=SIZE if nrows == 1 else (SIZE[0], SIZE[1] * 1.25), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)[:, 0]
    for ax in axes:
        ax.grid(alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


def _dates(ax) -> None:
    locator = AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _legend(ax, n: int, ncol: int = 3) -> None:
    """Below the plot, in a row: it never hides a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(n, ncol), handlelength=1.2,
              columnspacing=1.0)


def _save(fig: Figure, path: Path, title: str, synthetic: bool) -> Path:
    ax = fig.axes[0]
    ax.set_title(title, loc="left")
    if synthetic:
        ax.text(0.5, 0.5, "SYNTHETIC", transform=ax.transAxes, ha="center", va="center", rotation=18,
                fontsize=40, fontweight="bold", color="#c62828", alpha=0.13, zorder=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata=PNG_METADATA)
    return path


def _eur_axis(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


@_styled
def nav_chart(lines: Mapping[str, tuple[str, pd.Series]], path: Path, *, synthetic: bool,
              title: str = "NAV in EUR") -> Path:
    """One line per series, `lines` = {key: (label, series)}; the key "strategy" is drawn thick."""
    fig, (ax,) = _figure()
    for i, (key, (label, s)) in enumerate(lines.items()):
        colour = PALETTE.get(key, OTHERS[i % len(OTHERS)])
        ax.plot(s.index, s.to_numpy(dtype=float), label=label, color=colour,
                linewidth=2.4 if key == "strategy" else 1.4, zorder=3 if key == "strategy" else 2)
    _eur_axis(ax)
    _dates(ax)
    _legend(ax, len(lines))
    return _save(fig, path, title, synthetic)


@_styled
def drawdown_chart(lines: Mapping[str, tuple[str, pd.Series]], path: Path, *, synthetic: bool,
                   title: str = "Drawdown: % below the running peak") -> Path:
    fig, (ax,) = _figure()
    for i, (key, (label, s)) in enumerate(lines.items()):
        nav = s.astype(float)
        dd = 100 * (nav / nav.cummax() - 1)
        colour = PALETTE.get(key, OTHERS[i % len(OTHERS)])
        if key == "strategy":
            ax.fill_between(dd.index, dd.to_numpy(), 0, color=colour, alpha=0.18, linewidth=0)
        ax.plot(dd.index, dd.to_numpy(), label=label, color=colour, linewidth=2.2 if key == "strategy" else 1.3)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    _dates(ax)
    _legend(ax, len(lines))
    return _save(fig, path, title, synthetic)


@_styled
def allocation_bars(weights: Mapping[str, float], path: Path, *, synthetic: bool,
                    title: str = "Allocation now, % of NAV") -> Path:
    """Horizontal bars, largest at the top; the key "Cash" is grey."""
    items = sorted(weights.items(), key=lambda kv: kv[1])
    fig, (ax,) = _figure()
    labels = [k for k, _ in items]
    values = [100 * v for _, v in items]
    colours = [PALETTE["cash"] if k == "Cash" else STRATEGY for k in labels]
    bars = ax.barh(labels, values, color=colours)
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_width() + 0.4, bar.get_y() + bar.get_height() / 2, f"{v:.1f}%", va="center", fontsize=11)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlim(0, max(values + [1.0]) * 1.18)
    ax.grid(axis="y", alpha=0)
    if len(labels) > 12:
        ax.tick_params(axis="y", labelsize=9)
    return _save(fig, path, title, synthetic)


@_styled
def allocation_area(weights: pd.DataFrame, path: Path, *, synthetic: bool,
                    title: str = "Allocation over time, % of NAV") -> Path:
    """A stacked area of `weights` (dates x buckets, rows summing to 1), first column at the bottom."""
    fig, (ax,) = _figure()
    colours = []
    k = 0
    for col in weights.columns:
        if col == "Cash":
            colours.append(PALETTE["cash"])
        elif col == "Other":
            colours.append(PALETTE["other"])
        else:
            colours.append(([STRATEGY] + OTHERS)[k % (len(OTHERS) + 1)])
            k += 1
    ax.stackplot(weights.index, (100 * weights.to_numpy(dtype=float)).T, labels=list(weights.columns),
                 colors=colours, linewidth=0)
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    _dates(ax)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=11, handlelength=1.0,
              columnspacing=0.8)
    return _save(fig, path, title, synthetic)


@_styled
def cvar_chart(cvar: pd.Series, budget: pd.Series, path: Path, *, synthetic: bool, label: str = "CVaR 95") -> Path:
    """The portfolio's 1-day CVaR against its budget (which tightens with the drawdown)."""
    fig, (ax,) = _figure()
    ax.plot(cvar.index, 100 * cvar.to_numpy(dtype=float), color=STRATEGY, linewidth=2.2,
            label="The holdings")
    if len(budget):
        ax.step(budget.index, 100 * budget.to_numpy(dtype=float), where="post", color="#c62828", linewidth=1.5,
                linestyle="--", label="Budget x m(drawdown)")
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    ax.set_ylim(bottom=0)
    _dates(ax)
    _legend(ax, 2, ncol=1)
    return _save(fig, path, f"{label}, 1 day, % of NAV", synthetic)


@_styled
def guard_chart(drawdown: pd.Series, multiplier: pd.Series, limit: float, path: Path, *, synthetic: bool) -> Path:
    """Two panels: the drawdown the guardrails see, and the multiplier m(dd) it gives."""
    fig, (top, bottom) = _figure(2, height_ratios=(3, 2))
    top.fill_between(drawdown.index, 100 * drawdown.to_numpy(dtype=float), 0, color=STRATEGY, alpha=0.2, linewidth=0)
    top.plot(drawdown.index, 100 * drawdown.to_numpy(dtype=float), color=STRATEGY, linewidth=2)
    top.axhline(-100 * limit, color="#c62828", linestyle="--", linewidth=1.3)
    top.text(0.01, -100 * limit, f"limit -{limit:.0%}", transform=top.get_yaxis_transform(), color="#c62828",
             va="bottom", fontsize=11)
    top.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    top.set_ylim(min(-100 * limit * 1.15, float(np.nanmin(100 * drawdown.to_numpy(dtype=float), initial=0)) * 1.1), 1)
    bottom.plot(multiplier.index, multiplier.to_numpy(dtype=float), color="#ef6c00", linewidth=2)
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("m(dd)")
    _dates(bottom)
    return _save(fig, path, "Drawdown, and m(dd)", synthetic)


@_styled
def line_chart(s: pd.Series, path: Path, *, synthetic: bool, title: str, colour: str = STRATEGY,
               zero_line: bool = True) -> Path:
    fig, (ax,) = _figure()
    ax.plot(s.index, s.to_numpy(dtype=float), color=colour, linewidth=2)
    if zero_line:
        ax.axhline(0, color="#555", linewidth=0.8)
    _dates(ax)
    return _save(fig, path, title, synthetic)


@_styled
def multiplier_curve(limit: float, floor: float, power: float, path: Path) -> Path:
    """m(dd) = max(floor, 1 - (dd / limit) ** power) over drawdowns from 0 to 1.5 x limit."""
    from engine.risk.drawdown import drawdown_multiplier

    dd = np.linspace(0, 1.5 * limit, 301)
    m = np.asarray(drawdown_multiplier(dd, limit, floor, power), dtype=float)
    fig, (ax,) = _figure()
    ax.plot(100 * dd, m, color="#ef6c00", linewidth=2.4)
    ax.axvline(100 * limit, color="#c62828", linestyle="--", linewidth=1.2)
    ax.text(100 * limit, 0.98, f" limit {limit:.0%}", color="#c62828", va="top")
    ax.set_xlabel("Drawdown from the peak, %")
    ax.set_ylabel("m(dd)")
    ax.set_ylim(0, 1.05)
    return _save(fig, path, "The drawdown multiplier m(dd)", synthetic=False)


@_styled
def prospect_curve(alpha: float, beta: float, loss_aversion: float, path: Path) -> Path:
    """The value function v(x) of prospect theory for returns from -20% to +20%."""
    from engine.risk.prospect import prospect_value

    x = np.linspace(-0.2, 0.2, 401)
    v = np.asarray(prospect_value(x, alpha, beta, loss_aversion), dtype=float)
    fig, (ax,) = _figure()
    ax.plot(100 * x, v, color=STRATEGY, linewidth=2.4, label="Prospect value v(x)")
    ax.plot(100 * x, x, color="#9e9e9e", linewidth=1.2, linestyle="--", label="Return x itself")
    ax.axhline(0, color="#555", linewidth=0.8)
    ax.axvline(0, color="#555", linewidth=0.8)
    ax.set_xlabel("Return x, %")
    ax.legend(loc="upper left", fontsize=11)
    return _save(fig, path, f"A loss weighs {loss_aversion:g}x an equal gain", synthetic=False)
