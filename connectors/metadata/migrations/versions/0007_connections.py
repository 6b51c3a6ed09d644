"""Connector syncs: a workspace's connections to Stripe and Google Analytics 4 (their
public configuration, their credentials sealed), the history of their syncs, and the
Stripe webhook events waiting to be merged by the next sync.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.connections (
            id              bigint generated always as identity primary key,
            workspace_id    bigint not null references meta.workspaces(id) on delete cascade,
            -- the project whose rows the synced data becomes (row-level security)
            project_id      bigint not null references meta.projects(id),
            kind            text not null check (kind in ('stripe', 'ga4')),
            name            text not null check (length(name) between 1 and 100),
            -- what may be shown: mode, key's last 4, property id, reports …
            config          jsonb not null default '{}',
            -- the credentials, sealed with the installation's secret key
            secret          text not null,
            -- cron, UTC
            schedule        text not null,
            paused          boolean not null default false,
            -- {code, message, at} after the provider refused the credentials: scheduled
            -- syncs skip the connection until they change or a user asks for a sync
            auth_error      jsonb,
            -- {mode, at, by}: "sync now", taken by the Dagster sensor
            sync_requested  jsonb,
            version         integer not null default 1,
            created_at      timestamptz not null default now(),
            updated_at      timestamptz not null default now(),
            unique (workspace_id, name)
        );
        create index connections_kind on meta.connections (kind);

        create table meta.connection_syncs (
            id             bigint generated always as identity primary key,
            connection_id  bigint not null references meta.connections(id) on delete cascade,
            run_id         text,
            mode           text not null check (mode in ('full', 'incremental', 'webhooks')),
            status         text not null
                check (status in ('running', 'succeeded', 'failed', 'skipped')),
            started_at     timestamptz not null default now(),
            finished_at    timestamptz,
            -- counts, cursors and resource names only: never a secret
            rows           jsonb not null default '{}',
            cursor         jsonb not null default '{}',
            skipped        jsonb not null default '[]',
            deleted        jsonb not null default '{}',
            error          jsonb
        );
        create index connection_syncs_latest
            on meta.connection_syncs (connection_id, started_at desc, id desc);

        create table meta.stripe_webhook_events (
            connection_id  bigint not null references meta.connections(id) on delete cascade,
            event_id       text not null,
            type           text not null,
            object_type    text,
            object_id      text,
            event_created  timestamptz not null,
            livemode       boolean not null,
            received_at    timestamptz not null default now(),
            processed_at   timestamptz,
            primary key (connection_id, event_id)
        );
        create index stripe_webhook_events_pending
            on meta.stripe_webhook_events (connection_id, event_created)
            where processed_at is null;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table meta.stripe_webhook_events;
        drop table meta.connection_syncs;
        drop table meta.connections;
        """
    )
