"""Workspaces, projects with capture keys, API tokens.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.workspaces (
            id          bigint generated always as identity primary key,
            name        text not null unique check (length(name) between 1 and 100),
            created_at  timestamptz not null default now()
        );
        create table meta.projects (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            name          text not null,
            capture_key   text not null unique,
            salt          text not null,
            created_at    timestamptz not null default now(),
            unique (workspace_id, name)
        );
        create table meta.api_tokens (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            name          text not null,
            token_hash    text not null unique,
            token_prefix  text not null,
            role          text not null check (role in ('admin', 'member')),
            created_at    timestamptz not null default now(),
            last_used_at  timestamptz,
            revoked_at    timestamptz
        );
        """
    )


def downgrade() -> None:
    op.execute("drop table meta.api_tokens; drop table meta.projects; drop table meta.workspaces;")
