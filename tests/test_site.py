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
                "search/search_index.json", "sitemap.xml"):
        assert (site / rel).exists(), rel
    for chart in ("equity", "drawdown", "allocation", "allocation_history", "cvar", "guard", "prospect",
                  "drawdown_multiplier", "prospect_value", "backtest_equity", "backtest_drawdown"):
        assert (site / "charts" / f"{chart}.png").stat().st_size > 5_000, chart
    assert (site / "reports" / "2024-W52" / ".." / "2024-W52.png").exists()


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
    assert "Explicit HOLD" in shown and "did not parse" in shown  # 30 Dec: the fallback ...
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


def test_demo_data_is_labelled_synthetic_everywhere(site, plain_site):
    for s in (site, plain_site):
        home = text_of(s, "index.html")
        assert "Synthetic data: this is a demo, not a real portfolio" in home
        assert "Synthetic data." in home  # the banner over every page
        raw = (s / "index.html").read_text(encoding="utf-8")
        assert 'class="admonition danger"' in raw


def test_the_home_page_shows_the_figures_and_when_they_are_from(site, hostile_state):
    home = text_of(site, "index.html")
    nav = json.loads((hostile_state / "portfolio.json").read_text())
    import pandas as pd

    last = pd.read_parquet(hostile_state / "equity.parquet").iloc[-1]
    assert f"{last['nav_eur']:,.2f}" in home
    for words in ("vs SPY", "vs CAC 40", "Drawdown", "Sharpe", "CVaR 95", "Latest decision",
                  "Last update: the session of Tue 31 Dec 2024", "Against the benchmarks"):
        assert words in home, words
    assert nav["as_of"] == "2024-12-31"


def test_decisions_are_grouped_by_month_newest_first(site):
    index = read(site / "decisions" / "index.html")
    months = [a["href"] for t, a in index.tags if t == "a" and (a.get("href") or "").startswith("2024-")]
    assert months[:3] == ["2024-12/", "2024-11/", "2024-10/"]
    december = read(site / "decisions" / "2024-12" / "index.html")
    days = [a["id"] for t, a in december.tags if t == "h2" and a.get("id")]
    assert days[0] == "2024-12-31" and days[-1] == "2024-12-02" and len(days) == 21
    october = text_of(site, "decisions/2024-10/index.html")
    assert "What it saw: the brief" in october and "Orders queued" in october and "Fills" in october


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
