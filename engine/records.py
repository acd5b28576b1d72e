"""Decision records on disk: each figure once, the system prompt once per version.

A record (``decisions/YYYY/MM-DD.json``) is written in **layout 2**; layouts 1 and 2 are
both read, and every reader gets the record in the same shape, whatever the file holds
(:func:`read_record`; :meth:`engine.state.StateStore.decision` uses it):

* **The system prompt is stored once per version**, in ``decisions/prompts/<sha256>.txt``
  (the SHA-256 of its UTF-8 text), written atomically the first time a record uses it and
  never rewritten. A record's system message holds ``content_sha256`` instead of
  ``content``; reading puts the text back and checks its hash, so a prompt file that was
  edited or lost is a :class:`StateCorrupt`, never a silently different prompt. The
  prompts live beside the records, so copying ``decisions/`` (the site's copy of the raw
  records, the move of a state into an arm's folder) copies them too.
* **The user message is stored verbatim**: it is the exact text the model was given. It
  is not re-rendered from the structured brief on reading, because the renderer changes
  with the engine and an old record must still show what its model saw, byte for byte.
  The structured brief beside it keeps only what the readers of records use
  (``Brief.as_dict(beside_message=True)``: of the asset table the close, of each position
  its quantity, prices and value); a policy without a message keeps the whole brief.
* **What the record holds elsewhere is not repeated**: the previous decision's
  ``fills_today`` and ``execution_notes`` are this session's fills and notes, already at
  the top of the record; the parsed answer is the model's raw answer when that is exactly
  the JSON object asked for (reasons and summary would be stored twice). Each is dropped
  only when it can be derived back exactly (checked at writing), and derived again on
  reading by the small functions below, which are part of the layout: changing them
  needs a layout 3, so that layout-2 files read the same forever.

Key order is the order the step writes (a day's diff lines up with the day before), and
the JSON is :func:`engine.state.dumps`' (one line per asset, fill or order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.errors import StateCorrupt

LAYOUT = 2  # the record's schema_version as written; 1: everything inline
PROMPTS = "prompts"  # under decisions/


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_path(decisions: Path, sha: str) -> Path:
    return Path(decisions) / PROMPTS / f"{sha}.txt"


# --- derived parts ---------------------------------------------------------------------


def _fills_today(fills: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The previous decision's ``fills_today`` from the record's fills (as engine.step
    writes them)."""
    return [{"ticker": f["ticker"], "side": f["side"], "qty": f["qty"], "price_local": round(f["price_local"], 4),
             "currency": f["currency"], "cash_flow_eur": f["cash_flow_eur"]} for f in fills]


def _parsed_from_raw(raw: Any) -> dict[str, Any] | None:
    """The parsed answer when the model's raw answer is exactly the JSON object, with every
    field given (None otherwise: then the record keeps both)."""
    if not isinstance(raw, str):
        return None
    try:
        obj = orjson.loads(raw)
        out = {"decisions": [{"ticker": d["ticker"], "action": d["action"], "percent": float(d["percent"]),
                              "reason": d["reason"]} for d in obj["decisions"]], "summary": obj["summary"]}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if set(obj) != {"decisions", "summary"} or any(set(d) != {"ticker", "action", "percent", "reason"}
                                                    or type(d["percent"]) not in (int, float)
                                                    for d in obj["decisions"]):
        return None
    return out


def _derived_previous(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"fills_today": _fills_today(record.get("fills") or []),
            "execution_notes": list(record.get("execution_notes") or [])}


# --- writing ---------------------------------------------------------------------------


def pack(record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record as layout 2 stores it, and the prompts it refers to ({sha256: text})."""
    out = dict(record)  # the parts changed are copied: the record itself is left as it is
    prompts: dict[str, str] = {}
    usage = out.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("messages"), list):
        usage = out["usage"] = dict(usage)
        messages = []
        for m in usage["messages"]:
            if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str):
                sha = sha256_text(m["content"])
                prompts[sha] = m["content"]
                m = {("content_sha256" if k == "content" else k): (sha if k == "content" else v) for k, v in m.items()}
            messages.append(m)
        usage["messages"] = messages
    brief = out.get("brief")
    if isinstance(brief, Mapping) and not isinstance(brief, dict):  # rendered when written (BriefRecord)
        brief = out["brief"] = dict(brief)
    prev = brief.get("previous") if isinstance(brief, dict) else None
    if isinstance(prev, dict):
        prev = dict(prev)
        out["brief"] = {**brief, "previous": prev}
        try:
            derived = _derived_previous(out)
        except (KeyError, TypeError):
            derived = {}
        for k, v in derived.items():
            if k in prev and prev[k] == v:
                del prev[k]
    answer = out.get("answer")
    if isinstance(answer, dict) and "parsed" in answer and answer["parsed"] == _parsed_from_raw(answer.get("raw")):
        out["answer"] = {k: v for k, v in answer.items() if k != "parsed"}
    out["schema_version"] = LAYOUT
    return out, prompts


def write_prompts(decisions: Path, prompts: Mapping[str, str], durable: bool = True) -> None:
    """Store each prompt ({sha256: text}) under ``decisions/prompts/``, atomically, unless
    it is there already."""
    from engine.state import atomic_write_bytes

    for sha, text in prompts.items():
        target = prompt_path(decisions, sha)
        data = text.encode("utf-8")
        try:
            same = target.read_bytes() == data
        except OSError:
            same = False
        if not same:  # missing (or damaged: a prompt file is its hash's text, so rewriting it repairs it)
            atomic_write_bytes(target, data, durable=durable)


Encoded = tuple[bytes, dict[str, str]]  # a record's file as layout 2 stores it, and its prompts


def encode_record(record: Mapping[str, Any]) -> Encoded:
    """The bytes of a decision record's file in layout 2, and the prompts it refers to."""
    from engine.state import dumps

    stored, prompts = pack(record)
    return dumps(stored), prompts


def write_record(path: Path | str, record: Mapping[str, Any], durable: bool = True, encoded: Encoded | None = None) -> None:
    """Write a decision record in layout 2: its prompts first (once per version), then the
    record, each atomically. `encoded`: the record's :func:`encode_record`, when it was
    encoded beforehand (a backtest encodes while it waits for its saver)."""
    from engine.state import atomic_write_bytes

    data, prompts = encoded if encoded is not None else encode_record(record)
    if prompts:
        write_prompts(Path(path).parent.parent, prompts, durable=durable)
    atomic_write_bytes(path, data, durable=durable)


# --- reading ---------------------------------------------------------------------------


class Prompts:
    """The stored prompts of one ``decisions/`` folder, read once each and checked."""

    def __init__(self, decisions: Path):
        self.decisions = Path(decisions)
        self._texts: dict[str, str] = {}

    def text(self, sha: str, where: Path) -> str:
        if sha not in self._texts:
            path = prompt_path(self.decisions, sha)
            try:
                text = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise StateCorrupt(f"{where} refers to the system prompt {sha[:12]}…, which cannot be read "
                                   f"from {path}: {exc}") from None
            if sha256_text(text) != sha:
                raise StateCorrupt(f"{path} does not hold the prompt its name says (its SHA-256 is "
                                   f"{sha256_text(text)[:12]}…): the prompt was changed after it was recorded")
            self._texts[sha] = text
        return self._texts[sha]


def unpack(stored: dict[str, Any], prompts: Prompts, where: Path) -> dict[str, Any]:
    """A stored record (layout 1 or 2) in the shape every reader knows: system prompts
    inline, derived parts back in place."""
    if stored.get("schema_version") != LAYOUT:
        return stored  # layout 1 (or a record without a version): everything is inline
    usage = stored.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("messages"), list):
        messages = []
        for m in usage["messages"]:
            if isinstance(m, dict) and "content_sha256" in m:
                sha = m["content_sha256"]
                if not isinstance(sha, str):
                    raise StateCorrupt(f"{where}: a message's content_sha256 is not a string")
                m = {("content" if k == "content_sha256" else k): (prompts.text(sha, where) if k == "content_sha256"
                                                                   else v) for k, v in m.items()}
            messages.append(m)
        usage["messages"] = messages
    brief = stored.get("brief")
    prev = brief.get("previous") if isinstance(brief, dict) else None
    if isinstance(prev, dict):
        missing = [k for k in ("fills_today", "execution_notes") if k not in prev]
        if missing:
            try:
                derived = _derived_previous(stored)
            except (KeyError, TypeError) as exc:
                raise StateCorrupt(f"{where}: the fills cannot give the previous decision's {missing[0]} "
                                   f"({exc})") from None
            prev.update({k: derived[k] for k in missing})
    answer = stored.get("answer")
    if isinstance(answer, dict) and "parsed" not in answer:
        parsed = _parsed_from_raw(answer.get("raw"))
        if parsed is None:
            raise StateCorrupt(f"{where}: the answer has no parsed decision and its raw text is not one")
        out: dict[str, Any] = {}
        for k, v in answer.items():  # back in its place, after the raw answer
            out[k] = v
            if k == "raw":
                out["parsed"] = parsed
        stored["answer"] = out
    stored["schema_version"] = 1
    return stored


def read_record(path: Path, prompts: Prompts | None = None) -> dict[str, Any]:
    """The decision record at `path`, resolved (StateCorrupt when it cannot be read)."""
    path = Path(path)
    try:
        rec = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:  # invalid UTF-8 is a JSONDecodeError too
        raise StateCorrupt(f"cannot read {path}: {exc}") from None
    if not isinstance(rec, dict):
        raise StateCorrupt(f"{path} does not hold a decision record")
    return unpack(rec, prompts if prompts is not None else Prompts(path.parent.parent), path)
