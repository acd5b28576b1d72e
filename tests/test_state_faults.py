"""The state under attack: corrupt files, crashes at every commit step, concurrent writers,
full disks, read-only folders, bad flags. Each attack ends in one line and its exit code,
never rewrites a file, and a re-run after any crash gives the uninterrupted state."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yfinance

from engine.cli import main
from engine.config import load_config
from engine.data.demo import DemoSource
from engine.errors import StateCorrupt, StateLocked
from engine.monitor import append_alerts, read_alerts
from engine.report.site import load_site_data
from engine.state import LOCK_FILE, MIGRATIONS, StateStore, state_lock
from tests.state_builder import write_state
from tests.yf_frames import FakeDownload, universe_histories

CONFIG = load_config()
DEMO = ("--source", "demo", "--seed", "5")
D0, D1 = "2024-12-06", "2024-12-11"  # the base state's as_of; the session a crashed run was saving


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def daily(state: Path, date: str, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["daily", "--init", "--state", str(state), *DEMO, "--date", date, *extra])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A daily state as of D0 (started 2024-11-25, so it holds trades)."""
    state = tmp_path_factory.mktemp("base") / "state"
    assert daily(state, "2024-11-25")[0] == 0
    assert daily(state, D0)[0] == 0
    return state


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory) -> dict[str, bytes]:
    """The uninterrupted run from D0 to D1."""
    state = tmp_path_factory.mktemp("straight") / "state"
    shutil.copytree(base, state)
    assert daily(state, D1)[0] == 0
    return snapshot(state)


@pytest.fixture
def state(base, tmp_path) -> Path:
    return shutil.copytree(base, tmp_path / "state")


def one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- corrupt files: exit 4, one line naming the file and the invariant, nothing rewritten -----


def _json_edit(change):
    def edit(state: Path) -> None:
        path = state / "portfolio.json"
        raw = json.loads(path.read_text())
        change(raw)
        path.write_text(json.dumps(raw, indent=1))
    return edit


def _text_edit(old: str, new: str):
    def edit(state: Path) -> None:
        path = state / "portfolio.json"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return edit


def _parquet_edit(name: str, change):
    def edit(state: Path) -> None:
        path = state / name
        change(pd.read_parquet(path)).to_parquet(path, index=False)
    return edit


def _drop(key: str):
    return _json_edit(lambda raw: raw.pop(key))


def _set(key: str, value):
    def change(raw):
        raw[key] = value
    return _json_edit(change)


def _first_position_qty(raw):
    t = sorted(raw["positions"])[0]
    raw["positions"][t]["qty"] += 1


def _tz_dates(df):
    return df.assign(date=df["date"].dt.tz_localize("Europe/Paris"))


def _garbage(name: str):
    def edit(state: Path) -> None:
        (state / name).write_bytes(b"PAR1 this is not a parquet file PAR1")
    return edit


def _delete(name: str):
    return lambda state: (state / name).unlink()


CORRUPTIONS = {
    # every field required: a missing one is never a default (8 of 8 were filled and rewritten)
    **{f"no {k}": (_drop(k), f"has no {k}") for k in (
        "positions", "pending_orders", "as_of", "inception", "benchmarks", "nav_peak_eur", "costs",
        "realised_pnl_eur")},
    "no costs.tax_eur": (_json_edit(lambda raw: raw["costs"].pop("tax_eur")), "has no costs.tax_eur"),
    "cash Infinity": (_text_edit('"cash_eur": ', '"cash_eur": Infinity, "x": '), "Infinity is not a number"),
    "cash 1e400": (_text_edit('"cash_eur": ', '"cash_eur": 1e400, "x": '), "1e400 is not a finite number"),
    "nav peak NaN": (_text_edit('"nav_peak_eur": ', '"nav_peak_eur": NaN, "x": '), "NaN is not a number"),
    "unknown schema": (_set("schema_version", 99), "schema_version 99"),
    # Parquet: exact columns and dtypes, finite numbers, unique dates
    "equity without nav_eur": (_parquet_edit("equity.parquet", lambda df: df.drop(columns="nav_eur")),
                               "equity.parquet has no column nav_eur"),
    "trades without cash_flow_eur": (_parquet_edit("trades.parquet", lambda df: df.drop(columns="cash_flow_eur")),
                                     "trades.parquet has no column cash_flow_eur"),
    "equity deleted": (_delete("equity.parquet"), "equity.parquet is missing"),
    "trades deleted": (_delete("trades.parquet"), "trades.parquet is missing"),
    "malformed equity": (_garbage("equity.parquet"), "cannot read .*equity.parquet"),
    "malformed trades": (_garbage("trades.parquet"), "cannot read .*trades.parquet"),
    "tz-aware equity dates": (_parquet_edit("equity.parquet", _tz_dates), "not tz-naive dates"),
    "infinite nav": (_parquet_edit("equity.parquet", lambda df: df.assign(nav_eur=df["nav_eur"].where(
        df.index < len(df) - 1, float("inf")))), "nav_eur is not a finite number"),
    "qty as text": (_parquet_edit("trades.parquet", lambda df: df.assign(qty=df["qty"].astype(str))),
                    "column qty holds"),
    "unknown column": (_parquet_edit("equity.parquet", lambda df: df.assign(mystery=1.0)), "unknown column"),
    "duplicate equity date": (_parquet_edit("equity.parquet", lambda df: pd.concat([df, df.tail(1)])),
                              f"has the session {D0} twice"),
    # as_of and the equity dates
    "as_of after the last equity row": (_set("as_of", "2024-12-09"), "is not the last session of equity.parquet"),
    "as_of moved back": (_set("as_of", "2024-12-05"), "no save was under way"),
    "inception moved": (_set("inception", "2024-11-26"), "inception 2024-11-26 is not the first session"),
    # cross-checks with trades.parquet, to the cent
    "cash off by a cent": (_json_edit(lambda raw: raw.update(cash_eur=round(raw["cash_eur"] + 0.01, 2))),
                           "cash_eur .* != starting capital"),
    "a position grown": (_json_edit(_first_position_qty), "trades.parquet books"),
    "a fill removed": (_parquet_edit("trades.parquet", lambda df: df.iloc[1:]), "portfolio.json: cash_eur"),
    "realised P&L edited": (_set("realised_pnl_eur", 123.45), "realised_pnl_eur 123.45 != the sum"),
    "commission edited": (_json_edit(lambda raw: raw["costs"].update(commission_eur=0.0)), "costs.commission_eur"),
}


@pytest.mark.parametrize("attack", sorted(CORRUPTIONS))
def test_each_corruption_stops_with_exit_4_and_rewrites_nothing(state, attack):
    edit, message = CORRUPTIONS[attack]
    edit(state)
    before = snapshot(state)
    code, err = daily(state, D1)
    assert code == 4, err
    assert re.search(message, one_line(err)), err
    assert snapshot(state) == before  # never rewritten, nothing added
    assert not (state / "decisions" / "2024" / "12-09.json").exists()


def test_the_attacked_state_is_refused_by_every_reader_too(state, capsys):
    _drop("positions")(state)
    for argv in (["weekly", "--state", str(state)], ["site", "--state", str(state), "--out", str(state.parent / "o")],
                 ["monitor", "--state", str(state), *DEMO, "--now", "2024-12-09T15:00:00+00:00"]):
        assert main(argv) == 4, argv
        assert "has no positions" in one_line(capsys.readouterr().err)


def test_as_of_in_the_future_is_corrupt(tmp_path):
    write_state(tmp_path / "s", {"MC.PA": (10, 100.0)}, cash=9000.0, as_of=dt.date(2024, 12, 6))
    assert StateStore(tmp_path / "s", today=lambda: dt.date(2024, 12, 6)).load().as_of == dt.date(2024, 12, 6)
    with pytest.raises(StateCorrupt, match="as_of 2024-12-06 is in the future"):
        StateStore(tmp_path / "s", today=lambda: dt.date(2024, 12, 5)).load()


def test_an_undecodable_decision_record_is_one_line(state, capsys):
    (state / "decisions" / "2024" / "12-05.json").write_bytes(b'{"date": "\xff\xfe"}')
    assert main(["weekly", "--state", str(state)]) == 4
    assert "12-05.json" in one_line(capsys.readouterr().err)


def test_an_older_schema_is_migrated_not_guessed(state, monkeypatch):
    raw = json.loads((state / "portfolio.json").read_text())
    nav_peak = raw.pop("nav_peak_eur")
    raw["schema_version"] = 0
    raw["peak_nav"] = nav_peak  # what a version 0 would have called it
    (state / "portfolio.json").write_text(json.dumps(raw))
    with pytest.raises(StateCorrupt, match="schema_version 0"):
        StateStore(state).load()

    def v0_to_v1(r):
        r = dict(r)
        r["nav_peak_eur"] = r.pop("peak_nav")
        return r | {"schema_version": 1}

    monkeypatch.setitem(MIGRATIONS, 0, v0_to_v1)
    assert StateStore(state).load().nav_peak_eur == nav_peak


# --- crashes: kill -9 at each step of the commit, and at random times ---------------------------


def _in_child(work, kill_after: float | None = None) -> int:
    """Run `work` in a forked process (warm caches, no re-import); kill -9 it after
    `kill_after` seconds if given. Returns its exit status (negative: the signal)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 70
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                code = work()
        finally:
            os._exit(code)
    if kill_after is not None:
        time.sleep(kill_after)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _crash_at(n: int, after: bool):
    """Work that kills itself at the n-th os.replace or os.link of the run (the steps that
    make a file appear under its name), before or after it."""
    def work() -> int:
        calls = [0]

        def killing(real):
            def call(src, dst):
                calls[0] += 1
                if calls[0] == n and not after:
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst)
                if calls[0] == n and after:
                    os.kill(os.getpid(), signal.SIGKILL)
            return call

        os.replace, os.link = killing(os.replace), killing(os.link)
        return daily(STATE_OF_CHILD[0], D1)[0]
    return work


STATE_OF_CHILD: list[Path] = []
# A save of D0 -> D1 (3 sessions, 5 arms) replaces: the experiment's journal; for each arm
# its journal, 3 decision records, trades, equity and portfolio.json (the arm's commit point);
# the manifest (arms.json); then the root (the experiment's commit point): its journal, 3
# decision records (new names: hard links to the headline arm's, made without a temporary
# name), trades, equity and portfolio.json; experiment.json.
REPLACES = 45
LINKS = {39, 40, 41}  # the root's records: a kill before a link leaves no temporary file
# Every replace of the first arm and of the root, each other arm's commit point, and the
# experiment's journal, manifest and verdicts (a kill in a later arm's records is the first arm's
# case again).
CRASH_POINTS = [1, *range(2, 9), 15, 22, 29, 36, *range(37, 44), 44, 45]


def _after_a_crash_readers_see_one_committed_session_and_a_rerun_converges(state, straight, base):
    p = StateStore(state).load()
    assert str(p.as_of) in (D0, D1)
    view = load_site_data(state, CONFIG)
    assert view.records[-1]["date"] == str(p.as_of) and str(view.equity.index[-1].date()) == str(p.as_of)
    if str(p.as_of) == D0:  # the files may hold the unfinished save's rows, but no reader sees them
        assert (state / "portfolio.json").read_bytes() == (base / "portfolio.json").read_bytes()
        crashed, good = StateStore(state), StateStore(base)
        assert crashed.load() == good.load()
        pd.testing.assert_frame_equal(crashed.equity(), good.equity())
        pd.testing.assert_frame_equal(crashed.trades(), good.trades())
    assert daily(state, D1)[0] == 0
    assert snapshot(state) == straight  # stale .tmp files and the journal are gone too


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("n", CRASH_POINTS)
def test_kill_9_at_each_replace_of_the_save_then_a_rerun_is_the_uninterrupted_run(state, straight, base, n, after):
    STATE_OF_CHILD[:] = [state]
    assert _in_child(_crash_at(n, after)) == -signal.SIGKILL
    if not after and n not in LINKS:
        assert list(state.rglob(".*.tmp")), "the crash left its temporary file"
    _after_a_crash_readers_see_one_committed_session_and_a_rerun_converges(state, straight, base)


def test_there_are_exactly_that_many_replaces(state, straight):
    STATE_OF_CHILD[:] = [state]
    assert _in_child(_crash_at(REPLACES + 1, after=False)) == 0  # no (n+1)-th replace: the run ends
    assert snapshot(state) == straight


def test_random_kill_9s_during_a_run_never_leave_a_mixed_state(base, straight, tmp_path):
    rng = random.Random(14)
    clock = shutil.copytree(base, tmp_path / "timed")
    start = time.perf_counter()
    assert daily(clock, D1)[0] == 0
    took = time.perf_counter() - start
    for i in range(6):
        state = shutil.copytree(base, tmp_path / f"s{i}")
        STATE_OF_CHILD[:] = [state]
        status = _in_child(lambda: daily(STATE_OF_CHILD[0], D1)[0], kill_after=rng.uniform(0.3, 1.2) * took)
        assert status in (0, -signal.SIGKILL)
        _after_a_crash_readers_see_one_committed_session_and_a_rerun_converges(state, straight, base)


# --- one writer -----------------------------------------------------------------------------


@contextlib.contextmanager
def lock_held_elsewhere(root: Path):
    """Another process holds `root`'s lock for the block."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with state_lock(root):
                os.write(ready_w, b"1")
                os.read(stop_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        yield
    finally:
        os.write(stop_w, b"1")
        os.waitpid(pid, 0)


def test_a_second_writer_gets_one_line_and_exit_7(state, capsys):
    before = snapshot(state)
    with lock_held_elsewhere(state):
        for argv in (["daily", "--state", str(state), *DEMO, "--date", D1],
                     ["weekly", "--state", str(state)],
                     ["monitor", "--state", str(state), *DEMO, "--now", "2024-12-09T15:00:00+00:00"],
                     ["site", "--state", str(state), "--out", str(state.parent / "site")]):
            assert main(argv) == 9, argv
            assert "in use by another run" in one_line(capsys.readouterr().err)
    assert snapshot(state) == before
    assert daily(state, D1)[0] == 0  # the lock went with its holder


def test_two_daily_runs_at_once_leave_the_state_of_one(state, straight):
    STATE_OF_CHILD[:] = [state]
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                        contextlib.redirect_stderr(null):
                    code = daily(state, D1)[0]
            finally:
                os._exit(code)
        pids.append(pid)
    codes = sorted(os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids)
    assert codes in ([0, 0], [0, 9])  # one after the other, or the second refused
    assert snapshot(state) == straight


def test_concurrent_alert_appends_under_the_lock_lose_nothing(tmp_path):
    root = tmp_path / "state"
    root.mkdir()
    path = root / "alerts.jsonl"

    def writer(k: int) -> int:
        for i in range(15):
            while True:
                try:
                    with state_lock(root):
                        read_alerts(path)
                        append_alerts(path, [{"date": "2024-12-09", "ticker": f"W{k}", "move": i / 100}])
                    break
                except StateLocked:
                    time.sleep(0.001)
        return 0

    pids = []
    for k in range(4):
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                code = writer(k)
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids] == [0] * 4
    assert len(read_alerts(path)) == 4 * 15


# --- the folder, the disk, the flags: one line and an exit code, before any download --------


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("market data was loaded before the state was checked")
    monkeypatch.setattr(DemoSource, "load", refuse)


def test_state_pointing_at_a_file_is_exit_8_before_the_download_and_the_llm(tmp_path, capsys, no_download,
                                                                            monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    afile = tmp_path / "state"
    afile.write_text("not a folder")
    assert main(["daily", "--init", "--state", str(afile), *DEMO, "--date", D1, "--policy", "llm"]) == 8
    assert "is not a directory" in one_line(capsys.readouterr().err)
    assert main(["daily", "--init", "--state", str(afile / "inner"), *DEMO, "--date", D1]) == 8
    assert "is a file" in one_line(capsys.readouterr().err)


def test_a_read_only_state_is_exit_8_before_the_download(state, capsys, no_download, monkeypatch):
    real_open, inside = os.open, str(state)

    def read_only_fs(path, flags, *args, **kwargs):
        if str(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    before = snapshot(state)
    monkeypatch.setattr(os, "open", read_only_fs)
    assert main(["daily", "--state", str(state), *DEMO, "--date", D1]) == 8
    assert "read-only filesystem" in one_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert snapshot(state) == before


def test_a_full_disk_mid_save_is_exit_8_and_the_rerun_converges(state, straight, capsys, monkeypatch):
    real_fsync, calls = os.fsync, [0]

    def disk_fills_up(fd):  # from the third file on, and it stays full
        calls[0] += 1
        if calls[0] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    committed = {k: v for k, v in snapshot(state).items() if k in ("portfolio.json", "equity.parquet")}
    monkeypatch.setattr(os, "fsync", disk_fills_up)
    assert main(["daily", "--state", str(state), *DEMO, "--date", D1]) == 8
    assert "(disk full)" in one_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert {k: v for k, v in snapshot(state).items() if k in committed} == committed
    assert not list(state.rglob(".*.tmp"))
    assert daily(state, D1)[0] == 0 and snapshot(state) == straight


def test_a_file_too_large_for_the_limit_is_exit_8_and_the_rerun_converges(state, straight, base):
    STATE_OF_CHILD[:] = [state]
    messages = []

    def limited() -> int:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        code, err = daily(STATE_OF_CHILD[0], D1)
        (STATE_OF_CHILD[0].parent / "err.txt").write_text(err[:4000])  # short enough for the limit
        return code

    assert _in_child(limited) == 8
    messages.append((state.parent / "err.txt").read_text())
    assert "file too large" in one_line(messages[0])
    for name in ("portfolio.json", "equity.parquet", "trades.parquet"):
        assert (state / name).read_bytes() == (base / name).read_bytes()
    assert daily(state, D1)[0] == 0 and snapshot(state) == straight


def test_a_seed_mismatch_is_a_configuration_error(state, capsys):
    assert main(["daily", "--state", str(state), "--source", "demo", "--seed", "6", "--date", D1]) == 2
    assert "refusing to mix sources" in one_line(capsys.readouterr().err)


def test_a_held_ticker_missing_from_the_configuration_is_exit_2_not_market_data(state, tmp_path, capsys):
    held = sorted(json.loads((state / "portfolio.json").read_text())["positions"])[0]
    lines = []
    for a in CONFIG.assets:
        if a.ticker == held:
            continue
        lines.append("[[assets]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in a.model_dump().items() if v is not None]
    cfg = tmp_path / "smaller.toml"
    cfg.write_text("\n".join(lines) + "\n")
    assert main(["daily", "--state", str(state), *DEMO, "--date", D1, "--config", str(cfg)]) == 2
    assert f"{held} in " in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("date", ["1999-12-31", "2040-01-02"])
def test_a_date_outside_the_calendars_is_an_error_not_nothing_to_do(tmp_path, capsys, date):
    with pytest.raises(SystemExit) as stop:
        main(["daily", "--init", "--state", str(tmp_path / "s"), *DEMO, "--date", date])
    assert stop.value.code == 2
    assert "outside the trading calendars" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_stale_temporary_files_are_removed_when_the_lock_is_taken(state):
    stale = [state / ".portfolio.json.x1.tmp", state / "decisions" / "2024" / ".12-05.json.x2.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    assert daily(state, D0)[0] == 0  # already done: still cleans up
    assert not any(p.exists() for p in stale)


def test_a_mixed_tz_index_from_yahoo_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch):
    histories = universe_histories(CONFIG, "2023-06-01", "2024-12-20", seed=3)
    good = FakeDownload(histories)(list(histories), start="2023-06-01", end="2024-12-21")
    mixed = good.set_axis(pd.Index([ts.tz_localize("America/New_York" if i % 2 else "Europe/Paris")
                                    for i, ts in enumerate(good.index)]), axis=0)
    monkeypatch.setattr(yfinance, "download", FakeDownload(histories, script=[mixed] * 10))
    fast = tmp_path / "fast.toml"
    fast.write_text("[data]\nbackoff_seconds = 0.0\n")
    code = main(["daily", "--init", "--state", str(tmp_path / "state"), "--source", "yahoo", "--date", "2024-12-20",
                 "--config", str(fast), "--cache", str(tmp_path / "cache")])
    assert code == 3
    assert "not one series of dates" in one_line(capsys.readouterr().err)


# --- records do not depend on the hash seed -------------------------------------------------


def test_records_are_identical_under_two_hash_seeds(base, straight, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = []
    for seed in ("1", "2"):
        state = shutil.copytree(base, tmp_path / seed)
        argv = [sys.executable, "-m", "engine", "daily", "--init", "--state", str(state), *DEMO, "--date", D1]
        procs.append(subprocess.Popen(argv, env=env | {"PYTHONHASHSEED": seed},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert snapshot(tmp_path / "1") == snapshot(tmp_path / "2") == straight


# --- the site: built beside the old one, swapped in whole -------------------------------------


def test_a_killed_site_build_leaves_the_previous_site_whole(base, tmp_path):
    from engine.report.site import SiteError, build_site

    out = tmp_path / "public"
    start = time.perf_counter()
    build_site(base, out, config=CONFIG)
    took = time.perf_counter() - start
    published = snapshot(out)
    assert "index.html" in published

    # kill -9 halfway through the next build (MkDocs empties its output folder first)
    assert _in_child(lambda: build_site(base, out, config=CONFIG) and 0, kill_after=0.5 * took) == -signal.SIGKILL
    assert snapshot(out) == published

    # killed between the two renames of the swap: the old site waits beside; any next build puts it back
    out.rename(tmp_path / ".public.old")
    with pytest.raises(SiteError, match="no state folder"):
        build_site(tmp_path / "nowhere", out, config=CONFIG)
    assert snapshot(out) == published
    assert not (tmp_path / ".public.old").exists() and not (tmp_path / ".public.building").exists()
