"""Workspace scoping of SQL on the ClickHouse warehouse.

Two guards, both always on where they can be:

1. The rewrite (`scope_query`), everywhere (chDB has nothing else). The statement is
   parsed with sqlglot, and the text sent to ClickHouse is regenerated from that tree:
   what runs is exactly what was checked, so a reading of the user's text that differs
   between sqlglot and ClickHouse (comments, quoting, escapes) cannot hide a table from
   the rewrite. In the tree, each reference to a scoped table (`events`, `default.events`,
   `"events"`, in a CTE, a subquery, a JOIN, under an alias) becomes
   `(SELECT * FROM db.events WHERE project_id IN (…)) AS <its alias or name>`; every other
   table is refused. Refused as well: table functions other than the pure generators
   (`numbers`, `zeros`, `generate_series`), other databases (`system`,
   `information_schema`, any but the warehouse's), `IN <table>` (ClickHouse reads a
   table there), functions that read tables, dictionaries or files by name (`dictGet`,
   `joinGet`, `notIn(x, t)`, `hasColumnInTable`, `file`), `SETTINGS`, `FORMAT`,
   `INTO OUTFILE`, query parameters written by the user (`{name:Identifier}`), and a CTE
   named like a table of the warehouse (ClickHouse and sqlglot could disagree on which
   one a name means; refusing the clash makes that question moot). Comments are not
   sent. The regenerated text is then read once more, as tokens, for the same words.

2. On a ClickHouse server, each workspace also logs in as its own user
   (`sqlbook_ws_<id>`, password derived from the secret key), which ClickHouse itself
   limits: `readonly = 2` (reads only; settings may change, within the constraints set
   here: `max_execution_time` at most the installation's cap), SELECT granted on the
   scoped tables only, a row policy `USING project_id IN (…)` on each of them, and a
   quota. `WorkspaceUsers` creates them on a workspace's first query in a process and
   rewrites them when its projects change (see `user_statements`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from connectors.secrets import derived_password
from connectors.warehouse import placeholders
from connectors.warehouse.errors import QueryRejected, SourceUnavailable
from connectors.warehouse.source import Scope
from connectors.warehouse.warehouses import CH_SCOPED_TABLES

log = logging.getLogger(__name__)

# Table functions that only generate values: nothing of the database is read.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries"}
)
# Functions that read a table, dictionary, file or server state by name, wherever they
# appear (lower case).
_REFUSED_FUNCTIONS = frozenset(
    {
        *("dictget", "dictgetordefault", "dictgetornull", "dicthas", "dictgethierarchy"),
        *("dictisin", "dictgetchildren", "dictgetdescendants", "dictgetall"),
        *("joinget", "joingetornull", "hascolumnintable", "file", "getclienthttpheader"),
        *("getserversetting", "getmergetreesetting", "catboostevaluate", "modelevaluate"),
        *("evalmlmethod", "getmacro", "shardnum", "shardcount", "filesystemcapacity"),
        *("initialqueryid", "initialquerystarttime", "queryid", "currentqueryid"),
        *("currentprofiles", "currentroles", "enabledroles", "defaultroles"),
        # the functional forms of IN, whose right side may name a table
        *("in", "notin", "globalin", "globalnotin", "nullin", "notnullin"),
        *("globalnullin", "globalnotnullin", "inignoreset", "notinignoreset"),
    }
)
_REFUSED_FUNCTION_PREFIX = "dictget"
_SYSTEM_DATABASES = frozenset({"system", "information_schema"})
_MARK = "__sqlbook_p"  # `$n` while sqlglot reads the text: `{__sqlbook_pN:String}`


@dataclass(frozen=True)
class ScopeContext:
    """Where the scoped tables are and whose rows a query sees."""

    database: str
    project_ids: tuple[int, ...]
    # every table name in the warehouse database (a CTE may not take one of them)
    tables: frozenset[str] = frozenset(CH_SCOPED_TABLES)
    scoped: tuple[str, ...] = CH_SCOPED_TABLES


def refuse(message: str) -> QueryRejected:
    return QueryRejected(message)


# ---- reading ----------------------------------------------------------------------


def parse_clickhouse(sql: str) -> exp.Expr:
    """The statement as sqlglot reads ClickHouse SQL; each `$n` becomes a parameter
    node `to_text` writes back as `$n`. Raises ParseError/TokenError."""
    text = placeholders.substitute(sql, lambda p: f"{{{_MARK}{p.number}:String}}", "clickhouse")
    trees = [t for t in sqlglot.parse(text, read="clickhouse") if t is not None]
    if len(trees) != 1:
        raise ParseError("not one statement")
    return _mark_parameters(trees[0])


def parse_postgres(sql: str) -> exp.Expr:
    trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
    if len(trees) != 1:
        raise ParseError("not one statement")
    return _mark_parameters(trees[0])


def _mark_parameters(tree: exp.Expr) -> exp.Expr:
    """Our `$n` as `exp.Var("$n")` (written verbatim); any other parameter syntax the
    user wrote is refused: a `{name:Identifier}` would be a table name nobody checked."""

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder):
            name = node.name
            kind = node.args.get("kind")
            if (
                name.startswith(_MARK)
                and name[len(_MARK) :].isdigit()
                and isinstance(kind, exp.DataType)
                and kind.is_type(exp.DataType.Type.TEXT)
            ):
                return exp.var(f"${int(name[len(_MARK) :])}")
            raise refuse(
                "query parameters written as {name:Type} are not supported on the "
                "warehouse: use $1, $2 … with `params`"
            )
        if isinstance(node, exp.Parameter):
            inner = node.this
            if isinstance(inner, exp.Literal) and not inner.is_string and inner.name.isdigit():
                return exp.var(f"${int(inner.name)}")
            raise refuse("parameters other than $1, $2 … are not supported on the warehouse")
        return node

    return tree.transform(swap, copy=False)


def to_text(tree: exp.Expr) -> str:
    """ClickHouse text for the tree: identifiers quoted, comments dropped."""
    return tree.sql(dialect="clickhouse", identify=True, comments=False)


# ---- the rewrite ------------------------------------------------------------------


def scope_query(tree: exp.Expr, ctx: ScopeContext) -> exp.Expr:
    """`tree` (a read, as parsed) with every scoped table read through its workspace
    filter. Raises QueryRejected naming what is not allowed. Changes `tree`."""
    if not isinstance(tree, (exp.Select, exp.SetOperation, exp.Subquery)):
        raise refuse("only SELECT queries can run on the warehouse")
    _check_nodes(tree, ctx)
    for table in list(tree.find_all(exp.Table)):
        replacement = _scoped_table(table, ctx)
        if replacement is None:
            continue
        if isinstance(table.parent, exp.Final):  # `t FINAL` reads the table inside FINAL
            table.parent.replace(replacement)
        else:
            table.replace(replacement)
    return tree


def _check_nodes(tree: exp.Expr, ctx: ScopeContext) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Select):
            if node.args.get("settings"):
                raise refuse("SETTINGS is not allowed on the warehouse: limits are set by sqlbook")
            if node.args.get("format"):
                raise refuse("FORMAT is not allowed: results are read in sqlbook's own format")
        if isinstance(node, (exp.Into,)):
            raise refuse("SELECT … INTO is not allowed")
        if isinstance(node, exp.CTE):
            _check_cte(node, ctx)
        if isinstance(node, exp.In):
            _check_in(node)
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in _REFUSED_FUNCTIONS or name.startswith(_REFUSED_FUNCTION_PREFIX):
                raise refuse(
                    f"{name}() is not allowed on the warehouse: it reads outside the query"
                )
        if isinstance(node, exp.Placeholder):
            raise refuse("query parameters written as {name:Type} are not supported")


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower()


def _check_cte(cte: exp.CTE, ctx: ScopeContext) -> None:
    name = cte.alias_or_name
    lowered = {t.lower() for t in ctx.tables}
    if name.lower() in lowered:
        raise refuse(
            f"the CTE name {name!r} is also a table of the warehouse: give the CTE another name"
        )


def _check_in(node: exp.In) -> None:
    """`x IN t`, `x IN (t)`, `x IN ((t))`, `x IN db.t`: ClickHouse reads table t there."""
    if node.args.get("field") is not None or node.args.get("unnest") is not None:
        raise refuse(
            "IN <table> is not allowed on the warehouse: write IN (SELECT … FROM …) instead"
        )
    values = node.expressions
    if len(values) == 1 and _is_bare_name(values[0]):
        raise refuse(
            "IN (<name>) is not allowed on the warehouse (ClickHouse may read a table of that "
            "name): write IN (SELECT …) or a list of values"
        )
    query = node.args.get("query")
    if query is not None and _is_bare_name(query):
        raise refuse("IN <table> is not allowed on the warehouse: write IN (SELECT …) instead")


def _is_bare_name(value: exp.Expr) -> bool:
    """A name, however many brackets or aliases wrap it."""
    while isinstance(value, (exp.Paren, exp.Alias, exp.Tuple)) and not (
        isinstance(value, exp.Tuple) and len(value.expressions) != 1
    ):
        value = value.expressions[0] if isinstance(value, exp.Tuple) else value.this
    return isinstance(value, (exp.Column, exp.Table, exp.Dot, exp.Var, exp.Identifier))


def _cte_names_visible(table: exp.Table) -> bool:
    """Whether `table` (no database) names a CTE in scope at that point: a query CTE of
    an enclosing WITH, defined before the one whose body holds the reference (or the
    same one, when the WITH is RECURSIVE). Anything else is a table."""
    name = table.name
    child: exp.Expr = table
    parent = table.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            # the reference is inside one of this WITH's CTE bodies
            recursive = bool(parent.args.get("recursive"))
            for cte in parent.expressions:
                if not isinstance(cte, exp.CTE):
                    continue
                if cte is child:
                    if recursive and cte.alias_or_name == name and _is_query_cte(cte):
                        return True
                    break
                if cte.alias_or_name == name and _is_query_cte(cte):
                    return True
        else:
            with_ = parent.args.get("with_") or parent.args.get("with")
            if isinstance(with_, exp.With) and with_ is not child:
                for cte in with_.expressions:
                    if (
                        isinstance(cte, exp.CTE)
                        and cte.alias_or_name == name
                        and _is_query_cte(cte)
                    ):
                        return True
        child, parent = parent, parent.parent
    return False


def _is_query_cte(cte: exp.CTE) -> bool:
    """`WITH x AS (SELECT …)`; not ClickHouse's `WITH <expression> AS x`, which names a
    value, never a table."""
    return not cte.args.get("scalar") and isinstance(cte.this, exp.Query)


def _scoped_table(table: exp.Table, ctx: ScopeContext) -> exp.Expr | None:
    """The replacement for one table reference; None for a CTE reference or a permitted
    table function. Raises QueryRejected."""
    if _in_array_join(table):
        return None
    target = table.this
    if not isinstance(target, exp.Identifier):
        name = _function_name(target) if isinstance(target, exp.Func) else type(target).__name__
        if isinstance(target, exp.Func) and name in ALLOWED_TABLE_FUNCTIONS:
            return None
        raise refuse(
            f"table function {name}() is not allowed on the warehouse: only the scoped "
            f"tables ({', '.join(ctx.scoped)}) and numbers(), zeros(), generate_series()"
        )
    if table.args.get("catalog"):
        raise refuse(f"{table.sql('clickhouse')}: three-part names are not allowed")
    database = table.text("db")
    name = table.name
    if not database and _cte_names_visible(table):
        return None
    if database and database.lower() in _SYSTEM_DATABASES:
        raise refuse(
            f"{database}.{name} is not available on the warehouse: browse tables with the "
            "data source's schema"
        )
    if database and database != ctx.database:
        raise refuse(f"database {database!r} is not available: the warehouse is {ctx.database!r}")
    if name not in ctx.scoped:
        raise refuse(
            f"table {name!r} is not available on the warehouse: query {', '.join(ctx.scoped)}"
        )
    extra = [k for k, v in table.args.items() if v and k not in _KEPT_TABLE_ARGS]
    if extra:  # a table modifier the rewrite does not carry over: refused, never dropped
        raise refuse(f"{name} {extra[0].upper()} is not supported on the warehouse")
    return _filtered(table, ctx)


_KEPT_TABLE_ARGS = {"this", "db", "catalog", "alias", "joins", "sample"}


def _in_array_join(table: exp.Table) -> bool:
    parent = table.parent
    return isinstance(parent, exp.Join) and str(parent.args.get("kind") or "").upper() == "ARRAY"


def _filtered(table: exp.Table, ctx: ScopeContext) -> exp.Expr:
    inner = exp.Table(
        this=exp.to_identifier(table.name, quoted=True),
        db=exp.to_identifier(ctx.database, quoted=True),
    )
    # table modifiers belong to the table read inside
    if table.args.get("sample"):
        inner.set("sample", table.args["sample"])
    source: exp.Expr = exp.Final(this=inner) if isinstance(table.parent, exp.Final) else inner
    condition: exp.Expr
    if ctx.project_ids:
        condition = exp.In(
            this=exp.column("project_id", quoted=True),
            expressions=[exp.Literal.number(int(p)) for p in ctx.project_ids],
        )
    else:
        condition = exp.false()
    select = exp.select(exp.Star()).from_(source).where(condition)
    alias = table.args.get("alias")
    if alias is None:
        alias = exp.TableAlias(this=exp.to_identifier(table.name, quoted=True))
    sub = exp.Subquery(this=select, alias=alias)
    if table.args.get("joins"):
        sub.set("joins", table.args["joins"])
    return sub


# ---- the text that is sent --------------------------------------------------------


def verify_scoped(text: str, ctx: ScopeContext) -> None:
    """A check of the rewrite's own result, read back from the text that is sent: every
    table read is a permitted generator, a CTE, or a scoped table read by a SELECT whose
    WHERE is exactly the workspace's filter. Guards against a mistake in the rewrite or
    in sqlglot's writing; raises QueryRejected."""
    tree = parse_clickhouse(text)
    expected = (
        exp.In(
            this=exp.column("project_id", quoted=True),
            expressions=[exp.Literal.number(int(p)) for p in ctx.project_ids],
        )
        if ctx.project_ids
        else exp.false()
    )
    for table in tree.find_all(exp.Table):
        if _in_array_join(table):
            continue
        target = table.this
        if isinstance(target, exp.Func) and _function_name(target) in ALLOWED_TABLE_FUNCTIONS:
            continue
        if not isinstance(target, exp.Identifier):
            raise refuse("the rewritten query reads a table it should not")
        if not table.text("db") and _cte_names_visible(table):
            continue
        holder = table.parent.parent if isinstance(table.parent, exp.Final) else table.parent
        select = holder.parent if isinstance(holder, exp.From) else None
        where = select.args.get("where") if isinstance(select, exp.Select) else None
        if (
            table.text("db") != ctx.database
            or table.name not in ctx.scoped
            or where is None
            or where.this != expected
            or (isinstance(select, exp.Select) and select.args.get("joins"))
        ):
            raise refuse("the rewritten query reads a table outside the workspace's scope")


def check_sent_text(text: str) -> None:
    """The regenerated text, read again as ClickHouse tokens: no SETTINGS, FORMAT or
    OUTFILE word, no `system.`/`information_schema.` name, no refused function.
    Identifiers are quoted in it, so a bare word is a keyword or a function name."""
    probe = placeholders.substitute(text, lambda p: "0", "clickhouse")
    try:
        tokens = sqlglot.Dialect.get_or_raise("clickhouse").tokenize(probe)
    except TokenError as err:
        raise refuse("could not read the rewritten query") from err
    for i, tok in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        quoted = tok.token_type == TokenType.IDENTIFIER
        word = tok.text.lower() if tok.token_type != TokenType.STRING else None
        if word is None:
            continue
        if not quoted and word in ("settings", "outfile"):
            raise refuse(f"{word.upper()} is not allowed on the warehouse")
        if (
            not quoted
            and word == "format"
            and (following is None or following.token_type != TokenType.L_PAREN)
        ):
            raise refuse("FORMAT is not allowed: results are read in sqlbook's own format")
        if (
            word in _SYSTEM_DATABASES
            and following is not None
            and following.token_type == TokenType.DOT
        ):
            raise refuse(f"{tok.text}.* is not available on the warehouse")
        if (
            not quoted
            and following is not None
            and following.token_type == TokenType.L_PAREN
            and word != "in"  # the IN operator: `x IN (…)`; its functional form does not parse
            and (word in _REFUSED_FUNCTIONS or word.startswith(_REFUSED_FUNCTION_PREFIX))
        ):
            raise refuse(f"{tok.text}() is not allowed on the warehouse")


# ---- workspace users on a ClickHouse server ---------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class UserLimits:
    """What a workspace's ClickHouse user may use, whatever its queries ask."""

    max_execution_time_s: int = 300  # the installation's maximum query timeout
    max_memory_usage: int = 4 * 1024**3
    max_threads: int = 8
    queries_per_hour: int = 20_000
    execution_time_per_hour_s: int = 3_600


def _ident(name: str) -> str:
    """A backquoted ClickHouse identifier; names are sqlbook's own, checked anyway."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain name: {name!r}")
    return f"`{name}`"


def user_name(workspace_id: int) -> str:
    return f"sqlbook_ws_{int(workspace_id)}"


def user_password(secret_key: bytes, workspace_id: int) -> str:
    return derived_password(secret_key, f"clickhouse-reader:{int(workspace_id)}")


def project_condition(project_ids: Iterable[int]) -> str:
    ids = sorted({int(p) for p in project_ids})
    return f"project_id IN ({', '.join(map(str, ids))})" if ids else "0"


def user_statements(
    workspace_id: int,
    password: str,
    project_ids: Sequence[int],
    *,
    database: str,
    owner: str,
    limits: UserLimits = UserLimits(),
    tables: Sequence[str] = CH_SCOPED_TABLES,
) -> list[str]:
    """The statements that make a workspace's user read exactly its projects' rows
    (idempotent: OR REPLACE / IF NOT EXISTS, then the same state again). The password
    goes in as its SHA-256 (`sha256_hash`), so no statement holds it.

    `owner` is sqlbook's own login: once a table has a row policy, ClickHouse shows a
    user without one no rows at all (unless the server sets
    `users_without_row_policies_can_read_rows`), so the owner gets `USING 1`."""
    user = _ident(user_name(workspace_id))
    db = _ident(database)
    digest = hashlib.sha256(password.encode()).hexdigest()
    condition = project_condition(project_ids)
    statements = [
        f"CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{digest}'",
        f"ALTER USER {user} IDENTIFIED WITH sha256_hash BY '{digest}'"
        f" DEFAULT DATABASE {db}"
        f" SETTINGS readonly = 2,"
        f" max_execution_time = {limits.max_execution_time_s} MAX {limits.max_execution_time_s},"
        f" max_memory_usage = {limits.max_memory_usage} MAX {limits.max_memory_usage},"
        f" max_threads = {limits.max_threads} MAX {limits.max_threads},"
        " allow_ddl = 0 CONST, allow_introspection_functions = 0 CONST",
        f"REVOKE ALL ON *.* FROM {user}",
    ]
    for table in tables:
        t = _ident(table)
        statements.append(f"GRANT SELECT ON {db}.{t} TO {user}")
        statements.append(
            f"CREATE ROW POLICY OR REPLACE {_ident(f'sqlbook_owner_{table}')} ON {db}.{t}"
            f" FOR SELECT USING 1 AS PERMISSIVE TO {_ident(owner)}"
        )
        statements.append(
            f"CREATE ROW POLICY OR REPLACE {_ident(f'sqlbook_ws_{int(workspace_id)}_{table}')}"
            f" ON {db}.{t} FOR SELECT USING {condition} AS PERMISSIVE TO {user}"
        )
    statements.append(
        f"CREATE QUOTA OR REPLACE {user} FOR INTERVAL 1 hour"
        f" MAX queries = {limits.queries_per_hour},"
        f" execution_time = {limits.execution_time_per_hour_s} TO {user}"
    )
    return statements


class WorkspaceUsers:
    """The ClickHouse user of each workspace on a server, kept in step with the
    workspace's projects. Thread-safe; one per process and warehouse."""

    def __init__(
        self,
        owner_url: str,
        secret_key: bytes,
        *,
        limits: UserLimits = UserLimits(),
        tables: Sequence[str] = CH_SCOPED_TABLES,
    ):
        from connectors.warehouse.clickhouse_source import parse_url

        self.owner_url = owner_url
        self.endpoint = parse_url(owner_url)
        if self.endpoint.chdb:
            raise ValueError("chDB has no users: scoping there is the rewrite alone")
        self.database = self.endpoint.database or "default"
        self._key = secret_key
        self._limits = limits
        self._tables = tuple(tables)
        self._lock = threading.Lock()
        self._synced: dict[int, tuple[int, ...]] = {}

    def login_url(self, scope: Scope) -> str:
        self.ensure(scope)
        parts = urlsplit(self.owner_url)
        host = parts.netloc.rpartition("@")[2]
        user = quote(user_name(scope.workspace_id), safe="")
        password = quote(user_password(self._key, scope.workspace_id), safe="")
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    def ensure(self, scope: Scope) -> None:
        projects = tuple(sorted({int(p) for p in scope.project_ids}))
        with self._lock:
            if self._synced.get(scope.workspace_id) == projects:
                return
        statements = user_statements(
            scope.workspace_id,
            user_password(self._key, scope.workspace_id),
            projects,
            database=self.database,
            owner=self.endpoint.username,
            limits=self._limits,
            tables=self._tables,
        )
        self._run(statements)
        with self._lock:
            self._synced[scope.workspace_id] = projects

    def _run(self, statements: list[str]) -> None:
        import clickhouse_connect

        t = self.endpoint
        try:
            client = clickhouse_connect.get_client(
                host=t.host,
                port=t.port,
                username=t.username,
                password=t.password,
                database=self.database,
                interface=t.interface,
                autogenerate_session_id=False,
                connect_timeout=10,
                show_clickhouse_errors="scrub",
            )
        except Exception as err:
            raise SourceUnavailable("cannot reach the ClickHouse warehouse") from err
        try:
            for statement in statements:
                client.command(statement)
        except Exception as err:
            # never the statement or the server's text: they may name the password hash
            log.warning("setting up a workspace's ClickHouse user failed: %s", type(err).__name__)
            raise SourceUnavailable(
                "the warehouse could not set up this workspace's access (the warehouse "
                "login needs access management: GRANT, CREATE USER/ROW POLICY/QUOTA)"
            ) from None
        finally:
            client.close()

    def forget(self) -> None:
        with self._lock:
            self._synced.clear()
