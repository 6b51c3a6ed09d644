"""Alert rules and their evaluation history.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.alerts (
            id                bigint generated always as identity primary key,
            workspace_id      bigint not null references meta.workspaces(id) on delete cascade,
            name              text not null check (length(name) between 1 and 200),
            -- the AlertSpec without channel configurations (see connectors/notify/alert.py)
            spec              jsonb not null,
            -- Fernet token of {channel name: configuration}: webhook URLs and tokens are secrets
            channels_secret   text not null,
            enabled           boolean not null default true,
            state             text not null default 'unknown',
            memory            jsonb not null default '{}',
            next_due_at       timestamptz,
            last_evaluated_at timestamptz,
            created_at        timestamptz not null default now(),
            updated_at        timestamptz not null default now(),
            unique (workspace_id, name)
        );
        create index alerts_due on meta.alerts (next_due_at) where enabled;
        create table meta.alert_history (
            id              bigint generated always as identity primary key,
            alert_id        bigint not null references meta.alerts(id) on delete cascade,
            evaluated_at    timestamptz not null,
            previous_state  text not null,
            state           text not null,
            reason          text,
            test            boolean not null default false,
            evaluation      jsonb not null,
            run_id          text
        );
        create index alert_history_alert on meta.alert_history (alert_id, id desc);
        """
    )


def downgrade() -> None:
    op.execute("drop table meta.alert_history; drop table meta.alerts;")
