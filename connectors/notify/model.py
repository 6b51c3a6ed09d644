"""What a channel is given to send, and what it reports back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

# Why a notification is sent.
TRIGGERED = "triggered"  # the condition became true (or stays true, if not change-only)
REMINDER = "reminder"  # still triggered after the re-arm period
RESOLVED = "resolved"  # back to ok
ERROR = "error"  # the query failed: goes to the owner channel
DIGEST = "digest"  # an `always` rule: the result, every time
TEST = "test"  # sent by POST /api/alerts/{id}/test
SUBSCRIPTION = "subscription"  # a dashboard subscription's delivery

MAX_ROWS_SHOWN = 10


@dataclass(frozen=True)
class Attachment:
    """A file sent with a notification. An `inline` picture is shown in the message (email:
    beside the HTML as multipart/related, named by its Content-ID); the others are
    attachments (email) or shared files (Slack's bot upload)."""

    filename: str
    content_type: str  # "image/png", "text/csv; charset=utf-8"
    data: bytes = field(repr=False)
    inline: bool = False
    title: str | None = None  # what a person reads beside it (alt text, Slack's file title)

    @property
    def is_picture(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True)
class Notification:
    rule_name: str
    reason: str  # one of TRIGGERED, REMINDER, RESOLVED, ERROR, DIGEST, TEST
    state: str  # the rule's state now: "ok", "triggered" or "error"
    summary: str  # one line a person reads first: "n = 3, < 10 (first row)"
    evaluated_at: datetime
    datasource: str
    sql: str
    values: dict[str, Any] = field(default_factory=dict)  # the values that matched
    matched_rows: list[int] = field(default_factory=list)  # 0-based indexes into rows
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)  # the first MAX_ROWS_SHOWN rows
    row_count: int = 0
    error: str | None = None
    link: str | None = None  # back to the alert (or the insight page) in sqlbook, when known
    # An alert on an insight: the insight's chart as a PNG (email attaches it inline) and a
    # signed, expiring URL of the same picture (Slack shows it in an image block).
    chart_png: bytes | None = field(default=None, repr=False)
    chart_url: str | None = field(default=None, repr=False)
    # Files sent with it (a dashboard subscription: its pictures and CSV files). Channels
    # that cannot carry files (webhook, Teams, a Slack incoming webhook) leave them out.
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)
    # The footer line when it is not about one query (a dashboard: when and with which
    # filters it was drawn); None: "Data source: … · evaluated … · N rows".
    context: str | None = None

    @property
    def pictures(self) -> tuple[Attachment, ...]:
        """The attachments shown in the message body."""
        return tuple(a for a in self.attachments if a.inline and a.is_picture)

    @property
    def files(self) -> tuple[Attachment, ...]:
        """The attachments sent as files (not shown inline)."""
        return tuple(a for a in self.attachments if not (a.inline and a.is_picture))

    @property
    def title(self) -> str:
        label = {
            TRIGGERED: "Triggered",
            REMINDER: "Still triggered",
            RESOLVED: "Resolved",
            ERROR: "Query failed",
            DIGEST: "Digest",
            TEST: "Test",
            SUBSCRIPTION: "Dashboard",
        }.get(self.reason, self.reason)
        return f"[{label}] {self.rule_name}"

    def payload(self) -> dict[str, Any]:
        """The JSON body of a generic webhook (and what the history stores)."""
        return {
            "rule": self.rule_name,
            "reason": self.reason,
            "state": self.state,
            "summary": self.summary,
            "values": self.values,
            "matched_rows": self.matched_rows,
            "columns": self.columns,
            "rows": self.rows,
            "row_count": self.row_count,
            "datasource": self.datasource,
            "sql": self.sql,
            "error": self.error,
            "link": self.link,
            "chart_url": self.chart_url,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


@dataclass(frozen=True)
class Delivery:
    channel: str  # the channel's name in the rule or file
    type: str  # "slack", "email", "webhook", "teams"
    ok: bool
    attempts: int
    error: str | None = None  # never contains a secret (webhook URL, token, password)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "type": self.type,
            "ok": self.ok,
            "attempts": self.attempts,
            "error": self.error,
        }


class DeliveryError(Exception):
    """A send failed. `retryable` False for errors a retry cannot fix (4xx but 408/429)."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class Channel(ABC):
    type: ClassVar[str]

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Send once; raise DeliveryError on failure (message free of secrets)."""
