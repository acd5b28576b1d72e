"""state/: atomic writes, idempotent saves, corrupt files stop the run and are never overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import StateCorrupt, StateUnwritable
from engine.indicators import compute_indicators
from engine.policies import RulesPolicy
from engine.portfolio.ledger import Portfolio
from engine.state import StateStore
from engine.step import StepContext, run


@pytest.fixture(scope="module")
def year(config, demo_market):
    """Two slices of a year of the rules policy on the demo market."""
    ind = compute_indicators(demo_market, config)
    ctx = StepContext(config=config, policy=RulesPolicy(config), source="demo seed=7", synthetic=True)
    idx = demo_market.index
    s1 = idx[(idx >= pd.Timestamp("2024-01-02")) & (idx <= pd.Timestamp("2024-06-28"))]
    s2 = idx[(idx > pd.Timestamp("2024-06-28")) & (idx <= pd.Timestamp("2024-12-31"))]
    p1, r1 = run(Portfolio.initial(10_000, "demo seed=7"), s1, demo_market, ind, ctx)
    p2, r2 = run(p1, s2, demo_market, ind, ctx)
    return p1, r1, p2, r2


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_save_then_load_round_trips_and_lays_out_the_audit_trail(tmp_path, year):
    p1, r1, _, _ = year
    store = StateStore(tmp_path / "state")
    assert store.load() is None
    store.save(p1, r1)
    assert store.load() == p1
    eq = store.equity()
    assert len(eq) == len(r1) and list(eq.columns[:4]) == ["date", "nav_eur", "cash_eur", "invested_eur"]
    assert eq["nav_eur"].tolist() == [r.equity["nav_eur"] for r in r1]
    trades = store.trades()
    assert len(trades) == sum(len(r.fills) for r in r1) > 0
    assert {"date", "ticker", "side", "qty", "price_local", "currency", "fx_eurusd", "commission_eur", "tax_eur"} <= set(trades.columns)
    rec = json.loads((tmp_path / "state" / "decisions" / "2024" / "03-15.json").read_text())
    assert rec["date"] == "2024-03-15" and rec["policy"] == "rules" and rec["synthetic"] is True
    assert {"brief", "answer", "cuts", "orders", "fills"} <= set(rec)
    pj = json.loads((tmp_path / "state" / "portfolio.json").read_text())
    assert pj["schema_version"] == 1 and pj["as_of"] == "2024-06-28"


def test_saving_the_same_sessions_twice_changes_nothing(tmp_path, year):
    p1, r1, _, _ = year
    store = StateStore(tmp_path / "state")
    store.save(p1, r1)
    before = snapshot(tmp_path)
    store.save(p1, r1)
    assert snapshot(tmp_path) == before


def test_a_crash_mid_save_leaves_the_last_good_state_and_a_rerun_completes_it(tmp_path, year, monkeypatch):
    p1, r1, p2, r2 = year
    store = StateStore(tmp_path / "state")
    store.save(p1, r1)
    good = snapshot(tmp_path)

    calls = {"n": 0}
    real_replace = os.replace

    def crash_on_the_trades_file(src, dst):
        calls["n"] += 1
        if str(dst).endswith("trades.parquet"):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_trades_file)
    with pytest.raises(StateUnwritable, match="simulated"):
        store.save(p2, r2)
    monkeypatch.setattr(os, "replace", real_replace)

    # The portfolio, equity and trades are the last good ones; no temporary file is left.
    after = snapshot(tmp_path)
    for name in ("state/portfolio.json", "state/equity.parquet", "state/trades.parquet"):
        assert after[name] == good[name]
    assert not [n for n in after if n.endswith(".tmp")]
    assert store.load() == p1

    # Running the same sessions again (what the next run does) completes the state, exactly.
    store.save(p2, r2)
    clean = StateStore(tmp_path / "clean")
    clean.save(p1, r1)
    clean.save(p2, r2)
    crashed, straight = snapshot(tmp_path / "state"), snapshot(tmp_path / "clean")
    assert crashed == straight


def test_a_crash_while_writing_a_file_keeps_the_old_file_whole(tmp_path, year, monkeypatch):
    p1, r1, p2, _ = year
    store = StateStore(tmp_path / "state")
    store.save(p1, r1)
    old = store.portfolio_path.read_bytes()

    def fail_fsync(fd):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(StateUnwritable, match="power cut"):
        store.save(p2, [])
    assert store.portfolio_path.read_bytes() == old
    assert not list(store.root.glob(".*.tmp"))


def test_an_atomic_write_never_writes_into_a_temporary_file_it_did_not_make(tmp_path):
    import engine.state

    target = tmp_path / "portfolio.json"
    upcoming = next(engine.state._temp_names) + 1  # the name the next write would take
    stale = tmp_path / f".portfolio.json.{os.getpid()}.{upcoming}.tmp"
    stale.write_bytes(b"left by a crash")
    engine.state.atomic_write_bytes(target, b"{}\n", durable=False)
    assert target.read_bytes() == b"{}\n"
    assert stale.read_bytes() == b"left by a crash"  # stepped over, for the recovery to clear
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, stale.name])


def test_an_atomic_write_makes_the_folders_it_needs(tmp_path):
    from engine.state import atomic_write_bytes

    target = tmp_path / "decisions" / "2031" / "01-02.json"
    atomic_write_bytes(target, b"[]\n", durable=False)
    assert target.read_bytes() == b"[]\n" and not list(target.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "cannot read"),
        (b'{"schema_version": 99}', "schema_version 99"),
        (b'{"schema_version": 1, "starting_capital_eur": 10000, "cash_eur": -5}', "invalid at cash_eur"),
        (b"\xff\xfe\x00garbage", "cannot read"),
    ],
)
def test_a_corrupt_portfolio_file_stops_with_a_clear_error(tmp_path, content, message):
    store = StateStore(tmp_path)
    store.portfolio_path.write_bytes(content)
    with pytest.raises(StateCorrupt, match=message):
        store.load()
    assert store.portfolio_path.read_bytes() == content


def test_a_corrupt_equity_file_stops_the_save_before_anything_is_written(tmp_path, year):
    p1, r1, p2, r2 = year
    store = StateStore(tmp_path / "state")
    store.save(p1, r1)
    store.equity_path.write_bytes(b"PAR1 this is not parquet")
    before = snapshot(tmp_path)
    with pytest.raises(StateCorrupt, match="equity.parquet"):
        store.save(p2, r2)
    assert snapshot(tmp_path) == before


def test_missing_portfolio_next_to_existing_history_is_not_a_fresh_start(tmp_path, year):
    p1, r1, _, _ = year
    store = StateStore(tmp_path)
    store.save(p1, r1)
    store.portfolio_path.unlink()
    with pytest.raises(StateCorrupt, match="refusing to start over"):
        store.load()


def _long_run(config, demo_market, root, policy=None, checkpoint=20):
    """The first quarter of 2024 for the rules arm alone, saved every `checkpoint` sessions."""
    import dataclasses

    from engine.arms import headline_spec, open_experiment, run_experiment

    idx = demo_market.index
    sessions = idx[(idx >= pd.Timestamp("2024-01-02")) & (idx <= pd.Timestamp("2024-03-28"))]
    head = headline_spec(config, "rules")
    exp = open_experiment(root, config, [head], head, "demo seed=7", True, None, durable=False)
    if policy is not None:
        exp.headline.ctx = dataclasses.replace(exp.headline.ctx, policy=policy)
    run_experiment(exp, list(sessions), demo_market, compute_indicators(demo_market, config), checkpoint=checkpoint)
    return exp


def test_saving_every_20_sessions_writes_the_same_state_as_one_save_at_the_end(tmp_path, config, demo_market):
    import gc

    before = gc.get_threshold()
    chunked = _long_run(config, demo_market, tmp_path / "chunked", checkpoint=20)
    assert gc.get_threshold() == before  # the run collects less often while it runs, and only then
    _long_run(config, demo_market, tmp_path / "once", checkpoint=1000)
    assert snapshot(tmp_path / "chunked") == snapshot(tmp_path / "once")
    head, dates = chunked.headline, StateStore(tmp_path / "chunked").equity()["date"]  # counted, not kept
    assert len(dates) > 60 and head.saved == len(dates) and head.unsaved == []
    assert head.first_saved == dates.iloc[0].date() and head.last_saved.date == dates.iloc[-1]


def test_checkpoints_are_written_in_the_background_and_give_the_state_of_a_foreground_save(
        tmp_path, config, demo_market, monkeypatch):
    real_fork, forks = os.fork, []

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    _long_run(config, demo_market, tmp_path / "background", checkpoint=20)
    assert len(forks) == 3  # the checkpoints at 20, 40 and 60 sessions; the last save is the run's own
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")
    _long_run(config, demo_market, tmp_path / "foreground", checkpoint=20)
    assert len(forks) == 3
    assert snapshot(tmp_path / "background") == snapshot(tmp_path / "foreground")


def test_a_checkpoint_starts_from_what_the_save_before_it_wrote_not_from_reading_it_back(
        tmp_path, config, demo_market, monkeypatch):
    """Each forked save hands what it wrote to the run: neither the next checkpoint's saver
    nor the run's own last save reads an arm's equity and trades back from disk (they grow
    with the run), and the state is a foreground save's."""
    log, run_pid = tmp_path / "read.log", os.getpid()
    real = StateStore._read_parquet

    def logged(self, path):
        if path.exists():  # (a new folder's files are looked for, and are not there)
            with open(log, "a", encoding="utf-8") as fh:  # from the run and from its savers
                fh.write(f"{'run' if os.getpid() == run_pid else 'saver'} {path.name}\n")
        return real(self, path)

    monkeypatch.setattr(StateStore, "_read_parquet", logged)
    exp = _long_run(config, demo_market, tmp_path / "background", checkpoint=20)
    assert exp.headline.saved > 60  # three checkpoints in the background, then the last save
    assert not log.exists()  # a new folder: nothing was there to read, and nothing written was read back
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")
    _long_run(config, demo_market, tmp_path / "foreground", checkpoint=20)
    assert snapshot(tmp_path / "background") == snapshot(tmp_path / "foreground")
    fresh = StateStore(tmp_path / "background" / "arms" / "rules")
    fresh.load()
    pd.testing.assert_frame_equal(exp.headline.store.equity(), fresh.equity())  # what the run holds is on disk
    pd.testing.assert_frame_equal(exp.headline.store.trades(), fresh.trades())


def test_a_save_whose_stores_cannot_be_handed_over_still_counts_and_the_next_one_reads_the_files(
        tmp_path, config, demo_market, monkeypatch):
    log, run_pid = tmp_path / "read.log", os.getpid()
    real = StateStore._read_parquet

    def logged(self, path):
        if path.exists() and os.getpid() != run_pid:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{path.name}\n")
        return real(self, path)

    monkeypatch.setattr(StateStore, "_read_parquet", logged)
    monkeypatch.setattr(StateStore, "handover", lambda self: (lambda: None))  # cannot be pickled
    _long_run(config, demo_market, tmp_path / "background", checkpoint=20)
    assert log.read_text(encoding="utf-8").split().count("equity.parquet") == 4  # 2 later savers x arm and root
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")
    _long_run(config, demo_market, tmp_path / "foreground", checkpoint=20)
    assert snapshot(tmp_path / "background") == snapshot(tmp_path / "foreground")


def test_what_a_save_hands_over_is_dropped_once_another_writer_changes_the_folder(tmp_path, year):
    p1, r1, p2, r2 = year
    saver = StateStore(tmp_path)
    saver.save(p1, r1)
    run = StateStore(tmp_path)
    run.take_over(saver.handover())
    assert run.current() == p1 and len(run.equity()) == len(r1)
    other = StateStore(tmp_path)
    other.load()
    other.save(p2, r2)  # another writer: the files now differ from what was handed over
    assert run.current() == p2 and len(run.equity()) == len(r1) + len(r2)


def test_records_encoded_while_a_save_runs_are_encoded_once_and_written_as_the_saver_would(
        tmp_path, config, demo_market, monkeypatch):
    """While a checkpoint is being written, the run encodes the next checkpoint's records
    (here the saver is made to look busy for as long as there is work): each record is
    encoded once, by the run or by the saver, and the state is a foreground save's."""
    import engine.arms
    import engine.records
    from engine.arms import _ForkedSave

    real, log, run_pid = engine.records.encode_record, tmp_path / "encoded.log", os.getpid()

    def logged(record):
        with open(log, "a", encoding="utf-8") as fh:  # from the run and from its savers
            fh.write(f"{'run' if os.getpid() == run_pid else 'saver'} {record['date']}\n")
        return real(record)

    monkeypatch.setattr(engine.records, "encode_record", logged)
    monkeypatch.setattr(engine.arms, "encode_record", logged)
    monkeypatch.setattr(_ForkedSave, "finished", lambda self: False)
    _long_run(config, demo_market, tmp_path / "background", checkpoint=20)
    by = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    dates = sorted(d for _, d in by)
    assert dates == sorted(set(dates)) and len(dates) > 60  # each session once (the root links the arm's file)
    assert sorted(d for who, d in by if who == "saver") == dates[:20]  # the first checkpoint: nothing to wait for
    assert sorted(d for who, d in by if who == "run") == dates[20:]
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")
    _long_run(config, demo_market, tmp_path / "foreground", checkpoint=20)
    assert snapshot(tmp_path / "background") == snapshot(tmp_path / "foreground")


def test_encoding_ahead_stops_when_the_save_under_way_ends(tmp_path, config, demo_market, monkeypatch):
    """The run encodes ahead only while it would otherwise wait: a save that has ended
    leaves the rest of the records to the next save."""
    import engine.arms
    from engine.arms import _ForkedSave

    checks = [0]

    def ends_after_five(self):
        checks[0] += 1
        return checks[0] % 6 == 0  # five records encoded, then the save is found ended

    encoded = []
    real = engine.arms.encode_record
    monkeypatch.setattr(engine.arms, "encode_record", lambda record: encoded.append(record["date"]) or real(record))
    monkeypatch.setattr(_ForkedSave, "finished", ends_after_five)
    _long_run(config, demo_market, tmp_path / "background", checkpoint=20)
    days = [d.date().isoformat() for d in StateStore(tmp_path / "background").equity()["date"]]
    assert len(days) > 60
    assert encoded == days[20:25] + days[40:45] + days[60:65]  # at 40 and 60 sessions, and at the last save
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")
    _long_run(config, demo_market, tmp_path / "foreground", checkpoint=20)
    assert snapshot(tmp_path / "background") == snapshot(tmp_path / "foreground")


@pytest.mark.parametrize("k", [1, 9, 20])
def test_a_run_killed_during_a_background_save_takes_the_save_with_it_and_the_rerun_converges(
        tmp_path, config, demo_market, k):
    """kill -9 of the run while its saving process is at the k-th decision record of the
    first checkpoint (20 sessions): the saving process dies too (it does not finish the
    save as an orphan), and a rerun gives the state of a run never killed."""
    import signal
    import time

    import engine.state

    straight = snapshot(_long_run(config, demo_market, tmp_path / "straight", checkpoint=1000).root.root)
    root, run_pid = tmp_path / "killed", os.getpid()
    real, calls = engine.state.write_record, [0]

    def dying(path, record, durable=True, encoded=None):
        if os.getpid() != run_pid and os.getppid() != run_pid:  # in the saving process of the run
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getppid(), signal.SIGKILL)
                time.sleep(0.05)  # an orphan would go on after this
        real(path, record, durable, encoded)

    pid = os.fork()
    if pid == 0:  # the run
        code = 70
        try:
            engine.state.write_record = dying
            _long_run(config, demo_market, root, checkpoint=20)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    time.sleep(0.5)
    assert not (root / "portfolio.json").exists() and not (root / "arms" / "rules" / "portfolio.json").exists()
    _long_run(config, demo_market, root, checkpoint=20)
    assert snapshot(root) == straight


def test_an_interrupted_long_run_keeps_every_session_before_the_interruption(tmp_path, config, demo_market):
    class Interrupting(RulesPolicy):
        n = 0

        def decide(self, brief):
            Interrupting.n += 1
            if Interrupting.n == 45:
                raise KeyboardInterrupt
            return super().decide(brief)

    with pytest.raises(KeyboardInterrupt):
        _long_run(config, demo_market, tmp_path / "state", Interrupting(config), checkpoint=20)
    for store in (StateStore(tmp_path / "state"), StateStore(tmp_path / "state" / "arms" / "rules")):
        assert len(store.equity()) == 44
        assert store.load().as_of == pd.Timestamp(store.equity()["date"].iloc[-1]).date()


def test_a_failed_save_is_raised_and_nothing_is_written_past_it(tmp_path, config, demo_market):
    arm = StateStore(tmp_path / "state" / "arms" / "rules", durable=False)
    arm.root.mkdir(parents=True)
    arm.equity_path.write_bytes(b"not parquet")  # the first save will refuse to go on
    with pytest.raises(StateCorrupt, match="equity.parquet"):
        _long_run(config, demo_market, tmp_path / "state", checkpoint=20)
    assert not arm.portfolio_path.exists() and not (tmp_path / "state" / "portfolio.json").exists()


def test_the_roots_decision_records_are_its_headline_arms_written_once(tmp_path, config, demo_market, monkeypatch):
    _long_run(config, demo_market, tmp_path / "linked", checkpoint=20)
    root, arm = tmp_path / "linked" / "decisions", tmp_path / "linked" / "arms" / "rules" / "decisions"
    records = sorted(p.relative_to(root) for p in root.rglob("*.json"))
    assert records and records == sorted(p.relative_to(arm) for p in arm.rglob("*.json"))
    assert all((root / r).samefile(arm / r) for r in records)  # one file, two names

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a filesystem without hard links: a copy, the same bytes
    _long_run(config, demo_market, tmp_path / "copied", checkpoint=20)
    assert snapshot(tmp_path / "copied") == snapshot(tmp_path / "linked")
    copied = tmp_path / "copied" / "decisions"
    assert not any((copied / r).samefile(tmp_path / "copied" / "arms" / "rules" / "decisions" / r) for r in records)


def test_the_root_writes_its_arms_rows_without_building_them_again(tmp_path, config, demo_market, monkeypatch):
    import engine.state

    built, real = [], engine.state.parquet_bytes
    monkeypatch.setattr(engine.state, "parquet_bytes", lambda frame: built.append(len(frame)) or real(frame))
    monkeypatch.setenv("ALMOST_SURELY_FOREGROUND_SAVES", "1")  # the saves in this process, counted
    exp = _long_run(config, demo_market, tmp_path / "state", checkpoint=20)
    saves = -(-exp.headline.saved // 20)
    assert len(built) == 2 * saves  # equity and trades, once a save: the arm's, not the root's too
    root, arm = tmp_path / "state", tmp_path / "state" / "arms" / "rules"
    for name in ("equity.parquet", "trades.parquet"):
        assert (root / name).read_bytes() == (arm / name).read_bytes() and not (root / name).samefile(arm / name)
    assert StateStore(root).equity().equals(StateStore(arm).equity())


def test_a_store_builds_its_own_rows_when_they_are_not_its_twins(tmp_path, year, monkeypatch):
    import engine.state

    p1, r1, p2, r2 = year
    built, real = [], engine.state.parquet_bytes
    monkeypatch.setattr(engine.state, "parquet_bytes", lambda frame: built.append(len(frame)) or real(frame))
    twin, other = StateStore(tmp_path / "twin"), StateStore(tmp_path / "other")
    twin.save(p1, r1)
    other.save(p1, list(r1), twin=twin)  # the same sessions, not the twin's batch: built again
    assert len(built) == 4
    twin.save(p2, r2)
    other.save(p2, r2, twin=twin)  # the twin's batch on the same rows: taken as written
    assert len(built) == 6
    assert StateStore(tmp_path / "other").equity().equals(StateStore(tmp_path / "twin").equity())


def test_a_record_linked_again_replaces_the_old_one(tmp_path):
    """The root's record of a session saved again (a run redoing a save that did not
    finish) is the new record, never the old one kept because its name was taken."""
    from engine.state import _link_atomic

    old, new = tmp_path / "arm" / "old.json", tmp_path / "arm" / "new.json"
    old.parent.mkdir()
    old.write_bytes(b'{"v": 1}\n')
    new.write_bytes(b'{"v": 2}\n')
    path = tmp_path / "root" / "decisions" / "2024" / "03-01.json"
    assert _link_atomic(old, path) and path.samefile(old)
    assert _link_atomic(new, path) and path.samefile(new) and path.read_bytes() == b'{"v": 2}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["03-01.json"]  # no temporary name left


@pytest.mark.parametrize("policy", ["rules", "hold"])
def test_a_store_that_saved_gives_what_a_fresh_load_of_its_folder_gives(tmp_path, config, demo_market, year, policy):
    """A save keeps what it wrote for the next save and the verdicts of the same run: that
    is exactly what reading the folder again gives (dtypes and all, with or without a
    trade), and a run that saves twice through one store writes the same files as two
    runs each reading the folder first."""
    from pandas.testing import assert_frame_equal

    from engine.policies import HoldPolicy

    if policy == "rules":
        p1, r1, p2, r2 = year
    else:
        ind = compute_indicators(demo_market, config)
        ctx = StepContext(config=config, policy=HoldPolicy(), source="demo seed=7", synthetic=True)
        idx = demo_market.index
        p1, r1 = run(Portfolio.initial(10_000, "demo seed=7"), idx[(idx >= "2024-01-02") & (idx <= "2024-01-31")],
                     demo_market, ind, ctx)
        p2, r2 = run(p1, idx[(idx > "2024-01-31") & (idx <= "2024-02-29")], demo_market, ind, ctx)
        assert not any(r.fills for r in r1 + r2)
    store = StateStore(tmp_path / "one")
    assert store.load() is None
    for p, results in ((p1, r1), (p2, r2)):
        store.save(p, results)
        fresh = StateStore(tmp_path / "one")
        assert store.current() == fresh.load() == p
        assert_frame_equal(store.equity(), fresh.equity())
        assert_frame_equal(store.trades(), fresh.trades())
        assert len(store.equity()) == len(r1) + (len(r2) if p is p2 else 0)
    for p, results in ((p1, r1), (p2, r2)):
        other = StateStore(tmp_path / "two")
        other.load()
        other.save(p, results)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_a_store_reads_its_folder_again_once_another_writer_changed_it(tmp_path, year):
    p1, r1, p2, r2 = year
    mine, theirs = StateStore(tmp_path), StateStore(tmp_path)
    mine.save(p1, r1)
    theirs.load()
    theirs.save(p2, r2)
    assert mine.current() == p2 and len(mine.equity()) == len(r1) + len(r2)
