"""The engine on real prices shipped inside packages (skfolio, arch, backtesting.py).

What the engine knows when: a real crash is a tradable move, a data problem of 2020
does not change a 2001 decision, a buy-and-hold backtest is worth what an independent
computation says to the cent, and a CSV round trip changes no metric.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data.csv_source import CsvSource, write_folder
from engine.data.validate import fatal_tickers, validate
from engine.decision import Action
from engine.indicators import compute_indicators
from engine.portfolio.ledger import Order, Portfolio, Position
from engine.step import StepContext, check_data, run
from tests.realdata import BENCH, real_config, real_market, sp500_closes, with_prices
from tests.test_units import Scripted

pytest.importorskip("skfolio")

CRASH = pd.Timestamp("2000-09-29")  # AAPL -51.8% on a profit warning: a real move


@pytest.fixture(scope="module")
def config():
    return real_config()


@pytest.fixture(scope="module")
def full(config):
    """2000-01-03 .. 2022-12-28, validated as of its last day."""
    return validate(real_market(), config, pd.Timestamp("2022-12-28"))


def test_the_shipped_data_has_the_aapl_crash():
    c = sp500_closes()["AAPL"]
    move = c.loc[CRASH] / c.loc[:CRASH].iloc[-2] - 1
    assert move == pytest.approx(-0.518, abs=0.002)


def test_the_aapl_crash_is_flagged_and_aapl_stays_in_a_2000_2022_backtest(full):
    assert "AAPL" in full.tickers and full.close["AAPL"].notna().sum() > 5_700
    flags = [i for i in full.issues if i.ticker == "AAPL" and i.kind == "jump"]
    assert [i.since for i in flags][:1] == [CRASH.date()] and "-51.8%" in flags[0].detail
    assert not flags[0].fatal_for_ticker
    for d in (CRASH, pd.Timestamp("2000-10-02"), pd.Timestamp("2001-06-01"), pd.Timestamp("2022-12-28")):
        assert "AAPL" not in fatal_tickers(full, d)


def test_a_daily_run_holding_aapl_after_the_crash_runs_and_can_sell(config):
    # The live run of 2000-10-02: its window (320 sessions) holds the crash.
    d = pd.Timestamp("2000-10-02")
    market = validate(real_market(end="2000-10-02"), config, d)
    held = Portfolio(
        starting_capital_eur=10_000.0, cash_eur=1_000.0, as_of=CRASH.date(), inception=CRASH.date(),
        positions={"AAPL": Position(ticker="AAPL", qty=10_000, cost_eur=8_000.0)}, marks_local={"AAPL": 0.391},
        pending_orders=(Order(id="s1", ticker="AAPL", side="sell", qty=10_000, decided_on=CRASH.date()),),
    )
    check_data(market, held, config, on=d)  # does not stop: "cannot run safely without AAPL" was the bug
    policy = Scripted({})
    ctx = StepContext(config=config, policy=policy, source="skfolio", synthetic=False)
    p, (res,) = run(held, pd.DatetimeIndex([d]), market, compute_indicators(market, config), ctx)
    (fill,) = res.fills
    assert fill.side == "sell" and fill.qty == 10_000 and "AAPL" not in p.positions
    assert "AAPL" in policy.briefs[0].tradable
    assert any(i["ticker"] == "AAPL" and i["kind"] == "jump" for i in res.record["brief"]["data_issues"])


def test_the_universe_on_2001_06_01_does_not_depend_on_2020_data(config):
    d = pd.Timestamp("2001-06-01")
    market = real_market()
    # Break PFE badly in 2020: months of missing bars.
    broken_days = market.index[(market.index >= "2020-03-02") & (market.index <= "2020-06-30")]
    broken = with_prices(market, "PFE", broken_days, np.nan)
    clean_v = validate(market, config, pd.Timestamp("2022-12-28"))
    broken_v = validate(broken, config, pd.Timestamp("2022-12-28"))
    assert "PFE" in fatal_tickers(broken_v, pd.Timestamp("2020-06-30"))  # the problem is seen in 2020
    assert fatal_tickers(broken_v, d) == fatal_tickers(clean_v, d) == {}
    assert broken_v.issues_on(d.date()) == clean_v.issues_on(d.date())
    # And the decisions of May-June 2001 are the same session by session.
    ctx = StepContext(config=config, policy=__import__("engine.policies", fromlist=["RulesPolicy"]).RulesPolicy(config),
                      source="skfolio", synthetic=False)
    sessions = clean_v.index[(clean_v.index >= "2001-05-01") & (clean_v.index <= d)]
    runs = [run(Portfolio.initial(10_000.0), sessions, m, compute_indicators(m, config), ctx)[1] for m in (clean_v, broken_v)]
    assert [r.record["orders"] for r in runs[0]] == [r.record["orders"] for r in runs[1]]
    assert [r.record["brief"]["data_issues"] for r in runs[0]] == [r.record["brief"]["data_issues"] for r in runs[1]]
    assert any(r.record["orders"] for r in runs[0])  # the comparison is not of empty decisions


def test_buy_and_hold_equals_an_independent_computation_to_the_cent():
    cfg = real_config(["MSFT", "JNJ"])
    market = validate(real_market(["MSFT", "JNJ"], start="2004-01-02", end="2008-12-31"), cfg,
                      pd.Timestamp("2008-12-31"))
    start = pd.Timestamp("2005-01-03")
    plan = {"2005-01-03": [Action(ticker="MSFT", action="buy", percent=15.0),
                           Action(ticker="JNJ", action="buy", percent=15.0)]}
    ctx = StepContext(config=cfg, policy=Scripted(plan), source="skfolio", synthetic=False)
    sessions = market.index[market.index >= start]
    _, results = run(Portfolio.initial(10_000.0), sessions, market, compute_indicators(market, cfg), ctx)
    buys = {f.ticker: f for r in results for f in r.fills}
    assert set(buys) == {"MSFT", "JNJ"} and all(f.date == pd.Timestamp("2005-01-04").date() for f in buys.values())
    # Independently: each fill costs qty x open x (1 + slippage) + commission, to the cent.
    # A broker rounds each amount half up to the cent.
    def cent(x: float) -> Decimal:
        return Decimal(repr(float(x))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    c = cfg.costs
    cash = Decimal("10000.00")
    for t, f in buys.items():
        o = market.open.at[pd.Timestamp(f.date), t]
        gross = cent(f.qty * o * (1 + c.slippage_bps / 1e4))
        fee = max(cent(c.commission_min_eur), cent(float(gross) * c.commission_bps / 1e4))
        assert Decimal(repr(f.cash_flow_eur)) == -(gross + fee)
        cash -= gross + fee
    cash = float(cash)
    # ... and the NAV of every later session is cash + qty x close, to the cent.
    for r in results[2:]:
        nav = cash + sum(f.qty * market.close.at[r.date, t] for t, f in buys.items())
        # Prices have 3 decimals, so a NAV often ends in a half cent: it rounds either way.
        assert abs(r.equity["nav_eur"] - nav) <= 0.005 + 1e-9


def _write_config(path: Path, tickers: list[str]) -> Path:
    lines = []
    for t in tickers:
        lines += ["[[assets]]", f'ticker = "{t}"', f'name = "{t}"', 'kind = "stock"', 'sector = "US equity"',
                  'currency = "EUR"', 'calendar = "XNYS"', ""]
    lines += ["[[benchmarks]]", 'key = "sp500"', f'ticker = "{BENCH}"', 'name = "S&P 500 index"',
              'currency = "EUR"', 'calendar = "XNYS"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


TICKERS = ["AAPL", "MSFT", "JNJ", "XOM", "KO", "WMT"]


def test_a_csv_round_trip_of_real_data_gives_the_same_metrics_as_the_in_memory_run(tmp_path):
    from engine.arms import headline_spec, open_experiment, read_manifest, run_experiment, select_arms
    from engine.backtest.evaluate import evaluate
    from engine.config import load_config
    from engine.data.calendars import previous_sessions

    cfg_file = _write_config(tmp_path / "universe.toml", TICKERS)
    cfg = load_config(cfg_file)  # the user's universe, and the default arms that fit it
    assert {a.name for a in cfg.arms.arm} >= {"rules", "equal_weight"}
    start, end = pd.Timestamp("2002-01-02"), pd.Timestamp("2003-12-31")
    first = previous_sessions({"XNYS"}, start, cfg.data.history_sessions + 1)[0]
    mem = validate(real_market(TICKERS, start=str(first.date()), end=str(end.date())), cfg, end)

    # In memory: the panel as loaded from the package, every arm through the same step.
    head = headline_spec(cfg, "rules")
    exp = open_experiment(tmp_path / "mem" / "state", cfg, select_arms(cfg, head, False), head, "csv", False, None,
                          durable=False)
    run_experiment(exp, list(mem.index[mem.index >= start]), mem, compute_indicators(mem, cfg))
    in_memory = evaluate(exp.root, {a.name: a.store for a in exp.arms}, exp.headline.name, mem, cfg, {},
                         tmp_path / "mem", charts=False, manifest=read_manifest(exp.root.root))

    # Through CSV files and the command line, as a user would.
    data = tmp_path / "mydata"
    write_folder(real_market(TICKERS), data, "EURUSD=X")
    out = tmp_path / "csv"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "backtest", "--source", "csv", "--data", str(data), "--config", str(cfg_file),
         "--start", str(start.date()), "--end", str(end.date()), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from_csv = json.loads((out / "metrics.json").read_text())
    assert from_csv["strategy"] == in_memory["strategy"]
    assert from_csv["benchmarks"] == in_memory["benchmarks"]
    assert (out / "charts" / "equity.png").stat().st_size > 1000
    assert in_memory["strategy"]["n_trades"] > 0 if "n_trades" in in_memory["strategy"] else True


def test_goog_from_backtesting_py_reads_as_a_csv_file_with_its_volume(tmp_path):
    import backtesting

    goog = Path(backtesting.__file__).parent / "test" / "GOOG.csv"
    data = tmp_path / "d"
    data.mkdir()
    (data / "GOOG.csv").write_bytes(goog.read_bytes())
    cfg = real_config(["GOOG"], benchmarks=[])
    m = CsvSource(data).load(cfg, "2005-01-03", "2012-12-31")
    m = validate(m, cfg, pd.Timestamp("2012-12-31"))
    raw = pd.read_csv(goog, index_col=0, parse_dates=True)
    d = pd.Timestamp("2008-10-01")
    assert m.close.at[d, "GOOG"] == raw.at[d, "Close"] and m.volume.at[d, "GOOG"] == raw.at[d, "Volume"]
    assert m.has_bar("GOOG", d) and fatal_tickers(m) == {}


def test_arch_sp500_with_us_dates_and_adj_close_reads_as_a_benchmark(tmp_path):
    import arch.data.sp500

    src = Path(arch.data.sp500.__file__).parent / "sp500.csv.gz"
    import gzip

    data = tmp_path / "d"
    data.mkdir()
    (data / "^GSPC.csv").write_bytes(gzip.decompress(src.read_bytes()))
    cfg = real_config(["^GSPC"], benchmarks=[])
    m = validate(CsvSource(data).load(cfg, "2008-01-02", "2008-12-31"), cfg, pd.Timestamp("2008-12-31"))
    assert m.close.at[pd.Timestamp("2008-10-13"), "^GSPC"] == pytest.approx(1003.35, abs=0.01)
    jumps = [i for i in m.issues if i.kind == "jump"]
    assert jumps == []  # 2008's largest day was +11.6%: nothing near the threshold
