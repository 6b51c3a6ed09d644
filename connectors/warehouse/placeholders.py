"""Positional parameters (`$1`, `$2` …) as they appear in a query's text.

Found by a scanner that skips string literals, quoted identifiers, dollar-quoted bodies
and comments, so `'$1'`, `"$1"`, `-- $1` and `$tag$ … $1 … $tag$` are not parameters.
PostgreSQL binds `$n` natively; ClickHouse has no positional syntax, so its source
rewrites each `$n` into a typed server-side parameter `{pn:Type}`. sqlglot's ClickHouse
tokenizer cannot read `$n`, which is why this is not done on sqlglot's tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_PARAM = re.compile(r"\$([0-9]+)")


@dataclass(frozen=True)
class Placeholder:
    start: int  # offset of "$"
    end: int  # offset just after the digits
    number: int  # n in $n (1-based)


def find(sql: str, dialect: str = "postgres") -> list[Placeholder]:
    """Every `$n` outside literals and comments, in order of appearance."""
    return [item for item in _scan(sql, dialect) if isinstance(item, Placeholder)]


def code_spans(sql: str, dialect: str = "postgres") -> list[tuple[int, int]]:
    """The [start, end) stretches of `sql` outside string literals, quoted identifiers,
    dollar-quoted bodies and comments, in order: where SQL words (and `$n`) are."""
    spans: list[tuple[int, int]] = []
    last = 0
    for item in _scan(sql, dialect):
        if isinstance(item, _Skipped):
            if item.start > last:
                spans.append((last, item.start))
            last = item.end
    if last < len(sql):
        spans.append((last, len(sql)))
    return spans


@dataclass(frozen=True)
class _Skipped:
    start: int  # a literal, quoted identifier, dollar-quoted body or comment
    end: int


def _scan(sql: str, dialect: str) -> Iterator[Placeholder | _Skipped]:
    backslash_escapes = dialect == "clickhouse"
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        start = i
        if ch == "-" and sql.startswith("--", i) or ch == "#" and dialect == "clickhouse":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            yield _Skipped(start, i)
        elif ch == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
            yield _Skipped(start, i)
        elif ch in "'\"`":
            i = _skip_quoted(sql, i, ch, backslash_escapes or _is_escape_string(sql, i))
            yield _Skipped(start, i)
        elif ch == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            param = _PARAM.match(sql, i)
            if param and not _is_identifier_char(sql, i - 1):
                yield Placeholder(i, param.end(), int(param.group(1)))
                i = param.end()
            elif tag and dialect == "postgres" and not _is_identifier_char(sql, i - 1):
                close = sql.find(tag.group(0), tag.end())
                i = n if close < 0 else close + len(tag.group(0))
                yield _Skipped(start, i)
            else:
                i += 1
        else:
            i += 1


def substitute(sql: str, replace: Callable[[Placeholder], str], dialect: str = "postgres") -> str:
    """`sql` with each placeholder replaced by `replace(placeholder)`."""
    out: list[str] = []
    last = 0
    for p in find(sql, dialect):
        out.append(sql[last : p.start])
        out.append(replace(p))
        last = p.end
    out.append(sql[last:])
    return "".join(out)


def _is_identifier_char(sql: str, i: int) -> bool:
    return i >= 0 and (sql[i].isalnum() or sql[i] == "_")


def _is_escape_string(sql: str, i: int) -> bool:
    """PostgreSQL E'…' strings take backslash escapes."""
    return sql[i] == "'" and i > 0 and sql[i - 1] in "eE" and not _is_identifier_char(sql, i - 2)


def _skip_quoted(sql: str, i: int, quote: str, backslash_escapes: bool) -> int:
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash_escapes and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:  # doubled quote inside the literal
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_block_comment(sql: str, i: int) -> int:
    """PostgreSQL block comments nest; ClickHouse's don't, but nesting is rare enough
    there that treating both the same only matters for already-broken SQL."""
    depth, j, n = 0, i, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n
