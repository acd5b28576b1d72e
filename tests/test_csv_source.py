"""--source csv: the formats it reads, and one clear line (file, line, column) for a
malformed file, with nothing loaded and nothing written."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.data import csv_source
from engine.data.csv_source import CsvSource
from engine.data.validate import fatal_tickers, validate
from engine.errors import DataUnavailable

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config().without_arms().with_overrides(
    assets=[{"ticker": "AAA", "name": "A", "kind": "stock", "sector": "x", "currency": "EUR", "calendar": "XPAR"},
            {"ticker": "BBB", "name": "B", "kind": "etf", "sector": "x", "currency": "USD", "calendar": "XNYS"}],
    benchmarks=[],
)
GOOD_A = "date,open,high,low,close,volume\n2024-06-03,10,11,9,10.5,100\n2024-06-04,10.5,11,10,10.8,120\n"
GOOD_B = "Date,Open,High,Low,Close,Volume,Dividends,Stock Splits\n2024-06-03,50,51,49,50.5,1000,0,\n2024-06-04,50.5,52,50,51,900,0.25,2:1\n"
GOOD_FX = "date,close\n2024-06-03,1.0850\n2024-06-04,1.0870\n"


def _load(path: Path):
    return CsvSource(path).load(CFG, "2024-06-03", "2024-06-04")


def test_a_folder_reads_every_ticker_with_dividends_splits_and_fx(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "AAA.csv").write_text(GOOD_A)
    (d / "BBB.csv").write_text(GOOD_B)
    (d / "EURUSD=X.csv").write_text(GOOD_FX)
    (d / "ZZZ.csv").write_text(GOOD_A)  # not in the universe: ignored
    m = _load(d)
    assert m.tickers == ["AAA", "BBB"] and m.price_convention == "split_adjusted"
    day = pd.Timestamp("2024-06-04")
    assert m.close.at[day, "AAA"] == 10.8 and m.volume.at[day, "BBB"] == 900
    assert m.dividends.at[day, "BBB"] == 0.25 and m.splits.at[day, "BBB"] == 2.0
    assert m.fx_eurusd.at[day] == 1.087
    out = validate(m, CFG, day)
    assert fatal_tickers(out) == {}


def test_one_long_file_with_a_ticker_column(tmp_path):
    f = tmp_path / "all.csv"
    f.write_text("ticker,date,close\nAAA,2024-06-03,10\nAAA,2024-06-04,11\nBBB,2024-06-03,50\n"
                 "BBB,2024-06-04,51\nEURUSD=X,2024-06-03,1.08\nEURUSD=X,2024-06-04,1.09\n")
    m = _load(f)
    day = pd.Timestamp("2024-06-04")
    assert m.close.at[day, "BBB"] == 51 and m.open.at[day, "BBB"] == 51  # close-only: open = close
    assert m.fx_eurusd.at[day] == 1.09


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("AAA", "date,open,high,low,close,volume\n2024-06-03,10,11,9,abc,100\n",
         r"AAA.csv line 2, column 5 \('close'\): 'abc' is not a valid number"),
        ("AAA", "date,open,high,low,close,volume\n2024-06-03,10,11,9,10,100\n2024-06-04,10,11\n",
         r"AAA.csv line 3: 3 field\(s\), the header has 6"),
        ("AAA", "date,open,high,low,close,volume\n06/31/2024,10,11,9,10,100\n",
         r"AAA.csv line 2, column 'date': '06/31/2024' is not a date"),
        ("AAA", "date,open,high,low,volume\n2024-06-03,10,11,9,100\n", r"AAA.csv line 1: no 'close' column"),
        ("AAA", "date,open,high,low,close,colour\n", r"AAA.csv line 1, column 6: unknown column 'colour'"),
        ("AAA", "date,close,splits\n2024-06-03,10,0\n", r"AAA.csv line 2, column 3 \('splits'\): '0' is not a split"),
        ("AAA", "date,close,volume\n2024-06-03 15:30,10,5\n", r"line 2, column 'date': .* has a time of day"),
        ("AAA", "", r"AAA.csv: the file is empty"),
        ("AAA", "date,close\n", r"AAA.csv: no data line after the header"),
    ],
)
def test_a_malformed_file_is_one_line_naming_file_line_and_column(tmp_path, name, text, message):
    d = tmp_path / "d"
    d.mkdir()
    (d / f"{name}.csv").write_text(text)
    (d / "BBB.csv").write_text(GOOD_B)
    (d / "EURUSD=X.csv").write_text(GOOD_FX)
    with pytest.raises(DataUnavailable, match=message):
        _load(d)


def test_usd_assets_without_an_fx_file_are_an_error(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "AAA.csv").write_text(GOOD_A)
    (d / "BBB.csv").write_text(GOOD_B)
    with pytest.raises(DataUnavailable, match="no EURUSD=X series: the universe has USD assets"):
        _load(d)


def test_a_conflicting_duplicate_date_is_fatal_for_the_ticker(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "AAA.csv").write_text(GOOD_A + "2024-06-04,10.5,11,10,12.0,120\n")  # 2024-06-04 twice, two closes
    (d / "BBB.csv").write_text(GOOD_B + "2024-06-04,50.5,52,50,51,900,0.25,2:1\n")  # the same row twice: harmless
    (d / "EURUSD=X.csv").write_text(GOOD_FX)
    m = validate(_load(d), CFG, pd.Timestamp("2024-06-04"))
    assert fatal_tickers(m)["AAA"].kind == "duplicate" and "BBB" not in fatal_tickers(m)


def test_a_malformed_file_stops_the_command_with_nothing_written(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "SPY.csv").write_text("date,open,high,low,close,volume\n2024-06-03,1,1,1,x,1\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "backtest", "--source", "csv", "--data", str(d),
         "--start", "2024-06-03", "--end", "2024-06-28", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "SPY.csv line 2, column 5 ('close'): 'x' is not a valid number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "state" / "portfolio.json").exists() and not (out / "metrics.json").exists()


def test_source_csv_needs_data(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "backtest", "--source", "csv", "--start", "2024-06-03",
         "--end", "2024-06-28", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2 and "--source csv needs --data PATH" in proc.stderr


# A plain file (every cell a finite number) is read column by column; any other file line
# by line. A blank line sends a file to the line-by-line reader without changing what it
# holds, so the two readers can be compared on the same bytes.
_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr), st.just(""), st.just("11:10"),
                  st.just(" 7.5 "), st.just("x"), st.integers(-5, 10**9).map(str))


_plain = st.one_of(st.floats(min_value=0.0, max_value=1e9).map(repr), st.integers(1, 10**6).map(str))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), plain=st.booleans(),
       header=st.sampled_from(["date,open,high,low,close,volume,dividends,splits", "Date,Close,Volume",
                               "date,close,open,high,low,volume,Dividends,Stock Splits"]))
def test_the_column_reader_and_the_line_reader_agree_on_every_file(tmp_path_factory, data, plain, header):
    n = header.count(",")
    rows = data.draw(st.lists(st.tuples(st.dates(dt.date(2000, 1, 3), dt.date(2030, 12, 31)),
                                        st.lists(_plain if plain else _cell, min_size=n, max_size=n)),
                              min_size=1, max_size=12))
    lines = [f"{d.isoformat()},{','.join(cells)}" for d, cells in rows]
    if plain:  # a split of 0 is no split ratio: plain files have none
        lines = [ln if "splits" not in header.lower() else ln.rsplit(",", 1)[0] + ",1.0" for ln in lines]
    text = header + "\n" + "".join(ln + "\n" for ln in lines)
    folder = tmp_path_factory.mktemp("csv")
    fast, careful = folder / "fast.csv", folder / "careful.csv"
    fast.write_text(text)
    careful.write_text(text + "\n")  # the blank line: line by line

    def read(path):
        try:
            table = csv_source._read(path, ticker_column=False, fixed="AAA")["AAA"]
        except DataUnavailable as exc:
            return str(exc).replace(str(path), "FILE")
        return table.dates, {k: [repr(x) for x in v] for k, v in table.values.items()}  # nan == nan

    assert read(fast) == read(careful)
    hdr = header.split(",")
    if plain:  # and the column reader did read it
        assert csv_source._column_table(text, hdr, csv_source._columns(fast, hdr, False)) is not None
    assert csv_source._column_table(text + "\n", hdr, csv_source._columns(fast, hdr, False)) is None  # the line reader's


def test_the_exported_demo_panel_takes_the_column_reader(tmp_path):
    """The panel benchmarks/peers.py exports: every file plain, each read the same both ways."""
    from engine.data.demo import DemoSource

    cfg = load_config()
    market = DemoSource().load(cfg, "2024-01-02", "2024-12-31")
    csv_source.write_folder(market, tmp_path, cfg.fx.eurusd)
    for path in sorted(tmp_path.glob("*.csv")):
        header = next(csv.reader(path.read_text().splitlines()))
        fast = csv_source._column_table(path.read_text(), header, csv_source._columns(path, header, False))
        assert fast is not None, path.name
        path.write_text(path.read_text() + "\n")
        slow = csv_source._read(path, ticker_column=False, fixed="T")["T"]
        assert (fast.dates, fast.values.keys()) == (slow.dates, slow.values.keys())
        for k in fast.values:
            np.testing.assert_array_equal(fast.values[k], slow.values[k])


def test_the_column_reader_rounds_every_decimal_as_the_line_reader_does(tmp_path):
    """Long, tiny and huge decimals: Arrow's parser gives the double `float` gives, bit for bit."""
    cells = ["0.1000000000000000055511151231257827", "208.63206841623546", "1.7976931348623157e308",
             "2.2250738585072014e-308", "4.9e-324", "9007199254740993", "123456789012345678901234567890.5",
             "0.30000000000000004", "1e-7", "33.333333333333333333333333333333333"]
    lines = [f"2024-01-{i + 2:02d},{c}" for i, c in enumerate(cells)]
    text = "date,close\n" + "\n".join(lines) + "\n"
    fast = csv_source._column_table(text, ["date", "close"], {0: "date", 1: "close"})
    assert fast is not None
    (tmp_path / "T.csv").write_text(text + "\n")  # the blank line: the line reader
    careful = csv_source._read(tmp_path / "T.csv", ticker_column=False, fixed="T")["T"]
    assert fast.dates == careful.dates
    assert [x.hex() for x in fast.values["close"]] == [float(c).hex() for c in cells] \
        == [x.hex() for x in careful.values["close"]]
