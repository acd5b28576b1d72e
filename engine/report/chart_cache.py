"""A cache of drawn charts, keyed by a hash of everything that goes into the picture.

A chart is a pure function of its inputs (the series, the labels, the options) and of the
code that draws it; :func:`chart_key` hashes all of these (the drawing module's source and
the matplotlib version included), so a cached file is only ever reused for the same
picture, byte for byte. Charts of closed weeks never change: a build that keeps its cache
folder (the pages workflow restores it) draws only the charts whose inputs are new.

The cache is an optimisation only: without a folder nothing is cached, a missing entry is
drawn again, and entries are written aside and renamed (never half a file). Set
``SITE_CACHE`` (or pass ``cache=`` to :func:`engine.report.site.build_site`) to use one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd


@lru_cache(maxsize=None)
def _code_version(module_file: str) -> str:
    import matplotlib

    digest = hashlib.sha256(Path(module_file).read_bytes())
    digest.update(matplotlib.__version__.encode())
    return digest.hexdigest()


def _feed(h, value: object) -> None:
    if isinstance(value, pd.DataFrame):
        h.update(b"F")
        _feed(h, [str(c) for c in value.columns])
        _feed(h, [str(x) for x in value.index])
        h.update(np.ascontiguousarray(value.to_numpy(dtype=float)).tobytes())
    elif isinstance(value, pd.Series):
        h.update(b"S")
        _feed(h, [str(x) for x in value.index])
        h.update(np.ascontiguousarray(value.to_numpy(dtype=float)).tobytes())
    elif isinstance(value, dict):
        h.update(b"D")
        for k in value:
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d" % len(value))
        for v in value:
            _feed(h, v)
    else:
        h.update(repr(value).encode("utf-8", "replace") + b"\0")


def chart_key(module_file: str, name: str, inputs: Iterable[object]) -> str:
    """The hex digest naming one picture: the drawing code, the chart's kind and its inputs."""
    h = hashlib.sha256(_code_version(module_file).encode())
    _feed(h, name)
    for value in inputs:
        _feed(h, value)
    return h.hexdigest()


class ChartCache:
    """Charts by key in `folder` (None: no cache)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.hits = self.misses = 0
        self.used: set[str] = set()

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.png"

    def fetch(self, key: str, target: Path) -> bool:
        """Copy the cached picture of `key` to `target`; False if there is none."""
        path = self._path(key)
        self.used.add(key)
        if path is None or not path.is_file():
            self.misses += 1
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        self.hits += 1
        return True

    def store(self, key: str, source: Path) -> None:
        """Keep `source` as the picture of `key` (written aside, then renamed: never half a file)."""
        path = self._path(key)
        self.used.add(key)
        if path is None:
            return
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except OSError:  # a cache that cannot be written only costs time
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def prune(self) -> int:
        """Remove every entry this build did not use (a chart whose inputs changed is never
        asked for again): the folder stays the size of one site's charts. Returns how many."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.glob("*/*.png"):
            if path.stem not in self.used:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed
