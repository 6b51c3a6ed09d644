"""Analytics on the ClickHouse warehouse: the kinds' statement trees made ClickHouse SQL.

The kinds build one sqlglot tree per definition whatever the warehouse; the pieces that
differ are built for the dialect by the shared helpers (connectors/analytics/query.py:
properties as `JSONExtract…` of the `properties` text, local time buckets through
`toTimeZone`, numbers through `toFloat64OrNull`, derived sessions with `lagInFrame`),
and this module's pass does the rest before sqlglot writes the ClickHouse text:

- a bound parameter stays `$n` (the ClickHouse source binds it as `{pn:Type}` by its
  value's type); its PostgreSQL cast becomes the ClickHouse conversion where one is needed
  (`timestamptz` → `parseDateTime64BestEffort(…, 6, 'UTC')`, `date` → `toDate`, `date[]`
  → `arrayMap(toDate)`), and is dropped where the value's type is the type already;
- `person_distinct_ids` and `persons` (ReplacingMergeTree: several versions of a row
  until a merge) are read through subqueries of the project's rows at their latest
  version (`argMax(…, version)`, deleted ones left out), with the joined columns Nullable
  so that an event without a person gets NULL, as a PostgreSQL left join gives;
- `count(distinct x)` is `uniqExact(x)` (exact; never the approximate `uniq`);
- `VALUES` lists (not a ClickHouse table expression) are `UNION ALL` of one-row SELECTs.

Never rollups other than the events themselves: the context's `clean_days` is not asked
on ClickHouse (`rollup_days` and the daily rollups are PostgreSQL's).
"""

from __future__ import annotations

from sqlglot import exp

from connectors.analytics.query import Params, ch, literal

DIALECT = "clickhouse"


def to_clickhouse(tree: exp.Expression, params: Params) -> exp.Expression:
    """`tree` (as the kinds build it) with the ClickHouse rewrites above; parameters are
    still `exp.Parameter` (see `render`)."""

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Parameter):
            return _param_cast(node)
        if (
            isinstance(node, exp.Table)
            and not node.args.get("db")
            and node.name in _PERSON_TABLES
            and not node.args.get("_sqlbook_inner")
        ):
            return _person_table(node, params)
        if isinstance(node, exp.Values):
            return _values(node)
        if isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct):
            items = node.this.expressions
            return exp.Anonymous(this="uniqExact", expressions=[i.copy() for i in items])
        return node

    return tree.copy().transform(fix)


def render(tree: exp.Expression) -> str:
    """The ClickHouse text of a `to_clickhouse` tree, each parameter written `$n`."""

    def dollar(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter):
            return exp.var(f"${node.this.this}")
        return node

    return tree.transform(dollar).sql(dialect=DIALECT)


# --- parameters -----------------------------------------------------------------------

_CONVERSIONS = {
    "TIMESTAMPTZ": "parseDateTime64BestEffort(__p, 6, 'UTC')",
    "TIMESTAMP": "parseDateTime64BestEffort(__p, 6, 'UTC')",
    "DATE": "toDate(__p)",
    "DATE[]": "arrayMap(x -> toDate(x), __p)",
}


def _param_cast(node: exp.Cast) -> exp.Expression:
    kind = node.to.sql(dialect="postgres").upper()
    template = _CONVERSIONS.get(kind)
    if template is None:  # text, bigint, int, float8, text[]: bound with that type already
        return node.this.copy()
    return ch(template, p=node.this.copy())


# --- persons --------------------------------------------------------------------------

_PERSON_TABLES = {
    "person_distinct_ids": (
        "select project_id, distinct_id, toNullable(argMax(person_id, version)) as person_id"
        " from __t where project_id = __project group by project_id, distinct_id"
        " having argMax(is_deleted, version) = 0"
    ),
    "persons": (
        "select project_id, person_id, toNullable(argMax(properties, version)) as properties"
        " from __t where project_id = __project group by project_id, person_id"
        " having argMax(is_deleted, version) = 0"
    ),
}


def _person_table(node: exp.Table, params: Params) -> exp.Expression:
    inner = exp.to_table(node.name)
    inner.set("_sqlbook_inner", True)  # not rewritten again by the pass
    if params.project_id is None:
        raise ValueError("ClickHouse analytics need the project (Params.project_id)")
    select = ch(_PERSON_TABLES[node.name], t=inner, project=params.bind(params.project_id))
    alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
    return exp.Subquery(this=select, alias=alias.copy())


# --- VALUES ---------------------------------------------------------------------------


def _values(node: exp.Values) -> exp.Expression:
    alias = node.args.get("alias")
    names = [c.name for c in alias.columns] if alias is not None else []
    selects: list[exp.Select] = []
    for row in node.expressions:
        items = row.expressions if isinstance(row, exp.Tuple) else [row]
        columns = [
            exp.alias_(item.copy(), names[i]) if i < len(names) else item.copy()
            for i, item in enumerate(items)
        ]
        selects.append(exp.select(*columns))
    union: exp.Expression = selects[0] if selects else exp.select(literal(None)).where("false")
    for select in selects[1:]:
        union = exp.union(union, select, distinct=False)
    out = exp.Subquery(this=union)
    if alias is not None:
        out.set("alias", exp.TableAlias(this=alias.this.copy()))
    return out


# --- the builders' look-ups (GET /api/analytics/events, /properties, /values) ---------
# The same questions as api/routes/analytics.py asks PostgreSQL, in ClickHouse's SQL;
# $1 is the project's id. Person rows at their latest version, deleted ones left out.


def events_sql(days: int, limit: int) -> str:
    return (
        "select event_name as event, count() as count, max(timestamp) as last_seen"
        " from events where project_id = $1"
        f" and timestamp >= now64(6) - toIntervalDay({int(days)})"
        f" group by event_name order by count() desc, event_name limit {int(limit)}"
    )


def sample_sql(property_type: str, event: str | None, days: int, rows: int) -> tuple[str, list]:
    """The most recent rows' `properties` (see api/routes/analytics.py `_sample`)."""
    if property_type == "person":
        return (
            "select argMax(properties, version) as properties, argMax(last_seen, version) as ls"
            " from persons where project_id = $1 group by person_id"
            f" having argMax(is_deleted, version) = 0 order by ls desc limit {int(rows)}",
            [],
        )
    where = "project_id = $1" + (" and event_name = $2" if event is not None else "")
    return (
        f"select properties from events where {where}"
        f" and timestamp >= now64(6) - toIntervalDay({int(days)})"
        f" order by timestamp desc limit {int(rows)}",
        [event] if event is not None else [],
    )


def properties_sql(sample: str, limit: int) -> str:
    return (
        f"select k as property, count() as count from ({sample}) as s"
        " array join JSONExtractKeys(s.properties) as k"
        f" group by k order by count() desc, k limit {int(limit)}"
    )


def values_sql(sample: str, key: str, limit: int) -> str:
    """`key` is the placeholder (`$n`) of the property's name."""
    text = (
        f"if(JSONType(s.properties, {key}) = 'String', JSONExtractString(s.properties, {key}),"
        f" JSONExtractRaw(s.properties, {key}))"
    )
    return (
        f"select {text} as value, count() as count from ({sample}) as s"
        f" where JSONType(s.properties, {key}) != 'Null'"
        f" group by value order by count() desc, value limit {int(limit)}"
    )


# --- pieces of the kinds' rules -------------------------------------------------------


def percentile_cont(q: float, value: str) -> str:
    """PostgreSQL's `percentile_cont(q) within group (order by value)` (NULLs ignored, NULL
    when there is no value) as ClickHouse text: the sorted values' linear interpolation at
    q * (n - 1), computed with PostgreSQL's formula (quantileExactInclusive rounds the
    last digit differently). `value` is written once: the sorted array is the lambda's `a`."""
    pos = f"{q!r} * (length(a) - 1)"
    low = f"toUInt64(floor({pos}))"
    body = (
        f"if(length(a) = 0, NULL, toNullable(a[{low} + 1]"
        f" + (a[least({low} + 2, length(a))] - a[{low} + 1]) * ({pos} - floor({pos}))))"
    )
    return f"arrayElement(arrayMap(a -> {body}, [arraySort(groupArray({value}))]), 1)"


def json_text(props: exp.Expression, key: str) -> exp.Expression:
    """PostgreSQL's `props ->> 'key'` for a fixed key (never user text): a string's text,
    a number's or boolean's JSON text, NULL for null or a missing key."""
    k = exp.Literal.string(key)
    return ch(
        "if(JSONType(__p, __k) = 'String', JSONExtractString(__p, __k),"
        " if(JSONType(__p, __k) = 'Null', NULL, JSONExtractRaw(__p, __k)))",
        p=props,
        k=k,
    )


def page(props: exp.Expression) -> exp.Expression:
    """connectors/analytics/sessions.py `page_sql`: `$pathname`, else the path of
    `$current_url` ('/' for a URL without one)."""
    url = json_text(props, "$current_url")
    return ch(
        "coalesce(nullif(__path, ''), case"
        " when match(__url, '^[A-Za-z][A-Za-z0-9+.-]*://')"
        " then coalesce(nullif(extract(__url, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)'),"
        " ''), '/')"
        " when __url != '' then nullif(extract(__url, '^([^?#]*)'), '') end)",
        path=json_text(props, "$pathname"),
        url=url,
    )
