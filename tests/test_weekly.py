"""The weekly report: its figures are the state's, it is idempotent, and model text is inert."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_config
from engine.errors import ConfigError
from engine.report.text import untrusted_md
from engine.report.weekly import build_report, parse_week, render, sparkline, weekly_chart, write_weekly

CONFIG = load_config()
HOSTILE = "<script>x</script> [a](javascript:b) ![i](http://e/x.png) | pipe `code` {: onclick=y}"


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    """30 sessions of the seed-42 demo, 2024-05-20 .. 2024-06-28 (ISO weeks 21 to 26)."""
    out = tmp_path_factory.mktemp("weekly")
    assert main(["demo", "--out", str(out), "--sessions", "30", "--end", "2024-06-28", "--no-site"]) == 0
    return out / "state"


@pytest.fixture
def state(demo_state, tmp_path):
    """A copy the test may change."""
    return shutil.copytree(demo_state, tmp_path / "state")


def week_rows(frame: pd.DataFrame, week: str) -> pd.DataFrame:
    monday, sunday = parse_week(week)
    day = pd.to_datetime(frame["date"]).dt.date
    return frame.loc[(day >= monday) & (day <= sunday)]


def eur(x: float, sign: bool = True) -> str:
    return f"{round(x, 2) + 0.0:+,.2f}" if sign else f"{x:,.2f}"


@pytest.mark.parametrize("week", ["2024-W21", "2024-W25", "2024-W26"])
def test_the_figures_are_those_of_the_state(state, week):
    equity = pd.read_parquet(state / "equity.parquet")
    trades = pd.read_parquet(state / "trades.parquet")
    capital = 10_000.0
    rows = week_rows(equity, week)
    before = equity.loc[pd.to_datetime(equity["date"]) < rows["date"].iloc[0]]
    base = before.iloc[-1] if len(before) else None
    nav_end = rows["nav_eur"].iloc[-1]
    nav_start = base["nav_eur"] if base is not None else capital

    r = build_report(state, CONFIG, week)
    assert r.week_pnl_eur == pytest.approx(nav_end - nav_start)
    assert r.week_return == pytest.approx(nav_end / nav_start - 1)
    assert r.total_pnl_eur == pytest.approx(nav_end - capital)
    assert r.sessions == tuple(rows["date"].dt.date)
    for b, key in zip(r.benchmarks, [x.key for x in CONFIG.benchmarks], strict=True):
        col = f"benchmark_{key}_eur"
        start = base[col] if base is not None else capital
        assert b.week_return == pytest.approx(rows[col].iloc[-1] / start - 1)
        assert b.total_return == pytest.approx(rows[col].iloc[-1] / capital - 1)
    fills = week_rows(trades, week)
    assert len(r.trades) == len(fills)
    costs = fills[["slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur"]].to_numpy().sum()
    assert r.costs_eur == pytest.approx(costs) and r.cost("tax_eur") == pytest.approx(fills["tax_eur"].sum())
    # Cash earns nothing: the positions' P&L add up to the NAV change (to the records' rounding).
    assert sum(x.pnl_eur for x in r.positions) == pytest.approx(r.week_pnl_eur, abs=0.05)
    assert [x.pnl_eur for x in r.positions] == sorted((x.pnl_eur for x in r.positions), reverse=True)

    text = (write_weekly(state, CONFIG, week)).read_text(encoding="utf-8")
    portfolio = next(line for line in text.splitlines() if line.startswith("| Portfolio |"))
    assert portfolio == (f"| Portfolio | {eur(nav_end, False)} | {eur(nav_end - nav_start)} | "
                         f"{nav_end / nav_start - 1:+.2%} | {eur(nav_end - capital)} | {nav_end / capital - 1:+.2%} |")
    spy = rows["benchmark_spy_eur"].iloc[-1]
    assert f"| Buy-and-hold SPY | {eur(spy, False)} |" in text
    assert f"{eur(costs, False)} EUR, of which" in text
    if len(fills):
        assert f"{len(fills)} fills" in text
        assert len([ln for ln in text.splitlines() if re.match(r"\| 2024-\d\d-\d\d \| [A-Z^]", ln)
                    and ("| buy |" in ln or "| sell |" in ln)]) == len(fills)
    else:
        assert "No fill this week." in text
    best, worst = r.positions[0], r.positions[-1]
    assert (f"Best: **{best.ticker}** {eur(best.pnl_eur)} EUR. "
            f"Worst: **{worst.ticker}** {eur(worst.pnl_eur)} EUR.") in text
    assert f"![NAV against buy-and-hold, {week}]({week}.png)" in text
    assert "SYNTHETIC" in text


def test_the_report_is_idempotent_and_defaults_to_the_week_of_the_last_session(state):
    path = write_weekly(state, CONFIG, None)
    assert path == state / "reports" / "2024-W26.md"
    first = path.read_bytes()
    assert write_weekly(state, CONFIG, "2024-W26").read_bytes() == first
    assert write_weekly(state, CONFIG, None).read_bytes() == first
    assert [p.name for p in (state / "reports").iterdir()] == ["2024-W26.md"]  # no temporary file left


def test_the_inception_week_starts_from_the_capital(state):
    r = build_report(state, CONFIG, "2024-W21")
    assert r.baseline_date is None and r.baseline_nav_eur == 10_000.0
    assert all(x.qty_start == 0 and x.price_move is None for x in r.positions)
    text = render(r)
    assert "the starting capital (inception 2024-05-20)" in text


@pytest.mark.parametrize(
    ("week", "message"),
    [
        ("2026-W60", "2026-W60 does not exist: 2026 has weeks W01 to W53"),
        ("2021-W53", "2021 has weeks W01 to W52"),
        ("2024-W00", "does not exist"),
        ("2024-25", "expected an ISO week such as 2026-W07"),
        ("last week", "expected an ISO week"),
        ("2023-W10", "2023-W10 has no session in"),
    ],
)
def test_a_bad_week_is_one_clear_line(demo_state, capsys, week, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        write_weekly(demo_state, CONFIG, week)
    assert main(["weekly", "--state", str(demo_state), "--week", week]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_empty_state_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="holds no session yet"):
        write_weekly(tmp_path / "state", CONFIG, None)
    # The command (what the scheduled workflow runs on a new fork) says so and succeeds.
    assert main(["weekly", "--state", str(tmp_path / "state")]) == 0
    assert "holds no session yet" in capsys.readouterr().out
    assert not (tmp_path / "state").exists()


def test_model_text_is_escaped(state, capsys):
    record_path = state / "decisions" / "2024" / "06-26.json"
    record = json.loads(record_path.read_text())
    record["answer"]["parsed"]["summary"] = HOSTILE + "\n# heading\n"
    record["answer"]["fallback"] = "refused: <img src=x onerror=alert(1)> | [click](http://evil)"
    record_path.write_text(json.dumps(record))
    assert main(["weekly", "--state", str(state), "--week", "2024-W26"]) == 0
    assert "weekly report:" in capsys.readouterr().out
    text = (state / "reports" / "2024-W26.md").read_text(encoding="utf-8")
    for raw in ("<script>", "<img", "](javascript:", "![i](", "[a]", "[click]", "`code`", "{:", "\n# heading"):
        assert raw not in text
    row = next(line for line in text.splitlines() if line.startswith("| 2024-06-26 | rules |"))
    assert row.count("|") == 6  # the five cells' pipes only
    assert "**HOLD (fallback):** refused: &lt;img src=x onerror=alert(1)&gt; &#124; &#91;click&#93;(http://evil)" in row
    assert "&lt;script&gt;x&lt;/script&gt; &#91;a&#93;(javascript:b) !&#91;i&#93;(http://e/x.png) &#124; pipe" in row


def test_weekly_chart_writes_a_png(demo_state, tmp_path):
    path = weekly_chart(demo_state, "2024-W25", tmp_path / "charts" / "2024-W25.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError):
        weekly_chart(demo_state, "2024-W60", tmp_path / "x.png")


# -- the pieces ---------------------------------------------------------------------------------


def test_untrusted_md_makes_text_inert():
    assert untrusted_md(HOSTILE) == (
        "&lt;script&gt;x&lt;/script&gt; &#91;a&#93;(javascript:b) !&#91;i&#93;(http://e/x.png) &#124; pipe "
        "&#96;code&#96; &#123;: onclick=y&#125;"
    )
    assert untrusted_md("a &amp; b") == "a &amp;amp; b"  # an entity in the text stays text
    assert untrusted_md("line 1\n\n  line 2\r\n\t3") == "line 1 line 2 3"
    assert untrusted_md("x\\|y") == "x&#92;&#124;y"  # no escaping of our own cell separator
    assert untrusted_md("# title") == "&#35; title" and untrusted_md("- item") == "&#45; item"
    assert untrusted_md("abc\u202edef\x00") == "abc def"  # bidi override and NUL
    assert untrusted_md(None) == "" and untrusted_md(42) == "42"
    assert untrusted_md("abcdefghij", max_len=5) == "abcd\u2026"
    assert untrusted_md("<<<<<<", max_len=3) == "&lt;&lt;\u2026"  # cut before escaping
    assert untrusted_md("short", max_len=10) == "short"


def test_sparkline():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
    assert sparkline([5.0, 5.0]) == "\u2584\u2584"
    assert sparkline([]) == ""
    assert sparkline([10, 0]) == "\u2588\u2581"


def test_a_week_in_progress_says_so_and_ignores_rows_after_as_of(tmp_path, monkeypatch):
    # A save interrupted between equity.parquet and portfolio.json: the rows after as_of
    # are not done yet (the next run redoes them).
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--sessions", "28", "--end", "2024-06-26", "--no-site"]) == 0
    real_replace = os.replace

    def power_cut_at_the_commit(src, dst):
        if str(dst).endswith("portfolio.json"):
            raise OSError(errno.EIO, "power cut (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", power_cut_at_the_commit)
    assert main(["demo", "--out", str(out), "--sessions", "30", "--end", "2024-06-28", "--no-site"]) == 8
    monkeypatch.setattr(os, "replace", real_replace)
    state = out / "state"
    assert json.loads((state / "portfolio.json").read_text())["as_of"] == "2024-06-26"
    r = build_report(state, CONFIG, None)
    assert r.week == "2024-W26" and r.sessions[-1].isoformat() == "2024-06-26"
    equity = pd.read_parquet(state / "equity.parquet").set_index("date")
    assert r.nav_end_eur == equity.loc["2024-06-26", "nav_eur"]
    assert "3 sessions, 2024-06-24 .. 2024-06-26 (week in progress: 3 of 5 sessions)" in render(r)
