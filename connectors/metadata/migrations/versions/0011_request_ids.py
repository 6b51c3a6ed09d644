"""Request ids in the audit: `request_id` on `meta.query_audit` and `meta.audit_events`,
the X-Request-ID of the API request that made the row (null: not made by a request, e.g.
a Dagster run), so one id leads from a log line to its audit rows.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding a nullable column without a default is a catalog change only (no rewrite of
    # the rows, no long lock); on the partitioned audit_events it reaches every partition.
    op.execute(
        """
        alter table meta.query_audit add column if not exists request_id text
            check (request_id is null or length(request_id) between 1 and 64);
        alter table meta.audit_events add column if not exists request_id text
            check (request_id is null or length(request_id) between 1 and 64);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table meta.audit_events drop column if exists request_id;
        alter table meta.query_audit drop column if exists request_id;
        """
    )
