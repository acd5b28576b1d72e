"""engine.ops: the one-line commit messages of the scheduled jobs, read from the state files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import ConfigError, StateCorrupt
from engine.monitor import append_alerts
from engine.ops import commit_message


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory) -> Path:
    """Five sessions of the offline demo (rules policy), ending Friday 2024-06-28 (ISO week 26)."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--sessions", "5", "--end", "2024-06-28", "--no-site"]) == 0
    return out / "state"


@pytest.fixture
def state(demo_state: Path, tmp_path: Path) -> Path:
    """A copy of the demo state that a test may edit."""
    return Path(shutil.copytree(demo_state, tmp_path / "state"))


def _edit_last_decision(state: Path, **changes) -> None:
    path = state / "decisions" / "2024" / "06-28.json"
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


# --- daily -----------------------------------------------------------------------------


def test_daily_message_of_a_rules_run(demo_state: Path):
    record = json.loads((demo_state / "decisions" / "2024" / "06-28.json").read_text())
    n = len(record["orders"])
    nav = record["valuation"]["nav_eur"]
    expected = f"2024-06-28: NAV {nav:,.2f} EUR, {n} order{'' if n == 1 else 's'}, policy rules"
    assert commit_message(demo_state, "daily") == expected
    assert re.fullmatch(r"2024-06-28: NAV \d{1,2},\d{3}\.\d\d EUR, \d+ orders?, policy rules", expected)


def test_daily_message_of_an_llm_run_names_the_model_and_the_tokens(state: Path):
    order = {"id": "x", "ticker": "MC.PA", "side": "buy", "qty": 1.0, "decided_on": "2024-06-28", "reason": ""}
    _edit_last_decision(
        state, policy="llm", model="gpt-4o-mini", orders=[order, {**order, "id": "y", "ticker": "SPY"}],
        valuation={"nav_eur": 10123.454},
        usage={"model": "gpt-4o-mini", "answer_model": "gpt-4o-mini-2024-07-18", "calls": 1,
               "prompt_tokens": 3500, "completion_tokens": 312, "cost_usd": 0.0007},
    )
    assert commit_message(state, "daily") == (
        "2024-06-28: NAV 10,123.45 EUR, 2 orders, model gpt-4o-mini-2024-07-18, 3,812 tokens"
    )


def test_daily_message_says_when_the_answer_became_an_explicit_hold(state: Path):
    _edit_last_decision(
        state, policy="llm", orders=[],
        answer={"raw": None, "parsed": {}, "fallback": "the server did not answer after 3 tries", "notes": []},
        usage={"model": "gpt-4o-mini", "calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
    )
    assert commit_message(state, "daily").endswith(", 0 orders, model gpt-4o-mini, 0 tokens, HOLD (fallback)")


def test_daily_message_counts_one_order_in_the_singular(state: Path):
    order = {"id": "x", "ticker": "MC.PA", "side": "sell", "qty": 1.0, "decided_on": "2024-06-28", "reason": ""}
    _edit_last_decision(state, orders=[order], policy="hold", usage=None)
    assert ", 1 order, policy hold" in commit_message(state, "daily")


def test_daily_message_needs_the_last_decision_record(state: Path):
    (state / "decisions" / "2024" / "06-28.json").unlink()
    with pytest.raises(StateCorrupt, match="06-28.json"):
        commit_message(state, "daily")


# --- monitor -----------------------------------------------------------------------------


def _alert(date: str, time_utc: str, ticker: str, move: float) -> dict:
    """An alert as engine.monitor writes it."""
    return {"date": date, "time_utc": time_utc, "ticker": ticker, "move": move, "price_local": 100.0,
            "previous_close": 100.0 / (1 + move), "message": f"{ticker} {move:+.2%}", "source": "demo seed=42"}


def _alerts(state: Path, *alerts: dict) -> None:
    append_alerts(state / "alerts.jsonl", list(alerts))


def test_monitor_message_lists_the_alerts_of_the_latest_run(state: Path):
    _alerts(
        state,
        _alert("2026-11-23", "15:00:05", "SPY", -0.031),
        _alert("2026-11-24", "09:17:40", "MC.PA", -0.022),  # an earlier run of the day: committed then
        _alert("2026-11-24", "15:02:11", "MC.PA", -0.024),
        _alert("2026-11-24", "15:02:11", "PORTFOLIO", -0.021),
    )
    assert commit_message(state, "monitor") == "2026-11-24 15:02 UTC: 2 alerts (MC.PA -2.4%, PORTFOLIO -2.1%)"


def test_monitor_message_of_one_rise(state: Path):
    _alerts(state, _alert("2026-07-01", "15:40:00", "AIR.PA", 0.0255))
    assert commit_message(state, "monitor") == "2026-07-01 15:40 UTC: 1 alert (AIR.PA +2.5%)"


def test_monitor_message_stays_one_readable_line(state: Path):
    tickers = ["MC.PA", "TTE.PA", "SAN.PA", "OR.PA", "AIR.PA", "SU.PA", "AI.PA"]
    _alerts(state, *(_alert("2026-11-24", "15:02:00", t, -0.03) for t in tickers))
    message = commit_message(state, "monitor")
    assert message.startswith("2026-11-24 15:02 UTC: 7 alerts (MC.PA -3.0%, ")
    assert message.endswith("AIR.PA -3.0%, and 2 more)")


def test_monitor_message_when_there_is_no_alert(state: Path):
    assert commit_message(state, "monitor") == "monitor: no new alert"
    (state / "alerts.jsonl").write_text("")
    assert commit_message(state, "monitor") == "monitor: no new alert"


def test_monitor_message_refuses_a_line_that_is_not_an_alert(state: Path):
    _alerts(state, _alert("2026-11-24", "15:02:00", "SPY", 0.03))
    with open(state / "alerts.jsonl", "a") as fh:
        fh.write('{"date": "2026-11-24", "ticker": "SPY"}\n')
    with pytest.raises(StateCorrupt, match=r"alerts.jsonl line 2 is not an alert"):
        commit_message(state, "monitor")


# --- weekly -----------------------------------------------------------------------------


def test_weekly_message_names_the_report_the_weekly_command_wrote(state: Path):
    assert main(["weekly", "--state", str(state)]) == 0
    assert (state / "reports" / "2024-W26.md").exists()
    assert commit_message(state, "weekly") == "2024-W26 weekly report"


def test_weekly_message_needs_the_report(state: Path):
    with pytest.raises(StateCorrupt, match="2024-W26.md does not exist"):
        commit_message(state, "weekly")


# --- errors and the CLI -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["daily", "monitor", "weekly"])
def test_a_missing_state_is_a_clear_error(tmp_path: Path, kind: str):
    with pytest.raises(StateCorrupt, match="does not exist"):
        commit_message(tmp_path / "nowhere", kind)


@pytest.mark.parametrize("kind", ["daily", "weekly"])
def test_an_empty_state_folder_is_a_clear_error(tmp_path: Path, kind: str):
    with pytest.raises(StateCorrupt, match="portfolio.json is missing"):
        commit_message(tmp_path, kind)


def test_a_corrupt_portfolio_is_a_clear_error(state: Path):
    (state / "portfolio.json").write_text("{")
    with pytest.raises(StateCorrupt, match="cannot read"):
        commit_message(state, "daily")


def test_an_unknown_kind_is_a_configuration_error(state: Path):
    with pytest.raises(ConfigError, match="unknown kind"):
        commit_message(state, "hourly")


def test_the_cli_prints_the_message(demo_state: Path, capsys):
    assert main(["commit-message", "--state", str(demo_state), "--kind", "daily"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2024-06-28: NAV ") and out.count("\n") == 1


def test_the_cli_fails_with_one_line_on_a_missing_state(tmp_path: Path, capsys):
    assert main(["commit-message", "--state", str(tmp_path / "nowhere"), "--kind", "daily"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
