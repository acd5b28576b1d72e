"""What the scheduled jobs say about the state they leave behind: one-line commit messages.

The GitHub Actions workflows (``.github/workflows/``) run a job (``daily``, ``monitor``,
``weekly``), then commit ``state/`` with the line ``python -m engine commit-message`` prints,
so that ``git log --oneline`` reads as the portfolio's diary::

    2026-11-24: NAV 10,123.45 EUR, 2 orders, model gpt-4o-mini, 3,812 tokens
    2026-11-24 15:02 UTC: 2 alerts (MC.PA -2.4%, PORTFOLIO -2.1%)
    2026-W48 weekly report

Everything here only reads the state files; a state that is missing or unreadable raises
:class:`~engine.errors.StateCorrupt` (one clear line from the CLI, and no commit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

import engine

from engine.config import Config
from engine.errors import ConfigError, StateCorrupt
from engine.portfolio.ledger import Portfolio
from engine.state import StateStore

KINDS = ("daily", "monitor", "weekly")
# The locked dependencies (hashes included) every workflow and .ci/run install: see docs/setup.md.
LOCK_FILE = "requirements.txt"
MAX_ALERTS_LISTED = 5  # a commit subject stays one readable line


def commit_message(state: Path, kind: str) -> str:
    """The one-line commit message for what a ``kind`` job just did to ``state``."""
    state = Path(state)
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    if not state.is_dir():
        raise StateCorrupt(f"{state} is not a state folder (it does not exist)")
    if kind == "daily":
        return daily_message(state)
    if kind == "monitor":
        return monitor_message(state)
    return weekly_message(state)


def _portfolio(store: StateStore) -> Portfolio:
    p = store.load()
    if p is None or p.as_of is None:
        raise StateCorrupt(f"{store.portfolio_path} is missing or has no session done yet: nothing to describe")
    return p


def daily_message(state: Path) -> str:
    """``2026-11-24: NAV 10,123.45 EUR, 2 orders, model gpt-4o-mini, 3,812 tokens`` from the
    last decision record; ``policy rules`` (or ``hold``) when no model was asked, and
    ``HOLD (fallback)`` when the model's answer was replaced by an explicit HOLD."""
    store = StateStore(state)
    as_of = _portfolio(store).as_of
    record = store.decision(pd.Timestamp(as_of))
    try:
        nav_eur = float(record["valuation"]["nav_eur"])
        n_orders = len(record["orders"])
        fallback = (record.get("answer") or {}).get("fallback")
    except (KeyError, TypeError, ValueError) as exc:
        raise StateCorrupt(f"{store.decision_path(pd.Timestamp(as_of))} lacks {exc}") from None
    parts = [f"{as_of.isoformat()}: NAV {nav_eur:,.2f} EUR", f"{n_orders} order{'' if n_orders == 1 else 's'}"]
    usage = record.get("usage") or {}
    if usage:
        model = usage.get("answer_model") or usage.get("model") or record.get("model") or "unknown"
        tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        parts += [f"model {model}", f"{tokens:,} tokens"]
    else:
        parts.append(f"policy {record.get('policy', 'unknown')}")
    if fallback:
        parts.append("HOLD (fallback)")
    return ", ".join(parts)


def monitor_message(state: Path) -> str:
    """``2026-11-24 15:02 UTC: 2 alerts (MC.PA -2.4%, PORTFOLIO -2.1%)``: the alerts of the
    latest monitor run in ``alerts.jsonl`` (the monitor stamps a run's alerts with its date and
    time; the file only changes when a run adds some), or ``no new alert``."""
    from engine.monitor import ALERTS_FILE, read_alerts  # here: the daily job's build_info needs neither

    alerts = read_alerts(state / ALERTS_FILE)
    if not alerts:
        return "monitor: no new alert"
    latest = max((a["date"], str(a.get("time_utc", ""))) for a in alerts)
    new = [a for a in alerts if (a["date"], str(a.get("time_utc", ""))) == latest]
    day, time_utc = latest
    stamp = f"{day} {time_utc[:5]} UTC" if time_utc else day
    listed = [f"{a['ticker']} {a['move']:+.1%}" for a in new[:MAX_ALERTS_LISTED]]
    if len(new) > MAX_ALERTS_LISTED:
        listed.append(f"and {len(new) - MAX_ALERTS_LISTED} more")
    return f"{stamp}: {len(new)} alert{'' if len(new) == 1 else 's'} ({', '.join(listed)})"


def weekly_message(state: Path) -> str:
    """``2026-W48 weekly report``: the ISO week of the last session done, whose report
    ``python -m engine weekly`` writes by default."""
    from engine.report.weekly import iso_week, report_path

    week = iso_week(_portfolio(StateStore(state)).as_of)
    report = report_path(state, week)
    if not report.exists():
        raise StateCorrupt(f"{report} does not exist: run python -m engine weekly --state {state} first")
    return f"{week} weekly report"


def has_session(state: Path) -> bool:
    """Whether `state` holds at least one session done: `site` and `weekly` have something to
    show. A missing or empty folder (a new fork before its first session) holds none."""
    state = Path(state)
    if not state.is_dir():
        return False
    p = StateStore(state).load()
    return p is not None and p.as_of is not None


def build_info(root: Path | None = None, config: Config | None = None) -> dict[str, Any]:
    """What produced a decision record: the engine's version and the SHA-256 of the lock file
    beside the package (None when the engine runs without one, e.g. installed from a wheel);
    with `config`, the digests of the effective configuration (:func:`config_digests`), so
    the site's changes log can say when, and in which sections, the configuration changed."""
    root = Path(engine.__file__).resolve().parents[1] if root is None else Path(root)
    lock = root / LOCK_FILE
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError:
        digest = None
    out: dict[str, Any] = {"version": engine.__version__, "lock_sha256": digest}
    if config is not None:
        out.update(config_digests(config))
    return out


def config_digests(config: Config) -> dict[str, Any]:
    """``config_sha256``: the SHA-256 of the effective configuration (defaults and the user's
    file merged and validated, as canonical JSON), and ``config_sections``: the first 12 hex
    digits of the digest of each top-level section (``"guardrails"``, ``"costs"``, ...), which
    say which part changed when the whole digest does. About 300 bytes per record."""
    dumped = config.model_dump(mode="json")

    def sha(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=False).encode("utf-8")).hexdigest()

    return {"config_sha256": sha(dumped), "config_sections": {k: sha(v)[:12] for k, v in sorted(dumped.items())}}
