"""The analytics tables of the warehouse: `sessions`, the `rollup_*` aggregates and the
`rollup_days` markers. All in schema public, each with `project_id` first (row-level
security scopes them like `events`: connectors/warehouse/scope.py CORE_TABLES).

Every aggregate table holds whole UTC days: a refresh of day D replaces D's rows in one
transaction (connectors/analytics/rollups.py). `rollup_days` says which (project, day)
is clean: refreshed, and no event inserted since."""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = """
create table if not exists sessions (
    project_id        bigint           not null,
    day               date             not null,  -- UTC day of the session's start
    session_id        text             not null,
    distinct_id       text             not null,
    started_at        timestamptz      not null,
    ended_at          timestamptz      not null,
    duration_s        double precision not null,
    event_count       int              not null,
    pageview_count    int              not null,
    entry_page        text,
    exit_page         text,
    referrer          text,
    referring_domain  text,
    utm_source        text,
    utm_medium        text,
    utm_campaign      text,
    browser           text,
    os                text,
    device_type       text,
    bounced           boolean          not null,
    primary key (project_id, day, session_id)
);
create index if not exists sessions_project_start on sessions (project_id, started_at);
create table if not exists rollup_events_hourly (
    project_id  bigint      not null,
    day         date        not null,
    hour        timestamptz not null,
    event_name  text        not null,
    events      bigint      not null,
    primary key (project_id, day, hour, event_name)
);
create table if not exists rollup_persons_daily (
    project_id  bigint not null,
    day         date   not null,
    event_name  text   not null,  -- '' = any event
    persons     bigint not null,
    primary key (project_id, day, event_name)
);
create table if not exists rollup_sessions_hourly (
    project_id  bigint           not null,
    day         date             not null,
    hour        timestamptz      not null,  -- of the session's start
    sessions    bigint           not null,
    pageviews   bigint           not null,
    bounces     bigint           not null,
    duration_s  double precision not null,
    visitors    bigint           not null,  -- distinct persons with a session starting then
    primary key (project_id, day, hour)
);
create table if not exists rollup_pages_daily (
    project_id  bigint not null,
    day         date   not null,
    pathname    text   not null,
    pageviews   bigint not null,
    visitors    bigint not null,
    entries     bigint not null,
    exits       bigint not null,
    primary key (project_id, day, pathname)
);
create table if not exists rollup_sources_daily (
    project_id        bigint not null,
    day               date   not null,
    referring_domain  text   not null default '',
    utm_source        text   not null default '',
    utm_medium        text   not null default '',
    utm_campaign      text   not null default '',
    sessions          bigint not null,
    visitors          bigint not null,
    bounces           bigint not null,
    primary key (project_id, day, referring_domain, utm_source, utm_medium, utm_campaign)
);
create table if not exists rollup_devices_daily (
    project_id   bigint not null,
    day          date   not null,
    browser      text   not null default '',
    os           text   not null default '',
    device_type  text   not null default '',
    sessions     bigint not null,
    visitors     bigint not null,
    primary key (project_id, day, browser, os, device_type)
);
create table if not exists rollup_days (
    project_id    bigint      not null,
    day           date        not null,
    dirty_since   timestamptz,
    refreshed_at  timestamptz,
    primary key (project_id, day)
);
create index if not exists rollup_days_dirty on rollup_days (day) where dirty_since is not null;
"""

# The tables a refresh of a day replaces (asset names = table names), sessions first.
ROLLUP_TABLES: tuple[str, ...] = (
    "sessions",
    "rollup_events_hourly",
    "rollup_persons_daily",
    "rollup_sessions_hourly",
    "rollup_pages_daily",
    "rollup_sources_daily",
    "rollup_devices_daily",
)
TABLES: tuple[str, ...] = (*ROLLUP_TABLES, "rollup_days")


def install(conn: psycopg.Connection[Any]) -> None:
    """Create the tables if missing (idempotent; no DDL when all exist). `conn` is the
    warehouse owner's, in autocommit."""
    row = conn.execute(
        "select count(*) from unnest(%s::text[]) t where to_regclass(t) is not null",
        (list(TABLES),),
    ).fetchone()
    if row is not None and row[0] == len(TABLES):
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('sqlbook_analytics_install'))")
        conn.execute(SCHEMA)
