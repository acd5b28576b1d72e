"""A content-addressed cache of model answers: same model, messages and parameters,
same answer, no API call. A backtest re-run with a warm cache makes zero calls and
costs nothing, and a decision can be replayed from its record.

One JSON file per answer, named by the SHA-256 of the request (the API key and the
server address are not part of the request and never stored).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from engine.state import atomic_write_bytes

log = logging.getLogger(__name__)


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    canonical = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: Path | None):
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("llm cache: ignoring unreadable %s (%s)", path, exc)
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.root is None:
            return
        data = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")
        atomic_write_bytes(self._path(key), data)
