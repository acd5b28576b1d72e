"""The public site: pages and charts generated from the state, built by MkDocs (strict).

::

    build_site(state, out, config=cfg, backtest=None) -> out

The state folder is the single source of truth. The build

1. reads it (portfolio.json, equity.parquet, trades.parquet, decisions/, reports/,
   alerts.jsonl) and, if given, a backtest folder (metrics.json, benchmarks.parquet);
2. writes the generated pages and charts (:mod:`engine.report.pages`) into a temporary
   docs folder, next to the hand-written pages of ``docs/`` (their ``{{ section.key }}``
   placeholders filled from the configuration, so the numbers they quote cannot drift);
3. writes a MkDocs configuration that inherits the repository's ``mkdocs.yml`` and
   points at that folder, at the theme overrides in ``site/overrides`` and at `out`;
4. runs the MkDocs build in strict mode: any warning (a broken link, a missing image,
   an unknown anchor) fails the build with :class:`SiteError`.

It reads the state under its shared lock (no writer can change it meanwhile) and shows
only what ``portfolio.json`` names: sessions up to its ``as_of``, never the records of a
save that did not finish. MkDocs builds into a sibling folder (``.OUT.building``) that
is swapped in when complete, so a killed build leaves the previous site whole.

Nothing generated is written inside the repository: the temporary docs folder is
removed afterwards and `out` is wherever the caller says (``/out/``, ``/_site/`` and
``/public/`` are git-ignored). Every date on the site comes from the state (its
``as_of``), never from the clock, and ``SOURCE_DATE_EPOCH`` is set from it during the
build, so the same state gives the same site, byte for byte.

``mkdocs.yml``, ``docs/`` and ``site/`` are found next to the ``engine`` package
(``Path(engine.__file__).parents[1]``), so the build works from any directory.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml

import engine
from engine.config import Config
from engine.errors import EngineError, StateCorrupt
from engine.report import pages
from engine.records import Prompts, read_record
from engine.report.chart_cache import ChartCache
from engine.report.pages import Backtest, Links, SiteData
from engine.state import StateStore, state_lock

log = logging.getLogger("engine.site")

REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# {{ name }} or {{ name:spec }}; GitHub Actions' ${{ ... }} is left alone.
PLACEHOLDER = re.compile(r"(?<!\$)\{\{\s*([A-Za-z_][\w.]*)\s*(?::([^}]*?))?\s*\}\}")
WEEK = re.compile(r"\d{4}-W\d{2}")
# What the build generates at the top of the docs folder: hand-written pages may not use these names.
GENERATED = ("index.md", "portfolio.md", "decisions", "risk.md", "reports", "alerts.md", "backtests.md", "charts",
             "downloads.md", "data")


class SiteError(EngineError):
    """The site cannot be built: no state to show, a bad output folder, or a failed MkDocs build."""

    exit_code = 1


def project_root() -> Path:
    """The folder holding ``mkdocs.yml``, ``docs/`` and ``site/``: the parent of the engine package."""
    root = Path(engine.__file__).resolve().parents[1]
    missing = [name for name in ("mkdocs.yml", "docs", "site") if not (root / name).exists()]
    if missing:
        raise SiteError(f"cannot build the site: {', '.join(missing)} not found in {root} "
                        "(the site is built from a checkout of the repository)")
    return root


def build_site(state: Path, out: Path, *, config: Config, backtest: Path | None = None,
               cache: Path | None = None) -> Path:
    """Generate the pages and charts of `state`, build the site into `out` (strict), return `out`.

    `cache` (default: ``$SITE_CACHE``, else none) keeps drawn charts between builds, keyed by
    their inputs (:mod:`engine.report.chart_cache`): the charts of closed weeks are drawn once."""
    state, out = Path(state), Path(out)
    if cache is None and os.environ.get("SITE_CACHE", "").strip():
        cache = Path(os.environ["SITE_CACHE"].strip())
    root = project_root()
    building, old = _siblings(out)
    _recover(out, building, old)
    _check_out(out, state, root)
    with state_lock(state, shared=True), tempfile.TemporaryDirectory(prefix="almost-surely-site-") as tmp:
        data = load_site_data(state, config, backtest)
        work = Path(tmp)
        docs = work / "docs"
        nav = write_docs(data, docs, root / "docs", state, cache=cache)
        cfg_path = write_mkdocs_config(work, root, docs, building, nav, synthetic=data.synthetic)
        _run_mkdocs(cfg_path, _epoch(data.as_of))
    _swap_in(building, out, old)
    log.debug("site: %s built from %s (%d sessions, as of %s)", out, state, len(data.equity), data.as_of)
    return out


def _siblings(out: Path) -> tuple[Path, Path]:
    """Where the new site is built, and where the old one waits while they are swapped."""
    return out.parent / f".{out.name}.building", out.parent / f".{out.name}.old"


def _recover(out: Path, building: Path, old: Path) -> None:
    """A build killed between the two renames of the swap left the old site aside: put it
    back; a build killed earlier left a partial one beside it: remove it."""
    if old.is_dir() and not out.exists():
        old.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(building, ignore_errors=True)


def _swap_in(building: Path, out: Path, old: Path) -> None:
    """Replace `out` by the finished build: until the build is complete, `out` is the old
    site, whole (a killed build leaves it as it was)."""
    if out.exists():
        out.rename(old)
    building.rename(out)
    shutil.rmtree(old, ignore_errors=True)


PLACEHOLDER_HOME = """# almost surely

**The experiment starts at the next session.** This site is built from the audit trail in
`state/`, which holds no session yet: after the next close of New York or Paris, the daily
run books the first session of the EUR {capital:,.0f} paper portfolio and this page shows it.

Until then, read [what the experiment is](about.md).
"""


def build_placeholder(out: Path, *, config: Config) -> Path:
    """The site of a state with no session yet (a new fork): a home page saying that the
    experiment starts at the next session, and the hand-written pages (but the methodology,
    which shows generated charts). Built like the real one
    (strict), so that the Pages deployment works from day one; its build date is the clock's,
    since there is no state to date it."""
    out = Path(out)
    root = project_root()
    _check_out(out, root / "state", root)
    with tempfile.TemporaryDirectory(prefix="almost-surely-site-") as tmp:
        work = Path(tmp)
        docs = work / "docs"
        docs.mkdir()
        extra = _copy_handwritten(root / "docs", docs, config)
        (docs / "methodology.md").unlink(missing_ok=True)  # it links to generated pages and charts
        (docs / "index.md").write_text(PLACEHOLDER_HOME.format(capital=config.portfolio.starting_capital_eur),
                                       encoding="utf-8")
        about = ["about.md"] if (docs / "about.md").exists() else []
        nav: list[Any] = [{"Home": "index.md"}] + ([{"About": about + extra}] if about or extra else [])
        cfg_path = write_mkdocs_config(work, root, docs, out, nav, synthetic=False)
        _run_mkdocs(cfg_path, _epoch(dt.datetime.now(dt.UTC).date()))
    return out


# --- reading the state ----------------------------------------------------------------


def load_site_data(state: Path, config: Config, backtest: Path | None = None) -> SiteData:
    if not state.is_dir():
        raise SiteError(f"no state folder at {state}: run `python -m engine daily` or `python -m engine demo` first")
    store = StateStore(state)
    portfolio = store.load()
    equity = store.equity()
    if portfolio is None or equity.empty:
        raise SiteError(f"{state} holds no session yet: nothing to publish (run `python -m engine daily` first)")
    missing = [c for c in ("date", "nav_eur") if c not in equity.columns]
    if missing:
        raise StateCorrupt(f"{store.equity_path} has no column {', '.join(missing)}")
    equity = equity.assign(date=pd.to_datetime(equity["date"])).sort_values("date").set_index("date")
    return SiteData(
        config=config,
        portfolio=portfolio,
        equity=equity,
        trades=store.trades(),
        records=[r for r in _records(state / "decisions") if r["date"] <= str(portfolio.as_of)],
        reports=_reports(state / "reports"),
        alerts=_alerts(state / "alerts.jsonl"),
        backtest=_backtest(backtest) if backtest is not None else None,
        links=record_links(state),
        other_arms=_other_arms(state, portfolio.as_of),
    )


def _other_arms(state: Path, as_of: dt.date | None) -> list[tuple[str, str, pd.Series]]:
    """The experiment's active arms other than the headline (whose history is the state root),
    each with its NAV up to the state's as_of: the site judges every arm the daily run ran."""
    from engine.arms import arm_folders, read_manifest

    manifest = read_manifest(state) or {}
    out = []
    for name, folder in sorted(arm_folders(state).items()):
        info = manifest.get("arms", {}).get(name, {})
        if name == manifest.get("headline") or info.get("passive"):
            continue
        eq = StateStore(folder).equity()
        if eq.empty:
            continue
        nav = pd.Series(eq["nav_eur"].to_numpy(dtype=float), index=pd.DatetimeIndex(eq["date"]), name=name)
        if as_of is not None:
            nav = nav[nav.index <= pd.Timestamp(as_of)]
        out.append((name, str(info.get("label") or name), nav))
    return out


def record_links(state: Path) -> Links:
    """Where the raw decision records are, from the environment GitHub Actions sets
    (``GITHUB_REPOSITORY``, ``GITHUB_SERVER_URL``, ``GITHUB_SHA``) and, when the checkout
    has its history, the commit that last wrote each record (one ``git log``)."""
    repo = os.environ.get("GITHUB_REPOSITORY", "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        return Links()
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com").strip().rstrip("/")
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]+)?", server):
        return Links()
    head = os.environ.get("GITHUB_SHA", "").strip()
    head = head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    links = Links(repo_url=f"{server}/{repo}", head=head)
    try:
        git = ["git", "-C", str(state)]
        top = Path(subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip())
        rel = state.resolve().relative_to(top.resolve()).as_posix()
        shallow = subprocess.run([*git, "rev-parse", "--is-shallow-repository"], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.strip() == "true"
        commits: dict[str, str] = {}
        if not shallow:
            history = subprocess.run([*git, "log", "--format=%x00%H", "--name-only", "--", "decisions"],
                                     capture_output=True, text=True, check=True, timeout=120).stdout
            sha = ""
            for line in history.splitlines():
                if line.startswith("\0"):
                    sha = line[1:]
                    continue
                m = re.search(r"decisions/(\d{4})/(\d\d-\d\d)\.json$", line)
                if m and sha:
                    commits.setdefault(f"{m.group(1)}-{m.group(2)}", sha)
        return Links(repo_url=links.repo_url, head=head, commits=commits, state_path=rel)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.info("site: no commit history for the records (%s): they link at %s", exc, head or "the site's copy")
        return links


def _records(folder: Path) -> list[dict[str, Any]]:
    """Every decision record, oldest first; the date comes from the file's place."""
    out = []
    prompts = Prompts(folder)
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]-[0-9][0-9].json")):
        try:
            day = dt.date.fromisoformat(f"{path.parent.name}-{path.stem}")
        except ValueError as exc:
            raise StateCorrupt(f"cannot read {path}: {exc}") from None
        rec = read_record(path, prompts)  # either layout, the system prompt back in place
        rec["date"] = day.isoformat()
        out.append(rec)
    return out


def _reports(folder: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(folder.glob("*.md")):
        if not REPORT_NAME.match(path.stem) or path.stem == "index":
            log.warning("site: skipping the report %s (unexpected file name)", path.name)
            continue
        try:
            out.append((path.stem, path.read_text(encoding="utf-8", errors="replace")))
        except OSError as exc:
            raise StateCorrupt(f"cannot read {path}: {exc}") from None
    return out


def _alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise StateCorrupt(f"cannot read {path}: {exc}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StateCorrupt(f"{path} line {i} is not JSON: {exc}") from None
        out.append(item if isinstance(item, dict) else {"message": item})
    return out


def _backtest(folder: Path) -> Backtest:
    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.exists():
        raise SiteError(f"no backtest at {folder}: {path.name} not found "
                        "(run `python -m engine backtest ... --out DIR` and pass that DIR)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SiteError(f"cannot read {path}: {exc}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("strategy"), dict):
        raise SiteError(f"{path} is not the metrics of a backtest (no 'strategy')")
    lines = None
    parquet = folder / "benchmarks.parquet"
    if parquet.exists():
        try:
            frame = pd.read_parquet(parquet)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise SiteError(f"cannot read {parquet}: {exc}") from None
        if "date" in frame.columns:
            lines = frame.assign(date=pd.to_datetime(frame["date"])).set_index("date").sort_index()
    charts = tuple(sorted((folder / "charts").glob("*.png"))) if lines is None else ()
    return Backtest(metrics=metrics, lines=lines, charts=charts)


# --- writing the docs -------------------------------------------------------------------


def write_docs(data: SiteData, docs: Path, handwritten: Path, state: Path, *, cache: Path | None = None) -> list[Any]:
    """The hand-written pages (placeholders filled) and the generated ones; returns the nav."""
    docs.mkdir(parents=True, exist_ok=True)
    extra = _copy_handwritten(handwritten, docs, data.config)
    charts_dir = docs / "charts"
    chart_cache = ChartCache(cache)
    drawn = pages.draw_charts(data, charts_dir, chart_cache)
    chart_cache.prune()  # what this build did not ask for is never asked for again
    if data.backtest is not None and data.backtest.lines is None:
        for p in data.backtest.charts:
            shutil.copyfile(p, charts_dir / f"backtest_{p.name}")

    def write(rel: str, text: str) -> None:
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    write("index.md", pages.home_page(data, drawn))
    write("portfolio.md", pages.portfolio_page(data, drawn))
    write("risk.md", pages.risk_page(data, drawn))
    write("backtests.md", pages.backtests_page(data, drawn))
    write("alerts.md", pages.alerts_page(data))
    write("decisions/index.md", pages.decisions_index(data))
    months = list(data.months)
    for i, month in enumerate(months):
        newer = months[i - 1] if i > 0 else None
        older = months[i + 1] if i + 1 < len(months) else None
        text, fragments = pages.decisions_month(data, month, data.months[month], newer, older)
        write(pages.month_page(month), text)
        write_fragments(docs, pages.month_page(month), fragments)
    write("downloads.md", pages.data_page(data))
    pages.write_downloads(data, docs / "data")
    if not data.links.remote:  # the raw records are linked in the repository when it is known
        shutil.copytree(state / "decisions", docs / "data" / "decisions", dirs_exist_ok=True)
    write("reports/index.md", pages.reports_index(data))
    weeks = [name for name, text in data.reports if WEEK.fullmatch(name) and f"]({name}.png)" in text]
    charts = pages.week_charts(data, weeks)
    for name, text in data.reports:
        write(f"reports/{name}.md", pages.report_page(name, text, chart=name in charts))
        if name in charts:
            write_fragments(docs, f"reports/{name}.md", {"chart": charts[name]})

    # Month pages and weekly reports are reached from their index pages, not from the global
    # navigation (which every page repeats): see not_in_nav in write_mkdocs_config.
    about = [p for p in ("about.md", "methodology.md") if (docs / p).exists()]
    nav: list[Any] = [
        {"Home": "index.md"},
        {"Portfolio": "portfolio.md"},
        {"Decisions": "decisions/index.md"},
        {"Risk": "risk.md"},
        {"Reports": "reports/index.md"},
        {"Alerts": "alerts.md"},
        {"Backtests": "backtests.md"},
        {"Downloads": "downloads.md"},
    ]
    if about or extra:
        nav.append({"About": about + extra})
    return nav


def write_fragments(docs: Path, page: str, fragments: dict[str, str]) -> None:
    """The HTML blocks of `page` ("decisions/2024-12.md") that the build's hook puts in place
    of their placeholders, beside the docs folder (MkDocs never reads them as pages)."""
    path = docs.parent / "fragments" / (page.removesuffix(".md") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(fragments))


def _copy_handwritten(src: Path, docs: Path, config: Config) -> list[str]:
    """Copy ``docs/`` with the placeholders of its pages filled; returns the extra pages for the nav."""
    extra = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parts[0] in GENERATED:
            raise SiteError(f"docs/{rel.as_posix()} has the name of a generated page: rename it")
        target = docs / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".md":
            target.write_text(fill_placeholders(path.read_text(encoding="utf-8"), config, rel.as_posix()),
                              encoding="utf-8")
            if rel.as_posix() not in ("about.md", "methodology.md"):
                extra.append(rel.as_posix())
        else:
            shutil.copyfile(path, target)
    return extra


def fill_placeholders(text: str, config: Config, page: str = "page") -> str:
    """``{{ costs.french_ftt_rate:.1% }}`` -> ``0.4%``: a configuration value with an
    optional format spec; names without a dot are generated blocks (:func:`_blocks`)."""
    blocks = _blocks(config)

    def fill(m: re.Match[str]) -> str:
        name, spec = m.group(1), (m.group(2) or "").strip()
        if "." not in name:
            if name not in blocks:
                raise SiteError(f"docs/{page}: unknown placeholder {{{{ {name} }}}}")
            return blocks[name]
        value: Any = config
        for part in name.split("."):
            if not hasattr(value, part):
                raise SiteError(f"docs/{page}: {{{{ {name} }}}} is not a configuration value")
            value = getattr(value, part)
        try:
            return format(value, spec) if spec else str(value)
        except (TypeError, ValueError) as exc:
            raise SiteError(f"docs/{page}: cannot format {{{{ {name}:{spec} }}}}: {exc}") from None

    return PLACEHOLDER.sub(fill, text)


def _blocks(config: Config) -> dict[str, str]:
    from engine.risk.drawdown import drawdown_multiplier

    g = config.guardrails
    universe = pages.md_table(["Ticker", "Name", "Kind", "Sector", "Currency", "Exchange", "French FTT"], [
        [a.ticker, a.name, a.kind.upper() if a.kind == "etf" else a.kind, a.sector, a.currency,
         {"XNYS": "New York", "XPAR": "Paris"}.get(a.calendar, a.calendar), "yes" if a.ftt else ""]
        for a in config.assets])
    points = []
    for k in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
        dd = g.drawdown_limit * k
        m = float(drawdown_multiplier(dd, g.drawdown_limit, g.drawdown_floor, g.drawdown_power))
        points.append([f"{dd:.0%}", f"{m:.2f}", f"{g.max_gross_exposure * m:.0%}", f"{g.cvar_budget * m:.2%}"])
    multiplier = pages.md_table(["Drawdown", "m(dd)", "Exposure cap", "CVaR budget"], points, numeric=(0, 1, 2, 3))
    known = {config.llm.model: config.llm.cutoff(config.llm.model), **config.llm.knowledge_cutoff}  # registry + config
    cutoffs = ", ".join(f"{m}: {d.isoformat() if d else 'unknown (always in-sample)'}" for m, d in known.items())
    benchmarks = ", ".join(b.name for b in config.benchmarks)
    return {"universe": universe, "multiplier_table": multiplier, "knowledge_cutoffs": cutoffs,
            "benchmarks": benchmarks, "n_assets": str(len(config.assets)),
            "cvar_tail": f"{1 - config.risk.cvar_level:.0%}",
            "min_test_sessions": str(pages.arms.MIN_TEST_SESSIONS + 1),
            "share_rule": "Quantities are whole shares" if config.portfolio.whole_shares
            else "Fractional quantities are allowed"}


def write_mkdocs_config(work: Path, root: Path, docs: Path, out: Path, nav: list[Any], *, synthetic: bool) -> Path:
    """A configuration inheriting the repository's ``mkdocs.yml``; every path absolute."""
    cfg = {
        "INHERIT": str(root / "mkdocs.yml"),
        "docs_dir": str(docs),
        "site_dir": str(out.resolve()),
        "theme": {"name": "material", "custom_dir": str(root / "site" / "overrides")},
        "nav": nav,
        "not_in_nav": "/decisions/*-*.md\n/reports/*.md\n",
        "hooks": [str(root / "site" / "hooks" / "build.py")],
        "extra": {"synthetic": synthetic, "fragments": str(work / "fragments")},
    }
    path = work / "mkdocs.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# --- the build --------------------------------------------------------------------------


def _check_out(out: Path, state: Path, root: Path) -> None:
    """MkDocs empties `out` first: refuse a folder whose loss would hurt."""
    o = out.resolve()
    precious = {"the state": state.resolve(), "the repository": root, "docs/": root / "docs", "site/": root / "site"}
    for what, p in precious.items():
        if o == p or o in p.parents:
            raise SiteError(f"--out {out} holds {what}: the build empties its output folder; choose another")
        if what != "the repository" and p in o.parents:
            raise SiteError(f"--out {out} is inside {what}: choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").exists():
        raise SiteError(f"--out {out} is not empty and does not look like a built site: "
                        "the build would empty it; choose an empty or new folder")


def _epoch(as_of: dt.date) -> int:
    return calendar.timegm(as_of.timetuple())


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _build_environment(epoch: int) -> Iterator[_Collect]:
    """Quiet MkDocs' progress lines, collect its warnings, and date the build from the state."""
    mk = logging.getLogger("mkdocs")
    handler = _Collect()
    old_level, old_epoch = mk.level, os.environ.get("SOURCE_DATE_EPOCH")
    mk.addHandler(handler)
    mk.setLevel(logging.WARNING)
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield handler
    finally:
        mk.removeHandler(handler)
        mk.setLevel(old_level)
        if old_epoch is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old_epoch


def _run_mkdocs(config_file: Path, epoch: int) -> None:
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # a banner Material prints on import
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    with _build_environment(epoch) as warnings:
        try:
            build(load_config(config_file=str(config_file), strict=True))
        except MkDocsException as exc:
            detail = "; ".join(warnings.messages[:5]) or str(exc)
            raise SiteError(f"the strict MkDocs build failed: {detail}") from None
    if warnings.messages:  # strict mode already fails on these; never publish past one
        raise SiteError(f"the MkDocs build warned: {'; '.join(warnings.messages[:5])}")
