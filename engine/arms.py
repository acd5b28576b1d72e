"""Arms: one market, several paper portfolios side by side.

The experiment compares arms run on the same sessions from the same download, each with
its own ledger and records under ``state/arms/<arm>/`` (the same files as a state root:
portfolio.json, equity.parquet, trades.parquet, decisions/) and the same costs and
guardrails: the treatment (behavioural prompt), its neutral-prompt control, the rules
policy, a turnover-matched random policy and the passive baselines (buy-and-hold SPY, the
CAC 40 tracker, a rebalanced equal weight). Arms are config (``[[arms.arm]]``), not code.

The state root mirrors one arm, the *headline* (what the site, the weekly report and the
monitor read), with the benchmark columns of its equity filled from the baseline arms'
NAVs of the same session: one benchmark implementation, so every page shows the numbers
the verdict tests. ``state/arms.json`` lists the arms, which one the root mirrors, and
each arm's versions (policy, model, prompt version, since when): a changed prompt is a
new version with its start date, an experiment break.

Sessions run in lockstep: at each session every arm steps once (the arm a random arm
matches in turnover steps first), then the headline's benchmark columns are filled. An
llm arm that fails is recorded with its reason and stops alone; the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import pickle
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engine.analytics import RecordCounts
from engine.backtest.benchmarks import arm_lines, track_indices
from engine.config import ArmConfig, Config
from engine.data.market import MarketData
from engine.errors import ConfigError, StateCorrupt, StateUnwritable
from engine.indicators import Indicators
from engine.policies import Policy, RandomPolicy, Turnover, make_arm_policy
from engine.portfolio.ledger import Portfolio
from engine.records import Encoded, encode_record
from engine.state import StateStore, check_config, atomic_write_bytes, dumps, import_writers
from engine.step import StepContext, StepResult, step

log = logging.getLogger(__name__)

ARMS_DIR = "arms"
MANIFEST = "arms.json"
# The experiment's own journal: written before any arm saves, removed after the root (the
# experiment's commit point: it mirrors the headline) and the manifest are written. It keeps
# each saving arm's previous portfolio.json, so that a run killed between two arms' saves
# is rolled back to one session for every arm, and the re-run is the uninterrupted run.
EXPERIMENT_JOURNAL = ".experiment-saving.json"
MANIFEST_SCHEMA_VERSION = 1

LLMFactory = Callable[[ArmConfig, Config], Policy]


def arm_config(spec: ArmConfig, config: Config) -> Config:
    """The configuration an arm runs with: a passive baseline buys fractional shares with
    no minimum order (an equal weight of 476 EUR cannot buy one Hermes share)."""
    if spec.passive:
        return config.with_overrides(portfolio={"whole_shares": False, "min_order_eur": 0.0})
    return config


def headline_spec(config: Config, policy: str) -> ArmConfig:
    """The arm the state root mirrors: the treatment for --policy llm, else the first arm
    with that policy (an arm of its own name when the config declares none)."""
    arms = config.arms.arm
    if policy == "llm":
        name = config.arms.treatment or next((a.name for a in arms if a.policy == "llm"), None)
        if name is None:
            return ArmConfig(name="llm", policy="llm", prompt="behavioural")
        return config.arm_by_name[name]
    return next((a for a in arms if a.policy == policy), None) or ArmConfig(name=policy, policy=policy)  # type: ignore[arg-type]


def select_arms(config: Config, headline: ArmConfig, with_llm: bool) -> list[ArmConfig]:
    """The arms to run, in step order (an arm a random arm matches runs before it)."""
    specs = [a for a in config.arms.arm if with_llm or a.policy != "llm"]
    if headline.name not in {a.name for a in specs}:
        specs.insert(0, headline)
    names = {a.name for a in specs}
    ordered: list[ArmConfig] = []
    for a in specs:
        if a.match_turnover_of in names and a.match_turnover_of not in {o.name for o in ordered}:
            ref = next(s for s in specs if s.name == a.match_turnover_of)
            ordered.append(ref)
        if a not in ordered:
            ordered.append(a)
    return ordered


@dataclass
class Arm:
    spec: ArmConfig
    store: StateStore
    ctx: StepContext
    portfolio: Portfolio
    failure: str | None = None
    error: BaseException | None = None  # what stopped it, re-raised for the headline arm
    unsaved: list[StepResult] = field(default_factory=list)  # run, not saved yet (a checkpoint's worth at most)
    # What this run saved, without keeping it: a backtest's memory does not grow with its length.
    saved: int = 0
    first_saved: dt.date | None = None
    last_saved: StepResult | None = None
    step_seconds: float = 0.0
    # The analytics' counts of every decision record in the arm's folder, when this run wrote
    # them all (it began on an empty folder): the verdicts then need not read them back.
    counts: RecordCounts | None = None
    inherited_versions: list[dict[str, Any]] = field(default_factory=list)  # from a headline it continues

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Experiment:
    """The arms of one state folder, ready to run."""

    root: StateStore
    headline: Arm
    arms: list[Arm]
    pending_save: _ForkedSave | None = None  # a checkpoint being written in the background
    # arm -> session -> its record encoded while the save under way ran (the next save's)
    encoded: dict[str, dict[pd.Timestamp, Encoded]] = field(default_factory=dict)

    def by_name(self) -> dict[str, Arm]:
        return {a.name: a for a in self.arms}


def arm_store(root: Path, name: str, durable: bool) -> StateStore:
    return StateStore(Path(root) / ARMS_DIR / name, durable=durable)


def open_experiment(
    root: Path, config: Config, specs: Sequence[ArmConfig], headline: ArmConfig, source: str, synthetic: bool,
    llm_policy: LLMFactory | None, durable: bool = True, build: dict[str, Any] | None = None,
) -> Experiment:
    """Open (or start) every arm's state under `root`; a state written before the arms
    existed becomes the headline arm's history (copied into ``arms/<headline>/``)."""
    root_store = StateStore(root, durable=durable)
    recover(Path(root), durable)
    manifest = read_manifest(root)
    inherited: list[dict[str, Any]] = []
    previous = manifest.get("headline") if manifest else None
    target = arm_store(root, headline.name, durable)
    if previous is not None and previous != headline.name:
        if target.portfolio_path.exists():
            raise ConfigError(
                f"{root} mirrors the arm '{previous}', not '{headline.name}' (which has a history of its own): run it "
                "with the same --policy, or use another state folder"
            )
        # The headline changes policy: the new headline arm continues the root's portfolio (a
        # version break, recorded), and the old one goes on from its own folder.
        inherited = list(manifest["arms"].get(previous, {}).get("versions", []))
        log.warning("arms: the headline becomes '%s', continuing the portfolio of '%s'", headline.name, previous)
    legacy = root_store.load()
    if legacy is not None and not target.portfolio_path.exists():
        _migrate(root_store, target.root)
        log.info("arms: the existing state becomes the history of the arm '%s'", headline.name)
    arms = []
    for spec in specs:
        store = arm_store(root, spec.name, durable)
        p = _open(store, config, source)
        cfg = arm_config(spec, config)
        if spec.policy == "llm":
            if llm_policy is None:
                raise ConfigError(f"arm {spec.name} is an llm arm: it needs --policy llm (and OPENAI_API_KEY)")
            policy = llm_policy(spec, cfg)
        else:
            policy = make_arm_policy(spec, cfg)
        ctx = StepContext(config=cfg, policy=policy, source=source, synthetic=synthetic, guarded=not spec.passive,
                          build=build)
        fresh = store.current() is None and not (store.root / "decisions").exists()
        arms.append(Arm(spec=spec, store=store, ctx=ctx, portfolio=p, counts=RecordCounts() if fresh else None))
    head = next(a for a in arms if a.name == headline.name)
    head.inherited_versions = inherited
    return Experiment(root=root_store, headline=head, arms=arms)


def _open(store: StateStore, config: Config, source: str) -> Portfolio:
    p = store.load()
    if p is None:
        return Portfolio.initial(config.portfolio.starting_capital_eur, source=source)
    if p.source != source:  # the state is sound; the flags are wrong
        raise ConfigError(f"{store.root} holds a portfolio priced by '{p.source}', not '{source}': refusing to mix sources")
    check_config(p, config, store.root)
    return p


def _migrate(root: StateStore, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in (root.equity_path, root.trades_path):
        if path.exists():
            shutil.copy2(path, dest / path.name)
    if (root.root / "decisions").exists():
        shutil.copytree(root.root / "decisions", dest / "decisions", dirs_exist_ok=True)
    shutil.copy2(root.portfolio_path, dest / root.portfolio_path.name)  # last: it says the copy is whole


# --- the lockstep run ----------------------------------------------------------------


def _turnover(res: StepResult, prices_eur: dict[str, float]) -> Turnover:
    nav = res.equity["nav_eur"]
    orders = res.portfolio.last_decision.orders if res.portfolio.last_decision else ()
    trades = tuple((o.side, o.qty * prices_eur.get(o.ticker, 0.0) / nav) for o in orders if nav > 0)
    return Turnover(trades=trades)


class _Prices:
    """EUR closes of every instrument at a session (the last close for a closed exchange)."""

    def __init__(self, market: MarketData, config: Config):
        close = market.close.ffill()
        usd = [t for t in close.columns if t in config.instruments and config.instruments[t].currency == "USD"]
        if usd:
            close[usd] = close[usd].div(market.fx_eurusd, axis=0)
        self.close = close
        self._rows = {d: i for i, d in enumerate(close.index)}
        self._values = close.to_numpy(dtype=float)
        self._tickers = list(close.columns)

    def at(self, d: pd.Timestamp) -> dict[str, float]:
        row = self._values[self._rows[d]].tolist()
        return {t: v for t, v in zip(self._tickers, row, strict=True) if v == v}


def _fill_lines(res: StepResult, lines: dict[str, float], p: Portfolio, order: Sequence[str]) -> StepResult:
    """The headline's result with the benchmark columns of its equity row and record, in
    the configuration's order of the benchmarks."""
    cols = {f"benchmark_{k}_eur": round(lines[k], 2) if lines[k] == lines[k] else float("nan")
            for k in order if k in lines}
    record = dict(res.record)
    record["valuation"] = {**record["valuation"], **cols}
    return dataclasses.replace(res, portfolio=p, equity={**res.equity, **cols}, record=record)


def step_session(exp: Experiment, d: pd.Timestamp, market: MarketData, ind: Indicators, prices: _Prices) -> None:
    """Every arm steps once at `d` (those already past it are skipped), then the headline's
    benchmark lines are filled from the baseline arms and the index holdings."""
    today: dict[str, StepResult] = {}
    px: dict[str, float] | None = None
    for arm in exp.arms:
        if arm.failure is not None or (arm.portfolio.as_of is not None and d.date() <= arm.portfolio.as_of):
            continue
        if isinstance(arm.ctx.policy, RandomPolicy) and arm.spec.match_turnover_of in today:
            px = px or prices.at(d)
            arm.ctx.policy.reference[d.date()] = _turnover(today[arm.spec.match_turnover_of], px)
        t0 = time.perf_counter()
        try:
            res = step(arm.portfolio, d, market, ind, arm.ctx)
        except Exception as exc:
            if arm.spec.policy != "llm":
                raise
            arm.error = exc
            arm.failure = f"{d.date()}: {exc}"
            log.warning("arm %s failed and stops (the other arms go on): %s", arm.name, arm.failure)
            continue
        arm.step_seconds += time.perf_counter() - t0
        arm.portfolio = res.portfolio
        arm.unsaved.append(res)
        today[arm.name] = res
    head = exp.headline
    res = today.get(head.name)
    if res is None:
        return
    config = head.ctx.config
    lines = {key: today[name].equity["nav_eur"] if name in today else float("nan")
             for key, name in arm_lines(config).items()}
    holdings, index_navs = track_indices(res.portfolio, d.date(), px or prices.at(d), config)
    lines.update(index_navs)
    p = res.portfolio.model_copy(update={"benchmarks": holdings})
    head.portfolio = p
    head.unsaved[-1] = _fill_lines(res, lines, p, [b.key for b in config.benchmarks])


def recover(root: Path, durable: bool = True) -> None:
    """After a run killed in the middle of an experiment's save (the journal is still there):
    if the root did not commit, put every arm that saved back at its previous portfolio.json,
    with its own journal naming the unfinished sessions, so that readers ignore their rows and
    the next run redoes them for every arm in lockstep."""
    journal = Path(root) / EXPERIMENT_JOURNAL
    if not journal.exists():
        return
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateCorrupt(f"cannot read {journal}: {exc}") from None
    root_store = StateStore(root, durable=durable)
    as_of = json.loads(root_store.portfolio_path.read_text(encoding="utf-8"))["as_of"] \
        if root_store.portfolio_path.exists() else None
    if as_of != data["last"]:  # the root did not commit: no arm's save counts
        for name, previous in sorted(data["arms"].items()):
            store = arm_store(root, name, durable)
            if previous is None:
                for path in (store.portfolio_path, store.equity_path, store.trades_path):
                    path.unlink(missing_ok=True)
                shutil.rmtree(store.root / "decisions", ignore_errors=True)
                continue
            if json.loads(previous)["as_of"] == json.loads(store.portfolio_path.read_text(encoding="utf-8"))["as_of"]:
                continue  # this arm had not committed: its own journal (if any) covers its rows
            atomic_write_bytes(store.journal_path, dumps({"first": data["first"], "last": data["last"]}), durable)
            atomic_write_bytes(store.portfolio_path, previous.encode("utf-8"), durable)
        log.warning("arms: the last run stopped while saving %s..%s: every arm is back at its last committed "
                    "session and the run redoes the rest", data["first"], data["last"])
    journal.unlink()


def save(exp: Experiment, background: bool = False) -> None:
    """Write what every arm ran since the last save; the root (the experiment's commit point:
    it mirrors the headline) last, under the experiment's journal.

    `background`: write from a forked process while this one steps on (a backtest's
    checkpoint: the encoding and the files use the second core). Saves stay in order: each
    first waits for the one before and raises its error, so nothing is ever written past a
    failed save. Without fork (or with ALMOST_SURELY_FOREGROUND_SAVES set) it writes here."""
    _encode_while_saving(exp)
    wait_for_save(exp)
    batch = _detach(exp)
    encoded, exp.encoded = exp.encoded, {}
    if background and _CAN_FORK and not os.environ.get("ALMOST_SURELY_FOREGROUND_SAVES"):
        exp.pending_save = _fork_save(exp, batch, encoded)
    else:
        _write(exp, batch, encoded)


def _encode_while_saving(exp: Experiment) -> None:
    """While the save under way runs, encode the records the next save will write, until
    it ends. In a backtest the saving process is the slower of the two (encoding a record
    costs more than stepping a session): the time this process would spend waiting takes
    that work off the saver's next batch. Nothing is written here; a record that cannot be
    encoded is left to the save, which reports why."""
    pending = exp.pending_save
    if pending is None:
        return
    for arm in exp.arms:
        done = exp.encoded.setdefault(arm.name, {})
        for r in arm.unsaved:
            if pending.finished():
                return
            if r.date not in done:
                try:
                    done[r.date] = encode_record(r.record)
                except Exception:
                    return


def wait_for_save(exp: Experiment) -> None:
    """Wait for the background save under way, if any; raise what stopped it."""
    pending, exp.pending_save = exp.pending_save, None
    if pending is not None:
        handed = pending.join()
        for store in _stores(exp):
            store.take_over(handed.get(str(store.root)))


def _detach(exp: Experiment) -> dict[str, list[StepResult]]:
    """Take every arm's unsaved results (what the save writes) and count them as saved."""
    batch = {}
    for arm in exp.arms:
        batch[arm.name] = arm.unsaved
        if arm.counts is not None:
            for r in arm.unsaved:
                arm.counts.add(r.record)
        if arm.unsaved:
            arm.first_saved = arm.first_saved or arm.unsaved[0].date.date()
            arm.last_saved = arm.unsaved[-1]
            arm.saved += len(arm.unsaved)
        arm.unsaved = []
    return batch


def _write(exp: Experiment, batch: dict[str, list[StepResult]],
           encoded: dict[str, dict[pd.Timestamp, Encoded]]) -> None:
    saving = [a for a in exp.arms if batch[a.name]]
    journal = exp.root.root / EXPERIMENT_JOURNAL
    if saving:
        dates = sorted({r.date for a in saving for r in batch[a.name]})
        previous = {a.name: (a.store.portfolio_path.read_text(encoding="utf-8")
                             if a.store.portfolio_path.exists() else None) for a in saving}
        atomic_write_bytes(journal, dumps({"first": dates[0].date().isoformat(), "last": dates[-1].date().isoformat(),
                                           "arms": previous}), durable=exp.root.durable)
    for arm in exp.arms:
        if batch[arm.name] or not arm.store.portfolio_path.exists():
            arm.store.save(arm.portfolio, batch[arm.name], encoded=encoded.get(arm.name))
    write_manifest(exp)
    head = exp.headline
    if batch[head.name] or not exp.root.portfolio_path.exists():  # the commit point, last
        exp.root.save(head.portfolio, batch[head.name], twin=head.store, encoded=encoded.get(head.name))
    journal.unlink(missing_ok=True)


# Linux only: elsewhere a fork that does not exec is unsafe (macOS) or missing (Windows).
_CAN_FORK = sys.platform.startswith("linux")


class _ForkedSave:
    """A save running in a forked child; `join` waits for it, and returns what its stores
    wrote or raises its error. Both come through one pipe (`report`)."""

    def __init__(self, pid: int, report: int):
        self.pid, self.report = pid, report

    def finished(self) -> bool:
        """Whether the child has ended (or has reported its error): its pipe can be read."""
        return bool(select.select([self.report], [], [], 0)[0])

    def join(self) -> dict[str, tuple[Any, ...] | None]:
        """What the child's stores wrote (store folder -> :meth:`StateStore.handover`)."""
        with os.fdopen(self.report, "rb") as fh:
            report = fh.read()  # until the child exits (its end of the pipe closes)
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            told = pickle.loads(report)
        except Exception:  # killed before it could say why (the journal covers its files)
            told = None
        if code == 0:  # saved; without what the stores wrote, the next save reads the files back
            return told if isinstance(told, dict) else {}
        if isinstance(told, BaseException):
            raise told
        raise StateUnwritable(f"the background save stopped with status {code}")


def _fork_save(exp: Experiment, batch: dict[str, list[StepResult]],
               encoded: dict[str, dict[pd.Timestamp, Encoded]]) -> _ForkedSave:
    sys.stdout.flush()
    sys.stderr.flush()
    import_writers()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write the batch, report any error, never return
        code = 1
        try:
            os.close(read)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run, not a save half-way
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # not a progress bar's proxies (their lock)
            _die_with_parent()
            _write(exp, batch, encoded)
            # What the stores wrote, for the parent's: the next save starts from it, not
            # from reading and checking every arm's equity and trades again.
            try:
                handed = pickle.dumps({str(s.root): s.handover() for s in _stores(exp)})
            except Exception:  # the files are written all the same: the next save reads them
                handed = pickle.dumps({})
            _send(write, handed)
            code = 0
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                try:
                    data = pickle.dumps(exc)
                except Exception:
                    data = pickle.dumps(StateUnwritable(f"the background save failed: {exc}"))
                _send(write, data)
        finally:
            os._exit(code)  # no atexit handlers, no flush of the parent's buffers
    os.close(write)
    for store in _stores(exp):  # what the child writes is not what these stores last read
        store.forget()
    return _ForkedSave(pid, read)


def _stores(exp: Experiment) -> list[StateStore]:
    return [*(arm.store for arm in exp.arms), exp.root]


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a pipe takes 64 KiB at a time
        view = view[os.write(fd, view):]


def _die_with_parent() -> None:
    """On Linux, the child is killed when the run is (kill -9 of the run is a kill of its
    save, which the journals cover); elsewhere an orphaned save finishes under the lock."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the run died before the call
            os._exit(1)


def run_experiment(
    exp: Experiment, sessions: Sequence[pd.Timestamp], market: MarketData, ind: Indicators,
    checkpoint: int = 250, on_session: Callable[[pd.Timestamp], None] | None = None,
) -> None:
    """Step every arm over `sessions`, saving every `checkpoint` sessions (in the background:
    the next sessions run meanwhile); whatever stops the run, every arm's completed sessions
    are saved before it returns or raises."""
    prices = _Prices(market, exp.headline.ctx.config)
    # A step allocates thousands of objects that live until the next checkpoint: with the
    # default threshold (700) the collector ran 561 times in a 10-year run, four of them
    # full passes over every module and frame (0.41 s, and each pass touches pages a forked
    # saver shares). Collecting after 20,000 allocations instead: 0.16 s.
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
    try:
        for n, d in enumerate(sessions, 1):
            step_session(exp, d, market, ind, prices)
            if on_session is not None:
                on_session(d)
            if n % checkpoint == 0 and n < len(sessions):
                save(exp, background=True)
        save(exp)
    except BaseException as exc:
        if not isinstance(exc, (StateUnwritable, StateCorrupt)):  # not when the save itself failed
            save(exp)
        else:
            with contextlib.suppress(BaseException):
                wait_for_save(exp)
        raise
    finally:
        gc.set_threshold(*threshold)


# --- the manifest ---------------------------------------------------------------------


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StateCorrupt(f"cannot read {path}: {exc}") from None


def _version(arm: Arm) -> dict[str, Any]:
    pol = arm.ctx.policy
    return {"policy": arm.spec.policy, "model": getattr(pol, "model", None),
            "prompt": getattr(pol, "prompt", None), "prompt_version": getattr(pol, "prompt_version", None)}


def write_manifest(exp: Experiment) -> None:
    """``state/arms.json``: the arms, the headline, each arm's versions since their start."""
    old = (read_manifest(exp.root.root) or {}).get("arms", {})
    arms: dict[str, Any] = dict(old)
    for arm in exp.arms:
        p = arm.portfolio
        prev = old.get(arm.name, {})
        versions = list(prev.get("versions", [])) or list(arm.inherited_versions)
        now = _version(arm)
        if p.as_of is not None and (not versions or {k: versions[-1].get(k) for k in now} != now):
            first = p.inception if not versions or not arm.saved else arm.first_saved
            since = (first or p.as_of).isoformat()
            versions.append({"since": since, **now})
        arms[arm.name] = {
            "label": arm.spec.title, "policy": arm.spec.policy, "passive": arm.spec.passive,
            "benchmark": arm.spec.benchmark, "folder": f"{ARMS_DIR}/{arm.name}",
            "inception": p.inception.isoformat() if p.inception else None,
            "as_of": p.as_of.isoformat() if p.as_of else None,
            "llm_cost_usd": p.llm.cost_usd, "llm_calls": p.llm.calls,
            "failure": arm.failure if arm.failure is not None else prev.get("failure") if not arm.saved else None,
            "versions": versions,
        }
    data = {"schema_version": MANIFEST_SCHEMA_VERSION, "headline": exp.headline.name, "arms": dict(sorted(arms.items()))}
    atomic_write_bytes(exp.root.root / MANIFEST, dumps(data), durable=exp.root.durable)


def arm_folders(root: Path) -> dict[str, Path]:
    """{arm: its state folder} of a state root ({} for a state without arms)."""
    m = read_manifest(root)
    if not m:
        return {}
    return {name: Path(root) / a["folder"] for name, a in m["arms"].items() if (Path(root) / a["folder"]).exists()}
