"""The built site in a real browser: headless Chromium over the DevTools protocol, the site
served from 127.0.0.1.

It checks what only a browser can: the home page shows the NAV and its charts really load,
no page logs an error (a broken asset, a script error, a Content-Security-Policy
violation), and none of the model's hostile text runs: no alert() dialog opens and the
payloads' marker is never set, on the decision pages, in the search results, anywhere.

Chromium is Debian's package (``apt-get install chromium``; ``.ci/run`` installs it). The
test is skipped, saying so, only where Chromium is absent and ``CI`` is not set; under CI
a missing Chromium fails.

Screenshots of the home page (phone and desktop widths) are saved under the test's
temporary folder, or under ``$SITE_SCREENSHOTS`` when set, and their paths printed.
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
DESKTOP = dict(width=1280, height=900, mobile=False, scale=1.0)
IMAGES_LOADED = """Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"""


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


def test_the_home_page_shows_the_nav_and_its_charts(browser, site, tmp_path):
    page = browser.open()
    for name, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.viewport(**size)
        page.goto(browser.base)
        page.settle(1.5)  # Material fades the tabs in
        text = page.evaluate("document.body.textContent")
        assert "NAV, EUR" in text and "vs SPY" in text and "Synthetic data" in text
        nav_value = page.evaluate("document.querySelector('.kpi-value').textContent")
        assert nav_value.replace(",", "").replace(".", "").isdigit(), nav_value
        loaded = dict(page.evaluate(IMAGES_LOADED))
        assert loaded.get("charts/equity.png") is True, loaded
        assert all(loaded.values()), loaded
        # On a phone the chart fills the width without overflowing it; never wider than the window.
        width = page.evaluate("document.querySelector('img[src=\"charts/equity.png\"]').getBoundingClientRect().width")
        assert (0.8 * size["width"] if size["mobile"] else 300) < width <= size["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        shot = page.screenshot(_artifacts(tmp_path) / f"home-{name}.png", full_page=(name == "phone"))
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 20_000
    assert page.errors == [] and page.dialogs == []


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
