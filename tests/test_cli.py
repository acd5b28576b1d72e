"""The command line, as a user meets it: the demo, the daily run, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yfinance

from engine.cli import main
from engine.config import load_config
from tests.test_state import snapshot
from tests.yf_frames import FakeDownload, universe_histories


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_works_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "daily" in proc.stdout


def test_a_command_run_as_a_module_exits_with_its_code_after_all_its_output(tmp_path, capsys):
    # `python -m engine` skips the interpreter's teardown (engine.cli.quick_exit): nothing
    # printed or logged may be lost, and the exit code is the command's.
    argv = ["demo", "--sessions", "30", "--end", "2025-12-31", "--no-site"]
    proc = subprocess.run([sys.executable, "-m", "engine", *argv, "--out", str(tmp_path / "a")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    code, out, _ = run_cli(capsys, *argv, "--out", str(tmp_path / "b"))
    assert code == 0
    def same(text: str, out: Path) -> str:  # but the folder and the timing
        return re.sub(r"\d+ ms per session", "N ms per session", text.replace(str(out), "OUT"))

    assert same(proc.stdout, tmp_path / "a") == same(out, tmp_path / "b")
    (tmp_path / "file").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "engine", "daily", "--state", str(tmp_path / "file"), "--source", "demo"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 8
    assert proc.stderr.startswith("error: the state folder") and "is not a directory" in proc.stderr


@pytest.mark.parametrize("thread", [False, True])
def test_the_quick_exit_runs_the_exit_handlers_and_waits_for_a_running_thread(thread):
    script = (
        "import atexit, logging, sys, threading, time\n"
        "from engine.cli import quick_exit\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        + ("threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True))).start()\n" if thread else "")
        + "print('buffered, not flushed', end='')\n"
        "logging.warning('a warning')\n"
        "quick_exit(5)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 5
    assert proc.stderr == "a warning\n"
    assert proc.stdout == "buffered, not flushed" + ("thread done\n" if thread else "") + "handler ran\n"


def test_demo_runs_offline_and_prints_the_summary_against_buy_and_hold(tmp_path, capsys):
    code, out, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--sessions", "40", "--end", "2024-12-31", "--seed", "3", "--no-site")
    assert code == 0, err
    assert "SYNTHETIC" in out
    for name in ("Strategy (rules)", "SPY", "CAC 40", "NAV EUR", "max drawdown", "CVaR 95", "costs EUR"):
        assert name in out
    state = tmp_path / "state"
    assert (state / "portfolio.json").exists() and (state / "equity.parquet").exists()
    equity = pd.read_parquet(state / "equity.parquet")
    assert len(equity) == 40 and equity["date"].iloc[-1] == pd.Timestamp("2024-12-31")
    assert len(list((state / "decisions" / "2024").glob("*.json"))) == 40

    before = snapshot(state)
    code, out, _ = run_cli(capsys, "demo", "--out", str(tmp_path), "--sessions", "40", "--end", "2024-12-31", "--seed", "3", "--no-site")
    assert code == 0 and "already up to date" in out
    assert snapshot(state) == before


def test_daily_on_a_day_both_exchanges_are_closed_says_so_and_writes_nothing(tmp_path, capsys):
    for day in ("2024-12-25", "2024-12-28"):  # Christmas (both closed), a Saturday
        code, out, _ = run_cli(capsys, "daily", "--init", "--state", str(tmp_path / "state"), "--source", "demo", "--date", day)
        assert code == 0
        assert f"{day} is not a session of XNYS or XPAR: nothing to do" in out
    assert not (tmp_path / "state").exists()


def test_daily_is_idempotent_and_catches_up_identically_to_one_continuous_run(tmp_path, capsys):
    daily = tmp_path / "daily" / "state"
    args = ("--source", "demo", "--seed", "5")
    assert run_cli(capsys, "daily", "--init", "--state", str(daily), *args, "--date", "2024-11-25")[0] == 0
    first = snapshot(daily)
    code, out, _ = run_cli(capsys, "daily", "--state", str(daily), *args, "--date", "2024-11-25")
    assert code == 0 and "already done" in out
    assert snapshot(daily) == first

    # A missed week (Thanksgiving included) is caught up in order.
    code, out, err = run_cli(capsys, "daily", "--state", str(daily), *args, "--date", "2024-12-03")
    assert code == 0, err
    assert "6 sessions run" in out

    # The same sessions in one demo run give byte-identical state.
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"), "--seed", "5", "--sessions", "7", "--end", "2024-12-03", "--no-site")
    assert code == 0, err
    assert snapshot(daily) == snapshot(tmp_path / "demo" / "state")


def test_a_corrupt_state_file_stops_with_one_line_and_is_not_overwritten(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "portfolio.json").write_text("{ truncated")
    code, out, err = run_cli(capsys, "daily", "--init", "--state", str(state), "--source", "demo", "--date", "2024-11-25")
    assert code == 4
    assert err.startswith("error: cannot read") and err.count("\n") == 1 and "Traceback" not in err
    assert (state / "portfolio.json").read_text() == "{ truncated"


def test_a_state_is_never_fed_two_sources(tmp_path, capsys):
    state = tmp_path / "state"
    assert run_cli(capsys, "daily", "--init", "--state", str(state), "--source", "demo", "--seed", "1", "--date", "2024-11-25")[0] == 0
    code, _, err = run_cli(capsys, "daily", "--state", str(state), "--source", "demo", "--seed", "2", "--date", "2024-11-26")
    assert code == 2 and "refusing to mix sources" in err  # the flags are wrong, not the state


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["daily", "--state", "s", "--source", "demo", "--date", "2024-13-01"], "not a date"),
        (["daily", "--state", "s", "--source", "bloomberg"], "invalid choice"),
        (["demo", "--out", "o", "--sessions", "0"], "must be at least 1"),
        (["demo", "--out", "o", "--policy", "yolo"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_usage_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_config_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[guardrails]\nmax_weight = 3.0\n")
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--config", str(bad))
    assert code == 2 and "guardrails.max_weight" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path), "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "config file not found" in err


# --- the Yahoo path end to end, on yfinance-shaped frames (no network) ---------------------

D = "2024-12-20"


@pytest.fixture(scope="module")
def histories():
    return universe_histories(load_config(), "2023-06-01", D, seed=3)


@pytest.fixture
def fast_config(tmp_path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text("[data]\nbackoff_seconds = 0.0\n")
    return path


def test_daily_on_yahoo_proceeds_without_a_broken_asset_it_does_not_hold(
    tmp_path, capsys, caplog, monkeypatch, histories, fast_config
):
    fake = FakeDownload(histories, fail=["KER.PA"])
    monkeypatch.setattr(yfinance, "download", fake)
    state = tmp_path / "state"
    code, out, err = run_cli(capsys, "daily", "--init", "--state", str(state), "--source", "yahoo", "--date", D,
                             "--config", str(fast_config), "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    assert "data: KER.PA missing" in caplog.text  # logged
    rec = json.loads((state / "decisions" / "2024" / "12-20.json").read_text())
    assert rec["synthetic"] is False and rec["source"] == "yahoo"
    assert [i["ticker"] for i in rec["brief"]["data_issues"] if i["kind"] == "missing"] == ["KER.PA"]
    assert "KER.PA" not in rec["brief"]["assets"]["rows"]
    assert len(fake.calls) == 2  # one batched call, one retry for the missing ticker


def test_daily_on_yahoo_stops_when_a_benchmark_is_missing(tmp_path, capsys, monkeypatch, histories, fast_config):
    monkeypatch.setattr(yfinance, "download", FakeDownload(histories, fail=["SPY"]))
    state = tmp_path / "state"
    code, _, err = run_cli(capsys, "daily", "--init", "--state", str(state), "--source", "yahoo", "--date", D,
                           "--config", str(fast_config), "--cache", str(tmp_path / "cache"))
    assert code == 3
    assert "cannot run safely without SPY" in err and "Traceback" not in err
    assert not (state / "portfolio.json").exists()


def test_daily_on_yahoo_with_yahoo_down_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch, histories, fast_config):
    monkeypatch.setattr(yfinance, "download", FakeDownload(histories, fail=list(histories)))
    code, _, err = run_cli(capsys, "daily", "--init", "--state", str(tmp_path / "state"), "--source", "yahoo", "--date", D,
                           "--config", str(fast_config), "--cache", str(tmp_path / "cache"))
    assert code == 3 and err.startswith("error: ") and "Traceback" not in err
