"""Outbound events: subscriptions, the outbox and the delivery log (issue 18).

An event is written once to `event_outbox` (in the transaction of the change that made it,
where the emitter has one), with one `event_deliveries` row per subscription that wants
it; the deliverer sends a subscription's deliveries in event-time order, one at a time,
and logs every attempt in `event_delivery_attempts`.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.event_subscriptions (
            id                    bigint generated always as identity primary key,
            workspace_id          bigint not null references meta.workspaces(id) on delete cascade,
            name                  text not null check (length(name) between 1 and 200),
            -- Fernet token of {"url", "secret"}: both are secrets, never shown again
            target_secret         text not null,
            -- what the API shows of the URL: scheme, host and port
            url_shown             text not null,
            event_types           text[] not null check (cardinality(event_types) >= 1),
            enabled               boolean not null default true,
            disabled_reason       text,
            disabled_at           timestamptz,
            consecutive_failures  integer not null default 0,
            -- one delivery in flight per subscription: the deliverer that holds the lease
            lease_until           timestamptz,
            created_by            text,
            created_at            timestamptz not null default now(),
            updated_at            timestamptz not null default now(),
            unique (workspace_id, name)
        );
        create index event_subscriptions_workspace on meta.event_subscriptions (workspace_id);

        create table meta.event_outbox (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            event_id      uuid not null unique,
            type          text not null,
            occurred_at   timestamptz not null,
            payload       jsonb not null,
            created_at    timestamptz not null default now()
        );
        create index event_outbox_workspace on meta.event_outbox (workspace_id, occurred_at);

        create table meta.event_deliveries (
            id               bigint generated always as identity primary key,
            subscription_id  bigint not null
                references meta.event_subscriptions(id) on delete cascade,
            event_row_id     bigint not null references meta.event_outbox(id) on delete cascade,
            -- copied from the event: the order of delivery
            occurred_at      timestamptz not null,
            -- 'failed': a test send that failed (test sends are never retried)
            status           text not null default 'pending'
                check (status in ('pending', 'delivered', 'failed')),
            attempts         integer not null default 0,
            next_attempt_at  timestamptz not null default now(),
            last_status_code integer,
            last_error       text,
            last_duration_ms double precision,
            delivered_at     timestamptz,
            created_at       timestamptz not null default now(),
            unique (subscription_id, event_row_id)
        );
        create index event_deliveries_pending on meta.event_deliveries
            (subscription_id, occurred_at, id) where status = 'pending';
        create index event_deliveries_log on meta.event_deliveries (subscription_id, id desc);

        create table meta.event_delivery_attempts (
            id               bigint generated always as identity primary key,
            delivery_id      bigint not null references meta.event_deliveries(id) on delete cascade,
            attempt          integer not null,
            at               timestamptz not null default now(),
            ok               boolean not null,
            status_code      integer,
            error            text,
            duration_ms      double precision not null
        );
        create index event_delivery_attempts_delivery
            on meta.event_delivery_attempts (delivery_id, attempt);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table meta.event_delivery_attempts;
        drop table meta.event_deliveries;
        drop table meta.event_outbox;
        drop table meta.event_subscriptions;
        """
    )
