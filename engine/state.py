"""The state/ folder: the audit trail, committed to git and read as diffs.

::

    state/portfolio.json              cash, positions, pending orders, as_of, schema_version
    state/equity.parquet              one row per session
    state/trades.parquet              every fill, dividend and split
    state/decisions/YYYY/MM-DD.json   what the policy saw and answered, and what came of it

Every file is written atomically: to a temporary file in the same folder, flushed to
disk, then renamed over the old one, so a crash leaves either the old file or the new
one, never half of one. ``portfolio.json`` is written last and says which session is
done (``as_of``): after a crash mid-save, the sessions after it are simply run again,
and since rows are keyed by date, re-running replaces them instead of duplicating them.

A state file that cannot be read or fails validation stops the run with
:class:`StateCorrupt` and is never overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from pydantic import ValidationError

from engine.errors import StateCorrupt
from engine.portfolio.ledger import SCHEMA_VERSION, Fill, Portfolio
from engine.step import StepResult

TRADE_COLUMNS = list(Fill.model_fields)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(x: Any) -> Any:
    if isinstance(x, pd.Timestamp):
        return x.date().isoformat()
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    raise TypeError(f"cannot write a {type(x).__name__} to JSON")


def dumps(record: Any) -> bytes:
    """JSON for humans reading diffs: nested blocks indented, and every object or list that
    holds only plain values (an asset's figures, a fill, an order) on one line. NaN and
    infinities are written as null."""
    return _format(record, 0) + b"\n"


_NESTED = (dict, list, tuple)


def _flat(values: Any) -> bool:
    return not any(map(isinstance, values, repeat(_NESTED)))


def _format(x: Any, depth: int) -> bytes:
    if isinstance(x, dict):
        if depth > 0 and _flat(x.values()):
            return _dump(x)
        if not x:
            return b"{}"
        pad, inner = b" " * depth, b" " * (depth + 1)
        items = [inner + _dump(str(k)) + b": " + _format(v, depth + 1) for k, v in x.items()]
        return b"{\n" + b",\n".join(items) + b"\n" + pad + b"}"
    if isinstance(x, (list, tuple)):
        if _flat(x):
            return _dump(x)
        pad, inner = b" " * depth, b" " * (depth + 1)
        return b"[\n" + b",\n".join(inner + _format(v, depth + 1) for v in x) + b"\n" + pad + b"]"
    return _dump(x)


def _dump(x: Any) -> bytes:
    return orjson.dumps(x, default=_default, option=_ORJSON)


class StateStore:
    """The state folder. ``durable`` flushes every file to disk before renaming it (live
    runs); a backtest may skip it for the decision files, which a resumed run rewrites."""

    def __init__(self, root: Path, durable: bool = True):
        self.root = Path(root)
        self.durable = durable

    @property
    def portfolio_path(self) -> Path:
        return self.root / "portfolio.json"

    @property
    def equity_path(self) -> Path:
        return self.root / "equity.parquet"

    @property
    def trades_path(self) -> Path:
        return self.root / "trades.parquet"

    def decision_path(self, d: pd.Timestamp) -> Path:
        return self.root / "decisions" / f"{d.year:04d}" / f"{d.month:02d}-{d.day:02d}.json"

    def load(self) -> Portfolio | None:
        """The saved portfolio, or None for a state folder with nothing in it yet."""
        path = self.portfolio_path
        if not path.exists():
            others = [p.name for p in (self.equity_path, self.trades_path) if p.exists()]
            if others:
                raise StateCorrupt(f"{path} is missing but {', '.join(others)} exist: refusing to start over")
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateCorrupt(f"cannot read {path}: {exc}") from None
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version != SCHEMA_VERSION:
            raise StateCorrupt(f"{path} has schema_version {version!r}; this engine reads version {SCHEMA_VERSION}")
        try:
            return Portfolio.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise StateCorrupt(f"{path} is invalid at {where}: {first['msg']}") from None

    def _read_parquet(self, path: Path) -> pd.DataFrame | None:
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise StateCorrupt(f"cannot read {path}: {exc}") from None

    def equity(self) -> pd.DataFrame:
        df = self._read_parquet(self.equity_path)
        return df if df is not None else pd.DataFrame(columns=["date", "nav_eur", "cash_eur", "invested_eur"])

    def trades(self) -> pd.DataFrame:
        df = self._read_parquet(self.trades_path)
        return df if df is not None else pd.DataFrame(columns=TRADE_COLUMNS)

    def decision(self, d: pd.Timestamp) -> dict[str, Any]:
        path = self.decision_path(d)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StateCorrupt(f"cannot read {path}: {exc}") from None

    def save(self, portfolio: Portfolio, results: Sequence[StepResult]) -> None:
        """Append the results of some sessions and write the portfolio that follows them."""
        old_equity = self._read_parquet(self.equity_path)
        old_trades = self._read_parquet(self.trades_path)
        if results:
            dates = {r.date for r in results}
            for r in results:
                atomic_write_bytes(self.decision_path(r.date), dumps(r.record), durable=self.durable)

            fills = [f.model_dump() for r in results for f in r.fills]
            new_trades = pd.DataFrame(fills, columns=TRADE_COLUMNS)
            new_trades["date"] = pd.to_datetime(new_trades["date"]).astype("datetime64[ns]")
            if old_trades is not None and len(old_trades):
                keep = old_trades[~pd.to_datetime(old_trades["date"]).isin(dates)]
                new_trades = pd.concat([keep, new_trades], ignore_index=True) if len(new_trades) else keep
            atomic_write_parquet(self.trades_path, new_trades.reset_index(drop=True))

            new_equity = pd.DataFrame([r.equity for r in results])
            new_equity["date"] = pd.to_datetime(new_equity["date"]).astype("datetime64[ns]")
            if old_equity is not None and len(old_equity):
                keep = old_equity[~pd.to_datetime(old_equity["date"]).isin(dates)]
                new_equity = pd.concat([keep, new_equity], ignore_index=True)
            new_equity = new_equity.sort_values("date").reset_index(drop=True)
            atomic_write_parquet(self.equity_path, new_equity)
        atomic_write_bytes(self.portfolio_path, dumps(portfolio.model_dump(mode="json")))


class BackgroundSaver:
    """Saves on a second core while the loop goes on (a backtest's records are heavy).

    ``save`` hands the work to a forked process and returns at once; saves are done in
    the order given, each exactly like :meth:`StateStore.save` (portfolio.json last).
    ``close`` waits for all of them and re-raises the first failure. The process ignores
    Ctrl-C so that an interrupted run still completes the saves it was given.
    """

    def __init__(self, store: StateStore):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.store = store
        self._jobs = ctx.Queue()
        self._errors = ctx.Queue()
        self._proc = ctx.Process(target=_saver_loop, args=(store.root, store.durable, self._jobs, self._errors),
                                 daemon=True)
        self._proc.start()

    def save(self, portfolio: Portfolio, results: Sequence[StepResult]) -> None:
        self._jobs.put((portfolio, list(results)))

    def close(self) -> None:
        self._jobs.put(None)
        self._proc.join()
        if not self._errors.empty():
            kind, message = self._errors.get()
            raise (StateCorrupt(message) if kind == "StateCorrupt" else OSError(message))
        if self._proc.exitcode not in (0, None):
            raise OSError(f"the state writer died (exit code {self._proc.exitcode})")


def _saver_loop(root: Path, durable: bool, jobs: Any, errors: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = StateStore(root, durable=durable)
    failed = False
    while (job := jobs.get()) is not None:
        if failed:
            continue  # never write past a failed save: the state stays at the last good one
        try:
            store.save(*job)
        except Exception as exc:  # reported to the parent, which raises it
            failed = True
            errors.put((type(exc).__name__, str(exc)))
