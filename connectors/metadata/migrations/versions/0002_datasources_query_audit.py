"""Data sources a workspace registers, and the audit of every query execution.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.datasources (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            name          text not null check (length(name) between 1 and 100),
            kind          text not null check (kind in ('postgres', 'clickhouse')),
            -- what the API may show: host, port, database, user (never a password)
            public_config jsonb not null default '{}',
            -- Fernet token of {"url": …}, the key from SQLBOOK_SECRET_KEY
            secret        text not null,
            -- statement_timeout_s, max_rows, concurrency, cache_ttl_s
            options       jsonb not null default '{}',
            created_at    timestamptz not null default now(),
            updated_at    timestamptz not null default now(),
            unique (workspace_id, name)
        );
        create table meta.query_audit (
            id             bigint generated always as identity primary key,
            workspace_id   bigint not null references meta.workspaces(id) on delete cascade,
            token_id       bigint references meta.api_tokens(id) on delete set null,
            actor          text not null,
            datasource_id  bigint references meta.datasources(id) on delete set null,
            datasource     text not null,
            query_id       text not null,
            sql            text not null,
            params         jsonb not null default '[]',
            started_at     timestamptz not null,
            duration_ms    double precision not null,
            row_count      integer,
            status         text not null check (status in
                ('ok', 'error', 'rejected', 'timeout', 'cancelled', 'unavailable')),
            error          text,
            cache_hit      boolean not null default false
        );
        create index query_audit_workspace_time on meta.query_audit (workspace_id, id desc);
        """
    )


def downgrade() -> None:
    op.execute("drop table meta.query_audit; drop table meta.datasources;")
