"""Dashboards: tiles of insights (or Markdown text) on a 12-column grid, global filters
mapped onto the tiles' parameters, revisions like insights, a snapshot schedule whose
tiles are insight snapshot schedules of their own (kept in step by the dashboard), and
subscriptions that deliver the rendered dashboard by email or Slack, with their history.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.dashboards (
            id                bigint generated always as identity primary key,
            workspace_id      bigint not null references meta.workspaces(id) on delete cascade,
            folder_id         bigint references meta.folders(id) on delete restrict,
            name              text not null check (length(name) between 1 and 200),
            description       text not null default '',
            -- [{"name", "type", "multi", "default", …}]: insight ParameterSpec documents
            filters           jsonb not null default '[]',
            -- [{"id", "insight_id" | "text", "title", "visualization", "layout": {x, y, w, h},
            --   "mappings": {filter name: parameter name}}]; tile ids from meta.dashboard_tile_ids
            tiles             jsonb not null default '[]',
            -- auto-refresh in the browser (null: off)
            refresh_seconds   integer check (refresh_seconds between 60 and 86400),
            -- snapshot schedule of every tile (null: none)
            snapshot_cron     text,
            snapshot_timezone text not null default 'UTC',
            version           integer not null default 1,
            created_by        text not null,
            created_at        timestamptz not null default now(),
            updated_by        text not null,
            updated_at        timestamptz not null default now(),
            deleted_at        timestamptz,
            deleted_by        text
        );
        create index dashboards_workspace on meta.dashboards (workspace_id, folder_id);
        create index dashboards_trash on meta.dashboards (deleted_at) where deleted_at is not null;
        -- tile ids are unique across dashboards (a snapshot schedule names its tile)
        create sequence meta.dashboard_tile_ids;
        create table meta.dashboard_revisions (
            dashboard_id   bigint not null references meta.dashboards(id) on delete cascade,
            version        integer not null,
            created_by     text not null,
            created_at     timestamptz not null default now(),
            -- name, description, folder_id, filters, tiles, refresh_seconds, snapshot_cron,
            -- snapshot_timezone as saved
            body           jsonb not null,
            restored_from  integer,
            primary key (dashboard_id, version)
        );
        -- a tile's snapshots: the dashboard keeps one schedule per insight tile in step
        alter table meta.insight_snapshot_schedules
            add column dashboard_id bigint references meta.dashboards(id) on delete cascade,
            add column tile_id bigint;
        create unique index insight_snapshot_schedules_tile
            on meta.insight_snapshot_schedules (dashboard_id, tile_id)
            where dashboard_id is not null;
        create table meta.dashboard_subscriptions (
            id               bigint generated always as identity primary key,
            workspace_id     bigint not null references meta.workspaces(id) on delete cascade,
            dashboard_id     bigint not null references meta.dashboards(id) on delete cascade,
            name             text not null default '',
            cron             text not null,
            timezone         text not null default 'UTC',
            -- {name: channel config} (email, slack), sealed like alerts' channels
            channels_secret  bytea not null,
            -- 'dashboard': one picture of the whole dashboard; 'tiles': one per tile
            pictures         text not null default 'dashboard'
                check (pictures in ('dashboard', 'tiles')),
            -- tile ids whose result is attached as CSV
            csv_tiles        jsonb not null default '[]',
            -- filter values it is sent with (missing: the dashboard's defaults)
            filters          jsonb not null default '{}',
            enabled          boolean not null default true,
            next_due_at      timestamptz,
            created_by       text not null,
            created_at       timestamptz not null default now(),
            updated_at       timestamptz not null default now()
        );
        create index dashboard_subscriptions_due
            on meta.dashboard_subscriptions (next_due_at) where enabled;
        create index dashboard_subscriptions_dashboard
            on meta.dashboard_subscriptions (dashboard_id);
        create table meta.dashboard_deliveries (
            id               bigint generated always as identity primary key,
            subscription_id  bigint not null
                references meta.dashboard_subscriptions(id) on delete cascade,
            dashboard_id     bigint not null references meta.dashboards(id) on delete cascade,
            sent_at          timestamptz not null default now(),
            -- 'sent' (every channel ok), 'partial', 'failed'
            status           text not null check (status in ('sent', 'partial', 'failed')),
            -- [{"channel", "type", "ok", "attempts", "error"}]
            deliveries       jsonb not null default '[]',
            -- {"tiles", "tile_errors", "pictures", "picture_bytes", "csv_files"}
            summary          jsonb not null default '{}',
            error            text,
            run_id           text
        );
        create index dashboard_deliveries_subscription
            on meta.dashboard_deliveries (subscription_id, sent_at desc);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table meta.dashboard_deliveries;
        drop table meta.dashboard_subscriptions;
        drop index meta.insight_snapshot_schedules_tile;
        alter table meta.insight_snapshot_schedules drop column dashboard_id,
            drop column tile_id;
        drop table meta.dashboard_revisions;
        drop sequence meta.dashboard_tile_ids;
        drop table meta.dashboards;
        """
    )
