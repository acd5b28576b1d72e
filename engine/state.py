"""The state/ folder: the audit trail, committed to git and read as diffs.

::

    state/portfolio.json              cash, positions, pending orders, as_of, schema_version
    state/equity.parquet              one row per session
    state/trades.parquet              every fill, dividend and split
    state/decisions/YYYY/MM-DD.json   what the policy saw and answered, and what came of it
    state/decisions/prompts/<sha256>.txt  each system prompt once (engine.records)
    state/arms/<arm>/...              the same files for each arm of an experiment

**Atomic files.** Every file is written to a temporary file in the same folder, flushed
to disk, then renamed over the old one, so a crash leaves either the old file or the new
one, never half of one.

**One commit point.** ``portfolio.json`` is written last and names the session that is
done (``as_of``): it is the manifest of the folder. A save first writes a journal
(``.saving.json``: the sessions being written), then the decision records, trades and
equity, then ``portfolio.json``, then removes the journal. Readers use only what
``as_of`` names: rows and records after it belong to a save that did not finish (the
journal says so), are invisible to every reader and the site, and are replaced when the
next run redoes those sessions. Rows after ``as_of`` *without* a journal mean ``as_of`` was
moved back: the state is corrupt.

**Strict load.** Every field of ``portfolio.json`` is required (older files are migrated
through ``schema_version``); no NaN or infinity anywhere; equity and trades have exact
columns and dtypes and unique, ordered dates; and before any computation the files are
cross-checked: ``as_of`` is the last equity date and not in the future, and cash,
positions, realised P&L, dividends and costs equal what trades.parquet books, to the
cent. A violation stops the run with :class:`StateCorrupt` (exit 4), one line naming the
file and the invariant, and nothing is rewritten.

**One writer.** :func:`state_lock` takes an exclusive ``flock`` on ``STATE/.state.lock``
from load to the last write (``daily``, ``demo``, ``backtest``, ``monitor``, ``weekly``;
the site takes it shared for its reads). A second writer stops at once with
:class:`StateLocked` (exit 9). The lock of a state root covers every arm under it. The
lock dies with its process (kill -9 included): there is no stale lock to clean. Once
held, stale ``.tmp`` files of killed runs are removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import count, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from engine.errors import ConfigError, StateCorrupt, StateLocked, StateUnwritable
from engine.portfolio.ledger import SCHEMA_VERSION, Fill, Portfolio
from engine.records import Encoded, Prompts, pack, read_record, write_prompts, write_record
from engine.step import StepResult

if TYPE_CHECKING:
    from engine.config import Config

log = logging.getLogger(__name__)

TRADE_COLUMNS = list(Fill.model_fields)
LOCK_FILE = ".state.lock"
JOURNAL_FILE = ".saving.json"

# What each Parquet column holds. "date" is a tz-naive datetime64; "str" any string dtype.
_F, _I, _S, _D = "float64", "int64", "str", "date"
EQUITY_SCHEMA: dict[str, str] = {
    "date": _D, "nav_eur": _F, "cash_eur": _F, "invested_eur": _F, "gross_exposure": _F, "drawdown": _F,
    "cvar_95": _F, "realised_pnl_eur": _F, "unrealised_pnl_eur": _F, "dividends_eur": _F, "costs_eur": _F,
    "n_positions": _I, "llm_tokens": _I, "llm_cost_usd": _F,
}
EQUITY_OPTIONAL_NAN = frozenset({"cvar_95"})  # too little history for a CVaR yet: NaN, never infinite
# (and the benchmark_<key>_eur lines, NaN before their baseline arm starts)
BENCHMARK_COLUMN = ("benchmark_", "_eur")  # benchmark_<key>_eur, float64, one per benchmark
_FILL_TYPES = {"date": _D, "ticker": _S, "side": _S, "currency": _S, "order_id": _S, "note": _S}
TRADES_SCHEMA: dict[str, str] = {c: _FILL_TYPES.get(c, _F) for c in TRADE_COLUMNS}

# schema_version n -> a function turning a version-n portfolio.json into version n+1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# --- atomic files ----------------------------------------------------------------------


def _unwritable(path: Path, exc: OSError) -> StateUnwritable:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (disk full)"
    elif exc.errno == errno.EFBIG:
        reason += " (file too large for this filesystem)"
    elif exc.errno == errno.EROFS:
        reason += " (read-only filesystem)"
    return StateUnwritable(f"cannot write {path}: {reason}")


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_temp_names = count()


def _open_temp(folder: str, name: str) -> tuple[int, str]:
    """A new temporary file beside `name` in `folder` (``.NAME.PID.N.tmp``, private until
    renamed): named without tempfile's random draw, since this process is the state's only
    writer and the process id and a counter make the name unique; a name left by another
    process (a crash) is stepped over."""
    for _ in range(100):
        tmp = f"{folder}/.{name}.{os.getpid()}.{next(_temp_names)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", f"{folder}/.{name}.*.tmp")


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` whole or not at all: a temporary file in the same folder
    (created with the folder when missing), renamed over `path`. `durable`: flushed to the
    disk before the rename."""
    folder, name = os.path.split(os.fspath(path))
    folder = folder or "."
    tmp = None
    try:
        try:
            fd, tmp = _open_temp(folder, name)
        except FileNotFoundError:  # the folder is new (a session's first record of a year)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = _open_temp(folder, name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise _unwritable(Path(path), exc) from None
    except BaseException:
        _discard(tmp)
        raise


# equity.parquet and trades.parquet are rewritten whole at every save and kept in git: plain
# values without compression, dictionaries or statistics, so that a day's new file is the old
# one plus its rows and git stores it as a small delta (snappy and dictionaries rewrite every
# page: the pack grew faster than linearly). benchmarks/audit_trail_growth.py measures it.
PARQUET_OPTIONS: dict[str, Any] = {"compression": None, "use_dictionary": False, "write_statistics": False}


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as the state's parquet files hold it (PARQUET_OPTIONS, no index)."""
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, **PARQUET_OPTIONS)
    return buf.getvalue()


def _same(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    """The same rows: the same object, both missing, or equal frames (dtypes included)."""
    if a is b:
        return True
    return a is not None and b is not None and a.dtypes.equals(b.dtypes) and a.equals(b)


def atomic_write_parquet(path: Path | str, frame: pd.DataFrame) -> None:
    """`frame` as a parquet file at `path`, atomically and flushed (git keeps these files)."""
    atomic_write_bytes(path, parquet_bytes(frame), durable=True)


def import_writers() -> None:
    """Import now what writing a Parquet file needs (pandas imports it at the first write):
    a process that forks savers does it once, not each of them again (about 40 ms each)."""
    import pyarrow.parquet  # noqa: F401


def _link_atomic(source: Path | str, path: Path | str) -> bool:
    """Make `path` a hard link to `source`, atomically (a link under a temporary name,
    renamed over `path`); False when the filesystem cannot (the caller writes a copy)."""
    folder, name = os.path.split(os.fspath(path))
    tmp = f"{folder or '.'}/.{name}.link.tmp"
    try:
        try:
            os.link(source, path)  # a new name (a backtest's): the link is atomic by itself
            return True
        except FileNotFoundError:
            if not os.path.exists(source):
                return False
            os.makedirs(folder or ".", exist_ok=True)
            try:
                os.link(source, path)
                return True
            except FileExistsError:
                pass
        except FileExistsError:
            pass  # a session saved again: replace the old file at once
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.link(source, tmp)
        os.replace(tmp, path)
        return True
    except OSError:
        _discard(tmp)
        return False


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)


# --- JSON for diffs --------------------------------------------------------------------

_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(x: Any) -> Any:
    if isinstance(x, Mapping):  # a brief rendered when read (engine.decision.BriefRecord)
        return dict(x)
    if isinstance(x, pd.Timestamp):
        return x.date().isoformat()
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    if isinstance(x, (set, frozenset)):  # a set's order is the hash seed's: sort it
        return sorted(x)
    raise TypeError(f"cannot write a {type(x).__name__} to JSON")


def dumps(record: Any) -> bytes:
    """JSON for humans reading diffs: nested blocks indented, and every object or list that
    holds only plain values (an asset's figures, a fill, an order) on one line. NaN and
    infinities are written as null."""
    return _format(record, 0) + b"\n"


_NESTED = (dict, list, tuple)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat(values: Any) -> bool:
    # Plain scalars are told by their exact type (3x faster than isinstance on each).
    return _SCALARS.issuperset(map(type, values)) or not any(map(isinstance, values, repeat(_NESTED)))


def _format(x: Any, depth: int) -> bytes:
    if isinstance(x, dict):
        if depth > 0 and _flat(x.values()):
            return _dump(x)
        if not x:
            return b"{}"
        inner = b"\n" + b" " * (depth + 1)
        keys = _KEYS  # only a str is looked up: a str subclass (an enum) is written as str() writes it
        items = [((type(k) is str and keys.get(k)) or _key(k))
                 + (_format(v, depth + 1) if isinstance(v, _NESTED) else _dump(v)) for k, v in x.items()]
        return b"{" + inner + (b"," + inner).join(items) + b"\n" + b" " * depth + b"}"
    if isinstance(x, (list, tuple)):
        if _flat(x):
            return _dump(x)
        inner = b"\n" + b" " * (depth + 1)
        return b"[" + inner + (b"," + inner).join([_format(v, depth + 1) if isinstance(v, _NESTED) else _dump(v)
                                                     for v in x]) + b"\n" + b" " * depth + b"]"
    return _dump(x)


_KEYS: dict[str, bytes] = {}  # key -> its JSON and ": " (field names and tickers: a few hundred)


def _key(k: Any) -> bytes:
    out = _dump(str(k)) + b": "
    if type(k) is str and len(_KEYS) < 4096:
        _KEYS[k] = out
    return out


def _dump(x: Any) -> bytes:
    return orjson.dumps(x, default=_default, option=_ORJSON)


# --- one writer ------------------------------------------------------------------------

_HELD: dict[Path, tuple[int, bool]] = {}  # resolved root -> (fd, exclusive), for nested use in one process


def check_folder(root: Path) -> None:
    """The state folder, if it exists, is a writable directory (checked before any download
    or LLM call, so a bad --state never costs a request)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StateUnwritable(f"the state folder {root} is not a directory")
    for parent in (root, *root.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StateUnwritable(f"the state folder {root} cannot be created: {parent} is a file")
            break


@contextlib.contextmanager
def state_lock(root: Path, *, shared: bool = False, create: bool = True) -> Iterator[None]:
    """Hold the state folder's lock for the block: exclusive for a writer, shared for a
    reader. A missing folder is created for a writer (``create``); otherwise there is
    nothing to lock. Nested use in one process is free."""
    import fcntl

    root = Path(root)
    check_folder(root)
    key = root.resolve()
    if key in _HELD and (_HELD[key][1] or shared):
        yield
        return
    if (shared or not create) and not root.exists():
        yield  # nothing to read, nothing anyone else can be writing
        return
    created = not root.exists()
    try:
        if not shared:
            root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if shared and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            yield  # a read-only state: nobody can be writing it
            return
        raise _unwritable(root / LOCK_FILE, exc) from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(f"{root} is in use by another run (it holds {root / LOCK_FILE}): "
                              "one writer at a time; run again when it has finished") from None
        _HELD[key] = (fd, not shared)
        try:
            if not shared:
                _probe_writable(root)
                remove_stale_temporaries(root)
            yield
        finally:
            del _HELD[key]
            if created:
                _remove_if_unused(root)
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _remove_if_unused(root: Path) -> None:
    """A folder made for a run that then wrote nothing (it failed first) is removed again."""
    with contextlib.suppress(OSError):
        if [p.name for p in root.iterdir()] == [LOCK_FILE]:
            (root / LOCK_FILE).unlink()
            root.rmdir()


def holds_lock(root: Path) -> bool:
    """Whether this process holds the exclusive lock of `root` or of a folder above it."""
    root = Path(root).resolve()
    return any(excl and (root == k or k in root.parents) for k, (_, excl) in _HELD.items())


def _probe_writable(root: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _unwritable(root, exc) from None


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files a killed writer left, and the journal of a save
    that was committed but killed before removing it (only under the exclusive lock: no
    live writer can own them)."""
    gone = []
    for tmp in sorted(Path(root).rglob(".*.tmp")):
        with contextlib.suppress(OSError):
            tmp.unlink()
            gone.append(tmp)
    for journal in sorted(Path(root).rglob(JOURNAL_FILE)):
        if _journal_done(journal):
            with contextlib.suppress(OSError):
                journal.unlink()
                gone.append(journal)
    if gone:
        log.info("state: removed %d file(s) left by an interrupted run", len(gone))
    return gone


def _journal_done(journal: Path) -> bool:
    """Whether the save a journal announced was committed (killed before removing it)."""
    try:
        last = json.loads(journal.read_text(encoding="utf-8"))["last"]
        as_of = json.loads((journal.parent / "portfolio.json").read_text(encoding="utf-8"))["as_of"]
        return isinstance(as_of, str) and isinstance(last, str) and as_of >= last
    except (OSError, ValueError, KeyError, TypeError):
        return False  # the load says what is wrong


# --- strict reading --------------------------------------------------------------------


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"{text} is not a finite number")
    return x


def _missing_keys(raw: Any, full: Any, where: str = "") -> str | None:
    """The first key the validated model has (with its default) that the file lacks."""
    if isinstance(full, dict) and isinstance(raw, dict):
        for k, v in full.items():
            here = f"{where}.{k}" if where else str(k)
            if k not in raw:
                return here
            if (found := _missing_keys(raw[k], v, here)) is not None:
                return found
    elif isinstance(full, list) and isinstance(raw, list):
        for i, (r, f) in enumerate(zip(raw, full, strict=False)):
            if (found := _missing_keys(r, f, f"{where}[{i}]")) is not None:
                return found
    return None


def parse_portfolio(path: Path, data: bytes) -> Portfolio:
    """``portfolio.json`` strictly: JSON without NaN or infinity, migrated to this
    engine's schema_version, every field present, every value valid."""
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateCorrupt(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise StateCorrupt(f"{path} does not hold a JSON object")
    version = raw.get("schema_version")
    while isinstance(version, int) and not isinstance(version, bool) and version in MIGRATIONS:
        raw = MIGRATIONS[version](raw)
        version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StateCorrupt(f"{path} has schema_version {version!r}; this engine reads version {SCHEMA_VERSION}")
    try:
        p = Portfolio.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise StateCorrupt(f"{path} is invalid at {where}: {first['msg']}") from None
    missing = _missing_keys(raw, p.model_dump(mode="json"))
    if missing is not None:
        raise StateCorrupt(f"{path} has no {missing}: every field is required (no silent default)")
    return p


def _check_frame(path: Path, df: pd.DataFrame, schema: Mapping[str, str], extra: Callable[[str], str | None],
                 nan_ok: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Exact columns and dtypes, finite numbers; returns the frame with ns dates."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise StateCorrupt(f"{path} has no column {', '.join(missing)}")
    for col in df.columns:
        kind = schema.get(col) or extra(col)
        if kind is None:
            raise StateCorrupt(f"{path} has an unknown column {col!r}")
        s = df[col]
        if len(df) == 0:
            continue  # no value to misread: an empty file's dtypes are whatever wrote it
        if kind == _D:
            if not pd.api.types.is_datetime64_dtype(s) or getattr(s.dt, "tz", None) is not None:
                raise StateCorrupt(f"{path} column {col} holds {s.dtype}, not tz-naive dates")
            if s.isna().any():
                raise StateCorrupt(f"{path} column {col} has a missing date")
        elif kind == _S:
            # a text dtype holds strings or NA; any other string dtype is checked value by value
            text = s.dtype == _TEXT and not s.isna().any()
            if not (text or (pd.api.types.is_string_dtype(s) and s.map(type).eq(str).all())):
                raise StateCorrupt(f"{path} column {col} holds {s.dtype}, not text")
        elif str(s.dtype) != kind and not (kind == _F and str(s.dtype) == _I):  # a whole number is a float
            raise StateCorrupt(f"{path} column {col} holds {s.dtype}, not {kind}")
        elif kind == _F:
            values = s.to_numpy(dtype="float64")
            # A benchmark line is NaN before its baseline arm starts (an arm added later).
            nan_allowed = col in nan_ok or (nan_ok is EQUITY_OPTIONAL_NAN and col.startswith(BENCHMARK_COLUMN[0])
                                            and col.endswith(BENCHMARK_COLUMN[1]))
            bad = np.isinf(values) | (np.isnan(values) if not nan_allowed else False)
            if bad.any():
                day = df["date"].iloc[int(bad.argmax())] if "date" in df else "?"
                raise StateCorrupt(f"{path} column {col} is not a finite number at {pd.Timestamp(day).date()}")
    return _typed(df, schema, extra)


_TEXT = pd.api.types.pandas_dtype(str)  # what astype(str) gives


def _typed(df: pd.DataFrame, schema: Mapping[str, str], extra: Callable[[str], str | None]) -> pd.DataFrame:
    """`df` with the dtypes of its schema (an empty frame gets them too); a column that has
    its dtype already is kept as it is (a converted copy would be the same)."""
    types = {c: (schema.get(c) or extra(c) or "object") for c in df.columns}
    out = {}
    for c, kind in types.items():
        s = df[c]
        if kind == _D:
            out[c] = s if s.dtype == "datetime64[ns]" else pd.to_datetime(s).astype("datetime64[ns]")
        elif kind == _S:
            out[c] = (s if s.dtype == _TEXT else s.astype(str)) if len(df) else s.astype(object)
        else:
            out[c] = s if s.dtype == kind else s.astype(kind)
    return pd.DataFrame(out, columns=list(df.columns), index=df.index)


def _equity_extra(col: str) -> str | None:
    head, tail = BENCHMARK_COLUMN
    return _F if col.startswith(head) and col.endswith(tail) and len(col) > len(head) + len(tail) else None


def _no_extra(col: str) -> None:
    return None


def _cents_differ(a: float, b: float) -> bool:
    return abs(round(a - b, 2)) >= 0.01


def reconcile(p: Portfolio, trades: pd.DataFrame, equity: pd.DataFrame, where: Path) -> None:
    """Cross-check portfolio.json with the committed trades and equity (raises StateCorrupt).

    Cash is the starting capital plus every booked cash flow; each position's quantity is
    the replay of its buys, sells and splits; realised P&L, dividends and costs are the sums
    of their columns; the last equity row has the portfolio's cash. All to the cent."""
    pj = where / "portfolio.json"
    flows = trades["cash_flow_eur"].to_numpy(dtype="float64")
    expected_cash = round(p.starting_capital_eur, 2) + float(flows.sum())
    if _cents_differ(p.cash_eur, expected_cash):
        raise StateCorrupt(f"{pj}: cash_eur {p.cash_eur:,.2f} != starting capital + the cash flows of "
                           f"trades.parquet ({expected_cash:,.2f} EUR)")
    qty: dict[str, float] = {}
    for t, side, q, price in zip(trades["ticker"], trades["side"], trades["qty"], trades["price_local"], strict=True):
        if side == "buy":
            qty[t] = round(qty.get(t, 0.0) + q, 6)
        elif side == "sell":
            qty[t] = round(qty.get(t, 0.0) - q, 6)
        elif side == "split" and t in qty:
            qty[t] = round(qty[t] * price, 6)  # a split carries its ratio in price_local
    booked = {t: q for t, q in sorted(qty.items()) if q > 1e-9}
    held = {t: pos.qty for t, pos in sorted(p.positions.items())}
    for t in sorted(set(booked) | set(held)):
        if abs(booked.get(t, 0.0) - held.get(t, 0.0)) > 1e-6:
            raise StateCorrupt(f"{pj}: positions.{t} holds {held.get(t, 0.0):g}, trades.parquet books "
                               f"{booked.get(t, 0.0):g}")
    sums = {
        "realised_pnl_eur": (p.realised_pnl_eur, trades["realised_pnl_eur"].sum()),
        "dividends_eur": (p.dividends_eur, trades.loc[trades["side"] == "dividend", "cash_flow_eur"].sum()),
        **{f"costs.{c}": (getattr(p.costs, c), trades[c].sum())
           for c in ("slippage_eur", "commission_eur", "tax_eur", "fx_fee_eur")},
    }
    for name, (value, total) in sums.items():
        if _cents_differ(value, float(total)):
            raise StateCorrupt(f"{pj}: {name} {value:,.2f} != the sum in trades.parquet ({float(total):,.2f} EUR)")
    if len(equity) and _cents_differ(p.cash_eur, float(equity["cash_eur"].iloc[-1])):
        raise StateCorrupt(f"{pj}: cash_eur {p.cash_eur:,.2f} != cash_eur of the last row of equity.parquet "
                           f"({float(equity['cash_eur'].iloc[-1]):,.2f})")


# --- the store -------------------------------------------------------------------------


class StateStore:
    """The state folder. ``durable`` flushes every file to disk before renaming it (live
    runs); a backtest may skip it for the decision files, which a resumed run rewrites.

    :meth:`load` reads and cross-checks the whole folder once; :meth:`equity` and
    :meth:`trades` then give the committed rows (sessions up to ``as_of``) only. A save
    keeps what it wrote as what was read: the next save and readers in this process use it
    (:meth:`forget` when another process writes the folder)."""

    def __init__(self, root: Path, durable: bool = True, today: Callable[[], dt.date] | None = None):
        self.root = Path(root)
        self._decisions = os.path.join(self.root, "decisions")  # a str: a record's path is made per session
        self.durable = durable
        self._today = today or (lambda: dt.datetime.now(dt.UTC).date())
        self._loaded: tuple[Portfolio | None, pd.DataFrame, pd.DataFrame] | None = None
        self._loaded_stamp: tuple[tuple[int, int, int] | None, ...] = ()
        self._prompts: Prompts | None = None  # the stored system prompts, read once each
        # The last save's sessions, the rows it appended them to, the rows and the parquet
        # files it wrote: for a store saving the same sessions next (the root after its arm).
        self._rows_written: tuple[Any, ...] | None = None

    @property
    def portfolio_path(self) -> Path:
        return self.root / "portfolio.json"

    @property
    def equity_path(self) -> Path:
        return self.root / "equity.parquet"

    @property
    def trades_path(self) -> Path:
        return self.root / "trades.parquet"

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL_FILE

    def decision_path(self, d: pd.Timestamp) -> Path:
        return Path(self._record_file(d))

    def _record_file(self, d: pd.Timestamp) -> str:
        return f"{self._decisions}/{d.year:04d}/{d.month:02d}-{d.day:02d}.json"

    # -- reading --

    def load(self) -> Portfolio | None:
        """The saved portfolio, or None for a state folder with nothing in it yet; every
        file is validated and cross-checked first (StateCorrupt, exit 4)."""
        stamp = self._stamp()  # before reading: a file changed meanwhile reads as changed
        self._loaded = self._load_all()
        self._loaded_stamp = stamp
        return self._loaded[0]

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """Which files are there now (inode, size, modification time): a file another
        writer replaced or rewrote since this store read or wrote it has another stamp."""
        out = []
        for path in (self.portfolio_path, self.equity_path, self.trades_path):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def _still_loaded(self) -> bool:
        """What this store read or wrote last is what the folder holds (no one else wrote it)."""
        return self._loaded is not None and self._loaded_stamp == self._stamp()

    def current(self) -> Portfolio | None:
        """The portfolio as this store last loaded or saved it (the folder is loaded when
        it has neither): what :meth:`load` would give, without reading it all again."""
        if not self._still_loaded():
            self.load()
        return self._loaded[0]

    def equity(self) -> pd.DataFrame:
        """The committed equity rows (one per session up to as_of), dates as datetime64[ns]."""
        if self._loaded is None:
            self.load()
        return self._loaded[1].copy()

    def trades(self) -> pd.DataFrame:
        """The committed trades (booked up to as_of), in booking order."""
        if self._loaded is None:
            self.load()
        return self._loaded[2].copy()

    def decision(self, d: pd.Timestamp) -> dict[str, Any]:
        """The decision record of session `d`, whatever layout its file has, in the one shape
        every reader knows (engine.records: system prompt and derived parts back in place)."""
        if self._prompts is None:
            self._prompts = Prompts(self.root / "decisions")
        return read_record(self.decision_path(d), self._prompts)

    def _read_parquet(self, path: Path) -> pd.DataFrame | None:
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise StateCorrupt(f"cannot read {path}: {' '.join(str(exc).split())[:200]}") from None

    def _journal(self) -> tuple[dt.date, dt.date] | None:
        """The sessions of a save that did not finish, if one did not."""
        if not self.journal_path.exists():
            return None
        try:
            raw = json.loads(self.journal_path.read_text(encoding="utf-8"))
            return dt.date.fromisoformat(raw["first"]), dt.date.fromisoformat(raw["last"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise StateCorrupt(f"cannot read {self.journal_path}: {exc}") from None

    def _load_all(self) -> tuple[Portfolio | None, pd.DataFrame, pd.DataFrame]:
        check_folder(self.root)
        equity = self._read_parquet(self.equity_path)
        trades = self._read_parquet(self.trades_path)
        if not self.portfolio_path.exists():
            others = [p.name for p, df in ((self.equity_path, equity), (self.trades_path, trades)) if df is not None]
            if others:
                raise StateCorrupt(f"{self.portfolio_path} is missing but {', '.join(others)} exist: "
                                   "refusing to start over")
            return None, _empty(EQUITY_SCHEMA), _empty(TRADES_SCHEMA)
        try:
            data = self.portfolio_path.read_bytes()
        except OSError as exc:
            raise StateCorrupt(f"cannot read {self.portfolio_path}: {exc.strerror or exc}") from None
        p = parse_portfolio(self.portfolio_path, data)
        if p.as_of is not None:
            for path, df in ((self.equity_path, equity), (self.trades_path, trades)):
                if df is None:
                    raise StateCorrupt(f"{path} is missing but {self.portfolio_path} is as of {p.as_of}")
        equity = _check_frame(self.equity_path, equity if equity is not None else _empty(EQUITY_SCHEMA),
                              EQUITY_SCHEMA, _equity_extra, EQUITY_OPTIONAL_NAN)
        trades = _check_frame(self.trades_path, trades if trades is not None else _empty(TRADES_SCHEMA),
                              TRADES_SCHEMA, _no_extra)
        equity, trades = self._committed(p, equity, trades)
        reconcile(p, trades, equity, self.root)
        return p, equity, trades

    def _committed(self, p: Portfolio, equity: pd.DataFrame, trades: pd.DataFrame
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The rows up to as_of, once the dates and as_of have been checked."""
        eq, tr, pj = self.equity_path, self.trades_path, self.portfolio_path
        days = equity["date"]
        if days.duplicated().any():
            raise StateCorrupt(f"{eq} has the session {days[days.duplicated()].iloc[0].date()} twice")
        if not days.is_monotonic_increasing:
            raise StateCorrupt(f"{eq} is not in date order")
        if not trades["date"].is_monotonic_increasing:
            raise StateCorrupt(f"{tr} is not in booking (date) order")
        as_of = pd.Timestamp(p.as_of) if p.as_of is not None else pd.Timestamp.min
        ahead = [d for d in (days.max(), trades["date"].max()) if pd.notna(d) and d > as_of]
        if ahead:
            journal = self._journal()
            last = max(ahead).date()
            if journal is None or not (journal[0] <= last <= journal[1]):
                raise StateCorrupt(f"{pj}: as_of {p.as_of} is before sessions in {eq.name} or {tr.name} "
                                   f"(up to {last}) and no save was under way")
            log.info("state: ignoring the sessions after %s of a save that did not finish", p.as_of)
            equity, trades = equity.loc[days <= as_of], trades.loc[trades["date"] <= as_of]
        equity, trades = equity.reset_index(drop=True), trades.reset_index(drop=True)
        if p.as_of is None:
            if len(equity) or len(trades):
                raise StateCorrupt(f"{pj} has no as_of but {eq.name} or {tr.name} hold sessions")
            return equity, trades
        if not len(equity) or equity["date"].iloc[-1].date() != p.as_of:
            last = equity["date"].iloc[-1].date() if len(equity) else "no session"
            raise StateCorrupt(f"{pj}: as_of {p.as_of} is not the last session of {eq.name} ({last})")
        if p.as_of > self._today() and not p.source.startswith("demo"):  # a synthetic market may run ahead
            raise StateCorrupt(f"{pj}: as_of {p.as_of} is in the future (today is {self._today()})")
        if p.inception is None or p.inception != equity["date"].iloc[0].date():
            raise StateCorrupt(f"{pj}: inception {p.inception} is not the first session of {eq.name} "
                               f"({equity['date'].iloc[0].date()})")
        return equity, trades

    # -- writing --

    def save(self, portfolio: Portfolio, results: Sequence[StepResult], twin: StateStore | None = None,
             encoded: Mapping[pd.Timestamp, Encoded] | None = None) -> None:
        """Append the results of some sessions and write the portfolio that follows them:
        the journal first, portfolio.json (the commit point) last.

        `twin`: a store that has just saved the same results (the arm a state root mirrors):
        each decision record is then a hard link to the twin's file, not a second copy
        encoded and written again (a copy where the filesystem has no hard links).
        `encoded`: session -> its record already encoded (engine.records.encode_record)."""
        try:
            self._loaded = self._save(portfolio, results, twin, encoded or {})
            self._loaded_stamp = self._stamp()
        except BaseException:
            self._loaded = None
            raise

    def forget(self) -> None:
        """Drop what was read: another process is writing this folder."""
        self._loaded = self._rows_written = None

    def handover(self) -> tuple[Any, ...] | None:
        """What this store last read or wrote, with the stamp of the files then: for the
        process this one saved for (a forked saver's parent, :meth:`take_over`)."""
        return None if self._loaded is None else (self._loaded, self._loaded_stamp)

    def take_over(self, handed: tuple[Any, ...] | None) -> None:
        """Take what another process's store of this folder wrote (its :meth:`handover`
        after a save that completed) as what this one read: kept only while the files
        still have the stamp they had then, as anything this store reads or writes."""
        if handed is not None:
            self._loaded, self._loaded_stamp = handed

    def _write_record(self, r: StepResult, twin: StateStore | None, encoded: Encoded | None) -> None:
        path = self._record_file(r.date)
        if twin is not None and _link_atomic(twin._record_file(r.date), path):
            # the twin's file is layout 2 already; the prompts it names are stored here too
            prompts = encoded[1] if encoded is not None else pack(r.record)[1]
            if prompts:
                write_prompts(Path(self._decisions), prompts, durable=self.durable)
            return
        write_record(path, r.record, durable=self.durable, encoded=encoded)

    def _save(self, portfolio: Portfolio, results: Sequence[StepResult], twin: StateStore | None,
              encoded: Mapping[pd.Timestamp, Encoded]) -> tuple[Portfolio, pd.DataFrame, pd.DataFrame] | None:
        """Write; return what a load of the folder would now give (the portfolio, the
        committed equity and trades), or None when the rows on disk were not read checked."""
        self._rows_written = None
        cached = self._still_loaded()
        if cached:  # the committed rows, read and checked (or written) by this store
            _, old_equity, old_trades = self._loaded
        else:
            old_equity = self._read_parquet(self.equity_path)
            old_trades = self._read_parquet(self.trades_path)
        if results:
            dates = sorted({r.date for r in results})
            span = {"first": dates[0].date().isoformat(), "last": dates[-1].date().isoformat()}
            atomic_write_bytes(self.journal_path, dumps(span), durable=self.durable)
            for r in results:  # one thread: see the note on writers below
                self._write_record(r, twin, encoded.get(r.date))

            done = twin._rows_written if twin is not None else None
            if done is not None and done[0] is results and _same(done[1], old_equity) and _same(done[2], old_trades):
                # The twin has just appended the same sessions to the same rows: the same
                # files, byte for byte (each folder has its own copy, as git keeps it).
                new_equity, new_trades, equity_bytes, trades_bytes = done[3:]
            else:
                fills = [f.model_dump() for r in results for f in r.fills]
                new_trades = pd.DataFrame(fills, columns=TRADE_COLUMNS)
                if old_trades is not None and len(old_trades):
                    keep = old_trades[~pd.to_datetime(old_trades["date"]).isin(dates)]
                    new_trades = pd.concat([keep, new_trades], ignore_index=True) if len(new_trades) else keep
                new_trades = _typed(new_trades.reset_index(drop=True), TRADES_SCHEMA, _no_extra)
                trades_bytes = parquet_bytes(new_trades)

                new_equity = pd.DataFrame([r.equity for r in results])
                new_equity["date"] = pd.to_datetime(new_equity["date"]).astype("datetime64[ns]")
                if old_equity is not None and len(old_equity):
                    keep = old_equity[~pd.to_datetime(old_equity["date"]).isin(dates)]
                    new_equity = pd.concat([keep, new_equity], ignore_index=True)
                new_equity = _typed(new_equity.sort_values("date").reset_index(drop=True), EQUITY_SCHEMA,
                                    _equity_extra)
                equity_bytes = parquet_bytes(new_equity)
            atomic_write_bytes(self.trades_path, trades_bytes, durable=True)  # as atomic_write_parquet: flushed
            atomic_write_bytes(self.equity_path, equity_bytes, durable=True)
            self._rows_written = (results, old_equity, old_trades, new_equity, new_trades, equity_bytes, trades_bytes)
            committed = (new_equity, new_trades)  # as a load reads them back (tests/test_state.py)
        else:
            committed = (old_equity, old_trades) if cached else None
        data = dumps(portfolio.model_dump(mode="json"))
        atomic_write_bytes(self.portfolio_path, data)
        try:
            self.journal_path.unlink(missing_ok=True)
        except OSError as exc:
            raise _unwritable(self.journal_path, exc) from None
        if committed is None or (len(committed[0]) and committed[0]["date"].iloc[-1].date() != portfolio.as_of):
            return None  # rows past as_of read from disk: a load decides what they are
        return parse_portfolio(self.portfolio_path, data), *committed


# The decision records are written from one thread, in order. A pool of four writers was
# tried for a backtest's checkpoints and measured slower: a backtest's files are not flushed
# (durable=False), so creating one waits on no disk, only on the CPU (the kernel's inode
# allocation, the encoding), and the threads spent their time handing the GIL to each
# other (100,000 context switches in a 10-year run; 6.1-6.8 s against 5.3-5.4 s with one
# writer, outputs on a RAM disk; the same or slower on ext4).


def _empty(schema: Mapping[str, str]) -> pd.DataFrame:
    return _typed(pd.DataFrame(columns=list(schema)), schema, _no_extra)


def check_config(p: Portfolio, config: Config, where: Path) -> None:
    """Every ticker the state holds or has an order for is in the configuration's universe:
    a configuration error (exit 2), not missing market data."""
    unknown = sorted((set(p.positions) | {o.ticker for o in p.pending_orders}) - set(config.instruments))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)} in {where / 'portfolio.json'} not in the configuration's "
                          "universe: restore it there (a position is never dropped silently)")
