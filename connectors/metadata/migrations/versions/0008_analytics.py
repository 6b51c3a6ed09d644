"""Product analytics: a project's analytics settings (the first day of its weeks, the
inactivity that ends a derived session, how long raw events and aggregates are kept),
insights of the analytics kinds (trends, funnel, retention, paths, sessions: a JSON
definition instead of SQL), and project setting changes in the audit (kind 'settings').

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table meta.projects
            add column week_start text not null default 'sunday'
                check (week_start in ('sunday', 'monday')),
            add column session_timeout_minutes integer not null default 60
                check (session_timeout_minutes between 1 and 1440),
            -- raw events kept this many days; null: forever
            add column event_retention_days integer default 90
                check (event_retention_days between 1 and 36500),
            -- sessions and rollups kept this many days; null: forever
            add column aggregate_retention_days integer
                check (aggregate_retention_days between 1 and 36500);

        alter table meta.insights
            add column kind text not null default 'sql'
                check (kind in ('sql', 'trends', 'funnel', 'retention', 'paths', 'sessions')),
            -- the analytics definition (null for sql)
            add column definition jsonb;

        alter table meta.query_audit drop constraint query_audit_kind_check;
        alter table meta.query_audit add constraint query_audit_kind_check
            check (kind in ('query', 'export_csv', 'export_xlsx', 'settings'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        delete from meta.query_audit where kind = 'settings';
        alter table meta.query_audit drop constraint query_audit_kind_check;
        alter table meta.query_audit add constraint query_audit_kind_check
            check (kind in ('query', 'export_csv', 'export_xlsx'));
        alter table meta.insights drop column kind, drop column definition;
        alter table meta.projects
            drop column week_start, drop column session_timeout_minutes,
            drop column event_retention_days, drop column aggregate_retention_days;
        """
    )
