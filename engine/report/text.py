"""Untrusted text (what a model wrote) made safe to place in a Markdown page.

A model's summary or reason is data, not markup: it must never become HTML, a link, an
image, an attribute list or a table column on the site. :func:`untrusted_md` is the one
place that turns such text into inert Markdown.
"""

from __future__ import annotations

import html

# Characters that start Markdown constructs which could do more than show text, as HTML
# numeric references: the Markdown parser sees no syntax in them, the browser shows the
# character. [ ] make links and images; { } attribute lists (attr_list can set any
# attribute, onclick included); | splits a table row; ` opens a code span that would
# show the references below literally; \ would escape the character that follows.
_INERT = str.maketrans({
    "[": "&#91;", "]": "&#93;", "{": "&#123;", "}": "&#125;", "|": "&#124;", "`": "&#96;", "\\": "&#92;",
})
# At the start of a block (a list item's text is one) these make a heading, a nested list
# or a rule; ">" is already escaped.
_LEADING = {"#": "&#35;", "-": "&#45;", "+": "&#43;", "*": "&#42;", "=": "&#61;"}
ELLIPSIS = "\u2026"


def untrusted_md(text: object, max_len: int | None = None) -> str:
    """`text` as one line of inert Markdown, for a table cell or after a list marker.

    Control and format characters (bidirectional overrides included) and line breaks
    become spaces and runs of whitespace one space, so the text stays on its line; it
    is cut to `max_len` characters (an ellipsis included) before escaping, so that no
    escape is cut in half; then ``& < >`` are HTML-escaped and the characters of links,
    images, attribute lists, code spans and table cells are replaced by numeric
    references. None gives an empty string.

    >>> untrusted_md("<b>hi</b> [x](javascript:y) | z")
    '&lt;b&gt;hi&lt;/b&gt; &#91;x&#93;(javascript:y) &#124; z'
    """
    if text is None:
        return ""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    s = " ".join(s.split())
    if max_len is not None and len(s) > max_len:
        s = s[: max(max_len - 1, 0)].rstrip() + ELLIPSIS
    s = html.escape(s, quote=False).translate(_INERT)
    if s[:1] in _LEADING:
        s = _LEADING[s[0]] + s[1:]
    return s
