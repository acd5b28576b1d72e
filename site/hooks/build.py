"""MkDocs hooks of the public site (loaded by path; ``site/`` is not a Python package).

* The Content-Security-Policy of every page allows its inline scripts by their SHA-256
  hash, never with ``'unsafe-inline'``: the page template writes the placeholder
  :data:`PLACEHOLDER` where the hashes go, and :func:`on_post_page` (and
  :func:`on_post_template`, for the 404 page) fills it from the scripts the page really
  holds. A script injected into a page by anything else would not match and not run.
* The heavy parts of some pages are HTML the engine rendered, kept out of the Markdown pass
  for speed: the days of a month page (``engine/report/pages/decisions.py``) and the chart
  of a weekly report (an inline SVG). :func:`on_page_content` puts each one in place of its
  placeholder ``<div class="fragment" data-key="KEY"></div>``, from the page's fragment file
  ``extra.fragments``/``<page path>.json`` (``decisions/2024-12.json``: {KEY: HTML}).
* No source maps ship: :func:`on_post_build` deletes the theme's ``*.map`` files and the
  comments that point at them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

PLACEHOLDER = "'inline-script-hashes'"
# An inline <script> (no src) of a type the browser runs: JavaScript or a module.
INLINE = re.compile(r"<script(?![^>]*\bsrc=)(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S | re.I)
DATA_TYPES = ("application/json", "application/ld+json", "text/template")
MAP_COMMENT = re.compile(rb"\n?/[/*][#@] sourceMappingURL=[^\s*]+(?: \*/)?\s*$")


def script_hashes(html: str) -> list[str]:
    """The CSP source expressions of the inline scripts of `html`, in order, without repeats."""
    out: list[str] = []
    for m in INLINE.finditer(html):
        kind = re.search(r"""\btype\s*=\s*["']?([^"'\s>]+)""", m.group("attrs"))
        if kind and kind.group(1).lower() in DATA_TYPES:
            continue
        digest = base64.b64encode(hashlib.sha256(m.group("body").encode("utf-8")).digest()).decode("ascii")
        expr = f"'sha256-{digest}'"
        if expr not in out:
            out.append(expr)
    return out


def with_csp_hashes(html: str) -> str:
    if PLACEHOLDER not in html:
        return html
    return html.replace(PLACEHOLDER, " ".join(script_hashes(html)) or "'none'", 1)


FRAGMENT = re.compile(r'<div class="fragment" data-key="([A-Za-z0-9_-]+)"></div>')


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (the hook's signature)
    folder = (config.get("extra") or {}).get("fragments")
    if not folder or 'class="fragment"' not in html:
        return html
    path = Path(folder) / (page.file.src_uri.removesuffix(".md") + ".json")
    if not path.is_file():
        return html
    fragments = json.loads(path.read_text(encoding="utf-8"))
    return FRAGMENT.sub(lambda f: fragments.get(f.group(1), f.group(0)), html)


def on_post_page(output: str, page, config) -> str:  # noqa: ARG001 (the hook's signature)
    return with_csp_hashes(output)


def on_post_template(output_content: str, template_name: str, config) -> str:  # noqa: ARG001
    return with_csp_hashes(output_content)


def on_post_build(config) -> None:
    site = Path(config["site_dir"])
    for path in site.glob("assets/**/*.map"):
        path.unlink()
    for path in [*site.glob("assets/**/*.js"), *site.glob("assets/**/*.css")]:
        data = path.read_bytes()
        stripped = MAP_COMMENT.sub(b"\n", data)
        if stripped != data:
            path.write_bytes(stripped)
