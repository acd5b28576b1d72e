"""The built site in a real browser: headless Chromium over the DevTools protocol, the site
served from 127.0.0.1.

It checks what only a browser can: the home page shows the NAV and its charts really load,
no page logs an error (a broken asset, a script error, a Content-Security-Policy
violation), and none of the model's hostile text runs: no alert() dialog opens and the
payloads' marker is never set, on the decision pages, in the search results, anywhere.

Chromium is Debian's package (``apt-get install chromium``; ``.ci/run`` installs it). The
test is skipped, saying so, only where Chromium is absent and ``CI`` is not set; under CI
a missing Chromium fails.

Every page is also loaded at 390 and 1400 CSS pixels: nothing may stick out of the screen
(no table wider than its column), and in dark mode no chart may be a white box. Screenshots
of the home page (both widths, light and dark) are saved under the test's temporary
folder, or under ``$SITE_SCREENSHOTS`` when set, and their paths printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import load_config
from engine.report.site import build_site
from tests import site_states as states
from tests.browser import Chromium, chromium_path, serve

CHROMIUM = chromium_path()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium); CI installs it and runs this test",
)

PHONE = dict(width=390, height=844, mobile=True, scale=2.0)
DESKTOP = dict(width=1400, height=900, mobile=False, scale=1.0)
WIDTHS = (("390", PHONE), ("1400", DESKTOP))
IMAGES_LOADED = """Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"""
# What sticks out of the screen: the page itself, or a table wider than its column (a table
# that only scrolls inside its own box is still too wide to read on a phone).
OVERFLOW = """(() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > width + 1) out.push('page ' + document.documentElement.scrollWidth);
    document.querySelectorAll('article table, article .md-typeset__scrollwrap, article pre, article img').forEach(e => {
        const r = e.getBoundingClientRect();
        if (r.width === 0) return;
        const box = e.closest('.md-typeset__scrollwrap') || e.parentElement;
        const wide = e.scrollWidth > e.clientWidth + 1 && e.tagName !== 'PRE' && e.tagName !== 'IMG';
        if (r.right > width + 1 || wide) out.push(e.tagName + '.' + e.className + ' ' + Math.round(r.right));
    });
    return out;
})()"""
# The charts shown in dark mode: none may be an opaque light box (its corner pixel and its
# background are checked), and each must be the dark variant.
CHART_BOXES = """(() => {
    const out = [];
    document.querySelectorAll('article img[src*="charts/"]').forEach(img => {
        if (img.getBoundingClientRect().width === 0) return;
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const [r, gr, b, a] = g.getImageData(3, 3, 1, 1).data;
        const bg = getComputedStyle(img).backgroundColor;
        const filtered = getComputedStyle(img).filter !== 'none';
        out.push({src: img.getAttribute('src'), corner: [r, gr, b, a], bg: bg, filtered: filtered});
    });
    return out;
})()"""


def _load(page, url: str) -> None:
    """Open `url` as a first visit: Material remembers the last colour scheme in the
    browser's storage, and the emulated system preference must decide instead."""
    page.goto(url)
    page.evaluate("localStorage.clear(), sessionStorage.clear()")
    page.goto(url)


def _white_box(chart: dict) -> bool:
    r, g, b, a = chart["corner"]
    opaque_light = a > 200 and min(r, g, b) > 200 and not chart["filtered"]
    bg = chart["bg"].replace(" ", "")
    return opaque_light or bg in ("rgb(255,255,255)", "rgba(255,255,255,1)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.fail("CI is set but no Chromium binary was found: .ci/run must install Debian's chromium")
    demo = states.demo_state(tmp_path_factory.mktemp("demo"))
    hostile = states.hostile_state(demo, tmp_path_factory.mktemp("hostile"))
    return build_site(hostile, tmp_path_factory.mktemp("site") / "site", config=load_config())


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    with serve(site) as base, Chromium(tmp_path_factory.mktemp("profile")) as chromium:
        chromium.base = base
        yield chromium


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SITE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_home_page_states_the_verdict_in_both_widths_and_themes(browser, site, tmp_path):
    page = browser.open()
    for scheme in ("light", "dark"):
        page.color_scheme(scheme)
        for name, size in WIDTHS:
            page.viewport(**size)
            _load(page, browser.base)
            page.settle(1.0)  # Material fades the tabs in
            assert page.evaluate("document.body.getAttribute('data-md-color-scheme')") == \
                ("slate" if scheme == "dark" else "default")
            headline = page.evaluate("document.querySelector('.verdict-headline').textContent")
            assert headline in ("Too early to tell", "No evidence it beats SPY", "Beats buy-and-hold SPY",
                                "Worse than buy-and-hold SPY"), headline
            money = page.evaluate("document.querySelector('.verdict-money').innerText")
            assert "10,000 EUR became" in money and "in buy-and-hold SPY it would be" in money
            # The verdict is on the first screen, above the charts.
            top = page.evaluate("document.querySelector('.verdict').getBoundingClientRect().top")
            assert top < size["height"], top
            loaded = dict(page.evaluate(IMAGES_LOADED))
            assert loaded.get(f"charts/growth{'-dark' if scheme == 'dark' else ''}.png") is True, loaded
            assert all(loaded.values()), loaded
            shown = page.evaluate("Array.from(document.querySelectorAll('img[src*=\"charts/growth\"]'))"
                                  ".filter(i => i.getBoundingClientRect().width > 0).map(i => i.getAttribute('src'))")
            assert shown == [f"charts/growth{'-dark' if scheme == 'dark' else ''}.png"], shown
            width = page.evaluate("document.querySelector('img[src^=\"charts/growth\"]:not([style])')"
                                  ".closest('figure').getBoundingClientRect().width")
            assert (0.8 * size["width"] if size["mobile"] else 300) < width <= size["width"]
            assert page.evaluate(OVERFLOW) == []
            shot = page.screenshot(_artifacts(tmp_path) / f"home-{name}-{scheme}.png", full_page=True)
            print(f"screenshot: {shot}")
            assert shot.stat().st_size > 20_000
    page.color_scheme("light")
    assert page.errors == [] and page.dialogs == []


def _every_page(site: Path) -> list[str]:
    return sorted("" if (rel := p.parent.relative_to(site).as_posix()) == "." else rel + "/"
                  for p in site.rglob("index.html"))


def test_no_page_overflows_at_390_or_1400_px_and_no_chart_is_a_white_box_in_dark_mode(browser, site):
    page = browser.open()
    page.color_scheme("dark")
    checked = charts = 0
    try:
        for _, size in WIDTHS:
            page.viewport(**size)
            for rel in _every_page(site):
                _load(page, browser.base + rel)
                page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
                page.settle(0.1)
                assert page.evaluate(OVERFLOW) == [], (size["width"], rel, page.evaluate(OVERFLOW))
                for chart in page.evaluate(CHART_BOXES):
                    assert not _white_box(chart), (size["width"], rel, chart)
                    if "/charts/" in "/" + chart["src"] and not chart["filtered"]:
                        assert chart["src"].endswith("-dark.png"), (rel, chart)
                    charts += 1
                checked += 1
    finally:
        page.color_scheme("light")
    assert checked >= 2 * 16 and charts >= 10
    assert page.errors == [], page.errors


def test_no_page_logs_an_error_or_runs_the_model_text(browser, site):
    page = browser.open()
    page.viewport(**DESKTOP)
    visited = 0
    for html in sorted(site.rglob("index.html")):
        rel = html.parent.relative_to(site).as_posix()
        page.goto(browser.base + ("" if rel == "." else rel + "/"))
        # Open every collapsed block, as a curious reader would.
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        page.settle(0.2)
        assert page.evaluate(f"typeof {states.MARKER}") == "undefined", rel
        assert page.evaluate("Array.from(document.scripts).every(s => !s.textContent.includes('alert(1)'))"), rel
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"], a[href^=\"javascript\"]').length") == 0, rel
        loaded = dict(page.evaluate(IMAGES_LOADED))
        assert all(loaded.values()), (rel, loaded)
        visited += 1
    assert visited >= 14
    assert page.errors == [], page.errors
    assert page.dialogs == [], page.dialogs


def test_the_hostile_decision_is_shown_as_text(browser):
    page = browser.open(browser.base + "decisions/2024-12/")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.settle(0.5)
    text = page.evaluate("document.querySelector('article').innerText")
    for payload in states.SHOWN:
        assert payload in text
    assert page.evaluate(f"typeof {states.MARKER}") == "undefined"
    assert page.dialogs == [] and page.errors == []


def test_search_results_show_the_model_text_without_running_it(browser):
    page = browser.open(browser.base)
    page.settle(0.5)
    page.evaluate("""(() => {
        const input = document.querySelector('input.md-search__input');
        input.focus();
        input.value = 'onerror';
        input.dispatchEvent(new Event('focus'));
        input.dispatchEvent(new Event('input', {bubbles: true}));
        input.dispatchEvent(new KeyboardEvent('keyup', {key: 'r', bubbles: true}));
    })()""")
    results = 0
    for _ in range(50):
        page.settle(0.1)
        results = page.evaluate("document.querySelectorAll('.md-search-result__item').length")
        if results:
            break
    assert results > 0, "the search found nothing"
    page.settle(0.5)
    assert page.evaluate(f"typeof {states.MARKER}") == "undefined"
    assert page.evaluate("document.querySelectorAll('.md-search-result img, .md-search-result script').length") == 0
    assert page.dialogs == [] and page.errors == []
