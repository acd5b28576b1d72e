"""engine/report/escape.py: text the model wrote is shown, never interpreted."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.report.escape import safe_markdown, untrusted, untrusted_html, untrusted_pre

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![x](http://evil.example/x.png)",
    "<b onmouseover=alert(1)>b</b>",
    "**bold** _em_ ~~del~~ ==mark== ^^ins^^",
    "# heading\n## another\n===\n---",
    "| a | b |\n|---|---|\n| c | d |",
    "`code` ``` fenced ```",
    "{: onclick=alert(1) } {#id .class}",
    "<http://evil.example> https://evil.example",
    "&lt;script&gt; &#60;script&#62; &amp;",
    "[a][r]\n\n[r]: javascript:alert(1)",
    "1. one\n- two\n> quote\n    indented code",
    '" onload="alert(1)',
    "\\<script>\\[x\\](y)",
    "line\r\nbreaks\rand\ttabs\x00\x07\x1b[31m",
    "!!! note \"admonition\"\n    body",
    "??? details\n    body",
    "<div markdown=\"1\">*x*</div>",
    "*[HTML]: Hyper Text",
    "[^1]\n\n[^1]: footnote",
    "term\n:   definition",
]


def _extensions() -> list[str]:
    # MkDocs' own loader: mkdocs.yml uses its !ENV tag (site_url from SITE_URL).
    from mkdocs.utils.yaml import get_yaml_loader

    cfg = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=get_yaml_loader())  # noqa: S506
    return [e if isinstance(e, str) else next(iter(e)) for e in cfg["markdown_extensions"]]


def render(text: str) -> str:
    return markdown.Markdown(extensions=_extensions()).convert(text)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html_text: str) -> _Tags:
    p = _Tags()
    p.feed(html_text)
    p.close()
    return p


def expected(text: str) -> str:
    """What the reader must see: the text, line endings normalised, controls dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\n\t" or not (ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_as_the_same_text_and_nothing_else(text):
    out = untrusted(text)
    assert "\n" not in out and "<" not in out and ">" not in out
    assert html.unescape(out) == expected(text)
    for wrapped in (out, f"| a | b |\n|---|---|\n| {out} | x |", f"<div class=\"d\">\n<p>{out}</p>\n</div>",
                    untrusted_pre(text)):
        page = parse(render(wrapped))
        tags = {t for t, _ in page.tags}
        assert tags <= {"p", "table", "thead", "tbody", "tr", "th", "td", "div", "pre", "code"}, tags
        assert all(name in ("class", "style") for _, attrs in page.tags for name, _ in attrs)
        shown = "".join(page.text)
        assert expected(text).replace("\n", "") in shown.replace("\n", "")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.lists(st.sampled_from(["<", ">", "[", "]", "(", ")", "!", "*", "_", "`", "#", "|", "{", "}", ":",
                                   "\\", "&", ";", "#x", "\n", " ", "a", "1", "javascript", "script", "=", '"']),
                  max_size=30).map("".join))
def test_any_text_is_shown_exactly_and_makes_no_markup(text):
    out = untrusted(text)
    assert re.fullmatch(r"[A-Za-z0-9 ,;/%?\u00a0-\U0010ffff]*(&#[0-9]+;[A-Za-z0-9 ,;/%?\u00a0-\U0010ffff]*)*", out)
    assert html.unescape(out) == expected(text)
    page = parse(render("x " + out))  # after a word: the paragraph is ours
    assert [t for t, _ in page.tags] == ["p"]
    assert "".join(page.text).strip() == ("x " + expected(text)).strip()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.lists(st.sampled_from(["<", ">", "&", ";", "#", "x", '"', "'", "=", "script", "img", "onerror", "/",
                                   "\n", " ", "-->", "<!--", "]]>", "a"]), max_size=30).map("".join)
       | st.sampled_from(HOSTILE))
def test_html_only_escaping_shows_any_text_exactly_and_makes_no_markup(text):
    """HTML that never goes through Markdown (a month page's days): the text, in an element and
    in a double-quoted attribute, is the text and nothing else."""
    out = untrusted_html(text)
    assert not re.search(r"[<>\"']", out) and "\r" not in out
    assert html.unescape(out) == expected(text)
    page = parse(f'<td class="num" title="{out}">x {out}</td>{untrusted_pre(text, html_only=True)}')
    assert [t for t, _ in page.tags] == ["td", "pre", "code"]
    assert page.tags[0][1] == [("class", "num"), ("title", expected(text))]
    assert "".join(page.text) == "x " + expected(text) + expected(text)


def test_html_only_escaping_keeps_numbers_and_punctuation_as_they_are():
    assert untrusted_html("1,234.56 -0.25% [x](y) **b**") == "1,234.56 -0.25% [x](y) **b**"
    assert untrusted_html(None) == "" and untrusted_html("a\r\nb\x00") == "a\nb"


def test_none_and_non_strings():
    assert untrusted(None) == ""
    assert untrusted(12.5) == "12&#46;5"
    assert untrusted("\ud800x") == "?x"  # a lone surrogate cannot be written as UTF-8


def test_pre_keeps_line_breaks_on_screen_in_one_line_of_source():
    block = untrusted_pre("a\n\nb <c>")
    assert "\n" not in block
    assert block.startswith('<pre class="untrusted"><code>') and block.endswith("</code></pre>")
    assert "".join(parse(render(block)).text) == "a\n\nb <c>"


def test_safe_markdown_keeps_the_structure_and_disarms_html_links_and_attributes():
    report = "\n".join([
        "# Weekly report 2024-W50",
        "",
        "![NAV](2024-W50.png) ![evil](http://evil.example/x.png) ![up](../x.png)",
        "",
        "| a | b |",
        "|---|---|",
        "| **1** | <script>alert(1)</script> |",
        "",
        "[click](javascript:alert(1)) [ref][r] <http://evil.example> <img src=x onerror=alert(1)>",
        "",
        "[r]: javascript:alert(1)",
        "",
        "## Decisions {: onclick=alert(1) }",
    ])
    page = parse(render(safe_markdown(report, frozenset({"2024-W50.png"}))))
    tags = [t for t, _ in page.tags]
    assert tags.count("img") == 1 and ("img", [("alt", "NAV"), ("src", "2024-W50.png")]) in page.tags
    assert {"h1", "h2", "table", "strong"} <= set(tags)
    assert "a" not in tags and "script" not in tags
    assert all(not (n.startswith("on")) for _, attrs in page.tags for n, _ in attrs)
    shown = "".join(page.text)
    assert "<script>alert(1)</script>" in shown and "[click](javascript:alert(1))" in shown
    # Without the chart, its link is disarmed too.
    assert "img" not in [t for t, _ in parse(render(safe_markdown(report))).tags]
