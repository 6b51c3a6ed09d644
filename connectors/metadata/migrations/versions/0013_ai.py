"""Assistive AI: suggestions and their audit (issue 18).

`meta.ai_suggestions` keeps each question → SQL suggestion (what was asked, the SQL and
parameters suggested, or the reason it was refused) so that accepting it (Run) and the
answers it leads to can name it; `meta.workspaces.ai_send_samples` is the admin's choice
whether sample values may go to the model (off: names, types and comments only).

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table meta.workspaces
            add column if not exists ai_send_samples boolean not null default false;

        create table meta.ai_suggestions (
            id            text primary key check (length(id) between 8 and 64),
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            actor         text not null,
            user_id       bigint,
            datasource    text not null,
            question      text not null check (length(question) between 1 and 4000),
            sql           text,
            parameters    jsonb not null default '[]',
            explanation   text not null default '',
            tables        jsonb not null default '[]',
            dialect       text not null,
            status        text not null check (status in ('suggested', 'refused', 'accepted')),
            error         text,
            attempts      integer not null check (attempts between 1 and 2),
            model         text,
            created_at    timestamptz not null default now(),
            accepted_at   timestamptz
        );
        create index ai_suggestions_workspace on meta.ai_suggestions (workspace_id, created_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table if exists meta.ai_suggestions;
        alter table meta.workspaces drop column if exists ai_send_samples;
        """
    )
