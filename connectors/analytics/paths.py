"""Paths: the most common ways through pages or events, compiled to one statement.

PostHog's user paths, per session:

- Nodes: `$pageview` (default) — the page (`$pathname`, else the path of `$current_url`)
  of each pageview; `events` — event names (custom events and `$`-events alike); `all` —
  pages for pageviews and names for the rest. The definition's `filters` keep events first.
- Sessions are the contract's (the client's `$session_id`, else derived from inactivity
  gaps and cut at 24 h); events of one session are walked in time order and consecutive
  repeats of a node are collapsed (`/a /a /b` → `/a /b`).
- `start_point`: a session's path starts at its first occurrence (sessions without it are
  left out); otherwise at the session's first node. A path is at most `steps` nodes.
- Nodes carry their step (`1_/pricing`); an edge is counted once per session that walked
  it at that step. The top `limit` edges by sessions are returned, with the nodes they touch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlglot import exp

from connectors.analytics.query import (
    Compiled,
    Context,
    DefinitionError,
    and_,
    ch,
    choice,
    column,
    compiled,
    events_scope,
    filter_types,
    number,
    persons_join,
    positive_int,
    property_filter,
    require_mapping,
    resolve_span,
    sessionize,
    tpl,
)
from connectors.analytics.sessions import page_sql

PATH_TYPES = ("$pageview", "events", "all")
_ALIASES = {"pageview": "$pageview", "pages": "$pageview", "custom_event": "events"}
MAX_STEPS = 20
MAX_EDGES = 1000

# the page of an event: the sessions table's rule
_PAGE = page_sql("e.properties")


def compile_paths(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    ctx.check()
    definition = require_mapping(definition, "definition")
    raw_type = definition.get("path_type", definition.get("type"))
    raw_type = _ALIASES.get(raw_type, raw_type) if isinstance(raw_type, str) else raw_type
    path_type = choice(raw_type, PATH_TYPES, "path_type", "$pageview")
    steps = positive_int(definition.get("steps"), "steps", 5, MAX_STEPS)
    if steps < 2:
        raise DefinitionError("steps", "must be at least 2")
    limit = positive_int(definition.get("limit"), "limit", 50, MAX_EDGES)
    start_point = definition.get("start_point")
    if start_point is not None and (not isinstance(start_point, str) or not start_point):
        raise DefinitionError("start_point", "must be a page or an event name")
    span = resolve_span(definition.get("date_from"), definition.get("date_to"), ctx)

    params = ctx.params()
    page = tpl(_PAGE)
    if ctx.clickhouse:
        from connectors.analytics import clickhouse

        page = clickhouse.page(column("properties", "e"))
    filters = definition.get("filters")
    is_pageview = tpl("e.event_name = '$pageview'")
    if path_type == "$pageview":
        node = page
        kind: exp.Expression | None = is_pageview
    elif path_type == "events":
        node = column("event_name", "e")
        kind = None
    else:
        node = tpl(
            "case when e.event_name = '$pageview' then __page else e.event_name end", page=page
        )
        kind = None
    keep = and_(
        [
            tpl("e.timestamp >= __start", start=params.bind(span.start)),
            kind,
            property_filter(filters, params, field="filters"),
        ]
    )
    # history before the range so a session crossing its start keeps its boundaries
    lookback = timedelta(minutes=int(ctx.session_timeout_minutes), hours=24)
    inner = exp.select(
        column("project_id", "e"),
        column("distinct_id", "e"),
        column("timestamp", "e"),
        column("session_id", "e"),
        column("event_id", "e"),
        exp.alias_(node, "node"),
        exp.alias_(tpl("coalesce(__k, false)", k=exp.Paren(this=keep)), "keep"),
    ).from_(exp.to_table("events").as_("e"))
    inner = persons_join(inner, properties="person" in filter_types(filters))
    inner = inner.where(events_scope(ctx, params, span.start - lookback, span.end))
    sessions = sessionize(inner, ctx, params)

    if start_point is None:
        first = "1"
    else:
        first = "min(case when d.node = __start_point then d.n end) over (partition by d.sk)"
    nodes = {
        "sessions": sessions,
        "steps": exp.Literal.number(steps),
        "limit": params.bind(limit, "int"),
    }
    if start_point is not None:
        nodes["start_point"] = params.bind(start_point, "text")
    if ctx.clickhouse:  # the same walk in ClickHouse's words: lagInFrame/leadInFrame
        tree = ch(
            f"""with ev as (
            select s.session_key as sk, s.timestamp as ts, s.event_id, toNullable(s.node) as node
            from __sessions as s where s.keep and s.node is not null),
          changes as (
            select ev.*, lagInFrame(ev.node) over (partition by ev.sk order by ev.ts,
              toString(ev.event_id) rows between unbounded preceding and current row) as prev
            from ev),
          walked as (
            select c.sk, c.node,
              toInt64(row_number() over (partition by c.sk order by c.ts, toString(c.event_id)))
                as n,
              leadInFrame(c.node) over (partition by c.sk order by c.ts, toString(c.event_id)
                rows between unbounded preceding and unbounded following) as nxt
            from changes as c where c.prev is null or c.prev != c.node),
          indexed as (
            select d.node, d.nxt, d.n - {first} + 1 as idx
            from walked as d)
        select idx as step, concat(toString(idx), '_', node) as source,
          concat(toString(idx + 1), '_', nxt) as target, count() as value
        from indexed
        where idx >= 1 and idx < __steps and nxt is not null
        group by idx, node, nxt
        order by value desc, step, source, target
        limit __limit""",
            **nodes,
        )
    else:
        tree = tpl(
            f"""with ev as (
                select s.session_key as sk, s.timestamp as ts, s.event_id, s.node
                from __sessions as s where s.keep and s.node is not null),
              changes as (
                select ev.*,
                  lag(ev.node) over (partition by ev.sk order by ev.ts, ev.event_id) as prev
                from ev),
              walked as (
                select c.sk, c.node,
                  row_number() over (partition by c.sk order by c.ts, c.event_id) as n,
                  lead(c.node) over (partition by c.sk order by c.ts, c.event_id) as nxt
                from changes as c where c.prev is distinct from c.node),
              indexed as (
                select d.node, d.nxt, d.n - {first} + 1 as idx
                from walked as d)
            select idx as step, cast(idx as text) || '_' || node as source,
              cast(idx + 1 as text) || '_' || nxt as target, count(*) as value
            from indexed
            where idx >= 1 and idx < __steps and nxt is not null
            group by idx, node, nxt
            order by value desc, step, source, target
            limit __limit""",
            **nodes,
        )

    def edges(columns: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
        return [
            {
                "source": str(row["source"]),
                "target": str(row["target"]),
                "value": int(number(row["value"])),
                "step": int(number(row["step"])),
            }
            for row in (dict(zip(columns, r, strict=False)) for r in rows)
        ]

    def shape(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
        found = edges(columns, rows)
        into: dict[str, int] = {}
        out: dict[str, int] = {}
        for edge in found:
            out[edge["source"]] = out.get(edge["source"], 0) + edge["value"]
            into[edge["target"]] = into.get(edge["target"], 0) + edge["value"]
        names = sorted(set(out) | set(into), key=lambda n: (int(n.split("_", 1)[0]), n))
        return {
            "edges": found,
            "nodes": [
                {
                    "name": name,
                    "step": int(name.split("_", 1)[0]),
                    "value": max(out.get(name, 0), into.get(name, 0)),
                }
                for name in names
            ],
            "path_type": path_type,
            "steps": steps,
            "start_point": start_point,
            "date_from": span.start.isoformat(),
            "date_to": span.end.isoformat(),
        }

    def table(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
        found = edges(columns, rows)
        return ["step", "source", "target", "value"], [
            [e["step"], e["source"], e["target"], e["value"]] for e in found
        ]

    return compiled(tree, params, shape, table)
