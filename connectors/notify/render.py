"""One Notification, four shapes: plain text, HTML (email), Slack Block Kit, Teams MessageCard.

Every value passes through the same helpers (`format_value`, `cell`, `table_lines`), so a
number, a NULL or a long string reads the same everywhere; each shape then only escapes
for its own markup. Rule names, SQL and cell values are user data: the HTML and Teams
shapes escape them, the Slack shape escapes Slack's control characters.
"""

from __future__ import annotations

import base64
import html as _html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from connectors.notify.model import (
    DIGEST,
    ERROR,
    MAX_ROWS_SHOWN,
    REMINDER,
    RESOLVED,
    TEST,
    TRIGGERED,
    Attachment,
    Notification,
)

MAX_ROWS = MAX_ROWS_SHOWN  # rows shown in any shape (10)
CELL_WIDTH = 40  # characters of one cell before it is cut with "…"
MAX_VALUES = 10  # matched values shown (Slack allows 10 fields in a section)
MAX_SQL_CHARS = 2000

# Slack Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks).
SLACK_MAX_BLOCKS = 50
SLACK_TEXT_LIMIT = 3000  # a section's text
SLACK_FIELD_LIMIT = 2000  # one field of a section
SLACK_HEADER_LIMIT = 150  # a header's plain_text
SLACK_FALLBACK_LIMIT = 3000  # the notification text (the API allows far more; keep it short)
SLACK_URL_LIMIT = 3000  # an image block's image_url, a button's url
TEAMS_TABLE_LIMIT = 8000
TEAMS_URL_LIMIT = 3000  # a section image's URL (kept as short as Slack's)

_WS = re.compile(r"\s+")


# --- values and cells ------------------------------------------------------------------------


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for what query results hold: dates, decimals, UUIDs, bytes."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def format_value(value: Any) -> str:
    """A value as a person reads it: NULL, true/false, 1234.5, 2024-05-01T10:00:00Z, JSON."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.10g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date | time | Decimal | UUID | int):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict | list | tuple | set | frozenset):
        return json.dumps(value, default=json_default, ensure_ascii=False)
    return str(value)


def format_time(value: datetime) -> str:
    if value.tzinfo is not None and value.utcoffset() == timedelta(0):
        return value.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    return value.isoformat(timespec="seconds")


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def cell(value: Any, width: int = CELL_WIDTH) -> str:
    """One table cell: on one line, at most `width` characters."""
    return truncate(_WS.sub(" ", format_value(value)).strip(), width)


def one_line(text: str, width: int) -> str:
    return truncate(_WS.sub(" ", text).strip(), width)


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]  # formatted cells
    matched: list[bool]  # per shown row: did it match the condition
    total: int  # rows in the result

    @property
    def more(self) -> int:
        return max(self.total - len(self.rows), 0)


def table(n: Notification, *, width: int = CELL_WIDTH, max_rows: int = MAX_ROWS) -> Table:
    shown = n.rows[:max_rows]
    ncols = max([len(n.columns), *(len(r) for r in shown)], default=0)
    columns = [cell(c, width) for c in n.columns] + [""] * (ncols - len(n.columns))
    rows = [[cell(v, width) for v in r] + [""] * (ncols - len(r)) for r in shown]
    matched = set(n.matched_rows)
    return Table(
        columns=columns,
        rows=rows,
        matched=[i in matched for i in range(len(shown))],
        total=max(n.row_count, len(n.rows)),
    )


def table_lines(t: Table) -> list[str]:
    """A fixed-width table; matched rows are marked with `*` when only some rows matched."""
    if not t.columns:
        return []
    widths = [max([len(c), *(len(r[i]) for r in t.rows)]) for i, c in enumerate(t.columns)]
    mark = any(t.matched) and not all(t.matched)

    def line(cells: list[str], prefix: str) -> str:
        body = " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        return (prefix + body) if mark else body

    out = [line(t.columns, "  "), line(["-" * w for w in widths], "  ").replace(" | ", "-+-")]
    out += [line(r, "* " if m else "  ") for r, m in zip(t.rows, t.matched, strict=True)]
    return out


def table_text(n: Notification, max_chars: int | None = None) -> str:
    """The table as text, narrowing cells and then dropping rows to fit `max_chars`."""
    if not n.columns and not n.rows:
        return ""
    text = ""
    for width in (CELL_WIDTH, 24, 12, 6):
        t = table(n, width=width)
        text = "\n".join(table_lines(t))
        if max_chars is None or len(text) <= max_chars:
            return text
    lines = text.split("\n")
    assert max_chars is not None
    while len(lines) > 2 and len("\n".join(lines)) > max_chars:
        lines.pop()
    return truncate("\n".join(lines), max_chars)


def rows_caption(n: Notification) -> str:
    shown = min(len(n.rows), MAX_ROWS)
    total = max(n.row_count, len(n.rows))
    if total == 0:
        return "No rows."
    if shown < total:
        return f"First {shown} of {total} rows"
    return f"{total} row" + ("" if total == 1 else "s")


def value_items(n: Notification) -> list[tuple[str, str]]:
    """The matched values as (name, value) pairs, cut to MAX_VALUES."""
    items = [(one_line(str(k), 100), cell(v, 200)) for k, v in n.values.items()]
    if len(items) > MAX_VALUES:
        rest = len(items) - (MAX_VALUES - 1)
        items = items[: MAX_VALUES - 1] + [("…", f"{rest} more")]
    return items


def context_line(n: Notification) -> str:
    if n.context is not None:
        return n.context
    return f"Data source: {n.datasource} · evaluated {format_time(n.evaluated_at)}"


def chart_alt(n: Notification) -> str:
    return f"Chart of {n.rule_name}"


def footer_text(n: Notification) -> str:
    if n.context is not None:
        return n.context
    total = max(n.row_count, len(n.rows))
    return f"{context_line(n)} · {total} row{'' if total == 1 else 's'}"


# --- plain text ------------------------------------------------------------------------------


def files_line(n: Notification) -> str:
    """`Attached: a.csv, b.csv` (empty when nothing is attached as a file)."""
    names = [a.filename for a in n.files]
    return f"Attached: {', '.join(names)}" if names else ""


def text(n: Notification) -> str:
    parts = [n.title, n.summary, files_line(n)]
    items = value_items(n)
    if items:
        parts.append("Values:\n" + "\n".join(f"  {k}: {v}" for k, v in items))
    if n.error:
        parts.append(f"Error: {n.error}")
    tbl = table_text(n)
    if tbl:
        parts.append(f"{rows_caption(n)}:\n{tbl}")
    if n.sql:
        parts.append("SQL:\n" + truncate(n.sql.strip(), MAX_SQL_CHARS))
    parts.append(footer_text(n))
    if n.link:
        parts.append(f"Open in sqlbook: {n.link}")
    return "\n\n".join(p for p in parts if p) + "\n"


# --- HTML (email) ----------------------------------------------------------------------------

_COLORS = {
    TRIGGERED: "#d73a49",
    REMINDER: "#d73a49",
    ERROR: "#d73a49",
    RESOLVED: "#2da44e",
    DIGEST: "#6e7781",
    TEST: "#6e7781",
}


def theme_color(n: Notification) -> str:
    """Red for triggered/error, green for resolved, grey otherwise: `#rrggbb`."""
    return _COLORS.get(n.reason, "#6e7781")


def html(
    n: Notification,
    *,
    chart_cid: str | None = None,
    pictures: Sequence[tuple[str, Attachment]] = (),
) -> str:
    """`chart_cid`: the Content-ID (without brackets) of the chart attached beside it;
    `pictures`: (Content-ID, picture) of the notification's inline pictures, shown in order."""
    e = _html.escape
    color = theme_color(n)
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head>',
        '<body style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; '
        'font-size: 14px; color: #24292f;">',
        f'<h2 style="border-left: 4px solid {color}; padding-left: 8px;">{e(n.title)}</h2>',
        f"<p>{e(n.summary)}</p>",
    ]
    if chart_cid:
        out.append(
            f'<p><img src="cid:{e(chart_cid, quote=True)}" alt="{e(chart_alt(n), quote=True)}"'
            ' style="max-width: 100%;"></p>'
        )
    for cid, picture in pictures:
        alt = picture.title or picture.filename
        out.append(
            f'<p><img src="cid:{e(cid, quote=True)}" alt="{e(alt, quote=True)}"'
            ' style="max-width: 100%;"></p>'
        )
    if n.files:
        out.append(f'<p style="color: #6e7781;">{e(files_line(n))}</p>')
    items = value_items(n)
    if items:
        out.append('<table style="border-collapse: collapse; margin-bottom: 12px;">')
        out += [
            f'<tr><th style="text-align: left; padding: 2px 12px 2px 0;">{e(k)}</th>'
            f"<td><code>{e(v)}</code></td></tr>"
            for k, v in items
        ]
        out.append("</table>")
    if n.error:
        out.append(f'<p style="color: #d73a49;"><strong>Error:</strong> {e(n.error)}</p>')
    t = table(n)
    if t.columns:
        th = "border: 1px solid #d0d7de; padding: 4px 8px; text-align: left;"
        out.append(f"<p><strong>{e(rows_caption(n))}</strong></p>")
        out.append('<table style="border-collapse: collapse; font-family: monospace;">')
        out.append("<tr>" + "".join(f'<th style="{th}">{e(c)}</th>' for c in t.columns) + "</tr>")
        for row, hit in zip(t.rows, t.matched, strict=True):
            bg = ' style="background: #fff8c5;"' if hit and not all(t.matched) else ""
            cells = "".join(f'<td style="{th}">{e(c)}</td>' for c in row)
            out.append(f"<tr{bg}>{cells}</tr>")
        out.append("</table>")
    if n.sql:
        out.append(
            '<pre style="background: #f6f8fa; padding: 8px; white-space: pre-wrap;">'
            f"{e(truncate(n.sql.strip(), MAX_SQL_CHARS))}</pre>"
        )
    out.append(f'<p style="color: #6e7781; font-size: 12px;">{e(footer_text(n))}</p>')
    if n.link:
        out.append(f'<p><a href="{e(n.link, quote=True)}">Open in sqlbook</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --- Slack Block Kit -------------------------------------------------------------------------


def slack_escape(value: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) as entities."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_fit(raw: str, limit: int) -> str:
    """`raw` escaped for mrkdwn in at most `limit` characters, cut before escaping so that no
    entity is split."""
    if len(slack_escape(raw)) <= limit:
        return slack_escape(raw)
    while len(slack_escape(raw)) + 1 > limit:
        raw = raw[: len(raw) - (len(slack_escape(raw)) + 1 - limit)]
    return slack_escape(raw + "…")


def slack_code(raw: str, limit: int) -> str:
    """A mrkdwn code block of at most `limit` characters."""
    return "```" + slack_fit(raw.replace("```", "`\u200b``"), limit - 6) + "```"


def slack_text(n: Notification) -> str:
    """The notification text of a Slack message (shown where blocks are not)."""
    return truncate(f"{n.title}: {n.summary}", SLACK_FALLBACK_LIMIT)


def slack_comment(n: Notification) -> str:
    """The mrkdwn message shared with uploaded files (Slack's `initial_comment`): title,
    summary and the link back."""
    parts = [f"*{slack_fit(one_line(n.title, SLACK_HEADER_LIMIT), SLACK_HEADER_LIMIT * 2)}*"]
    if n.summary:
        parts.append(slack_fit(n.summary, SLACK_TEXT_LIMIT))
    parts.append(slack_fit(footer_text(n), SLACK_TEXT_LIMIT))
    if n.link and len(n.link) <= SLACK_URL_LIMIT and not any(c in n.link for c in "<>|"):
        parts.append(f"<{n.link}|Open in sqlbook>")
    return "\n".join(parts)


def slack_blocks(n: Notification) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": one_line(n.title, SLACK_HEADER_LIMIT),
                "emoji": False,
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": slack_fit(n.summary, SLACK_TEXT_LIMIT) or " ",
            },
        },
    ]
    if n.chart_url and len(n.chart_url) <= SLACK_URL_LIMIT:
        blocks.append(
            {"type": "image", "image_url": n.chart_url, "alt_text": one_line(chart_alt(n), 2000)}
        )
    items = value_items(n)
    if items:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": f"*{slack_fit(k, 500)}*\n{slack_fit(v, 1400)}",
                    }
                    for k, v in items
                ],
            }
        )
    if n.error:
        err = slack_code(n.error, SLACK_TEXT_LIMIT - 20)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{err}"}})
    if n.columns or n.rows:
        caption = f"*{slack_escape(rows_caption(n))}*\n"
        limit = SLACK_TEXT_LIMIT - len(caption)
        # Narrow the cells to fit first; slack_code then cuts whatever escaping added.
        code = slack_code(table_text(n, max_chars=limit - 6), limit)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": caption + code}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": slack_fit(footer_text(n), SLACK_TEXT_LIMIT)}],
        }
    )
    if n.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in sqlbook"},
                        "url": n.link[:3000],
                        "action_id": "open_in_sqlbook",
                    }
                ],
            }
        )
    return blocks[:SLACK_MAX_BLOCKS]


# --- Teams (Office 365 connector MessageCard) ------------------------------------------------


def teams_card(n: Notification) -> dict[str, Any]:
    """A legacy MessageCard. Its text fields take Markdown and some HTML, so user data is
    HTML-escaped; the title is shown as plain text. An alert on an insight with a chart URL
    shows the chart as a section image, after the summary (where Slack shows it)."""
    e = _html.escape
    main: dict[str, Any] = {
        "activityTitle": e(n.summary),
        "activitySubtitle": e(context_line(n)),
        "markdown": True,
    }
    items = value_items(n)
    if items:
        main["facts"] = [{"name": e(k), "value": e(v)} for k, v in items]
    sections: list[dict[str, Any]] = [main]
    if n.chart_url and len(n.chart_url) <= TEAMS_URL_LIMIT:
        # The connector card's section image: Teams fetches the picture from the URL (the
        # signed chart link, made only when SQLBOOK_PUBLIC_API_URL says where clients
        # reach the API).
        sections.append({"images": [{"image": n.chart_url, "title": one_line(chart_alt(n), 200)}]})
    if n.error:
        sections.append({"title": "Error", "text": f"<pre>{e(n.error)}</pre>", "markdown": True})
    tbl = table_text(n, max_chars=TEAMS_TABLE_LIMIT)
    if tbl:
        sections.append(
            {"title": e(rows_caption(n)), "text": f"<pre>{e(tbl)}</pre>", "markdown": True}
        )
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": theme_color(n).lstrip("#"),
        "summary": one_line(n.title, 200),
        "title": n.title,
        "sections": sections,
    }
    if n.link:
        card["potentialAction"] = [
            {
                "@type": "OpenUri",
                "name": "Open in sqlbook",
                "targets": [{"os": "default", "uri": n.link}],
            }
        ]
    return card


# --- SMS and WhatsApp (Twilio) ---------------------------------------------------------------

# An SMS is billed by segments: 160 GSM-7 characters alone or 153 each when concatenated,
# and as soon as one character is outside GSM-7, 70 / 67 UTF-16 code units.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each (escape + character)
TWILIO_BODY_LIMIT = 1600  # characters of a Messages API Body
# What our own shapes put in text that has a GSM-7 spelling: one "…" would make the whole
# message UCS-2, less than half as long a segment.
_TO_GSM = str.maketrans(
    {
        "…": "...",
        "·": "-",
        "—": "-",
        "–": "-",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "≥": ">=",
        "≤": "<=",
        "≠": "!=",
        "→": "->",
        "\u00a0": " ",
    }
)


def is_gsm(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENDED for c in text)


def sms_segments(text: str) -> int:
    """How many segments a carrier bills `text` as."""
    if is_gsm(text):
        septets = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def _fit(head: str, tail: str, fits: Callable[[str], bool]) -> str:
    """`head` cut (with "...") until `head + tail` fits; the tail (the link) is kept whole."""
    if fits(head + tail):
        return head + tail
    lo, hi = 0, len(head)  # the longest prefix that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(head[:mid].rstrip() + "..." + tail):
            lo = mid
        else:
            hi = mid - 1
    return head[:lo].rstrip() + "..." + tail if lo else tail.lstrip("\n")


def sms_text(n: Notification, max_segments: int = 1) -> str:
    """An SMS: the title, the summary (or the error) and the link back, in at most
    `max_segments` segments; the summary is cut first, never the link. Our own punctuation
    is spelled in GSM-7, so a message of plain words stays in the cheaper alphabet."""
    what = n.error if n.reason == ERROR and n.error else n.summary
    head = one_line(f"{n.title}: {what}" if what else n.title, TWILIO_BODY_LIMIT)
    head = head.translate(_TO_GSM)
    tail = f"\n{n.link}" if n.link else ""
    return _fit(head, tail, lambda text: sms_segments(text) <= max_segments)


def whatsapp_text(n: Notification) -> str:
    """A WhatsApp message (its *bold* markup): the title, the summary, the matched values,
    the footer and the link back, within Twilio's 1600 characters (the link kept whole)."""
    parts = [f"*{one_line(n.title, 200)}*", n.summary]
    if n.error:
        parts.append(f"Error: {one_line(n.error, 500)}")
    items = value_items(n)
    if items:
        parts.append("\n".join(f"{k}: {v}" for k, v in items))
    parts.append(footer_text(n))
    head = "\n".join(p for p in parts if p)
    tail = f"\n{n.link}" if n.link else ""
    return _fit(head, tail, lambda text: len(text) <= TWILIO_BODY_LIMIT)
