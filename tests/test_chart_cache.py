"""engine/report/chart_cache.py: drawn charts kept between builds, keyed by their inputs."""

from __future__ import annotations

import pandas as pd

from engine.report import site_charts
from engine.report.chart_cache import ChartCache, chart_key
from engine.report.pages import draw_charts
from engine.report.site import load_site_data


def test_the_key_changes_with_any_input_and_only_then():
    s = pd.Series([1.0, 2.0, 3.0], index=pd.bdate_range("2024-01-01", periods=3))
    frame = pd.DataFrame({"a": [0.5, 0.5], "Cash": [0.5, 0.5]})
    key = chart_key(site_charts.__file__, "nav_chart", [{"strategy": ("Strategy", s)}, {"synthetic": True}, frame])
    same = chart_key(site_charts.__file__, "nav_chart", [{"strategy": ("Strategy", s.copy())}, {"synthetic": True},
                                                         frame.copy()])
    assert key == same
    moved = s.copy()
    moved.iloc[-1] = 3.0000001
    for other in ([{"strategy": ("Strategy", moved)}, {"synthetic": True}, frame],
                  [{"strategy": ("Strategy", s)}, {"synthetic": False}, frame],
                  [{"strategy": ("SPY", s)}, {"synthetic": True}, frame],
                  [{"strategy": ("Strategy", s)}, {"synthetic": True}, frame.rename(columns={"a": "b"})]):
        assert chart_key(site_charts.__file__, "nav_chart", other) != key
    assert chart_key(site_charts.__file__, "drawdown_chart", [{"strategy": ("Strategy", s)}]) != \
        chart_key(site_charts.__file__, "nav_chart", [{"strategy": ("Strategy", s)}])


def test_a_rebuild_copies_every_chart_from_the_cache_byte_for_byte(tmp_path):
    from engine.config import load_config
    from tests import site_states

    state = site_states.demo_state(tmp_path / "demo", sessions=30)
    data = load_site_data(state, load_config())
    cold = ChartCache(tmp_path / "cache")
    first = draw_charts(data, tmp_path / "a", cold)
    assert cold.hits == 0 and first
    warm = ChartCache(tmp_path / "cache")
    assert draw_charts(data, tmp_path / "b", warm) == first
    assert warm.hits == 2 * len(first) and warm.misses == 0  # the light and the dark variant of each
    for name in first:
        for f in (name, site_charts.dark_path(tmp_path / "a" / name).name):
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    # Without a cache folder nothing is kept, and a missing entry is drawn again.
    none = ChartCache(None)
    draw_charts(data, tmp_path / "c", none)
    assert none.hits == 0
    for p in (tmp_path / "cache").rglob("*.png"):
        p.unlink()
    again = ChartCache(tmp_path / "cache")
    draw_charts(data, tmp_path / "d", again)
    assert again.hits == 0 and (tmp_path / "d" / first[0]).read_bytes() == (tmp_path / "a" / first[0]).read_bytes()


def test_the_cache_keeps_only_the_charts_of_the_last_build(tmp_path):
    """A workflow that saves the cache after every build must not grow it forever: the
    charts of a site one session older are not asked for again, and are removed."""
    from engine.config import load_config
    from tests import site_states

    folder = tmp_path / "cache"
    older = load_site_data(site_states.demo_state(tmp_path / "older", sessions=20), load_config())
    newer = load_site_data(site_states.demo_state(tmp_path / "newer", sessions=25), load_config())
    first = ChartCache(folder)
    draw_charts(older, tmp_path / "a", first)
    assert first.prune() == 0  # everything was just used
    kept = {p.name for p in folder.rglob("*.png")}
    second = ChartCache(folder)
    draw_charts(newer, tmp_path / "b", second)
    removed = second.prune()
    now = {p.name for p in folder.rglob("*.png")}
    assert removed == len(kept - now) > 0  # the older site's charts went
    assert now == {f"{k}.png" for k in second.used}
    assert len(now) <= 2 * len(draw_charts(newer, tmp_path / "c", ChartCache(None)))
