"""Check a user's SQL before it reaches a database: one statement, and a read.

The database stays the real guard (a read-only transaction or setting, and a reader
without write grants). This check answers a clear 400 first, with the reason and the
position of the offending word, and on ClickHouse it stops what a read-only mode does
not: table functions that read files or other servers, `INTO OUTFILE`, and overriding
through `SETTINGS` the limits sqlbook sets.

How the text is read:

1. Tokens. The whole text is split into tokens by sqlglot's tokenizer for the source's
   dialect (ClickHouse: after each `$n` is replaced by `{pn:String}`, which that
   tokenizer can read; `$n` stays in the text sent). Statements are counted on these
   tokens: a `;` token separates statements, so a `;` inside a string, quoted name,
   dollar-quoted body or comment does not, and a trailing `;` followed only by
   whitespace or comments ends the one statement. Because a wrong count is the one
   mistake that matters (a second statement riding along after a comment the database
   reads differently), everything the tokenizer skipped between tokens is read again
   with the database's own rules and must be only whitespace and comments: a
   non-breaking space is a letter to PostgreSQL, `#x` is not a comment to ClickHouse,
   and ClickHouse versions disagree on nested `/* */`, so each of those is refused.
   The text sent is the user's, cut after the statement's last token; a stray `;`
   before the statement becomes a space, so every offset is unchanged.

2. The first word decides what the statement is, against an allow-list: SELECT, WITH,
   (on PostgreSQL) VALUES and TABLE, and a parenthesised query are reads (kind
   "select"); CALL (PostgreSQL) is "call"; EXPLAIN is "explain" when what it explains
   passes as a read; SHOW (and DESCRIBE and EXISTS on ClickHouse) is "show". Any other
   first word is refused, with a reason for the statements people actually try
   (INSERT, SET, COPY, BEGIN, GRANT …).

3. Reads are parsed with sqlglot. The root must be a SELECT, a set operation, a
   parenthesised query or VALUES, and no node anywhere may write (INSERT, UPDATE,
   DELETE, MERGE in a WITH clause; CREATE, DROP, ALTER, TRUNCATE, COPY, SET), create a
   table (`SELECT … INTO`) or lock rows (`FOR UPDATE/SHARE`).

   When sqlglot cannot parse a statement that starts like a read (or gives it a root
   that is neither a read nor a write), it is let through
   as kind "select", after the same rules are applied to its words instead of to a tree
   (INSERT, UPDATE, DELETE, MERGE, INTO or FOR UPDATE/SHARE anywhere outside literals
   refuse it). sqlglot's grammar is narrower than PostgreSQL's and ClickHouse's, so
   refusing what it cannot parse would refuse valid queries; letting such a query
   through is safe because the statement count does not depend on the parser, the
   first word already rules out every non-read statement, the database's read-only
   mode refuses any write that slips past the word rules, and the database reports its
   own syntax errors with their positions. A sqlglot parse error is therefore never a
   reason to refuse a query.

4. ClickHouse only, on tokens whether or not the statement parsed: table functions
   that reach outside the database (`file()`, `url()`, `s3()`, `remote()` …), a
   `SETTINGS` clause naming a limit sqlbook sets (`readonly`, `max_execution_time` …)
   and `INTO OUTFILE` are refused. PostgreSQL functions such as `pg_read_file()` are
   left to the database's permissions and row-level security.

`normalized` (the cache key text) is built from the same tokens rather than by
regenerating SQL from sqlglot's tree: the user's tokens in order, comments dropped,
each run of whitespace and comments between two tokens written as one space (a newline
between two PostgreSQL string literals, which joins them, stays a newline), and on
PostgreSQL unquoted words ASCII-lower-cased (PostgreSQL folds them the same way, so this
never changes meaning). ClickHouse names are case-sensitive, so its text keeps its
case: `SELECT 1` and `select 1` are two cache entries there. Regenerated
SQL is not a safe cache key: sqlglot writes some different queries the same way
(PostgreSQL `select 1_000` and `select 1 _000` both become `SELECT 1 AS _000`;
`date_part(…)`, which returns double precision, becomes `EXTRACT(…)`, which returns
numeric), and a shared key would serve one query's cached result for the other.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, Tokenizer, TokenType

from connectors.warehouse import placeholders
from connectors.warehouse.errors import ParameterError, QueryRejected

DIALECTS = ("postgres", "clickhouse")


@dataclass(frozen=True)
class CheckedSql:
    # The text to send: the user's SQL cut after the statement's last token (trailing
    # whitespace, comments and `;` removed) and nothing else changed, so positions in
    # the database's errors are positions in the user's text.
    sql: str
    kind: str  # "select", "call", "explain" or "show"
    normalized: str  # canonical text for cache keys (see the module docstring)
    param_count: int  # highest n of the `$n` the query uses; 0 if none


def check_sql(sql: str, dialect: str, params: Sequence[Any] = ()) -> CheckedSql:
    """The statement in `sql` if it is one read query for `dialect` ("postgres" or
    "clickhouse") and `params` fit its `$n` placeholders.

    Raises QueryRejected (with the reason, and the position of the offending word when
    there is one) or ParameterError."""
    if dialect not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect!r}")
    checked = _checked(sql, dialect) if len(sql) <= _REMEMBERED_CHARS else _check(sql, dialect)
    check_params(params, checked.param_count)
    return checked


# The verdict on a text depends on the text and the dialect only: the statements asked
# again and again (a dashboard's tiles, an insight reloaded) are read once. A refusal
# raises, and is never remembered.
_REMEMBERED_CHARS = 20_000


@functools.lru_cache(maxsize=1024)
def _checked(sql: str, dialect: str) -> CheckedSql:
    return _check(sql, dialect)


def _check(sql: str, dialect: str) -> CheckedSql:
    found = placeholders.find(sql, dialect)
    reader = _Reader(sql, dialect, found)
    statements = _split(reader.tokens)
    if not statements:
        raise QueryRejected("empty query")
    if len(statements) > 1:
        raise reader.reject(
            f"only one statement per query: found {len(statements)}", statements[1][0]
        )
    statement = statements[0]
    kind = _check_statement(reader, statement)
    return CheckedSql(
        sql=_text_to_send(sql, reader.tokens, statement),
        kind=kind,
        normalized=_normalize(sql, statement, dialect),
        param_count=max((p.number for p in found), default=0),
    )


def check_params(params: Sequence[Any], param_count: int) -> list[Any]:
    """`params` as a list if there is one value for each of `$1 … $param_count` and each
    value is one a driver can bind: a string, number, boolean, null, or a flat list of
    strings, numbers or booleans (nulls allowed). Raises ParameterError otherwise."""
    if isinstance(params, str | bytes | Mapping) or not isinstance(params, Sequence):
        raise ParameterError("parameters must be a list of values")
    given = len(params)
    if given != param_count:
        raise ParameterError(_count_message(param_count, given))
    for number, value in enumerate(params, start=1):
        problem = _value_problem(value)
        if problem:
            raise ParameterError(f"parameter ${number}: {problem}")
    return list(params)


# --- tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    type: TokenType
    start: int  # offset in the user's SQL
    end: int  # exclusive
    pstart: int  # offset in the text sqlglot reads (differs on ClickHouse after `$n`)
    pend: int
    word: str | None  # an unquoted word, ASCII-lower-cased
    name: str | None  # `word`, or the lower-cased text of a quoted name


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_MISSING = re.compile(r"Missing (.+) from \d+:(\d+)")


@functools.cache
def _tokenizer_class(dialect: str) -> type[Tokenizer]:
    """The dialect's tokenizer without its command mode, in which a statement starting
    with EXPLAIN, CALL, SHOW … comes back as two tokens: the keyword and the rest as one
    string. Each word is needed here, and every token's position."""
    base = Dialect.get_or_raise(dialect).tokenizer_class
    return type(f"{base.__name__}Words", (base,), {"COMMANDS": set(), "__slots__": ()})


def _clickhouse_param(p: placeholders.Placeholder) -> str:
    return f"{{p{p.number}:String}}"


class _Reader:
    """The user's SQL as tokens, with positions in the user's text."""

    def __init__(self, sql: str, dialect: str, found: list[placeholders.Placeholder]):
        self.sql = sql
        self.dialect = dialect
        # (start in parse text, end in parse text, start in sql, end in sql)
        self._swaps: list[tuple[int, int, int, int]] = []
        if dialect == "clickhouse" and found:
            self.text = placeholders.substitute(sql, _clickhouse_param, dialect)
            shift = 0
            for p in found:
                size = len(_clickhouse_param(p))
                self._swaps.append((p.start + shift, p.start + shift + size, p.start, p.end))
                shift += size - (p.end - p.start)
        else:
            self.text = sql
        self.tokens = self._tokenize()

    def _tokenize(self) -> list[_Tok]:
        try:
            tokenizer = _tokenizer_class(self.dialect)(dialect=self.dialect)
            raw = tokenizer.tokenize(self.text)
        except TokenError as e:
            raise self._token_error(e) from None
        tokens: list[_Tok] = []
        for t in raw:
            tok = self._tok(t)
            if tokens and (tokens[-1].start, tokens[-1].end) == (tok.start, tok.end):
                continue  # another piece of the same ClickHouse `{pn:String}`
            tokens.append(tok)
        last = 0
        for tok in tokens:
            self._check_gap(last, tok.start)
            last = tok.end
        self._check_gap(last, len(self.sql))
        return tokens

    def _tok(self, t: Token) -> _Tok:
        pstart, pend = t.start, t.end + 1
        start, end = self._to_sql(pstart, pend)
        raw = self.sql[start:end]
        word = raw.translate(_ASCII_LOWER) if _BARE_WORD.fullmatch(raw) else None
        name = word
        if word is None and t.token_type == TokenType.IDENTIFIER:
            name = t.text.lower()
        return _Tok(t.token_type, start, end, pstart, pend, word, name)

    def _to_sql(self, pstart: int, pend: int) -> tuple[int, int]:
        shift = 0
        for s_start, s_end, o_start, o_end in self._swaps:
            if pstart >= s_end:
                shift = o_end - s_end
            elif pend <= s_start:
                break
            else:  # a piece of a `{pn:String}`: the whole `$n`
                return o_start, o_end
        return pstart + shift, pend + shift

    def _token_error(self, e: TokenError) -> QueryRejected:
        match = _MISSING.fullmatch(str(e.__cause__ or ""))
        if match:
            delimiter, offset = match.group(1), int(match.group(2))
            what = "a quoted string"
            if delimiter in ('"', "`"):
                what = "a quoted name"
            elif delimiter.startswith("$"):
                what = "a dollar-quoted string"
            position = self._to_sql(offset, offset + 1)[0] + 1
            return QueryRejected(
                f"{what} is not closed: {delimiter} is missing", position=position, sql=self.sql
            )
        return QueryRejected(
            "could not read the query: check for an unclosed quote, comment or dollar-quoted string"
        )

    def _check_gap(self, start: int, end: int) -> None:
        """Between two tokens the database must see only whitespace and comments."""
        gap, sql, i = self.sql[start:end], self.sql, 0
        clickhouse = self.dialect == "clickhouse"
        while i < len(gap):
            ch = gap[i]
            if ch in " \t\n\r\f\v" or clickhouse and ch.isspace():
                i += 1
            elif gap.startswith("--", i) or clickhouse and gap.startswith(("//", "# ", "#!"), i):
                i = _line_end(gap, i, "\n" if clickhouse else "\n\r")
            elif gap.startswith("/*", i):
                close = _block_comment_end(gap, i, nested=not clickhouse)
                if close < 0:
                    raise QueryRejected(
                        "nested /* */ comments are not supported on ClickHouse",
                        position=start + i + 1,
                        sql=sql,
                    )
                i = close
            elif ch.isspace():
                raise QueryRejected(
                    f"the query contains a U+{ord(ch):04X} space character, which "
                    "PostgreSQL reads as part of a name: replace it with a plain space",
                    position=start + i + 1,
                    sql=sql,
                )
            else:
                raise QueryRejected(
                    f"could not read the query at {ch!r}: it is neither whitespace nor "
                    "part of a comment",
                    position=start + i + 1,
                    sql=sql,
                )

    def reject(self, message: str, at: _Tok | None = None) -> QueryRejected:
        if at is None:
            return QueryRejected(message)
        return QueryRejected(message, position=at.start + 1, sql=self.sql)


def _line_end(text: str, i: int, ends: str) -> int:
    for j in range(i, len(text)):
        if text[j] in ends:
            return j
    return len(text)


def _block_comment_end(text: str, i: int, *, nested: bool) -> int:
    """Offset after the comment opened at `i`; -1 if a ClickHouse comment holds another
    `/*` (versions differ on whether that nests)."""
    depth, j = 0, i
    while j < len(text):
        if text.startswith("/*", j):
            if depth and not nested:
                return -1
            depth += 1
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(text)  # the tokenizer refuses an unclosed comment before this


def _split(tokens: list[_Tok]) -> list[list[_Tok]]:
    statements: list[list[_Tok]] = [[]]
    for tok in tokens:
        if tok.type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(tok)
    return [s for s in statements if s]


def _text_to_send(sql: str, tokens: list[_Tok], statement: list[_Tok]) -> str:
    """`sql` up to the statement's last token; a `;` before the statement becomes a space."""
    text = sql[: statement[-1].end]
    for tok in tokens:
        if tok.start >= statement[0].start:
            break
        text = text[: tok.start] + " " + text[tok.end :]  # only `;` precede the statement
    return text


def _normalize(sql: str, statement: list[_Tok], dialect: str) -> str:
    parts: list[str] = []
    previous: _Tok | None = None
    for tok in statement:
        raw = sql[tok.start : tok.end]
        if tok.word is not None and dialect == "postgres":
            raw = tok.word
        if previous is not None and tok.start > previous.end:
            gap = sql[previous.end : tok.start]
            # PostgreSQL joins two string literals separated by a newline: keep it.
            joined = dialect == "postgres" and _is_string(previous) and _is_string(tok)
            parts.append("\n" if joined and ("\n" in gap or "\r" in gap) else " ")
        parts.append(raw)
        previous = tok
    return "".join(parts)


def _is_string(tok: _Tok) -> bool:
    return "STRING" in tok.type.name


# --- statements ---------------------------------------------------------------------

_READS = {"select", "with", "values", "table"}
_ALLOWED_START = {
    "postgres": "SELECT, WITH, VALUES, TABLE, CALL, EXPLAIN or SHOW",
    "clickhouse": "SELECT, WITH, EXPLAIN, SHOW, DESCRIBE or EXISTS",
}

_READ_ONLY = "{} is not allowed: queries are read-only"
_SETTINGS = "{} is not allowed: session settings are managed by sqlbook"
_TRANSACTION = "{} is not allowed: sqlbook runs each query in its own read-only transaction"
_PREPARED = "{} is not allowed: prepared statements are managed by sqlbook"
_CURSOR = "{} is not allowed: cursors are not supported"
_NOTIFY = "{} is not allowed: queries cannot send or receive notifications"
_PERMISSIONS = "{} is not allowed: permissions are managed by the database administrator"
_ADMIN = "{} is not allowed: it is a server administration command"

# What each refused first word is told, by message.
_REFUSED: dict[str, tuple[str, ...]] = {
    _READ_ONLY: (
        *("insert", "update", "delete", "merge", "upsert", "replace", "create", "drop"),
        *("alter", "truncate", "rename", "exchange", "attach", "detach", "undrop"),
        *("optimize", "vacuum", "analyze", "analyse", "cluster", "reindex", "refresh"),
        *("comment", "security", "import"),
    ),
    _SETTINGS: ("set", "reset"),
    _TRANSACTION: ("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"),
    _PREPARED: ("prepare", "execute", "deallocate"),
    _CURSOR: ("declare", "fetch", "move", "close"),
    _NOTIFY: ("listen", "notify", "unlisten"),
    _PERMISSIONS: ("grant", "revoke"),
    _ADMIN: ("checkpoint", "system", "kill"),
    "{} is not allowed: use SELECT to read data": ("copy",),
    "DO blocks are not allowed": ("do",),
    "{} is not allowed: queries cannot take locks": ("lock",),
    "{} is not allowed: session state is managed by sqlbook": ("discard",),
    "{} is not allowed: it loads code into the database server": ("load",),
    "{} is not allowed: the database is chosen in the data source's settings": ("use",),
    "{} is not allowed: it streams results without end": ("watch",),
}
_STATEMENT_MESSAGES = {word: message for message, words in _REFUSED.items() for word in words}
_STATEMENT_NAMES = {
    "security": "SECURITY LABEL",
    "import": "IMPORT FOREIGN SCHEMA",
    "refresh": "REFRESH MATERIALIZED VIEW",
    "comment": "COMMENT ON",
    "start": "START TRANSACTION",
}

_INTO = "SELECT … INTO creates a table and is not allowed"
_LOCKING = "locking clauses (FOR UPDATE/SHARE) are not allowed"
_WRITES: dict[type[exp.Expr], str] = {
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Merge: "merge",
    exp.Create: "create",
    exp.Drop: "drop",
    exp.Alter: "alter",
    exp.TruncateTable: "truncate",
    exp.Copy: "copy",
    exp.Set: "set",
    exp.SetItem: "set",
}
_READ_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)

# ClickHouse table functions that read files, URLs, object stores or other servers.
_OUTSIDE_FUNCTIONS = {
    name.lower()
    for name in (
        ("file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn")
        + ("hdfs", "hdfsCluster", "azureBlobStorage", "azureBlobStorageCluster")
        + ("remote", "remoteSecure", "cluster", "clusterAllReplicas")
        + ("mysql", "postgresql", "jdbc", "odbc", "sqlite", "mongodb", "redis")
        + ("executable", "input", "paimon", "arrowFlight", "ytsaurus")
        + ("deltaLake", "deltaLakeCluster", "deltaLakeAzure", "deltaLakeLocal")
        + ("iceberg", "icebergS3", "icebergAzure", "icebergHDFS", "icebergLocal")
        + ("icebergCluster", "icebergS3Cluster", "icebergAzureCluster", "icebergHDFSCluster")
        + ("hudi", "hudiCluster")
    )
}
# ClickHouse settings through which sqlbook limits a query.
_MANAGED_SETTINGS = {
    "readonly",
    "max_execution_time",
    "max_result_rows",
    "max_result_bytes",
    "result_overflow_mode",
    "allow_ddl",
    "allow_introspection_functions",
    "max_rows_to_read",
    "timeout_overflow_mode",
}


def _statement_message(word: str) -> str:
    name = _STATEMENT_NAMES.get(word, word.upper())
    return _STATEMENT_MESSAGES[word].format(name)


def _check_statement(reader: _Reader, statement: list[_Tok]) -> str:
    if reader.dialect == "clickhouse":
        _check_clickhouse(reader, statement)
    first = next((t for t in statement if t.type != TokenType.L_PAREN), statement[0])
    word = first.word or ""
    parenthesised = first is not statement[0]
    if word in _READS and (reader.dialect == "postgres" or word in ("select", "with")):
        _check_read(reader, statement)
        return "select"
    if not parenthesised:
        if word == "call" and reader.dialect == "postgres":
            return "call"
        if word == "explain":
            _check_explain(reader, statement)
            return "explain"
        if (
            word == "show"
            or word in ("describe", "desc", "exists")
            and reader.dialect == "clickhouse"
        ):
            return "show"
    if word in _STATEMENT_MESSAGES:
        raise reader.reject(_statement_message(word), first)
    shown = reader.sql[first.start : first.end]
    raise reader.reject(
        f'cannot run a statement starting with "{shown}": a query must start with '
        f"{_ALLOWED_START[reader.dialect]}",
        first,
    )


def _check_explain(reader: _Reader, statement: list[_Tok]) -> None:
    """EXPLAIN [options] query: the query must pass as a read."""
    i = 1
    if reader.dialect == "postgres":
        if (
            i + 1 < len(statement)
            and statement[i].type == TokenType.L_PAREN
            and statement[i + 1].word not in _READS
            and statement[i + 1].type != TokenType.L_PAREN
        ):
            depth = 0
            for j in range(i, len(statement)):
                depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(statement[j].type, 0)
                if depth == 0:
                    i = j + 1
                    break
            else:
                i = len(statement)
        while i < len(statement) and statement[i].word in ("analyze", "analyse", "verbose"):
            i += 1
    else:
        while i < len(statement) and statement[i].word in (
            "ast",
            "syntax",
            "query",
            "tree",
            "plan",
            "pipeline",
            "estimate",
        ):
            i += 1
        # explain settings: name = value [, name = value …]
        while i + 2 < len(statement) and statement[i + 1].type == TokenType.EQ:
            i += 2
            if statement[i].type in (TokenType.DASH, TokenType.PLUS):
                i += 1
            i += 1
            if i < len(statement) and statement[i].type == TokenType.COMMA:
                i += 1
    inner = statement[i:]
    if not inner:
        raise reader.reject("EXPLAIN needs a query to explain", statement[0])
    if _check_statement(reader, inner) != "select":
        raise reader.reject(
            "EXPLAIN can only explain a read query (SELECT, WITH, VALUES or TABLE)", inner[0]
        )


_EXPLAIN_OFF = {"false", "off", "0", "no"}


def check_warehouse_explain(sql: str) -> None:
    """EXPLAIN on the shared warehouse: never ANALYZE (actual row counts, "Rows Removed
    by Filter", buffers and timings count every workspace's rows), and COSTS OFF (row
    estimates come from statistics over every workspace's rows). Raises QueryRejected.
    `sql` has passed `check_sql` as kind "explain"."""
    reader = _Reader(sql, "postgres", placeholders.find(sql, "postgres"))
    statement = _split(reader.tokens)[0]
    options: dict[str, tuple[_Tok, str]] = {}
    i = 1
    if (
        i + 1 < len(statement)
        and statement[i].type == TokenType.L_PAREN
        and statement[i + 1].word not in _READS
        and statement[i + 1].type != TokenType.L_PAREN
    ):
        option: list[_Tok] = []
        depth = 0
        for tok in statement[i:]:
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tok.type, 0)
            if depth == 0 or (depth == 1 and tok.type == TokenType.COMMA):
                if option:
                    value = sql[option[1].start : option[-1].end] if len(option) > 1 else "true"
                    options[option[0].name or ""] = (option[0], value.strip("'\"").lower())
                option = []
                if depth == 0:
                    break
            elif not (depth == 1 and tok.type == TokenType.L_PAREN and not option):
                option.append(tok)
    else:
        while i < len(statement) and statement[i].word in ("analyze", "analyse", "verbose"):
            options[statement[i].word or ""] = (statement[i], "true")
            i += 1
    for name in ("analyze", "analyse"):
        if name in options and options[name][1] not in _EXPLAIN_OFF:
            raise reader.reject(
                "EXPLAIN ANALYZE is not allowed on the warehouse: its row counts and "
                "timings include other workspaces' rows",
                options[name][0],
            )
    if options.get("costs", (None, "true"))[1] not in _EXPLAIN_OFF:
        raise reader.reject(
            "EXPLAIN on the warehouse needs COSTS OFF: row estimates come from statistics "
            "over every workspace's rows; write EXPLAIN (COSTS OFF) …",
            statement[0],
        )


def _check_read(reader: _Reader, statement: list[_Tok]) -> None:
    tree = _parse(reader, statement)
    if tree is None:
        _check_read_words(reader, statement)
        return
    if not isinstance(tree, _READ_ROOTS):
        word = _WRITES.get(type(tree))  # WITH … INSERT/UPDATE/DELETE/MERGE
        if word:
            raise reader.reject(_statement_message(word), _find_word(statement, word))
        # A read sqlglot represents some other way: it starts like a read, so it is
        # judged like one sqlglot could not parse.
        _check_read_words(reader, statement)
        return
    for node in tree.walk():
        if isinstance(node, exp.Into):
            raise reader.reject(_INTO, _find_word(statement, "into"))
        if isinstance(node, exp.Lock):
            raise reader.reject(_LOCKING, _find_locking(statement))
        word = _WRITES.get(type(node))
        if word:
            raise reader.reject(_statement_message(word), _find_word(statement, word))


def _parse(reader: _Reader, statement: list[_Tok]) -> exp.Expr | None:
    """sqlglot's tree for the statement, or None when sqlglot cannot parse it."""
    text = reader.text[statement[0].pstart : statement[-1].pend]
    try:
        trees = [t for t in sqlglot.parse(text, read=reader.dialect) if t is not None]
    except Exception:  # a ParseError, or any failure inside sqlglot: read the words instead
        return None
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return None
    return trees[0]


def _check_read_words(reader: _Reader, statement: list[_Tok]) -> None:
    """The tree rules applied to words, for a read sqlglot could not parse."""
    for i, tok in enumerate(statement):
        following = statement[i + 1].word if i + 1 < len(statement) else None
        if tok.word == "for" and following in ("update", "share", "no", "key"):
            raise reader.reject(_LOCKING, tok)
        if tok.word in ("insert", "update", "delete", "merge"):
            raise reader.reject(_statement_message(tok.word), tok)
        if tok.word == "into":
            raise reader.reject(_INTO, tok)


def _check_clickhouse(reader: _Reader, statement: list[_Tok]) -> None:
    for i, tok in enumerate(statement):
        following = statement[i + 1] if i + 1 < len(statement) else None
        if following is None:
            break
        if tok.name in _OUTSIDE_FUNCTIONS and following.type == TokenType.L_PAREN:
            shown = reader.sql[tok.start : tok.end].strip('`"')
            raise reader.reject(
                f"table function {shown}() is not allowed: it reads outside the database", tok
            )
        if tok.word == "into" and following.word == "outfile":
            raise reader.reject("INTO OUTFILE writes a file and is not allowed", tok)
        if tok.word == "settings":
            _check_settings(reader, statement, i + 1)


def _check_settings(reader: _Reader, statement: list[_Tok], i: int) -> None:
    """The `name = value, …` list of a SETTINGS clause starting at `i`: every name
    followed by `=` up to the end of the clause's query (a closing bracket, FORMAT, a
    set operation or the end), so a value of several tokens hides no name."""
    depth = 0
    for j in range(i, len(statement) - 1):
        tok = statement[j]
        if tok.type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif tok.type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
            if depth < 0:
                return
        elif depth == 0 and tok.word in ("format", "union", "except", "intersect", "into"):
            return
        elif depth == 0 and statement[j + 1].type == TokenType.EQ and tok.name in _MANAGED_SETTINGS:
            raise reader.reject(f"SETTINGS {tok.name} is managed by sqlbook", tok)


def _find_word(statement: list[_Tok], word: str) -> _Tok:
    return next((t for t in statement if t.word == word), statement[0])


def _find_locking(statement: list[_Tok]) -> _Tok:
    for i, tok in enumerate(statement[:-1]):
        if tok.word == "for" and statement[i + 1].word in ("update", "share", "no", "key"):
            return tok
    return statement[0]


# --- parameters ---------------------------------------------------------------------


def _count_message(expected: int, given: int) -> str:
    values = f"{given} parameter{'' if given == 1 else 's'} {'was' if given == 1 else 'were'}"
    if expected == 0:
        return f"the query has no $n placeholders but {values} given"
    uses = "$1" if expected == 1 else f"$1…${expected}"
    if given == 0:
        return f"the query uses {uses} but no parameters were given"
    if given < expected:
        return f"the query uses {uses} but only {values} given"
    return f"the query uses {uses} but {values} given"


def _value_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN and infinite numbers are not supported"
    if isinstance(value, Mapping):
        return "objects are not supported; pass JSON as a string"
    if isinstance(value, list | tuple):
        kinds: set[str] = set()
        for item in value:
            if item is None:
                continue
            if isinstance(item, list | tuple):
                return "nested lists are not supported"
            if isinstance(item, Mapping):
                return "objects are not supported; pass JSON as a string"
            if isinstance(item, bool):
                kinds.add("boolean")
            elif isinstance(item, int | float):
                if isinstance(item, float) and not math.isfinite(item):
                    return "NaN and infinite numbers are not supported"
                kinds.add("number")
            elif isinstance(item, str):
                kinds.add("string")
            else:
                return f"lists may hold strings, numbers, booleans or nulls, not {_type(item)}"
        if len(kinds) > 1:
            return "lists must hold values of one type"
        return None
    return f"{_type(value)} values are not supported; pass a string, number, boolean or list"


def _type(value: Any) -> str:
    return type(value).__name__
