"""Persons: the people behind distinct ids, kept from `$identify`, `$set`, `$set_once`
and `$create_alias` (and Segment's identify/alias, mapped to those at capture).

The ingestion insert also writes, in the same statement, what persons need to know into
`person_updates` (one "seen" row per distinct id and group, one row per event carrying
person properties or a merge), so nothing inserted into `events` is missed or counted
twice. `update_persons` drains that table in order:

- every distinct id gets a person (`person_distinct_ids`), `first_seen`/`last_seen` widen;
- `$set`: last writer wins by event time, per property (replays and late events are
  harmless: an older value never overwrites a newer one);
- `$set_once`: only properties the person does not have yet;
- a merge (`$identify` with `$anon_distinct_id`, `$create_alias` with `alias`): the other
  id's person is folded into this id's person — its distinct ids move over, its
  properties fill what the surviving person lacks, seen times widen — so counting
  `distinct person_id` counts people, not cookies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from connectors.warehouse import scope

SCHEMA = """
create table if not exists persons (
    project_id      bigint      not null,
    person_id       uuid        not null,
    properties      jsonb       not null default '{}',
    -- per property, the event time of the value kept (for last-writer-wins $set)
    properties_at   jsonb       not null default '{}',
    first_seen      timestamptz not null,
    last_seen       timestamptz not null,
    updated_at      timestamptz not null default now(),
    primary key (project_id, person_id)
);
create table if not exists person_distinct_ids (
    project_id   bigint not null,
    distinct_id  text   not null,
    person_id    uuid   not null,
    primary key (project_id, distinct_id)
);
create index if not exists person_distinct_ids_person
    on person_distinct_ids (project_id, person_id);
create table if not exists person_updates (
    id              bigint generated always as identity primary key,
    project_id      bigint      not null,
    distinct_id     text        not null,
    first_seen      timestamptz not null,
    last_seen       timestamptz not null,
    event_name      text,
    set_props       jsonb,
    set_once_props  jsonb,
    other_id        text
);
"""

# The tail of the ingestion INSERT: `ins` is the set of rows actually inserted. Its
# result: (UTC day, rows inserted) per day.
STAGE_FROM_INSERTED = """
, seen as (
    insert into person_updates (project_id, distinct_id, first_seen, last_seen)
    select project_id, distinct_id, min(timestamp), max(timestamp) from ins group by 1, 2
), props as (
    insert into person_updates (project_id, distinct_id, first_seen, last_seen, event_name,
                                set_props, set_once_props, other_id)
    select project_id, distinct_id, timestamp, timestamp, event_name,
           case when jsonb_typeof(properties -> '$set') = 'object'
                then properties -> '$set' end,
           case when jsonb_typeof(properties -> '$set_once') = 'object'
                then properties -> '$set_once' end,
           case event_name when '$identify' then properties ->> '$anon_distinct_id'
                           when '$create_alias' then properties ->> 'alias' end
    from ins
    where jsonb_typeof(properties -> '$set') = 'object'
       or jsonb_typeof(properties -> '$set_once') = 'object'
       or event_name in ('$identify', '$create_alias')
), dirty as (
    -- the rollups of each (project, UTC day) that got rows, and of the day before (a
    -- session starting then may run into it), are stale from now on (rollup_days)
    insert into rollup_days as r (project_id, day, dirty_since)
    select distinct ins.project_id, d.day, now() from ins
    cross join lateral (values ((ins.timestamp at time zone 'UTC')::date),
                               ((ins.timestamp at time zone 'UTC')::date - 1)) d (day)
    order by 1, 2
    on conflict (project_id, day) do update set dirty_since = coalesce(r.dirty_since, now())
)
select (timestamp at time zone 'UTC')::date as day, count(*) from ins group by 1 order by 1
"""

BATCH = 50_000


@dataclass(frozen=True)
class PersonsReport:
    updates: int = 0  # staged rows applied
    persons_created: int = 0
    merged: int = 0  # persons folded into another
    properties_changed: int = 0


def install(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("select to_regclass('person_updates')").fetchone()
    if row is None or row[0] is None:
        conn.execute(SCHEMA)


def update_persons(conn: psycopg.Connection[Any], max_batches: int = 20) -> PersonsReport:
    """Apply staged updates, a batch per transaction, until none are left (or
    `max_batches` ran: the rest waits for the next call)."""
    total = PersonsReport()
    for _ in range(max_batches):
        report = _apply_batch(conn)
        total = PersonsReport(
            total.updates + report.updates,
            total.persons_created + report.persons_created,
            total.merged + report.merged,
            total.properties_changed + report.properties_changed,
        )
        if report.updates < BATCH:
            break
    return total


def _apply_batch(conn: psycopg.Connection[Any]) -> PersonsReport:
    with conn.transaction():
        # One drainer at a time; a second waits rather than applying rows twice.
        scope.lock(conn, "persons")
        row = conn.execute(
            "select max(id), count(*) from (select id from person_updates order by id limit %s) b",
            (BATCH,),
        ).fetchone()
        assert row is not None
        last_id, count = row
        if not count:
            return PersonsReport()
        created = _seen(conn, last_id)
        merged, changed = _properties_and_merges(conn, last_id)
        conn.execute("delete from person_updates where id <= %s", (last_id,))
    return PersonsReport(count, created, merged, changed)


def _seen(conn: psycopg.Connection[Any], last_id: int) -> int:
    """Every distinct id (and merge partner) has a person; seen times widen."""
    ids = """
        select project_id, distinct_id, min(first_seen) as f, max(last_seen) as l
        from (
            select project_id, distinct_id, first_seen, last_seen from person_updates
            where id <= %(last)s
            union all
            select project_id, other_id, first_seen, last_seen from person_updates
            where id <= %(last)s and other_id is not null and other_id <> ''
        ) u group by 1, 2
    """
    cur = conn.execute(
        f"""
        with ids as ({ids}), new_ids as (
            insert into person_distinct_ids (project_id, distinct_id, person_id)
            select project_id, distinct_id, gen_random_uuid() from ids
            on conflict do nothing
            returning project_id, distinct_id, person_id
        )
        insert into persons (project_id, person_id, first_seen, last_seen)
        select n.project_id, n.person_id, i.f, i.l
        from new_ids n join ids i using (project_id, distinct_id)
        """,
        {"last": last_id},
    )
    created = cur.rowcount
    conn.execute(
        f"""
        update persons p set first_seen = least(p.first_seen, s.f),
                             last_seen = greatest(p.last_seen, s.l), updated_at = now()
        from (
            select d.project_id, d.person_id, min(i.f) as f, max(i.l) as l
            from ({ids}) i
            join person_distinct_ids d
              on d.project_id = i.project_id and d.distinct_id = i.distinct_id
            group by 1, 2
        ) s
        where p.project_id = s.project_id and p.person_id = s.person_id
          and (s.f < p.first_seen or s.l > p.last_seen)
        """,
        {"last": last_id},
    )
    return created


def _properties_and_merges(conn: psycopg.Connection[Any], last_id: int) -> tuple[int, int]:
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select project_id, distinct_id, first_seen as at, set_props, set_once_props, other_id"
            " from person_updates where id <= %s and (set_props is not null"
            " or set_once_props is not null or other_id is not null) order by first_seen, id",
            (last_id,),
        )
        .fetchall()
    )
    merged = changed = 0
    for r in rows:
        pid = _person_of(conn, r["project_id"], r["distinct_id"])
        other = r["other_id"]
        if other and other != r["distinct_id"]:
            other_pid = _person_of(conn, r["project_id"], other)
            if other_pid != pid:
                _merge(conn, r["project_id"], source=other_pid, target=pid)
                merged += 1
        if r["set_props"] or r["set_once_props"]:
            changed += _set_properties(
                conn, r["project_id"], pid, r["at"], r["set_props"] or {}, r["set_once_props"] or {}
            )
    return merged, changed


def _person_of(conn: psycopg.Connection[Any], project_id: int, distinct_id: str) -> uuid.UUID:
    row = conn.execute(
        "select person_id from person_distinct_ids where project_id = %s and distinct_id = %s",
        (project_id, distinct_id),
    ).fetchone()
    assert row is not None, "every staged distinct id has a person by now"
    return row[0]  # type: ignore[no-any-return]


def _merge(
    conn: psycopg.Connection[Any], project_id: int, *, source: uuid.UUID, target: uuid.UUID
) -> None:
    src = conn.execute(
        "delete from persons where project_id = %s and person_id = %s"
        " returning properties, properties_at, first_seen, last_seen",
        (project_id, source),
    ).fetchone()
    conn.execute(
        "update person_distinct_ids set person_id = %s where project_id = %s and person_id = %s",
        (target, project_id, source),
    )
    if src is None:
        return
    props, props_at, first_seen, last_seen = src
    # the surviving person keeps its own values; the merged one's fill the gaps
    conn.execute(
        "update persons set properties = %s::jsonb || properties,"
        " properties_at = %s::jsonb || properties_at,"
        " first_seen = least(first_seen, %s), last_seen = greatest(last_seen, %s),"
        " updated_at = now() where project_id = %s and person_id = %s",
        (Jsonb(props), Jsonb(props_at), first_seen, last_seen, project_id, target),
    )


def _set_properties(
    conn: psycopg.Connection[Any],
    project_id: int,
    person_id: uuid.UUID,
    at: datetime,
    set_props: dict[str, Any],
    set_once_props: dict[str, Any],
) -> int:
    row = conn.execute(
        "select properties, properties_at from persons where project_id = %s and person_id = %s"
        " for update",
        (project_id, person_id),
    ).fetchone()
    if row is None:
        return 0
    props, props_at = dict(row[0]), dict(row[1])
    stamp = at.isoformat()
    changed = 0
    for key, value in set_once_props.items():
        if key not in props:
            props[key], props_at[key] = value, stamp
            changed += 1
    for key, value in set_props.items():
        previous = props_at.get(key)
        if previous is None or datetime.fromisoformat(previous) <= at:
            if props.get(key) != value or key not in props:
                changed += 1
            props[key], props_at[key] = value, stamp
    if changed:
        conn.execute(
            "update persons set properties = %s, properties_at = %s, updated_at = now()"
            " where project_id = %s and person_id = %s",
            (Jsonb(props), Jsonb(props_at), project_id, person_id),
        )
    return changed
