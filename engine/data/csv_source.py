"""Your own daily bars from CSV files, as a :class:`MarketData` (``--source csv --data PATH``).

``PATH`` is either

* a **folder** with one file per instrument, named after its ticker (``SPY.csv``,
  ``MC.PA.csv``), with the columns ``date, open, high, low, close, volume`` and,
  optionally, ``dividends`` (cash per share on the ex-date, local currency) and
  ``splits`` (new shares per old share on the split date: ``2``, ``1.1`` or ``11:10``);
  plus, when the universe has a USD asset, ``EURUSD=X.csv`` (the ``fx.eurusd`` name of
  the configuration; ``EURUSD.csv`` also works) with ``date, close`` in USD per 1 EUR;
* or **one file** in long form with a ``ticker`` column as well (the FX rows under the
  ``fx.eurusd`` ticker).

Column names are case-insensitive; ``date`` is ``YYYY-MM-DD``; ``close`` is required,
``open``/``high``/``low`` default to the close when the column is absent (a close-only
series), ``volume`` may be absent. An empty price cell is a missing bar (validation
carries it forward and it does not trade). The universe, currencies and calendars come
from the configuration (``[[assets]]``, ``[[benchmarks]]``); a file for a ticker not in it
is ignored, a ticker without a file is missing.

Price convention: ``data.csv_price_convention`` in the configuration says whether past
prices already contain later splits (``split_adjusted``, the default, as most exports
give them) or are as traded (``unadjusted``: the ``splits`` column is then booked on the
quantities).

A malformed file stops the load with one line naming the file, line and column, before
anything is used: nothing is half-loaded.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import Config
from engine.data import calendars
from engine.data.market import DataIssue, MarketData, PriceConvention
from engine.errors import DataUnavailable

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_ALIASES = {
    "date": "date", "datetime": "date", "ticker": "ticker", "symbol": "ticker",
    "open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
    "dividends": "dividends", "dividend": "dividends", "splits": "splits", "split": "splits",
    "stock splits": "splits", "rate": "close", "adj close": None, "adj_close": None,
}


@dataclass
class _Table:
    """One instrument's rows as read (dates may repeat: validation judges duplicates)."""

    dates: list[pd.Timestamp] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in (*PRICE_COLUMNS, "dividends", "splits")})


class CsvSource:
    name = "csv"
    synthetic = False

    def __init__(self, path: Path, price_convention: PriceConvention = "split_adjusted"):
        self.path = Path(path)
        self.price_convention = price_convention

    def __repr__(self) -> str:
        return f"CsvSource({str(self.path)!r})"

    def load(self, config: Config, start: object, end: object) -> MarketData:
        """Daily bars of the configured instruments from `start` to `end` (not yet validated)."""
        start_ts, end_ts = calendars.to_session(start), calendars.to_session(end)
        tables = read_tables(self.path, config)
        return to_market(tables, config, start_ts, end_ts, self.price_convention)


def read_tables(path: Path, config: Config) -> dict[str, _Table]:
    """Every instrument's table (and the FX one) read in full, or one clear error."""
    fx_name = config.fx.eurusd
    wanted = set(config.instruments) | {fx_name}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
        if not files:
            raise DataUnavailable(f"{path}: no .csv file in this folder")
        tables: dict[str, _Table] = {}
        for f in files:
            ticker = fx_name if f.stem.upper() in (fx_name.upper(), "EURUSD") else f.stem
            if ticker in wanted:
                tables[ticker] = next(iter(_read(f, ticker_column=False, fixed=ticker).values()))
        return tables
    if path.is_file():
        return {t: tab for t, tab in _read(path, ticker_column=True).items() if t in wanted}
    raise DataUnavailable(f"{path}: no such file or folder (--data takes a folder of <TICKER>.csv files or one CSV)")


def _read(path: Path, *, ticker_column: bool, fixed: str | None = None) -> dict[str, _Table]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataUnavailable(f"{path}: cannot be read ({exc})") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise DataUnavailable(f"{path}: the file is empty (a header line is expected: date,open,high,low,close,volume)")
    columns = _columns(path, header, ticker_column)
    if fixed is not None:
        fast = _column_table(text, header, columns)
        if fast is not None:
            return {fixed: fast}
    body = list(rows)
    tables: dict[str, _Table] = {}
    n_rows = 0
    for line_no, row in enumerate(body, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataUnavailable(f"{path} line {line_no}: {len(row)} field(s), the header has {len(header)}")
        cells = {name: row[i].strip() for i, name in columns.items()}
        ticker = fixed if fixed is not None else cells.get("ticker", "")
        if not ticker:
            raise DataUnavailable(f"{path} line {line_no}, column 'ticker': empty")
        table = tables.setdefault(ticker, _Table())
        table.dates.append(_date(path, line_no, cells["date"]))
        for name in (*PRICE_COLUMNS, "dividends", "splits"):
            table.values[name].append(_number(path, line_no, name, cells, header, columns))
        n_rows += 1
    if n_rows == 0:
        raise DataUnavailable(f"{path}: no data line after the header")
    return tables


def _column_table(text: str, header: list[str], columns: dict[int, str]) -> _Table | None:
    """One instrument's file read column by column by Arrow's CSV reader, when every line
    is plain: as many fields as the header (no blank line), a date, and a finite number in
    every numeric cell that is allowed there (no empty cell, no ``11:10``). Anything else
    is None, and the line by line reader takes the file, with its messages; both give the
    same table (Arrow parses a decimal to the nearest double, as ``float`` does)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(len(header))]
    by_name = {name: f"c{i}" for i, name in columns.items()}
    types = {c: (pa.string() if name == "date" else pa.float64()) for name, c in by_name.items()}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):  # a cell that is no number, a ragged line...
        return None
    n = table.num_rows
    if n == 0:
        return None
    dates = [_parse_date(cell.strip()) for cell in table.column(by_name["date"]).to_pylist()]
    if any(d is None or d is _TIME_OF_DAY for d in dates):
        return None
    values: dict[str, list[float]] = {}
    for name in ("close", "open", "high", "low", "volume", "dividends", "splits"):  # the close stands in for o/h/l
        c = by_name.get(name)
        if c is None:
            default = {"dividends": 0.0, "splits": 1.0, "volume": math.nan}.get(name)
            values[name] = [default] * n if default is not None else list(values["close"])
            continue
        col = table.column(c)
        if col.null_count:  # an empty cell, NaN, N/A...
            return None
        column = col.to_numpy()
        if not np.isfinite(column).all() or (name == "splits" and (column <= 0).any()) \
                or (name in ("dividends", "volume") and (column < 0).any()):
            return None
        values[name] = column.tolist()
    return _Table(dates=dates, values={name: values[name] for name in (*PRICE_COLUMNS, "dividends", "splits")})


def _columns(path: Path, header: list[str], ticker_column: bool) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, raw in enumerate(header):
        key = raw.strip().lower()
        if key in _ALIASES:
            if _ALIASES[key] is not None:
                out[i] = _ALIASES[key]
        elif key == "" and i == 0:
            out[i] = "date"  # pandas' to_csv writes the index without a name
        else:
            raise DataUnavailable(
                f"{path} line 1, column {i + 1}: unknown column {raw!r} "
                "(expected date, open, high, low, close, volume, dividends, splits"
                + (", ticker)" if ticker_column else ")")
            )
    names = list(out.values())
    for name in ("date", "close", *(("ticker",) if ticker_column else ())):
        if name not in names:
            raise DataUnavailable(f"{path} line 1: no {name!r} column (the header is {','.join(header)})")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DataUnavailable(f"{path} line 1: column {sorted(dup)[0]!r} appears twice")
    return out


def _date(path: Path, line_no: int, cell: str) -> pd.Timestamp:
    ts = _parse_date(cell)
    if ts is None:
        raise DataUnavailable(f"{path} line {line_no}, column 'date': {cell!r} is not a date (YYYY-MM-DD)")
    if ts is _TIME_OF_DAY:
        raise DataUnavailable(
            f"{path} line {line_no}, column 'date': {cell!r} has a time of day: daily bars are expected"
        )
    return ts


_TIME_OF_DAY = object()


@lru_cache(maxsize=65_536)  # every file of a folder repeats the same dates
def _parse_date(cell: str):
    try:
        ts = pd.Timestamp(cell)
    except (ValueError, TypeError):
        ts = None
    if ts is None or ts is pd.NaT or len(cell) < 8:
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    if ts != ts.normalize():
        return _TIME_OF_DAY
    return ts.as_unit("ns")


def _number(path: Path, line_no: int, name: str, cells: dict[str, str], header: list[str], columns: dict[int, str]) -> float:
    cell = cells.get(name)
    if cell and (name != "splits" or ":" not in cell):  # the common case: a plain number
        try:
            value = float(cell)
        except ValueError:
            pass
        else:
            if math.isfinite(value) and not ((name == "splits" and value <= 0)
                                             or (name in ("dividends", "volume") and value < 0)):
                return value
    default = {"dividends": 0.0, "splits": 1.0, "volume": math.nan}.get(name)
    if name not in cells:
        return cells_close(path, line_no, cells) if default is None else default
    cell = cells[name]
    if cell == "":
        return math.nan if default is None or name == "volume" else default
    if name == "splits" and ":" in cell:
        a, _, b = cell.partition(":")
        try:
            value = float(a) / float(b)
        except (ValueError, ZeroDivisionError):
            value = math.nan
    else:
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
    if not math.isfinite(value) or (name in ("splits",) and value <= 0) or (name in ("dividends", "volume") and value < 0):
        col = next(i for i, n in columns.items() if n == name) + 1
        raise DataUnavailable(
            f"{path} line {line_no}, column {col} ({header[col - 1].strip()!r}): {cell!r} is not "
            + ("a split ratio (2, 1.1 or 11:10)" if name == "splits" else "a valid number")
        )
    return value


def cells_close(path: Path, line_no: int, cells: dict[str, str]) -> float:
    """Open/high/low absent from the file: the close stands for them."""
    cell = cells["close"]
    try:
        return float(cell) if cell != "" else math.nan
    except ValueError:
        return math.nan  # the close itself is reported by its own column


def to_market(
    tables: dict[str, _Table], config: Config, start: pd.Timestamp, end: pd.Timestamp, convention: PriceConvention
) -> MarketData:
    """The tables as a panel on the union of the instruments' sessions from `start` to `end`."""
    instruments = list(config.instruments)
    codes = {inst.calendar for inst in config.instruments.values()}
    index = calendars.union_sessions(codes, start, end)
    fx_name = config.fx.eurusd
    blocks: dict[str, pd.DataFrame] = {}  # ticker -> its file's bars from start to end
    issues: list[DataIssue] = []
    for t in instruments:
        tab = tables.get(t)
        if tab is None:
            continue
        dates = pd.DatetimeIndex(tab.dates)
        keep = (dates >= start) & (dates <= end)
        block = pd.DataFrame({k: np.asarray(v, dtype=float)[keep] for k, v in tab.values.items()}, index=dates[keep])
        dup = block.index.duplicated(keep=False)
        if dup.any():
            conflicting = [d for d, g in block[dup].groupby(level=0) if len(g.drop_duplicates()) > 1]
            if conflicting:
                issues.append(DataIssue(
                    t, "duplicate",
                    f"{conflicting[0].date()} appears twice with different values in the CSV data "
                    f"({len(conflicting)} such date(s)): which bar is right is unknown",
                    since=conflicting[0].date(),
                ))
            block = block[~block.index.duplicated(keep="first")]
        blocks[t] = block
    for block in blocks.values():  # the sessions of the calendars, and every date a file has
        index = index.union(block.index)
    index = index.as_unit("ns")
    blocks = {t: block.reindex(index) for t, block in blocks.items()}  # each file on the panel's dates, once

    def frame(name: str, fill: float) -> pd.DataFrame:
        if not blocks:
            return pd.DataFrame(fill, index=index, columns=instruments)
        wide = pd.DataFrame({t: block[name].to_numpy() for t, block in blocks.items()}, index=index)
        wide = wide.reindex(columns=instruments)
        return wide if fill != fill else wide.fillna(fill)

    fx = _fx_series(tables, fx_name, config, index, start, end)
    return MarketData(
        open=frame("open", math.nan), high=frame("high", math.nan), low=frame("low", math.nan),
        close=frame("close", math.nan), volume=frame("volume", math.nan),
        dividends=frame("dividends", 0.0), splits=frame("splits", 1.0),
        fx_eurusd=fx, source="csv", synthetic=False, price_convention=convention, issues=tuple(issues),
    )


def _fx_series(tables: dict[str, _Table], fx_name: str, config: Config, index: pd.DatetimeIndex,
               start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    needs_fx = any(i.currency == "USD" for i in config.instruments.values())
    tab = tables.get(fx_name)
    if tab is None:
        if needs_fx:
            raise DataUnavailable(
                f"no {fx_name} series: the universe has USD assets; add {fx_name}.csv (date, close in USD per 1 EUR)"
            )
        return pd.Series(1.0, index=index, name=fx_name, dtype=float)  # unused: every asset is in EUR
    dates = pd.DatetimeIndex(tab.dates)
    s = pd.Series(np.asarray(tab.values["close"], dtype=float), index=dates)
    s = s[(dates >= start) & (dates <= end)]
    s = s[~s.index.duplicated(keep="first")]
    return s.reindex(index).rename(fx_name)


def iter_csv_rows(market: MarketData, ticker: str) -> Iterator[list[str]]:
    """One instrument of a panel as the rows of its CSV file (header first)."""
    yield ["date", "open", "high", "low", "close", "volume", "dividends", "splits"]
    for d in market.index:
        c = market.close.at[d, ticker]
        if c != c:
            continue
        values = (float(getattr(market, f).at[d, ticker]) for f in
                  ("open", "high", "low", "close", "volume", "dividends", "splits"))
        yield [d.strftime("%Y-%m-%d"), *("" if v != v else repr(v) for v in values)]


def write_folder(market: MarketData, folder: Path, fx_name: str) -> None:
    """Write a panel as a folder of CSV files (one per ticker, plus the FX series)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in market.tickers:
        with (folder / f"{t}.csv").open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(iter_csv_rows(market, t))
    with (folder / f"{fx_name}.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "close"])
        for d, v in market.fx_eurusd.dropna().items():
            w.writerow([d.strftime("%Y-%m-%d"), repr(float(v))])
