"""The daily run on a schedule: --init, the default date (last-closed), settled dates only, bounded
catch-up, the engine's build in each record, and site/weekly on a state with no session yet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_config
from engine.ops import LOCK_FILE, build_info
from engine.report.weekly import report_path
from engine.state import StateStore


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def daily(capsys, state: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "daily", "--state", str(state), "--source", "demo", *extra)


@pytest.fixture
def now(monkeypatch):
    def set_now(text: str) -> None:
        monkeypatch.setenv("ALMOST_SURELY_NOW", text)

    return set_now


def test_daily_refuses_to_start_a_portfolio_in_a_missing_folder(capsys, tmp_path, now):
    now("2024-11-26T22:30:00+00:00")
    code, out, err = daily(capsys, tmp_path / "state")
    assert code == 2
    assert err.count("\n") == 1 and "holds no portfolio" in err and "--init" in err
    assert not (tmp_path / "state").exists()


def test_daily_refuses_an_empty_folder_too(capsys, tmp_path, now):
    now("2024-11-26T22:30:00+00:00")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "alerts.jsonl").write_text("")
    assert daily(capsys, tmp_path / "state")[0] == 2
    assert not (tmp_path / "state" / "portfolio.json").exists()


def test_just_after_midnight_utc_the_default_is_the_session_that_just_closed(capsys, tmp_path, now):
    now("2024-11-26T00:10:00+00:00")  # Tuesday 00:10 UTC: Monday's session, not Tuesday's
    code, out, _ = daily(capsys, tmp_path / "state", "--init")
    assert code == 0 and out.startswith("2024-11-25: NAV 10,000.00 EUR")
    assert StateStore(tmp_path / "state").load().as_of.isoformat() == "2024-11-25"


def test_a_monday_morning_run_books_friday(capsys, tmp_path, now):
    now("2024-12-02T07:00:00+00:00")
    assert daily(capsys, tmp_path / "state", "--init")[0] == 0
    assert StateStore(tmp_path / "state").load().as_of.isoformat() == "2024-11-29"


def test_an_explicit_date_during_its_session_is_refused_and_nothing_is_written(capsys, tmp_path, now):
    now("2024-11-25T15:00:00+00:00")
    code, _, err = daily(capsys, tmp_path / "state", "--init", "--date", "2024-11-25")
    assert code == 2 and err.count("\n") == 1
    assert "settles at 2024-11-25 21:30 UTC" in err
    assert not (tmp_path / "state").exists()


def test_a_long_backlog_is_caught_up_in_bounded_parts(capsys, tmp_path, now):
    cfg = tmp_path / "small.toml"
    cfg.write_text("[schedule]\nmax_sessions_per_run = 4\n")
    state = tmp_path / "state"
    now("2024-11-05T07:00:00+00:00")
    assert daily(capsys, state, "--init", "--config", str(cfg))[0] == 0  # books 2024-11-04
    now("2024-11-19T07:00:00+00:00")  # ten sessions later
    code, out, _ = daily(capsys, state, "--config", str(cfg))
    assert code == 0
    assert "caught up to 2024-11-08: 6 session(s) to 2024-11-18 remain" in out
    assert StateStore(state).load().as_of.isoformat() == "2024-11-08"
    daily(capsys, state, "--config", str(cfg))
    code, out, _ = daily(capsys, state, "--config", str(cfg))
    assert code == 0 and "remain" not in out
    equity = StateStore(state).equity()
    dates = [pd.Timestamp(x).date().isoformat() for x in equity["date"]]
    assert dates[0] == "2024-11-04" and dates[-1] == "2024-11-18"
    assert len(dates) == len(set(dates)) == 11
    assert "already done" in daily(capsys, state, "--config", str(cfg))[1]


def test_each_decision_record_names_the_engine_and_the_lock(capsys, tmp_path, now):
    now("2024-11-26T22:30:00+00:00")
    assert daily(capsys, tmp_path / "state", "--init")[0] == 0
    record = json.loads((tmp_path / "state" / "decisions" / "2024" / "11-26.json").read_text())
    info = build_info(config=load_config())
    assert record["engine"] == info
    assert info["version"] and len(info["lock_sha256"]) == 64 and len(info["config_sha256"]) == 64
    # A changed setting changes the configuration's digest and its section's, and only that one.
    (tmp_path / "c.toml").write_text("[guardrails]\nmax_weight = 0.15\n")
    other = build_info(config=load_config(tmp_path / "c.toml"))
    assert other["config_sha256"] != info["config_sha256"]
    assert [k for k in info["config_sections"] if info["config_sections"][k] != other["config_sections"][k]] \
        == ["guardrails"]
    assert build_info(tmp_path)["lock_sha256"] is None  # no lock file beside it
    (tmp_path / LOCK_FILE).write_text("pandas==2.2.3\n")
    assert build_info(tmp_path)["lock_sha256"] != info["lock_sha256"]


def test_site_on_a_state_with_no_session_builds_the_placeholder(capsys, tmp_path):
    code, out, _ = run(capsys, "site", "--state", str(tmp_path / "state"), "--out", str(tmp_path / "public"))
    assert code == 0 and out.startswith("notice: ")
    home = (tmp_path / "public" / "index.html").read_text(encoding="utf-8")
    assert "The experiment starts at the next session" in home
    assert (tmp_path / "public" / "about" / "index.html").exists()


def test_weekly_on_a_state_with_no_session_writes_nothing(capsys, tmp_path):
    code, out, _ = run(capsys, "weekly", "--state", str(tmp_path / "state"))
    assert code == 0 and out.startswith("notice: ") and "no weekly report" in out
    assert not (tmp_path / "state").exists()


def test_weekly_rewrites_the_previous_week_written_before_friday(capsys, tmp_path, now):
    state = tmp_path / "state"
    now("2024-11-29T07:00:00+00:00")  # Friday morning: Thursday 2024-11-28 is the last session
    assert daily(capsys, state, "--init", "--date", "2024-11-25")[0] == 0
    assert daily(capsys, state)[0] == 0
    assert run(capsys, "weekly", "--state", str(state))[0] == 0  # written early: W48 in progress
    early = report_path(state, "2024-W48").read_text(encoding="utf-8")
    assert "4 of 5 sessions" in early
    now("2024-12-03T07:00:00+00:00")
    assert daily(capsys, state)[0] == 0  # Friday and Monday
    code, out, _ = run(capsys, "weekly", "--state", str(state))
    assert code == 0 and "2024-W48.md rewritten" in out
    late = report_path(state, "2024-W48").read_text(encoding="utf-8")
    assert "in progress" not in late and "2024-11-29" in late
    assert report_path(state, "2024-W49").exists()
    # A complete week is left alone: the next run rewrites nothing.
    assert "rewritten" not in run(capsys, "weekly", "--state", str(state))[1]
