"""A small Parquet cache for raw downloads.

One file per request, named by a hash of the request key (see :func:`request_key`).
Writes are atomic (a temporary file in the same directory, then ``os.replace``), so an
interrupted run never leaves a half-written entry behind. A file that cannot be read
(truncated, corrupt, from an older format) is a miss, never a crash; the next ``put``
replaces it.

Parquet needs string column names, so the columns are stored under positional names
and the real labels (a MultiIndex such as yfinance's ``(Price, Ticker)`` included) are
kept as JSON in the file's metadata and restored on read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 1
_META_KEY = b"almost_surely.cache"

_logger = logging.getLogger(__name__)


def request_key(**parts: Any) -> str:
    """A canonical text for a request (tickers, start, end, interval, options...).

    Keys are sorted and values rendered with ``str`` where JSON cannot, so two equal
    requests give the same key whatever the argument order.
    """
    return json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)


class ParquetCache:
    def __init__(self, root: Path, *, log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self._log = log or _logger.warning

    def path_for(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
        return self.root / f"{digest}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        """The frame stored for `key`, or None (absent, unreadable, or another key)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[_META_KEY])
            if meta.get("key") != key:
                return None
            frame = table.to_pandas()
            return _restore_columns(frame, meta)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a miss
            self._log(f"cache file {path.name} is unreadable ({type(exc).__name__}); ignoring it")
            return None

    def put(self, key: str, frame: pd.DataFrame) -> None:
        """Store `frame` for `key`, atomically. A failure to write is logged, not raised."""
        path = self.path_for(key)
        flat, meta = _flatten_columns(frame)
        meta["key"] = key
        tmp: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(flat, preserve_index=True)
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode("utf-8")}
            )
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
        except (OSError, pa.ArrowException) as exc:
            self._log(f"could not write cache file {path.name}: {exc}")
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _flatten_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    cols = frame.columns
    if isinstance(cols, pd.MultiIndex):
        labels: list[Any] = [list(_jsonable(v) for v in t) for t in cols]
    else:
        labels = [_jsonable(v) for v in cols]
    meta = {
        "multi": isinstance(cols, pd.MultiIndex),
        "labels": labels,
        "names": [_jsonable(n) for n in cols.names],
    }
    flat = frame.set_axis([f"c{i}" for i in range(len(cols))], axis=1)
    return flat, meta


def _restore_columns(frame: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    labels = meta["labels"]
    if len(labels) != frame.shape[1]:
        raise ValueError("column count does not match the stored labels")
    if meta["multi"] and not labels:
        cols: pd.Index = pd.MultiIndex.from_arrays([[] for _ in meta["names"]], names=meta["names"])
    elif meta["multi"]:
        cols = pd.MultiIndex.from_tuples([tuple(t) for t in labels], names=meta["names"])
    else:
        cols = pd.Index(labels, name=meta["names"][0] if meta["names"] else None)
    return frame.set_axis(cols, axis=1)


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    return str(v)
