"""Text the site must show but never interpret: what the model wrote.

Everything a policy wrote (reasons, summaries, the raw answer, notes, fallback
messages, the messages sent to it) is untrusted input to the site. It reaches a page
through :func:`untrusted`, which turns it into inert text: every ASCII character that
HTML or Markdown (with any of the extensions the site enables) could give a meaning to
becomes a numeric character reference, so ``<script>``, ``onerror=``, ``[x](javascript:...)``,
``![x](http://...)``, ``**emphasis**``, ``# headings``, table pipes and backticks all
display as the characters they are and do nothing. Line breaks become ``&#10;``, so the
result is always one line: it cannot end a Markdown block or start a new one, and inside
``<pre>`` the browser still shows the breaks.

Python-Markdown keeps numeric character references as they are (it never escapes an
``&`` that starts one), so the text survives the Markdown pass unchanged in a paragraph,
a table cell, a raw HTML block or an attribute value in double quotes. Never put it in an
``href`` or ``src``.

:func:`safe_markdown` is for Markdown the engine wrote that may quote the model (the
weekly reports): it keeps the structure (headings, tables, lists, emphasis) but disarms
raw HTML, links, images and attribute lists.
"""

from __future__ import annotations

import re
import string

# Characters shown as they are: letters, digits, the space and punctuation that means
# nothing to HTML or to Markdown in the middle of a line (kept for the size of long
# briefs, which are mostly numbers). Every other ASCII character is encoded.
_PLAIN = frozenset(string.ascii_letters + string.digits + " ,;/%?")
_CONTROL = {*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)}

_TABLE: dict[int, str | None] = {}
for _o in range(0x80):
    if chr(_o) not in _PLAIN:
        _TABLE[_o] = f"&#{_o};"
for _o in _CONTROL:
    _TABLE[_o] = None  # dropped: a control character is never meant to be seen
_TABLE[ord("\n")] = "&#10;"
_TABLE[ord("\t")] = "&#9;"


def untrusted(text: object) -> str:
    """`text` as inert, single-line HTML/Markdown source that displays exactly as `text`.

    ``None`` gives ``""``; anything else is ``str()``-ed first. Line endings are
    normalised to ``\\n``; other control characters are dropped; characters that cannot
    be written as UTF-8 (lone surrogates) become ``?``.

    >>> untrusted('<b>hi</b> [x](javascript:alert(1))')
    '&#60;b&#62;hi&#60;/b&#62; &#91;x&#93;&#40;javascript&#58;alert&#40;1&#41;&#41;'
    """
    return _normalised(text).translate(_TABLE)


def _normalised(text: object) -> str:
    """``str(text)`` (``""`` for None) as valid UTF-8 with ``\\n`` line endings."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if not s.isascii():
        s = s.encode("utf-8", "replace").decode("utf-8")
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s


_HTML_TABLE: dict[int, str | None] = {o: None for o in _CONTROL}
_HTML_TABLE.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#39;",
                    ord("\n"): "\n", ord("\t"): "\t"})


def untrusted_html(text: object) -> str:
    """`text` as inert HTML, for HTML the site writes that never goes through Markdown (the
    days of a month page: site/hooks/build.py puts them in after the Markdown pass): only
    ``& < > " '`` are escaped, so the text is the same few bytes it was (a brief is mostly
    numbers, which :func:`untrusted` would turn into five-byte references). Safe in element
    content and in a double-quoted attribute value (never an ``href`` or ``src``). Control
    characters are dropped and line endings normalised, as by :func:`untrusted`; line breaks
    stay line breaks (shown as such in ``<pre>`` and in the model's text).

    >>> untrusted_html('<b>hi</b> [x](javascript:alert(1)) 1.5')
    '&lt;b&gt;hi&lt;/b&gt; [x](javascript:alert(1)) 1.5'
    """
    return _normalised(text).translate(_HTML_TABLE)


def untrusted_pre(text: object, *, css_class: str = "untrusted", html_only: bool = False) -> str:
    """`text` in a ``<pre>`` block (one line of source), line breaks kept on screen; with
    `html_only`, escaped by :func:`untrusted_html` (for HTML that skips Markdown)."""
    return f'<pre class="{css_class}"><code>{(untrusted_html if html_only else untrusted)(text)}</code></pre>'


_LINK_TAIL = re.compile(r"\](\s*)([(\[:])")
_REF = {"(": "&#40;", "[": "&#91;", ":": "&#58;"}
# An image beside the page, by a plain file name: no scheme, no folder, no query.
LOCAL_PNG = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.png")


def safe_markdown(text: str, images: frozenset[str] = frozenset()) -> str:
    """Markdown written by the engine that may quote the model, made safe to render.

    Kept: headings, paragraphs, lists, tables, emphasis, code, and the images ``](name.png)``
    whose file name is in `images` (the site drew them beside the page). Disarmed: raw
    HTML and autolinks (``<`` is escaped), every other link or image (``](``), reference
    links and their definitions (``][`` and ``]:``), and attribute lists (``{``), which
    could set an ``onclick``. What is disarmed shows as text.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("<", "&lt;").replace("{", "&#123;")

    def disarm(m: re.Match[str]) -> str:
        if m.group(2) == "(" and not m.group(1):
            target = text[m.end():].split(")", 1)[0]
            if target in images and LOCAL_PNG.fullmatch(target):
                return m.group(0)
        return "]" + m.group(1) + _REF[m.group(2)]

    return _LINK_TAIL.sub(disarm, text)
