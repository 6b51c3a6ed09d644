"""What can go wrong running a user's query, split into errors safe to show the user
(they carry the database's own message) and the HTTP status each maps to.

Nothing here names a connection URL or a password: messages come from the database's
error text or are written here.
"""

from __future__ import annotations


class QueryError(Exception):
    """Base: `status` is the HTTP status the API answers with; `code` a stable name."""

    status = 400
    code = "query_error"

    def __init__(self, message: str, *, position: int | None = None, sql: str | None = None):
        super().__init__(message)
        self.message = message
        # 1-based character offset into the SQL the user sent, when the database gave one.
        self.position = position
        self.line: int | None = None
        self.column: int | None = None
        if position is not None and sql is not None:
            before = sql[: max(position - 1, 0)]
            self.line = before.count("\n") + 1
            self.column = len(before) - (before.rfind("\n") + 1) + 1

    def detail(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.code, "message": self.message}
        if self.position is not None:
            out.update(position=self.position, line=self.line, column=self.column)
        return out


class QueryRejected(QueryError):
    """Refused before it reached the database: a write, DDL, more than one statement."""

    code = "query_rejected"


class ParameterError(QueryError):
    """The parameters don't fit the query: wrong count or an unsupported value."""

    code = "bad_parameter"


class QueryFailed(QueryError):
    """The database refused or failed the query (syntax, permissions, types …)."""

    code = "query_failed"


class QueryTimeout(QueryError):
    status = 408
    code = "query_timeout"


class QueryCancelled(QueryError):
    status = 409
    code = "query_cancelled"


class SourceUnavailable(QueryError):
    """The data source could not be reached or the connection was lost mid-query."""

    status = 503
    code = "datasource_unavailable"


class QueueFull(QueryError):
    status = 503
    code = "queue_full"


class ResultTooLarge(QueryError):
    """A result bigger than what may be kept (SQLBOOK_QUERY_RESULT_MAX_BYTES): an async
    query's result is not stored; the user asks for fewer rows or columns."""

    status = 413
    code = "result_too_large"
