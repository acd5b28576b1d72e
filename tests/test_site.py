"""engine/report/site.py: the public site, built (strict) from a state folder.

The states are made the way a user makes them: the demo, then two sessions of the LLM
policy against a fake OpenAI server whose answers are hostile (HTML, scripts, Markdown
links and images, table pipes), a weekly report and alerts with the same payloads, and a
small backtest. Every built page is parsed: links and images must resolve, and nothing
the model wrote may become markup.
"""

from __future__ import annotations

import filecmp
import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from engine.cli import main
from engine.config import load_config
from engine.errors import EngineError
from engine.report.site import SiteError, build_site, fill_placeholders
from tests import site_states as states
from tests.site_states import HOSTILE_TICKER, SHOWN

SITE_PATH = "/trading/"  # the path of site_url in mkdocs.yml

MODEL = load_config().llm.model  # the default model, which the LLM sessions of the states use


# --- the states and sites (built once per module) -----------------------------------------


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory) -> Path:
    """60 sessions of the rules policy on the synthetic market, to 2024-12-27 (three months)."""
    return states.demo_state(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def hostile_state(demo_state, tmp_path_factory) -> Path:
    return states.hostile_state(demo_state, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory) -> Path:
    return states.backtest(tmp_path_factory.mktemp("bt"))


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def site(hostile_state, backtest_dir, config, tmp_path_factory) -> Path:
    """The hostile state with the backtest; MkDocs' warnings captured while it builds."""
    out = tmp_path_factory.mktemp("site") / "site"
    handler = _Warnings()
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        assert build_site(hostile_state, out, config=config, backtest=backtest_dir) == out
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == []
    return out


@pytest.fixture(scope="module")
def plain_site(demo_state, config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "site"
    return build_site(demo_state, out, config=config)


# --- reading the built HTML ------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    @property
    def shown(self) -> str:
        return " ".join("".join(self.text).split())


def read(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def text_of(site: Path, rel: str) -> str:
    return read(site / rel).shown


# --- the build --------------------------------------------------------------------------


def test_the_site_has_every_page(site):
    for rel in ("index.html", "portfolio/index.html", "decisions/index.html", "decisions/2024-10/index.html",
                "decisions/2024-11/index.html", "decisions/2024-12/index.html", "risk/index.html",
                "reports/index.html", "reports/2024-W52/index.html", "reports/2024-W51/index.html",
                "alerts/index.html", "backtests/index.html", "methodology/index.html", "about/index.html",
                "downloads/index.html", "search/search_index.json", "sitemap.xml"):
        assert (site / rel).exists(), rel
    for chart in ("growth", "equity", "drawdown", "allocation", "allocation_history", "cvar", "guard", "prospect",
                  "drawdown_multiplier", "prospect_value", "backtest_equity", "backtest_drawdown"):
        for variant in ("", "-dark"):
            assert (site / "charts" / f"{chart}{variant}.png").stat().st_size > 5_000, chart + variant
    # A weekly report's chart is inline SVG in the page's colours, named for screen readers.
    report = (site / "reports" / "2024-W52" / "index.html").read_text(encoding="utf-8")
    svg = re.search(r'<svg class="week-chart"[^>]*role="img" aria-label="(2024-W52: the strategy went from [^"]+)"',
                    report)
    assert svg and "buy-and-hold SPY" in svg.group(1)
    assert report.count("<polyline") == 1 + len(load_config().benchmarks)  # the NAV and each benchmark
    assert "2024-W52.png" not in report


def test_every_internal_link_and_image_resolves(site):
    checked = 0
    for page in pages(site):
        for tag, attrs in read(page).tags:
            for attr in ("href", "src"):
                url = attrs.get(attr) if tag in ("a", "img", "link", "script") else None
                if not url or url.startswith(("#", "mailto:")):
                    continue
                parts = urlsplit(url)
                if parts.scheme or parts.netloc:  # only a link to follow, never a resource to load
                    assert tag == "a" or (tag == "link" and attrs.get("rel") == "canonical"), \
                        f"{page}: {tag} loads {url} from elsewhere"
                    continue
                path = unquote(parts.path)
                if path.startswith("/"):  # the 404 page links from the site's root on the server
                    assert path.startswith(SITE_PATH), f"{page}: {url}"
                    target = (site / path.removeprefix(SITE_PATH)).resolve()
                else:
                    target = (page.parent / path).resolve()
                if target.is_dir():
                    target = target / "index.html"
                assert target.is_file(), f"{page.relative_to(site)}: {tag} {attr}={url} does not resolve"
                if parts.fragment and target.suffix == ".html" and tag == "a":
                    ids = {a.get("id") for _, a in read(target).tags}
                    assert unquote(parts.fragment) in ids, f"{page.relative_to(site)}: no #{parts.fragment} in {target}"
                checked += 1
    assert checked > 500


def test_hostile_model_text_is_shown_and_never_markup(site):
    for page in pages(site):
        raw = page.read_text(encoding="utf-8")
        where = page.relative_to(site)
        assert "<script>alert" not in raw and "<script>window" not in raw, where
        assert "evil.example/x.png\"" not in raw, where
        for tag, attrs in read(page).tags:
            assert not any(name.startswith("on") for name in attrs), f"{where}: <{tag} {attrs}>"
            assert not (attrs.get("href") or "").strip().lower().startswith("javascript:"), where
            if tag == "img":
                assert not (attrs.get("src") or "").startswith(("http:", "https:", "//")), where
    # ... and the reader sees exactly what the model wrote, wherever it appears.
    for rel in ("decisions/2024-12/index.html", "index.html", "portfolio/index.html", "alerts/index.html",
                "reports/2024-W52/index.html"):
        shown = text_of(site, rel)
        for payload in SHOWN:
            assert payload in shown, (rel, payload)


def test_nothing_is_escaped_twice(site):
    for page in pages(site):
        shown = read(page).shown
        assert not re.search(r"&(#[0-9]+|#x[0-9a-f]+|[a-z]+);", shown), (page.relative_to(site), shown[:200])


def test_every_part_of_a_hostile_record_is_escaped(site):
    page = read(site / "decisions" / "2024-12" / "index.html")
    shown = page.shown
    assert "HOLD written by the engine" in shown and "did not parse" in shown  # 30 Dec: the fallback ...
    assert "The raw answer, as received" in shown  # ... with the raw answer
    assert f"{HOSTILE_TICKER} buy" in shown or HOSTILE_TICKER in shown  # the unknown ticker, cut
    assert "unknown ticker" in shown
    assert "messages sent to the model" in shown and "You manage" in shown  # the exact messages
    assert "gpt-6-luna" in shown and "tokens" in shown  # the default model
    # The brief of 31 Dec quotes 30 Dec's summary to the model: escaped there too.
    pres = [t for t, a in page.tags if t == "pre"]
    assert len(pres) >= 4


def test_the_search_index_holds_no_live_markup(site):
    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    for d in docs:
        for field in ("title", "text"):
            assert "<script" not in d[field] and "<img" not in d[field], d["location"]
    # The briefs and messages are not indexed (they would make the index huge).
    assert not any("You manage" in d["text"] for d in docs)


def test_demo_data_is_labelled_synthetic_everywhere_once(site, plain_site):
    for s in (site, plain_site):
        home = text_of(s, "index.html")
        assert home.count("Synthetic data") == 1  # one warning on the home page, not two
        assert "Synthetic data: this is a demo, not a real portfolio" in home
        raw = (s / "index.html").read_text(encoding="utf-8")
        assert 'class="admonition danger"' in raw
        for rel in ("portfolio/index.html", "decisions/2024-12/index.html", "risk/index.html"):
            assert text_of(s, rel).count("Synthetic data") == 1, rel  # the bar over every other page


def test_the_home_page_shows_the_figures_and_when_they_are_from(site, hostile_state):
    home = text_of(site, "index.html")
    nav = json.loads((hostile_state / "portfolio.json").read_text())
    import pandas as pd

    last = pd.read_parquet(hostile_state / "equity.parquet").iloc[-1]
    spy = last["benchmark_spy_eur"]
    for words in (f"10,000 EUR became {last['nav_eur']:,.0f} EUR", f"in buy-and-hold SPY it would be {spy:,.0f} EUR",
                  "Excess over SPY", "95% interval", "p-value", "Smallest edge it can see",
                  "The arms side by side", "The latest decision", "Worst drawdown",
                  "Last update: the session of Tue 31 Dec 2024"):
        assert words in home, words
    # The intro names who really decides: the LLM policy ran the last two sessions.
    assert f"A language model, {MODEL}" in home
    assert nav["as_of"] == "2024-12-31"


def test_decisions_are_grouped_by_month_newest_first(site):
    index = read(site / "decisions" / "index.html")
    months = [a["href"] for t, a in index.tags if t == "a" and (a.get("href") or "").startswith("2024-")]
    assert months[:3] == ["2024-12/", "2024-11/", "2024-10/"]
    december = read(site / "decisions" / "2024-12" / "index.html")
    days = [a["id"] for t, a in december.tags if t == "h2" and a.get("id")]
    assert days[0] == "2024-12-31" and days[-1] == "2024-12-02" and len(days) == 21
    october = text_of(site, "decisions/2024-10/index.html")
    assert "What it saw: the brief" in october and "Orders queued" in october and "fills of earlier orders" in october
    # Each day is a timeline, in the order things happened: fills at the open, what it saw,
    # what it decided, the cuts, the orders.
    raw = (site / "decisions" / "2024-10" / "index.html").read_text(encoding="utf-8")
    days = raw.split('<ol class="timeline">')[1:]
    assert len(days) >= 20
    full = 0
    for day in days:
        steps = [int(n) for n in re.findall(r'<p class="step-title">(\d)\. ', day.split("</ol>")[0])]
        assert steps == sorted(steps) and 3 in steps, steps  # "what it decided" is always there
        full += steps[:1] == [1] and 5 in steps
    assert full >= 1  # a day with fills of earlier orders and new orders
    assert "% of the cash" in october and "About EUR" in october


def test_the_brief_tables_are_named_by_the_stylesheet_and_slim(site):
    """The brief's tables carry no per-cell labels: the stylesheet names their columns on a
    phone, in the order the engine writes them; and the numbers are plain text."""
    from engine.report.pages.decisions import BRIEF_ASSET_COLUMNS, HELD_COLUMNS

    css = (Path(__file__).resolve().parents[1] / "site" / "overrides" / "assets" / "stylesheets"
           / "almost-surely.css").read_text(encoding="utf-8")
    for cls, columns in (("brief-held", HELD_COLUMNS), ("brief-assets", BRIEF_ASSET_COLUMNS)):
        for i, name in enumerate(columns, 1):
            assert f'table.{cls} td:nth-child({i})::before {{ content: "{name}"; }}' in css, (cls, name)
        assert f"table.{cls} td:nth-child({len(columns) + 1})" not in css
    raw = (site / "decisions" / "2024-10" / "index.html").read_text(encoding="utf-8")
    assets = raw.split('<table class="cards assets brief-assets">')[1].split("</table>")[0]
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", assets)
    assert [h.replace("&amp;", "&") for h in heads] == BRIEF_ASSET_COLUMNS
    assert "data-label" not in assets and "&#46;" not in assets and re.search(r">\d+\.\d+</td>", assets)


def test_the_backtest_page_gives_the_verdict(site, backtest_dir, plain_site):
    metrics = json.loads((backtest_dir / "metrics.json").read_text())
    page = text_of(site, "backtests/index.html")
    assert metrics["verdict"]["sentence"] in page
    assert "Buy-and-hold SPY" in page and "Sharpe" in page and "p-value" in page
    assert "No backtest has been published yet" in text_of(plain_site, "backtests/index.html")


def test_empty_reports_and_alerts_say_so(plain_site):
    assert "No weekly report has been written yet" in text_of(plain_site, "reports/index.html")
    assert "No alert so far" in text_of(plain_site, "alerts/index.html")


def test_alerts_are_newest_first(site):
    page = text_of(site, "alerts/index.html")
    assert page.index("2024-12-31") < page.index("2024-12-30")
    assert "-2.40%" in page


def test_the_methodology_quotes_the_configuration(site):
    page = text_of(site, "methodology/index.html")
    for words in ("λ = 2.25", "α = β = 0.88", "0.4%", "half-Kelly", "m(dd) = max(0.25, 1 − (dd / 20%)^2)",
                  "next open of each asset's own exchange", "in-sample", "Blind mode", "probability is one"):
        assert words in page, words
    assert "{{" not in page


def test_rebuilding_the_same_state_gives_the_same_site(demo_state, plain_site, config, tmp_path):
    again = build_site(demo_state, tmp_path / "again", config=config)
    cmp = filecmp.dircmp(plain_site, again)

    def differences(c: filecmp.dircmp) -> list[str]:
        out = c.left_only + c.right_only + c.diff_files + c.funny_files
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        out += mismatch + errors
        for sub in c.subdirs.values():
            out += differences(sub)
        return out

    assert differences(cmp) == []


def test_the_build_works_from_another_directory(demo_state, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = build_site(demo_state.resolve(), Path("relative-out"), config=config)
    assert (tmp_path / "relative-out" / "index.html").exists() and out == Path("relative-out")


def test_rebuilding_over_a_previous_build_is_allowed(plain_site, demo_state, config):
    assert build_site(demo_state, plain_site, config=config) == plain_site


# --- failures: one clear line ----------------------------------------------------------


def test_a_missing_or_empty_state_is_one_clear_error(tmp_path, config):
    with pytest.raises(SiteError, match="no state folder"):
        build_site(tmp_path / "nope", tmp_path / "out", config=config)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiteError, match="holds no session yet"):
        build_site(tmp_path / "empty", tmp_path / "out", config=config)


def test_the_output_folder_is_never_one_whose_loss_would_hurt(demo_state, config, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(SiteError, match="not empty and does not look like a built site"):
        build_site(demo_state, foreign, config=config)
    assert (foreign / "thesis.tex").exists()
    for out in (demo_state, demo_state.parent, demo_state / "site"):
        with pytest.raises(SiteError):
            build_site(demo_state, out, config=config)
    assert (demo_state / "portfolio.json").exists()


def test_a_backtest_folder_without_metrics_is_an_error(demo_state, config, tmp_path):
    with pytest.raises(SiteError, match="metrics.json not found"):
        build_site(demo_state, tmp_path / "out", config=config, backtest=tmp_path)


def test_placeholders_come_from_the_configuration(config):
    assert fill_placeholders("{{ risk.loss_aversion }} {{ costs.french_ftt_rate:.1% }}", config) == "2.25 0.4%"
    assert fill_placeholders("${{ secrets.KEY }}", config) == "${{ secrets.KEY }}"  # GitHub's, left alone
    for bad in ("{{ risk.nope }}", "{{ nope }}", "{{ risk.alpha:d }}"):
        with pytest.raises(SiteError, match="docs/page"):
            fill_placeholders(bad, config)


def test_site_errors_are_engine_errors():
    assert issubclass(SiteError, EngineError)


def test_the_cli_builds_the_site_and_reports_errors_in_one_line(demo_state, tmp_path, capsys):
    assert main(["site", "--state", str(demo_state), "--out", str(tmp_path / "out")]) == 0
    out, _ = capsys.readouterr()
    assert "site built in" in out and (tmp_path / "out" / "index.html").exists()
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "notes.txt").write_text("precious")
    code = main(["site", "--state", str(demo_state), "--out", str(tmp_path / "out2")])
    _, err = capsys.readouterr()
    assert code == 1 and err.strip().count("\n") == 0 and "does not look like a built site" in err


# --- the home page's verdict, per arm ----------------------------------------------------


def _arm(name, returns, start="2024-01-01", passive=False, key="strategy"):
    import numpy as np
    import pandas as pd

    from engine.report.pages.arms import Arm

    idx = pd.bdate_range(start, periods=len(returns) + 1)
    nav = pd.Series(10_000 * np.cumprod(np.r_[1.0, 1.0 + np.asarray(returns)]), index=idx)
    return Arm(name, "test", nav, passive=passive, key=key)


def test_the_verdict_says_too_early_then_better_or_worse_than_spy():
    import numpy as np

    from engine.report.pages.arms import arm_verdict

    rng = np.random.default_rng(7)
    market = rng.normal(0.0003, 0.01, 1500)
    spy = _arm("SPY", market, passive=True, key="spy")
    early = arm_verdict(_arm("S", market[:10] + 0.001), _arm("SPY", market[:10], passive=True, key="spy"), 10_000)
    assert early.headline == "Too early to tell" and not early.tested and early.sessions == 11
    better = arm_verdict(_arm("S", market + 0.002 + rng.normal(0, 0.002, 1500)), spy, 10_000)
    assert better.headline == "Beats buy-and-hold SPY" and better.p_value < 0.05 and better.ci_low > 0
    worse = arm_verdict(_arm("S", market - 0.002 + rng.normal(0, 0.002, 1500)), spy, 10_000)
    assert worse.headline == "Worse than buy-and-hold SPY" and worse.ci_high < 0 and worse.excess_eur < 0
    same = arm_verdict(_arm("S", market + rng.normal(0, 0.002, 1500)), spy, 10_000)
    assert same.headline in ("No evidence it beats SPY", "Too early to tell") and 0 < same.mde_ann < 0.2


def test_the_home_page_renders_one_verdict_box_per_active_arm(site, hostile_state):
    raw = (site / "index.html").read_text(encoding="utf-8")
    manifest = json.loads((hostile_state / "arms.json").read_text(encoding="utf-8"))
    active = [name for name, arm in manifest["arms"].items() if not arm["passive"]]
    assert len(active) >= 3  # the llm treatment (the headline) and control, the rules, the random arm
    assert raw.count('<section class="verdict') == len(active)  # one box per active arm
    home = text_of(site, "index.html")
    assert all(f"{name}: " in home for name in active if name != manifest["headline"])
    assert f"Strategy: {MODEL}" in home
    assert any(h in home for h in ("Too early to tell", "No evidence it beats SPY", "Beats buy-and-hold SPY",
                                   "Worse than buy-and-hold SPY"))
    # The leaderboard holds the passive baselines (one per configured benchmark), marked as such.
    assert home.count("buy and hold, no decisions") == len(load_config().benchmarks)


# --- a decision day --------------------------------------------------------------------


def test_an_engine_hold_is_attributed_to_the_engine(site):
    raw = (site / "decisions" / "2024-12" / "index.html").read_text(encoding="utf-8")

    def day(iso: str) -> str:
        p = Page()
        p.feed(raw[raw.index(f'id="{iso}"'):].split("<h2", 1)[0])
        return p.shown

    assert "HOLD written by the engine" in day("2024-12-30") and "Summary, as written by the engine" in day("2024-12-30")
    assert f"{MODEL}" in day("2024-12-30") and f"as written by {MODEL}" not in day("2024-12-30")
    assert f"Summary, as written by {MODEL}" in day("2024-12-31")


def test_each_day_links_to_its_raw_record(site):
    page = read(site / "decisions" / "2024-12" / "index.html")
    hrefs = [a["href"] for t, a in page.tags if t == "a" and "data/decisions/" in (a.get("href") or "")]
    assert "../../data/decisions/2024/12-31.json" in hrefs and len(hrefs) == 21
    record = json.loads((site / "data" / "decisions" / "2024" / "12-31.json").read_text(encoding="utf-8"))
    assert record["model"] == f"{MODEL}"


def test_records_link_to_the_commit_that_wrote_them(demo_state, tmp_path, monkeypatch):
    import shutil
    import subprocess

    from engine.report.site import record_links

    repo = tmp_path / "repo"
    shutil.copytree(demo_state, repo / "state")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "state"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert not record_links(repo / "state").remote  # no repository in the environment: the site's copy
    monkeypatch.setenv("GITHUB_REPOSITORY", "someone/fork")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    links = record_links(repo / "state")
    url, what = links.record("2024-12-27", 2)
    assert url == f"https://github.com/someone/fork/blob/{sha}/state/decisions/2024/12-27.json"
    assert what == f"at commit {sha[:7]}"


# --- verifiability, speed, safety of the build ------------------------------------------


def test_downloads_hold_the_equity_trades_and_decisions(site, hostile_state):
    import pandas as pd

    equity = pd.read_csv(site / "data" / "equity.csv")
    assert len(equity) == len(pd.read_parquet(hostile_state / "equity.parquet"))
    assert json.loads((site / "data" / "trades.json").read_text(encoding="utf-8"))[0]["ticker"]
    decisions = json.loads((site / "data" / "decisions.json").read_text(encoding="utf-8"))
    assert decisions[-1]["date"] == "2024-12-31" and decisions[-2]["engine_hold"] is True
    page = text_of(site, "downloads/index.html")
    assert "CSV" in page and "Changes of model, prompt and configuration" in page and f"{MODEL}" in page
    # The LLM policy took over from the rules on 30 Dec: the log says so, with the date.
    assert f"Mon 30 Dec 2024 {MODEL}" in page and f"who decides: rules policy → {MODEL}" in page


def test_the_changes_log_says_when_the_configuration_changed_and_what(demo_state, tmp_path):
    """A session run with another guardrail: the log names the day, the configuration's old and
    new digests, the section that changed and the setting, old and new."""
    import shutil

    from engine.ops import config_digests

    state = tmp_path / "state"
    shutil.copytree(demo_state, state)
    (tmp_path / "c.toml").write_text("[guardrails]\nmax_weight = 0.15\n", encoding="utf-8")
    states.run("daily", "--init", "--state", str(state), "--source", "demo", "--date", "2024-12-30",
               "--config", str(tmp_path / "c.toml"))
    changed = load_config(tmp_path / "c.toml")
    site = build_site(state, tmp_path / "site", config=changed)
    page = text_of(site, "downloads/index.html")
    old, new = config_digests(load_config())["config_sha256"], config_digests(changed)["config_sha256"]
    row = page[page.index("Mon 30 Dec 2024"):]
    assert row.startswith(f"Mon 30 Dec 2024 rules policy configuration {old[:12]}… → {new[:12]}… "
                          "(sections: guardrails)"), row[:300]
    assert row.split("(sections: guardrails)")[1].startswith("guardrails.max_weight: 20.0% → 15.0%"), row[:300]
    assert page.count("guardrails.max_weight") == 1  # one change, logged once
    assert f"start; configuration {old[:12]}…" in page  # the first session's configuration


def test_scripts_are_allowed_by_hash_never_unsafe_inline(site):
    import base64
    import hashlib

    for page in [*pages(site), site / "404.html"]:
        raw = page.read_text(encoding="utf-8")
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', raw).group(1)
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "unsafe-inline" not in script_src and "inline-script-hashes" not in script_src, page
        for m in re.finditer(r"<script(?![^>]*\bsrc=)([^>]*)>(.*?)</script>", raw, re.S):
            if "application/json" in m.group(1):
                continue
            digest = base64.b64encode(hashlib.sha256(m.group(2).encode()).digest()).decode()
            assert f"'sha256-{digest}'" in script_src, (page, m.group(2)[:80])


def test_no_source_maps_ship_and_month_pages_stay_out_of_the_navigation(site):
    assert not list(site.rglob("*.map"))
    mapped = [p for p in site.glob("assets/**/*.js") if b"sourceMappingURL=" in p.read_bytes()[-300:]]
    assert mapped == []
    home = read(site / "index.html")
    nav = {a.get("href") for t, a in home.tags if t == "a" and "md-nav__link" in (a.get("class") or "")}
    assert "decisions/" in nav and "reports/" in nav
    assert not any((h or "").startswith(("decisions/2024-", "reports/2024-")) for h in nav)


def test_site_url_comes_from_the_environment(tmp_path, monkeypatch):
    from mkdocs.config import load_config as mkdocs_config

    from engine.report.site import project_root, write_mkdocs_config

    root = project_root()
    (tmp_path / "docs").mkdir()
    cfg = write_mkdocs_config(tmp_path, root, tmp_path / "docs", tmp_path / "out", ["index.md"], synthetic=True)
    monkeypatch.setenv("SITE_URL", "https://someone.github.io/fork/")
    assert mkdocs_config(config_file=str(cfg))["site_url"] == "https://someone.github.io/fork/"
    monkeypatch.delenv("SITE_URL")
    assert mkdocs_config(config_file=str(cfg))["site_url"] == "https://alm0stsurely.github.io/trading/"
