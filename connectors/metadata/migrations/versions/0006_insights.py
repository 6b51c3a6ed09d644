"""Insights: folders, saved parameterised queries with their revisions, snapshot
schedules and their stored results, visualization plugins uploaded to a workspace; a time
zone per project (relative dates resolve in it); exports in the query audit.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table meta.projects add column time_zone text not null default 'UTC';

        create table meta.folders (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            parent_id     bigint references meta.folders(id) on delete restrict,
            name          text not null check (length(name) between 1 and 200),
            created_at    timestamptz not null default now(),
            updated_at    timestamptz not null default now()
        );
        -- one name per parent (top level included), case-insensitively
        create unique index folders_unique_name
            on meta.folders (workspace_id, coalesce(parent_id, 0), lower(name));
        create index folders_parent on meta.folders (parent_id);

        create table meta.insights (
            id             bigint generated always as identity primary key,
            workspace_id   bigint not null references meta.workspaces(id) on delete cascade,
            folder_id      bigint references meta.folders(id) on delete restrict,
            name           text not null check (length(name) between 1 and 200),
            description    text not null default '',
            datasource     text not null default 'warehouse',
            sql            text not null,
            parameters     jsonb not null default '[]',
            visualization  jsonb not null default '{"type": "table"}',
            click_actions  jsonb not null default '[]',
            version        integer not null default 1,
            created_by     text not null,
            created_at     timestamptz not null default now(),
            updated_by     text not null,
            updated_at     timestamptz not null default now(),
            -- in the trash since then (restorable for 30 days), else null
            deleted_at     timestamptz,
            deleted_by     text
        );
        create index insights_workspace on meta.insights (workspace_id, folder_id);
        create index insights_trash on meta.insights (deleted_at) where deleted_at is not null;

        -- every save, kept without a limit; `version` is the insight's version it made
        create table meta.insight_revisions (
            insight_id     bigint not null references meta.insights(id) on delete cascade,
            version        integer not null,
            created_by     text not null,
            created_at     timestamptz not null default now(),
            -- name, description, folder_id, datasource, sql, parameters, visualization,
            -- click_actions as saved
            body           jsonb not null,
            restored_from  integer,
            primary key (insight_id, version)
        );

        create table meta.insight_snapshot_schedules (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            insight_id    bigint not null references meta.insights(id) on delete cascade,
            name          text not null default '',
            cron          text not null,
            timezone      text not null default 'UTC',
            params        jsonb not null default '{}',
            enabled       boolean not null default true,
            next_due_at   timestamptz,
            created_by    text not null,
            created_at    timestamptz not null default now(),
            updated_at    timestamptz not null default now()
        );
        create index insight_snapshot_schedules_due
            on meta.insight_snapshot_schedules (next_due_at) where enabled;
        create index insight_snapshot_schedules_insight
            on meta.insight_snapshot_schedules (insight_id);

        create table meta.insight_snapshots (
            id               bigint generated always as identity primary key,
            schedule_id      bigint not null
                references meta.insight_snapshot_schedules(id) on delete cascade,
            insight_id       bigint not null references meta.insights(id) on delete cascade,
            insight_version  integer not null,
            taken_at         timestamptz not null default now(),
            data_as_of       timestamptz,
            params           jsonb not null default '{}',
            -- {columns, rows, row_count, truncated} when it ran, else error
            result           jsonb,
            error            jsonb,
            run_id           text
        );
        create index insight_snapshots_latest
            on meta.insight_snapshots (insight_id, taken_at desc);
        create index insight_snapshots_schedule
            on meta.insight_snapshots (schedule_id, taken_at desc);

        create table meta.plugins (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            name          text not null,
            version       text not null,
            manifest      jsonb not null,
            template      jsonb not null,
            created_by    text not null,
            created_at    timestamptz not null default now(),
            unique (workspace_id, name)
        );

        alter table meta.query_audit
            add column kind text not null default 'query'
                check (kind in ('query', 'export_csv', 'export_xlsx')),
            add column insight_id bigint,
            alter column row_count type bigint;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table meta.query_audit drop column kind, drop column insight_id,
            alter column row_count type integer;
        drop table meta.plugins;
        drop table meta.insight_snapshots;
        drop table meta.insight_snapshot_schedules;
        drop table meta.insight_revisions;
        drop table meta.insights;
        drop table meta.folders;
        alter table meta.projects drop column time_zone;
        """
    )
