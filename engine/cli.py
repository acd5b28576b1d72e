"""``python -m engine`` (or ``almost-surely``): the command line, one of the edges.

Expected failures (bad input, missing data, corrupt state) end with one line on stderr
and a non-zero exit code (engine.errors); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from engine import __version__
from engine.config import Config, load_config
from engine.data import calendars
from engine.data.market import MarketData
from engine.errors import ConfigError, EngineError, StateCorrupt
from engine.policies import POLICIES, make_policy
from engine.portfolio.ledger import Portfolio
from engine.state import StateStore
from engine.step import StepContext, StepResult, check_data, run

log = logging.getLogger("engine")

DEFAULT_DEMO_SESSIONS = 252
DEFAULT_CACHE = Path(".cache") / "almost-surely"


def _date(s: str) -> pd.Timestamp:
    try:
        return calendars.to_session(dt.date.fromisoformat(s))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def _positive_int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


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
                       "server other than OpenAI's)")
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
    demo.add_argument("--no-site", action="store_true", help="do not build the site (the site comes in a later release)")
    common(demo)

    daily = sub.add_parser(
        "daily",
        help="run the daily step for one session (and any missed before it)",
        description="Run the daily step for session D after both markets have closed: fill yesterday's "
        "orders at D's open, mark to market, decide, queue orders. Re-running a done date changes nothing.",
    )
    daily.add_argument("--state", type=Path, required=True, help="the state folder (e.g. state)")
    daily.add_argument("--source", choices=("yahoo", "demo"), required=True, help="market data source")
    daily.add_argument("--date", type=_date, help="session date D (default: today, UTC)")
    daily.add_argument("--seed", type=int, default=42, help="seed of the demo market (with --source demo)")
    common(daily)
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
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "daily":
            return cmd_daily(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: the state holds every session saved so far", file=sys.stderr)
        return 130
    raise AssertionError(args.command)


# --- shared pieces ---------------------------------------------------------------


def _calendar_codes(cfg: Config) -> set[str]:
    return {i.calendar for i in cfg.instruments.values()}


def _source(name: str, seed: int, cfg: Config, cache: Path | None):
    if name == "demo":
        from engine.data.demo import DemoSource

        return DemoSource(seed=seed)
    from engine.data.yahoo import YahooSource

    return YahooSource(
        cache_dir=cache / "yahoo" if cache else None,
        retries=cfg.data.retries,
        backoff_seconds=cfg.data.backoff_seconds,
    )


def _policy(args: argparse.Namespace, cfg: Config):
    if args.policy != "llm":
        return make_policy(args.policy, cfg)
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise ConfigError(
            "OPENAI_API_KEY is not set: export it to use --policy llm "
            "(and OPENAI_BASE_URL for a server other than OpenAI's), or use --policy rules"
        )
    from engine.llm.cache import ResponseCache
    from engine.llm.client import ChatClient
    from engine.llm.policy import LLMPolicy

    client = ChatClient(api_key=key, base_url=os.environ.get("OPENAI_BASE_URL") or None, settings=cfg.llm)
    cache = ResponseCache(args.cache / "llm" if args.cache else None)
    return LLMPolicy(cfg, client, cache, model=args.model)


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


def _open_state(store: StateStore, cfg: Config, label: str) -> Portfolio:
    p = store.load()
    if p is None:
        return Portfolio.initial(cfg.portfolio.starting_capital_eur, source=label)
    if p.source != label:
        raise StateCorrupt(
            f"{store.root} holds a portfolio priced by '{p.source}', not '{label}': refusing to mix sources"
        )
    return p


def _run_and_save(
    store: StateStore, p: Portfolio, sessions: pd.DatetimeIndex, market: MarketData, ctx: StepContext,
    progress: bool, checkpoint: int = 250,
) -> tuple[Portfolio, list[StepResult]]:
    from engine.indicators import compute_indicators

    check_data(market, p, ctx.config)
    ind = compute_indicators(market, ctx.config)
    todo = [d for d in sessions if p.as_of is None or d.date() > p.as_of]
    done: list[StepResult] = []
    if progress and len(todo) > 1:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[day]}"), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("sessions", total=len(todo), day="")
            for chunk_start in range(0, len(todo), checkpoint):
                chunk = todo[chunk_start : chunk_start + checkpoint]
                p, results = run(p, chunk, market, ind, ctx,
                                 on_step=lambda r: bar.update(task, advance=1, day=f"{r.date.date()}  NAV {r.equity['nav_eur']:,.2f} EUR"))
                store.save(p, results)
                done += results
    else:
        p, done = run(p, todo, market, ind, ctx)
        store.save(p, done)
    return p, done


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
    store = StateStore(args.out / "state", durable=False)
    p = _open_state(store, cfg, label)
    if p.as_of is not None and p.as_of < sessions[0].date() - dt.timedelta(days=7):
        raise StateCorrupt(f"{store.root} ends on {p.as_of}, long before this demo starts ({sessions[0].date()}): use a new --out")

    print(f"almost surely demo: SYNTHETIC market (seed {args.seed}), {len(sessions)} sessions "
          f"{sessions[0].date()} .. {end.date()}, policy {args.policy}, state in {store.root}")
    market = _load_market(_source("demo", args.seed, cfg, None), cfg, sessions[0], end)
    ctx = StepContext(config=cfg, policy=_policy(args, cfg), source=label, synthetic=True)
    p, done = _run_and_save(store, p, sessions, market, ctx, progress=True)
    if not done:
        print(f"Nothing to do: {store.root} is already up to date ({p.as_of}).")
    _print_summary(store, p, cfg, args.policy, synthetic=True)
    if not args.no_site:
        print("The site will be built here by a later release (python -m engine site); "
              f"meanwhile read the decisions in {store.root / 'decisions'}.")
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
    d = args.date if args.date is not None else calendars.to_session(dt.datetime.now(dt.UTC).date())
    open_on_d = sorted(c for c in codes if calendars.is_session(c, d))
    if not open_on_d:
        print(f"{d.date()} is not a session of {' or '.join(sorted(codes))}: nothing to do.")
        return 0
    label = _source_label(args.source, args.seed)
    store = StateStore(args.state)
    p = _open_state(store, cfg, label)
    if p.as_of is not None and p.as_of >= d.date():
        print(f"{d.date()} is already done (state as of {p.as_of}): nothing changed.")
        return 0
    if p.as_of is None:
        sessions = pd.DatetimeIndex([d])
    else:
        sessions = calendars.union_sessions(codes, p.as_of + dt.timedelta(days=1), d)
        if len(sessions) > 1:
            log.info("catching up %d sessions missed since %s", len(sessions) - 1, p.as_of)
    market = _load_market(_source(args.source, args.seed, cfg, args.cache), cfg, sessions[0], d)
    if d not in market.index:
        raise EngineError(f"the {args.source} data has no bar for {d.date()} yet: run again after the close")
    ctx = StepContext(config=cfg, policy=_policy(args, cfg), source=label, synthetic=args.source == "demo")
    p, done = _run_and_save(store, p, sessions, market, ctx, progress=False)
    last = done[-1]
    rec = last.record
    line = (
        f"{d.date()}: NAV {last.equity['nav_eur']:,.2f} EUR, {len(last.fills)} fill(s), "
        f"{len(rec['orders'])} order(s) queued, {len(rec['cuts'])} cut(s), policy {args.policy}"
    )
    usage = rec.get("usage") or {}
    if usage:
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        line += f", model {usage.get('model')}, {tokens:,} tokens, {usage.get('cost_usd', 0):.4f} USD"
    if len(done) > 1:
        line += f", {len(done)} sessions run"
    print(line)
    fallback = rec["answer"].get("fallback")
    if fallback:
        print(f"{d.date()}: the decision was an explicit HOLD: {fallback}")
    return 0
