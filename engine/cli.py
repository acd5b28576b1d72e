"""``python -m engine`` (or ``almost-surely``): the command line, one of the edges.

Expected failures (bad input, missing data, corrupt state) end with one line on stderr
and a non-zero exit code (engine.errors); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn
from pathlib import Path

import pandas as pd

from engine import __version__
from engine.clock import LAST_CLOSED, last_closed, require_settled
from engine.config import Config, load_config
from engine.data import calendars
from engine.data.market import MarketData
from engine.errors import ConfigError, EngineError, StateCorrupt, StateUnwritable
from engine.policies import POLICIES
from engine.portfolio.ledger import Portfolio
from engine.state import StateStore, check_folder, state_lock
from engine.step import StepResult, check_data

log = logging.getLogger("engine")

DEFAULT_DEMO_SESSIONS = 252
DEFAULT_CACHE = Path(".cache") / "almost-surely"


def _date(s: str) -> pd.Timestamp:
    try:
        d = calendars.to_session(dt.date.fromisoformat(s))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None
    if not calendars.CALENDAR_START <= d <= calendars.CALENDAR_END:
        raise argparse.ArgumentTypeError(f"{s} is outside the trading calendars "
                                         f"({calendars.CALENDAR_START.date()} .. {calendars.CALENDAR_END.date()})")
    return d


def _session_or_last_closed(s: str) -> pd.Timestamp | str:
    return LAST_CLOSED if s == LAST_CLOSED else _date(s)


def _now() -> pd.Timestamp:
    """The clock of `daily`: ALMOST_SURELY_NOW (ISO 8601 with a zone) when set, for replays and
    simulations of the schedule; else the system clock."""
    text = os.environ.get("ALMOST_SURELY_NOW", "").strip()
    if not text:
        return pd.Timestamp.now(tz="UTC")
    try:
        now = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"ALMOST_SURELY_NOW: not a time: {text!r}") from None
    if now.tzinfo is None:
        raise ConfigError("ALMOST_SURELY_NOW needs a time zone, e.g. 2026-11-24T22:30:00+00:00")
    return now.tz_convert("UTC")


def _build(cfg: Config) -> dict[str, object]:
    from engine.ops import build_info

    return build_info(config=cfg)


def _positive_int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


CSV_DATA_HELP = ("with --source csv: a folder of <TICKER>.csv files (date,open,high,low,close,volume"
                 "[,dividends,splits]; EURUSD=X.csv for USD assets) or one CSV with a ticker column; "
                 "the universe comes from the config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="almost surely: a loss-averse policy manages a EUR 10,000 paper portfolio. "
        "Python computes every number; the policy only decides; everything is logged in state/.",
    )
    parser.add_argument("--version", action="version", version=f"almost-surely {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults (engine/config.toml)")
        p.add_argument("--policy", choices=POLICIES, default="rules",
                       help="who decides (default: rules; llm needs OPENAI_API_KEY, and OPENAI_BASE_URL for a "
                       "server other than OpenAI's; equal_weight: the equal-weight baseline arm as the headline)")
        p.add_argument("--model", help="the LLM to ask with --policy llm (default: llm.model in the config)")
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                       help=f"cache folder for downloads and LLM answers (default {DEFAULT_CACHE})")

    demo = sub.add_parser(
        "demo",
        help="run the offline demo: a seeded synthetic market, no network, no API key",
        description="Run N sessions of the seeded synthetic market with the default policy into OUT/state/, "
        "then print a summary against buy-and-hold SPY and CAC 40. Needs no network.",
    )
    demo.add_argument("--out", type=Path, required=True, help="output folder (its state/ is created or resumed)")
    demo.add_argument("--sessions", type=_positive_int, default=DEFAULT_DEMO_SESSIONS,
                      help=f"sessions to simulate (default {DEFAULT_DEMO_SESSIONS}, about a year)")
    demo.add_argument("--seed", type=int, default=42, help="seed of the synthetic market (default 42)")
    demo.add_argument("--end", type=_date, help="last session (default: the last session up to today)")
    demo.add_argument("--no-site", action="store_true", help="do not build the site into OUT/site/")
    common(demo)

    daily = sub.add_parser(
        "daily",
        help="run the daily step for one session (and any missed before it)",
        description="Run the daily step for session D after both markets have closed: fill yesterday's "
        "orders at D's open, mark to market, decide, queue orders. Re-running a done date changes nothing.",
    )
    daily.add_argument("--state", type=Path, required=True, help="the state folder (e.g. state)")
    daily.add_argument("--source", choices=("yahoo", "demo", "csv"), required=True, help="market data source")
    daily.add_argument("--data", type=Path, help=CSV_DATA_HELP)
    daily.add_argument("--date", type=_session_or_last_closed, default=LAST_CLOSED,
                       help="session date D, YYYY-MM-DD, or last-closed (the default): the last session whose close "
                       "has settled (schedule.settle_minutes in the config); a date not settled yet is refused")
    daily.add_argument("--init", action="store_true",
                       help="start a new portfolio when the state folder is missing or holds none (never implied)")
    daily.add_argument("--seed", type=int, default=42, help="seed of the demo market (with --source demo)")
    common(daily)

    bt = sub.add_parser(
        "backtest",
        help="replay the daily step over a date range and judge it against buy-and-hold",
        description="Replay the daily step over every session from START to END into OUT/state/, then write "
        "OUT/metrics.json (strategy, benchmarks, verdict on the null hypothesis) and OUT/charts/. "
        "An interrupted backtest resumes where it stopped.",
    )
    bt.add_argument("--source", choices=("demo", "yahoo", "csv"), default="demo",
                    help="market data source (default demo)")
    bt.add_argument("--data", type=Path, help=CSV_DATA_HELP)
    bt.add_argument("--start", type=_date, required=True, help="first session (YYYY-MM-DD)")
    bt.add_argument("--end", type=_date, required=True, help="last session (YYYY-MM-DD)")
    bt.add_argument("--out", type=Path, required=True, help="output folder")
    bt.add_argument("--seed", type=int, default=42, help="seed of the demo market (default 42)")
    bt.add_argument("--blind", action="store_true",
                    help="llm only: hide tickers, names and dates from the model and rebase prices")
    bt.add_argument("--budget-usd", type=float, help="llm only: stop the run before its LLM spending exceeds this")
    bt.add_argument("--no-charts", action="store_true", help="skip the charts")
    common(bt)

    st = sub.add_parser(
        "site",
        help="build the public site (MkDocs-Material, strict) from a state folder",
        description="Generate the pages and charts from STATE (the single source of truth) and run a strict "
        "MkDocs build into OUT. Generated pages and charts are build products: never committed.",
    )
    st.add_argument("--state", type=Path, required=True, help="the state folder")
    st.add_argument("--out", type=Path, required=True, help="where the built site goes")
    st.add_argument("--backtest", type=Path, help="a backtest output folder (with metrics.json) for the Backtests page")
    st.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults")

    wk = sub.add_parser(
        "weekly",
        help="write the weekly report state/reports/YYYY-Www.md (idempotent)",
        description="Write the report of an ISO week into STATE/reports/YYYY-Www.md: week and cumulative P&L, "
        "best and worst positions, trades, costs, the benchmarks, the week's decisions in brief.",
    )
    wk.add_argument("--state", type=Path, required=True, help="the state folder")
    wk.add_argument("--week", help="ISO week YYYY-Www (default: the week of the last session in the state)")
    wk.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults")

    mo = sub.add_parser(
        "monitor",
        help="intraday check: alert on moves of more than 2%% (held or watched assets, the portfolio)",
        description="During market hours, fetch the latest prices and append new alerts to STATE/alerts.jsonl "
        "(never twice the same alert on the same day); outside market hours, say so and exit 0.",
    )
    mo.add_argument("--state", type=Path, required=True, help="the state folder")
    mo.add_argument("--source", choices=("yahoo", "demo"), required=True, help="market data source")
    mo.add_argument("--seed", type=int, default=42, help="seed of the demo market (with --source demo)")
    mo.add_argument("--now", help="the time to check, ISO 8601 with a zone (default: now)")
    mo.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    mo.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults")

    cm = sub.add_parser("commit-message", help="the one-line git commit message for what a job just did to the state")
    cm.add_argument("--state", type=Path, required=True, help="the state folder")
    cm.add_argument("--kind", choices=("daily", "monitor", "weekly"), default="daily")

    sw = sub.add_parser(
        "sweep",
        help="run a grid of backtests in parallel processes and compare them",
        description="Every combination of --policies x --seeds x --windows (x --models for llm) as its own "
        "backtest under OUT/<name>/, in parallel processes; then OUT/comparison.csv and a table.",
    )
    sw.add_argument("--out", type=Path, required=True, help="output folder")
    sw.add_argument("--policies", default="rules,hold", help="comma-separated (default rules,hold)")
    sw.add_argument("--seeds", default="42", help="comma-separated demo seeds (default 42)")
    sw.add_argument("--windows", default="2016-01-04:2025-12-31",
                    help="comma-separated START:END windows (default 2016-01-04:2025-12-31)")
    sw.add_argument("--models", default="", help="comma-separated models for the llm policy")
    sw.add_argument("--source", choices=("demo", "yahoo"), default="demo")
    sw.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    sw.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults")
    sw.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder shared by the runs")
    sw.add_argument("--max-jobs", type=_positive_int, help="the grid's budget: refuse a grid of more backtests")
    sw.add_argument("--job-budget-usd", type=float, help="each llm backtest's LLM budget (--budget-usd, per llm arm)")
    sw.add_argument("--plan", action="store_true",
                    help="print the grid as a GitHub Actions matrix (JSON) instead of running it")
    sw.add_argument("--aggregate", action="store_true",
                    help="only build OUT/comparison.csv from the runs already under OUT (one row per run and arm)")

    md = sub.add_parser("models", help="list the model registry: price, cutoff, shutdown, what is sent",
                        description="Every row of engine/llm/models.toml, or the row a model id resolves to.")
    md.add_argument("model", nargs="?", help="show what this model id resolves to and what a request would carry")
    md.add_argument("--config", type=Path, help="a TOML file whose keys override the defaults")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)
    # The HTTP layers log request details at debug level: keep them quiet even with -v.
    for name in ("openai", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with _LOCKS:
            return _dispatch(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: the state holds every session saved so far", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """``python -m engine`` and the ``almost-surely`` command: :func:`main`, then :func:`quick_exit`."""
    quick_exit(main())


def quick_exit(code: int | None) -> NoReturn:
    """End the command's process with `code` once all it wrote is out: the output flushed,
    the exit handlers run (logging's flush, finalizers), then no interpreter teardown. That
    teardown frees every object one by one: 0.11 s after a 10-year backtest, for memory the
    kernel takes back at once. While another thread runs, or when an output cannot be
    flushed (a closed pipe), the usual exit, with its messages."""
    import atexit
    import threading

    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    status = code if isinstance(code, int) else 0 if code is None else 1
    if run_handlers is None or others:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        sys.exit(code)
    run_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        status = status or 120  # as the interpreter exits when its output cannot be flushed
    os._exit(status)


# The state locks a command takes (engine.state.state_lock), released when it returns.
_LOCKS = contextlib.ExitStack()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "daily":
        return cmd_daily(args)
    if args.command == "backtest":
        return cmd_backtest(args)
    if args.command == "sweep":
        return cmd_sweep(args)
    if args.command == "site":
        return cmd_site(args)
    if args.command == "weekly":
        return cmd_weekly(args)
    if args.command == "monitor":
        return cmd_monitor(args)
    if args.command == "models":
        from engine.llm.models_table import models_text

        print(models_text(load_config(args.config), args.model))
        return 0
    if args.command == "commit-message":
        from engine.ops import commit_message

        print(commit_message(args.state, args.kind))
        return 0
    raise AssertionError(args.command)


# --- shared pieces ---------------------------------------------------------------


def _calendar_codes(cfg: Config) -> set[str]:
    return {i.calendar for i in cfg.instruments.values()}


def _source(name: str, seed: int, cfg: Config, cache: Path | None, data: Path | None = None):
    if name == "demo":
        from engine.data.demo import DemoSource

        return DemoSource(seed=seed)
    if name == "csv":
        from engine.data.csv_source import CsvSource

        if data is None:
            raise ConfigError("--source csv needs --data PATH (a folder of <TICKER>.csv files, or one CSV file)")
        return CsvSource(data, cfg.data.csv_price_convention)
    from engine.data.yahoo import YahooSource

    return YahooSource(
        cache_dir=cache / "yahoo" if cache else None,
        retries=cfg.data.retries,
        backoff_seconds=cfg.data.backoff_seconds,
    )


def _source_label(name: str, seed: int) -> str:
    return f"demo seed={seed}" if name == "demo" else name


def _load_market(src, cfg: Config, first: pd.Timestamp, end: pd.Timestamp) -> MarketData:
    """History for the indicators before `first`, and every session up to `end`, validated."""
    from engine.data.validate import validate

    start = calendars.previous_sessions(_calendar_codes(cfg), first, cfg.data.history_sessions + 1)[0]
    market = src.load(cfg, start, end)
    if src.name != "yahoo":  # the Yahoo source validates what it downloads itself
        market = validate(market, cfg, end)
    for issue in market.issues:
        log.warning("data: %s %s: %s", issue.ticker, issue.kind, issue.detail)
    return market


def _progress_text(r: StepResult) -> str:
    text = f"{r.date.date()}  NAV {r.equity['nav_eur']:,.2f} EUR"
    llm = r.portfolio.llm
    if llm.calls or llm.cache_hits:
        text += (f"  LLM calls {llm.calls}, cache hits {llm.cache_hits}, "
                 f"{llm.prompt_tokens + llm.completion_tokens:,} tokens, {llm.cost_usd:.4f} USD")
    return text


# --- arms ------------------------------------------------------------------------


def _with_llm(args: argparse.Namespace) -> bool:
    """The llm arms run with --policy llm, or whenever OPENAI_API_KEY is set."""
    return args.policy == "llm" or bool(os.environ.get("OPENAI_API_KEY", "").strip())


def _llm_factory(args: argparse.Namespace, blind=None, run_budget_usd: float | None = None,
                 today: dt.date | None = None):
    """Builds each llm arm's policy: one client and one response cache for all of them. With
    `today` (a live run), each model is checked against the server first (key, model served,
    not shut down), before any market data is downloaded."""
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise ConfigError(
            "OPENAI_API_KEY is not set: export it to use --policy llm "
            "(and OPENAI_BASE_URL for a server other than OpenAI's), or use --policy rules"
        )
    from engine.llm.cache import ResponseCache
    from engine.llm.client import ChatClient
    from engine.llm.policy import LLMPolicy

    made: dict[str, object] = {}

    def make(spec, cfg: Config):
        if "client" not in made:
            made["client"] = ChatClient(api_key=key, base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                        settings=cfg.llm)
            made["cache"] = ResponseCache(args.cache / "llm" if args.cache else None)
        model = spec.model or args.model
        prompt = spec.prompt or "behavioural"
        checked = made.setdefault("checked", set())
        if today is not None and (model or cfg.llm.model) not in checked:
            from engine.llm.policy import preflight

            for note in preflight(cfg, made["client"], model or cfg.llm.model, today):
                log.warning("llm: %s", note)
            checked.add(model or cfg.llm.model)
        if blind is None:
            return LLMPolicy(cfg, made["client"], made["cache"], model=model, run_budget_usd=run_budget_usd,
                             prompt=prompt)
        from engine.llm.blind import BlindPolicy

        inner = LLMPolicy(blind.config, made["client"], made["cache"], model=model, scrub=blind.scrub,
                          run_budget_usd=run_budget_usd, prompt=prompt)
        return BlindPolicy(inner, blind)

    return make


def _experiment(args: argparse.Namespace, cfg: Config, root: Path, label: str, synthetic: bool, durable: bool,
                blind=None, run_budget_usd: float | None = None, today: dt.date | None = None):
    """Lock the state folder for the rest of the command (every arm under it), then open and
    check every arm's state: all before any LLM call."""
    from engine.arms import headline_spec, open_experiment, select_arms

    with_llm = _with_llm(args)
    head = headline_spec(cfg, args.policy)
    specs = select_arms(cfg, head, with_llm)
    factory = _llm_factory(args, blind, run_budget_usd, today) if with_llm else None
    _LOCKS.enter_context(state_lock(Path(root)))
    return open_experiment(root, cfg, specs, head, label, synthetic, factory, durable=durable, build=_build(cfg))


def _run_experiment(exp, sessions: Sequence[pd.Timestamp], market: MarketData, progress: bool) -> float:
    """Run every arm over `sessions` (each skips what it has done); seconds per session."""
    import time

    from engine.arms import run_experiment
    from engine.indicators import compute_indicators

    cfg = exp.headline.ctx.config
    first = min((a.portfolio.as_of for a in exp.arms if a.portfolio.as_of is not None), default=None)
    todo = [d for d in sessions if first is None or d.date() > first]
    for arm in exp.arms:  # as of the first session to run
        check_data(market, arm.portfolio, arm.ctx.config, on=todo[0] if todo else None)
    ind = compute_indicators(market, cfg)
    bar = None
    if progress and len(todo) > 1:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[day]}"), transient=False)
        bar.start()
        task = bar.add_task(f"sessions x {len(exp.arms)} arms", total=len(todo), day="")

    # The bar is drawn 10 times a second: it is told about the sessions run at most every
    # 50 ms, not after each one (a backtest runs a session in well under a millisecond).
    waiting, shown_at, day, nav = 0, 0.0, None, float("nan")  # the sessions run since the bar was told

    def show() -> None:
        nonlocal waiting, shown_at
        bar.update(task, advance=waiting, day=f"{day.date()}  {exp.headline.name} NAV {nav:,.2f} EUR")
        waiting, shown_at = 0, time.monotonic()

    def on_session(d: pd.Timestamp) -> None:
        nonlocal waiting, day, nav
        if bar is not None:
            unsaved = exp.headline.unsaved
            waiting, day, nav = waiting + 1, d, unsaved[-1].equity["nav_eur"] if unsaved else float("nan")
            if time.monotonic() - shown_at >= 0.05:
                show()

    t0 = time.perf_counter()
    try:
        run_experiment(exp, todo, market, ind, on_session=on_session)
    finally:
        if bar is not None:
            if waiting:
                show()
            bar.stop()
    for arm in exp.arms:
        if arm.failure and arm is not exp.headline:
            print(f"arm {arm.name} FAILED and stopped (the other arms went on): {arm.failure}", file=sys.stderr)
    if exp.headline.error is not None:  # the other arms are saved; the run fails as a single one would
        raise exp.headline.error
    return (time.perf_counter() - t0) / max(len(todo), 1)


def _verdicts(root: Path) -> dict | None:
    """STATE/experiment.json as it stands (None when there is none, or it cannot be read)."""
    try:
        data = json.loads((Path(root) / "experiment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _judged_as_of(root: Path) -> str | None:
    """The session STATE/experiment.json judges (None when there is none yet)."""
    return (_verdicts(root) or {}).get("as_of")


def _judge(exp, market: MarketData, cfg: Config) -> dict:
    """The verdict and analytics of every arm, written to STATE/experiment.json (the counts
    of the decision records it judged before are taken from it: engine.backtest.experiment)."""
    from engine.arms import read_manifest
    from engine.backtest.evaluate import close_eur
    from engine.backtest.experiment import judge_arms
    from engine.state import atomic_write_bytes, dumps

    stores = {a.name: a.store for a in exp.arms}
    result = judge_arms(stores, cfg, read_manifest(exp.root.root), close_eur(market, cfg),
                        previous=_verdicts(exp.root.root))
    as_of = exp.headline.portfolio.as_of
    result = {"as_of": as_of.isoformat() if as_of else None, **result}  # the session they judge
    atomic_write_bytes(exp.root.root / "experiment.json", dumps(result), durable=exp.root.durable)
    return result


def _print_arms(result: dict, seconds_per_session: float, n_arms: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Arms ({n_arms}), EUR; excess and p against {result.get('reference')}")
    for col in ("arm", "NAV EUR", "return", "Sharpe", "max DD", "excess/yr", "p", "MDE/yr", "turnover", "cash", "cuts"):
        table.add_column(col, justify="left" if col == "arm" else "right", no_wrap=True)

    def f(v, fmt):
        return "n/a" if v is None or v != v else fmt.format(v)

    for name, a in result["arms"].items():
        perf, v, an = a["performance"], a.get("verdict", {}), a["analytics"]
        table.add_row(name, f(perf.get("final_nav_eur"), "{:,.2f}"), f(perf.get("total_return"), "{:+.2%}"),
                      f(perf.get("sharpe"), "{:.2f}"), f(perf.get("max_drawdown"), "{:.1%}"),
                      f(v.get("mean_excess_ann"), "{:+.1%}"), f(v.get("p_value"), "{:.2f}"),
                      f(a.get("mde", {}).get("mde_ann"), "{:.1%}"), f(an.get("turnover_ann"), "{:.1f}x"),
                      f(an.get("time_in_cash"), "{:.0%}"), str(sum(an["cuts"]["by_rule"].values())))
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    tc = result.get("treatment_vs_control")
    if tc:
        print("Treatment vs control:", tc["sentence"] + ";", tc["mde"]["sentence"])
    print(f"Arms: {seconds_per_session * 1000:.0f} ms per session for {n_arms} arms "
          f"(states in arms/<arm>/, the verdicts in experiment.json)")


# --- demo ------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    codes = _calendar_codes(cfg)
    end = args.end if args.end is not None else calendars.to_session(dt.date.today())
    sessions = calendars.previous_sessions(codes, end, args.sessions)
    if len(sessions) < args.sessions:
        raise ConfigError(f"only {len(sessions)} sessions exist before {end.date()}; ask for fewer")
    end = sessions[-1]
    label = _source_label("demo", args.seed)
    exp = _experiment(args, cfg, args.out / "state", label, synthetic=True, durable=False)
    store, p = exp.root, exp.headline.portfolio
    if p.as_of is not None and p.as_of < sessions[0].date() - dt.timedelta(days=7):
        raise StateCorrupt(f"{store.root} ends on {p.as_of}, long before this demo starts ({sessions[0].date()}): use a new --out")

    print(f"almost surely demo: SYNTHETIC market (seed {args.seed}), {len(sessions)} sessions "
          f"{sessions[0].date()} .. {end.date()}, policy {args.policy}, {len(exp.arms)} arms "
          f"({', '.join(a.name for a in exp.arms)}), state in {store.root}")
    market = _load_market(_source("demo", args.seed, cfg, None), cfg, sessions[0], end)
    before = exp.headline.portfolio.as_of
    per_session = _run_experiment(exp, sessions, market, progress=True)
    p = exp.headline.portfolio
    if p.as_of == before:
        print(f"Nothing to do: {store.root} is already up to date ({p.as_of}).")
    _print_summary(store, p, cfg, args.policy, synthetic=True)
    _print_arms(_judge(exp, market, cfg), per_session, len(exp.arms))
    if not args.no_site:
        from engine.report.site import build_site

        site = build_site(store.root, args.out / "site", config=cfg, backtest=None)
        print(f"Site: serve it with python -m http.server -d {site} and open http://127.0.0.1:8000/")
    return 0


def _print_summary(store: StateStore, p: Portfolio, cfg: Config, policy: str, synthetic: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.report.summary import summarize

    equity = store.equity()
    if equity.empty:
        return
    lines = summarize(equity, store.trades(), p, cfg, policy)
    first, last = pd.Timestamp(equity["date"].iloc[0]).date(), pd.Timestamp(equity["date"].iloc[-1]).date()
    title = f"{first} .. {last}, {len(equity)} sessions, EUR" + (" (SYNTHETIC market)" if synthetic else "")
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for col in ("NAV EUR", "return", "max drawdown", "CVaR 95 (1 day)", "trades", "costs EUR"):
        table.add_column(col, justify="right", no_wrap=True)
    for ln in lines:
        table.add_row(
            ln.name, f"{ln.nav_eur:,.2f}", f"{ln.total_return:+.2%}", f"{ln.max_drawdown:.2%}",
            f"{ln.cvar_95:.2%}" if ln.cvar_95 == ln.cvar_95 else "n/a",
            "" if ln.trades is None else str(ln.trades),
            "" if ln.costs_eur is None else f"{ln.costs_eur:,.2f}",
        )
    # A pipe or a CI log has no width: do not squeeze the table into 80 columns.
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    c = p.costs
    print(f"Costs paid: commission {c.commission_eur:,.2f}, French FTT {c.tax_eur:,.2f}, "
          f"slippage {c.slippage_eur:,.2f}, FX {c.fx_fee_eur:,.2f} EUR. "
          f"Positions {len(p.positions)}, cash {p.cash_eur:,.2f} EUR, pending orders {len(p.pending_orders)}.")


# --- daily -----------------------------------------------------------------------


def cmd_daily(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    codes = _calendar_codes(cfg)
    store = StateStore(args.state)
    check_folder(args.state)  # a file given as --state is that error, not a missing portfolio
    if not args.init and not store.portfolio_path.exists():
        raise ConfigError(f"{args.state} holds no portfolio (the folder is missing or empty): pass --init to start "
                          f"a new EUR {cfg.portfolio.starting_capital_eur:,.0f} portfolio there, or point --state at it")
    now, settle = _now(), pd.Timedelta(minutes=cfg.schedule.settle_minutes)
    if args.date == LAST_CLOSED:
        d = last_closed(now, codes, settle)
    else:
        d = args.date
        require_settled(d, now, codes, settle)
    open_on_d = sorted(c for c in codes if calendars.is_session(c, d))
    if not open_on_d:
        print(f"{d.date()} is not a session of {' or '.join(sorted(codes))}: nothing to do.")
        return 0
    label = _source_label(args.source, args.seed)
    # The state is locked and checked, and the LLM key and model are checked against the server,
    # before anything is downloaded.
    exp = _experiment(args, cfg, args.state, label, synthetic=args.source == "demo", durable=True,
                      today=now.date())
    behind = [a.portfolio.as_of for a in exp.arms]
    if all(x is not None and x >= d.date() for x in behind):
        if _judged_as_of(args.state) != str(exp.headline.portfolio.as_of):  # a run stopped before judging
            as_of = pd.Timestamp(exp.headline.portfolio.as_of)
            first = calendars.previous_sessions(codes, as_of, 2)[0]
            _judge(exp, _load_market(_source(args.source, args.seed, cfg, args.cache, args.data), cfg, first, as_of),
                   cfg)
            print(f"{as_of.date()}: the verdicts of every arm were brought up to date")
        print(f"{d.date()} is already done (state as of {exp.headline.portfolio.as_of}): nothing changed.")
        return 0
    done = [x for x in behind if x is not None]
    sessions, left = _sessions_to_run(min(done) if done else None, codes, d, cfg.schedule.max_sessions_per_run)
    target, d = d, sessions[-1]
    market = _load_market(_source(args.source, args.seed, cfg, args.cache, args.data), cfg, sessions[0], d)
    if d not in market.index:
        raise EngineError(f"the {args.source} data has no bar for {d.date()} yet: run again after the close")
    head = exp.headline
    n_before = head.saved
    per_session = _run_experiment(exp, sessions, market, progress=False)
    if head.saved == n_before:
        print(f"{d.date()}: the headline arm {head.name} was already done; the other arms caught up.")
        _judge(exp, market, cfg)
        return 0
    last = head.last_saved
    assert last is not None
    rec = last.record
    line = (
        f"{d.date()}: NAV {last.equity['nav_eur']:,.2f} EUR, {len(last.fills)} fill(s), "
        f"{len(rec['orders'])} order(s) queued, {len(rec['cuts'])} cut(s), policy {args.policy}"
    )
    usage = rec.get("usage") or {}
    if usage:
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        line += f", model {usage.get('model')}, {tokens:,} tokens, {usage.get('cost_usd', 0):.4f} USD"
    if head.saved - n_before > 1:
        line += f", {head.saved - n_before} sessions run"
    print(line)
    if left:
        print(f"caught up to {d.date()}: {left} session(s) to {target.date()} remain, at most "
              f"{cfg.schedule.max_sessions_per_run} a run (schedule.max_sessions_per_run): the next run continues")
    fallback = rec["answer"].get("fallback")
    if fallback:
        print(f"{d.date()}: the decision was an explicit HOLD: {fallback}")
    result = _judge(exp, market, cfg)
    print(f"{len(exp.arms)} arms ({', '.join(a.name for a in exp.arms)}) in {args.state}/arms/, "
          f"{per_session:.2f} s per session; verdicts in {args.state}/experiment.json")
    tc = result.get("treatment_vs_control")
    if tc:
        print("Treatment vs control:", tc["sentence"])
    return 0


def _sessions_to_run(as_of: dt.date | None, codes: set[str], d: pd.Timestamp,
                     limit: int) -> tuple[pd.DatetimeIndex, int]:
    """The sessions after `as_of` (the arm furthest behind) up to `d`, oldest first, at most
    `limit` of them (a long backlog is committed in parts, each within the job's time limit),
    and how many are left for the next run."""
    if as_of is None:
        return pd.DatetimeIndex([d]), 0
    sessions = calendars.union_sessions(codes, as_of + dt.timedelta(days=1), d)
    if len(sessions) > 1:
        log.info("catching up %d sessions missed since %s", len(sessions) - 1, as_of)
    return sessions[:limit], max(0, len(sessions) - limit)


# --- backtest --------------------------------------------------------------------


def cmd_backtest(args: argparse.Namespace) -> int:
    from engine.arms import read_manifest
    from engine.backtest.evaluate import evaluate

    cfg = load_config(args.config)
    if args.end < args.start:
        raise ConfigError(f"--end {args.end.date()} is before --start {args.start.date()}")
    codes = _calendar_codes(cfg)
    sessions = calendars.union_sessions(codes, args.start, args.end)
    if len(sessions) < 2:
        raise ConfigError(f"{args.start.date()}..{args.end.date()} holds {len(sessions)} session(s): need at least 2")
    if (args.blind or args.budget_usd is not None) and args.policy != "llm":
        raise ConfigError("--blind and --budget-usd apply to --policy llm only")
    label = _source_label(args.source, args.seed)
    market = _load_market(_source(args.source, args.seed, cfg, args.cache, args.data), cfg, sessions[0], sessions[-1])
    sessions = sessions[sessions.isin(market.index)]

    model = args.model or cfg.llm.model
    cutoff = cfg.llm.cutoff(model) if args.policy == "llm" else None
    # Fail closed: a model whose cutoff is unknown may remember any window.
    in_sample = args.policy == "llm" and not args.blind and (cutoff is None or sessions[0].date() <= cutoff)
    blind = None
    if args.blind:
        from engine.llm.blind import Blind

        anchors = market.close.ffill().loc[sessions[0]].to_dict()
        blind = Blind(cfg, anchors, seed=args.seed)
    exp = _experiment(args, cfg, args.out / "state", label, synthetic=args.source == "demo", durable=False,
                      blind=blind, run_budget_usd=args.budget_usd)
    p = exp.headline.portfolio
    if p.inception is not None and p.inception != sessions[0].date():
        raise StateCorrupt(f"{exp.root.root} is a backtest that began on {p.inception}, not {sessions[0].date()}: "
                           "use a new --out")
    run_info = {
        "policy": args.policy, "model": model if args.policy == "llm" else None, "source": label,
        "synthetic": args.source == "demo", "start": sessions[0].date().isoformat(),
        "end": sessions[-1].date().isoformat(), "sessions": len(sessions), "blind": args.blind,
        "label": "blind" if args.blind else ("in-sample" if in_sample else "after the knowledge cutoff" if cutoff else None),
        "knowledge_cutoff": cutoff.isoformat() if cutoff else None, "in_sample": in_sample,
        "budget_usd": args.budget_usd, "headline": exp.headline.name, "arms": [a.name for a in exp.arms],
    }
    print(f"almost surely backtest: {run_info['start']} .. {run_info['end']}, {len(sessions)} sessions, "
          f"policy {args.policy}" + (f" ({model}{', blind' if args.blind else ''})" if args.policy == "llm" else "")
          + f", source {label}" + (" (SYNTHETIC)" if args.source == "demo" else "")
          + f", {len(exp.arms)} arms ({', '.join(run_info['arms'])})")
    if in_sample:
        when = (f"before {model}'s knowledge cutoff ({cutoff})" if cutoff
                else f"in a window {model} may know (its knowledge cutoff is unknown)")
        print(f"IN-SAMPLE: the run starts {when}; the model may remember "
              "what happened. Only a window after the cutoff is out of sample (--blind hides names, dates and price "
              "levels: such a run is labelled blind, not out-of-sample).")
    per_session = _run_experiment(exp, sessions, market, progress=True)
    arms = {a.name: a.store for a in exp.arms}
    metrics = evaluate(exp.root, arms, exp.headline.name, market, cfg, run_info, args.out,
                       charts=not args.no_charts, manifest=read_manifest(exp.root.root),
                       counts={a.name: a.counts for a in exp.arms if a.counts is not None})
    from engine.state import atomic_write_bytes, dumps

    as_of = exp.headline.portfolio.as_of
    judged = {"as_of": as_of.isoformat() if as_of else None, **metrics["experiment"]}  # as daily writes it
    atomic_write_bytes(exp.root.root / "experiment.json", dumps(judged), durable=False)
    _print_metrics(metrics)
    _print_arms(metrics["experiment"], per_session, len(exp.arms))
    print(f"metrics: {args.out / 'metrics.json'}" + ("" if args.no_charts else f"; charts: {args.out / 'charts'}"))
    return 0


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.report.charts import LABELS

    run_info = metrics["run"]
    table = Table(title=f"{run_info['start']} .. {run_info['end']}, {run_info['sessions']} sessions, EUR"
                  + (" (SYNTHETIC market)" if run_info.get("synthetic") else ""))
    table.add_column("", no_wrap=True)
    cols = [("final_nav_eur", "NAV EUR", "{:,.2f}"), ("cagr", "CAGR", "{:+.2%}"), ("volatility_ann", "vol", "{:.1%}"),
            ("sharpe", "Sharpe", "{:.2f}"), ("max_drawdown", "max DD", "{:.1%}"), ("cvar_95", "CVaR 95", "{:.2%}")]
    for _, head, _ in cols:
        table.add_column(head, justify="right", no_wrap=True)
    rows = [(f"Strategy ({run_info['policy']})", metrics["strategy"])]
    names = {**LABELS, **metrics.get("labels", {})}
    rows += [(names.get(k, k), m) for k, m in metrics["benchmarks"].items()]
    for name, m in rows:
        cells = []
        for key, _, fmt in cols:
            v = m.get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        table.add_row(name, *cells)
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if "verdict" in metrics:
        print("Verdict:", metrics["verdict"]["sentence"])


# --- sweep -----------------------------------------------------------------------


def _sweep_one(argv: list[str]) -> tuple[list[str], int, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return argv, code, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""


def _sweep_jobs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """Every combination of the grid as (name, backtest argv)."""
    policies = [x for x in args.policies.split(",") if x]
    seeds = [int(x) for x in args.seeds.split(",") if x]
    models = [x for x in args.models.split(",") if x] or [None]
    windows = []
    for w in args.windows.split(","):
        try:
            a, b = w.split(":")
            windows.append((_date(a), _date(b)))
        except (ValueError, argparse.ArgumentTypeError):
            raise ConfigError(f"--windows: expected START:END dates, got {w!r}") from None
    for pol in policies:
        if pol not in POLICIES:
            raise ConfigError(f"--policies: unknown policy {pol!r}")
    jobs: list[tuple[str, list[str]]] = []
    for pol in policies:
        for model in (models if pol == "llm" else [None]):
            for seed in (seeds if args.source == "demo" else [0]):
                for start, end in windows:
                    name = f"{pol}{'-' + model if model else ''}-seed{seed}-{start.date()}-{end.date()}"
                    argv = ["backtest", "--source", args.source, "--policy", pol, "--start", str(start.date()),
                            "--end", str(end.date()), "--out", str(args.out / name), "--seed", str(seed),
                            "--no-charts", "--cache", str(args.cache)]
                    if model:
                        argv += ["--model", model]
                    if pol == "llm" and args.job_budget_usd is not None:
                        argv += ["--budget-usd", f"{args.job_budget_usd:g}"]
                    if args.config:
                        argv += ["--config", str(args.config)]
                    jobs.append((name, argv))
    if args.max_jobs is not None and len(jobs) > args.max_jobs:
        raise ConfigError(f"the grid has {len(jobs)} backtests, more than --max-jobs {args.max_jobs}: shrink it")
    return jobs


def _comparison(out: Path, names: Sequence[str]) -> pd.DataFrame:
    """One row per run and arm, from each run's metrics.json."""
    import json

    rows = []
    for name in names:
        path = out / name / "metrics.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        arms = (m.get("experiment") or {}).get("arms") or {"strategy": {"performance": m["strategy"],
                                                                         "verdict": m.get("verdict", {})}}
        tc = (m.get("experiment") or {}).get("treatment_vs_control") or {}
        for arm, a in arms.items():
            s, v = a["performance"], a.get("verdict") or {}
            rows.append({"run": name, "arm": arm, "policy": m["run"]["policy"], "model": m["run"]["model"] or "",
                         "start": m["run"]["start"], "end": m["run"]["end"],
                         "cagr": s["cagr"], "sharpe": s["sharpe"], "max_drawdown": s["max_drawdown"],
                         "cvar_95": s["cvar_95"], "excess_ann": v.get("mean_excess_ann"), "p_value": v.get("p_value"),
                         "mde_ann": (a.get("mde") or {}).get("mde_ann"),
                         "dsr": (a.get("deflated") or {}).get("dsr"), "llm_cost_usd": s.get("llm_cost_usd"),
                         "treatment_vs_control_p": tc.get("p_value")})
    return pd.DataFrame(rows)


def _write_comparison(out: Path, names: Sequence[str]) -> None:
    frame = _comparison(out, names)
    if frame.empty:
        return
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "comparison.csv", index=False)
    with pd.option_context("display.width", 220, "display.max_columns", 20):
        print(frame.drop(columns=["start", "end", "model"]).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"comparison: {out / 'comparison.csv'}")


def cmd_sweep(args: argparse.Namespace) -> int:
    """The grid in local processes, or (--plan) as a GitHub Actions matrix, or (--aggregate)
    the table of the runs already in OUT (the matrix's final job)."""
    import json
    from concurrent.futures import ProcessPoolExecutor

    if args.aggregate:
        names = sorted(p.parent.name for p in args.out.glob("*/metrics.json"))
        if not names:
            raise ConfigError(f"no run with a metrics.json under {args.out}")
        _write_comparison(args.out, names)
        return 0
    jobs = _sweep_jobs(args)
    if args.plan:
        print(json.dumps({"include": [{"name": n, "args": " ".join(a)} for n, a in jobs]}))
        return 0
    print(f"sweep: {len(jobs)} backtests on {args.jobs} process(es) into {args.out}")
    failed = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for (name, _), (_, code, last) in zip(jobs, pool.map(_sweep_one, [a for _, a in jobs]), strict=True):
            if code != 0:
                failed += 1
                print(f"  {name}: FAILED ({last})")
                continue
            print(f"  {name}: done")
    _write_comparison(args.out, [n for n, _ in jobs])
    return 1 if failed else 0


# --- site, weekly, monitor ----------------------------------------------------------


def cmd_site(args: argparse.Namespace) -> int:
    from engine.ops import has_session
    from engine.report.site import build_placeholder, build_site

    cfg = load_config(args.config)
    if not has_session(args.state):
        build_placeholder(args.out, config=cfg)
        print(f"notice: {args.state} holds no session yet: built the placeholder site in {args.out} "
              "(the experiment starts at the next session)")
        return 0
    out = build_site(args.state, args.out, config=cfg, backtest=args.backtest)
    print(f"site built in {out}: serve it with python -m http.server -d {out} and open http://127.0.0.1:8000/")
    return 0


def cmd_weekly(args: argparse.Namespace) -> int:
    from engine.ops import has_session
    from engine.report.weekly import refresh_previous_week, write_weekly

    cfg = load_config(args.config)
    if not has_session(args.state):
        print(f"notice: {args.state} holds no session yet: no weekly report to write")
        return 0
    path = write_weekly(args.state, cfg, args.week)
    print(f"weekly report: {path}")
    if args.week is None:
        previous = refresh_previous_week(args.state, cfg)
        if previous is not None:
            print(f"weekly report: {previous} rewritten (it was written before its week was complete)")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from engine.monitor import monitor

    cfg = load_config(args.config)
    now = _now() if os.environ.get("ALMOST_SURELY_NOW", "").strip() else None
    if args.now:
        try:
            now = pd.Timestamp(args.now)
        except ValueError:
            raise ConfigError(f"--now: not a time: {args.now!r}") from None
        if now.tzinfo is None:
            raise ConfigError("--now needs a time zone, e.g. 2026-11-24T15:00:00+00:00")
    source = _source(args.source, args.seed, cfg, args.cache)
    result = monitor(args.state, cfg, source, now=now)
    print(result.message)
    for alert in result.new_alerts:
        print(f"ALERT {alert['ticker']}: {alert['message']}")
    return 0
