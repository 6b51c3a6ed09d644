"""A text tile's HTML: its Markdown rendered (CommonMark, HTML allowed in the source, as
people paste it) and then sanitised, so what reaches a browser can run nothing: no
script, style or iframe (their content goes too), no `on*` attributes, links and images
only over http, https or mailto (or relative), every link `rel="noopener noreferrer"`.
The stored `text` stays what the user typed; the HTML is made when a dashboard is read."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": True})

# Removed with everything inside them (ammonia's default tags keep none of them either).
_DROPPED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "template"}
_SCHEMES = {"http", "https", "mailto"}


def text_html(text: str) -> str:
    """The sanitised HTML of a text tile's Markdown."""
    return nh3.clean(
        _MARKDOWN.render(text),
        clean_content_tags=_DROPPED_WITH_CONTENT,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer",
    )
