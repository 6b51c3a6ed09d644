"""Text tiles: Markdown rendered, then sanitised so nothing in it can run."""

from __future__ import annotations

import pytest

from connectors.dashboards.markdown import text_html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("**bold** and _it_", "<p><strong>bold</strong> and <em>it</em></p>\n"),
        ("<script>alert(1)</script>\n\nafter", "\n<p>after</p>\n"),
        ("<style>p { color: red }</style>\n\nx", "\n<p>x</p>\n"),
        ('<img src="https://e.org/a.png" onerror="alert(1)">', '<img src="https://e.org/a.png">'),
        ('<b onclick="steal()">hi</b>', "<p><b>hi</b></p>\n"),
        ('<a href="javascript:alert(1)">x</a>', '<p><a rel="noopener noreferrer">x</a></p>\n'),
        ('<iframe src="https://e.org"></iframe>', ""),
        (
            "[docs](https://e.org/docs)",
            '<p><a href="https://e.org/docs" rel="noopener noreferrer">docs</a></p>\n',
        ),
        (
            "[mail](mailto:a@e.org) [ftp](ftp://e.org/f)",
            '<p><a href="mailto:a@e.org" rel="noopener noreferrer">mail</a>'
            ' <a rel="noopener noreferrer">ftp</a></p>\n',
        ),
        ("| a |\n|---|\n| 1 |", "<p>| a |\n|---|\n| 1 |</p>\n"),  # CommonMark: no tables
    ],
)
def test_rendered_and_sanitised(text, html):
    assert text_html(text) == html
