"""Web UI sign-in: one-time login codes and browser sessions, both bound to an API token
(a session acts as its token: same workspace, role and audit identity; revoking the token
ends its sessions). Only SHA-256 hashes of the 256-bit random codes and session ids are
stored.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.login_codes (
            code_hash   text primary key,
            token_id    bigint not null references meta.api_tokens(id) on delete cascade,
            created_at  timestamptz not null default now(),
            expires_at  timestamptz not null,
            used_at     timestamptz
        );
        create table meta.browser_sessions (
            id            bigint generated always as identity primary key,
            session_hash  text not null unique,
            token_id      bigint not null references meta.api_tokens(id) on delete cascade,
            created_at    timestamptz not null default now(),
            expires_at    timestamptz not null,
            ended_at      timestamptz
        );
        """
    )


def downgrade() -> None:
    op.execute("drop table meta.browser_sessions; drop table meta.login_codes;")
