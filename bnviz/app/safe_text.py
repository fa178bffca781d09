"""Text from outside (a link, a value, an error) made safe to show in Markdown, as written.

Plain Python, no Streamlit: the URL parsing in ``bnviz.app.controls`` builds its notices with
it, and the pages' pieces print errors with it.
"""

from __future__ import annotations

import re

_MARKDOWN = "\\`*_{}[]()#+-.!|<>~$&:"


def as_text(text: str) -> str:
    """Text (from a link, a value, an error) for a Markdown element, shown as written: every
    character Markdown, HTML or LaTeX would read is escaped, so a link such as
    ``?lr=[Log in](http://example.com)`` prints brackets, not a live link."""
    return "".join("\\" + ch if ch in _MARKDOWN else ch for ch in str(text))


def as_code(text: str) -> str:
    """Text as a Markdown code span: shown character for character, never a link, a heading
    or HTML (GFM turns a bare URL into a link even when escaped; inside a code span it
    cannot). The fence is longer than any run of backticks in the text."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"
