"""Per-project capture settings for browsers: CORS allowlist, Do-Not-Track, anonymous id
persistence, IP anonymisation.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table meta.projects
            add column cors_origins text[] not null default '{*}',
            add column respect_dnt boolean not null default false,
            add column persist_anonymous_id boolean not null default false,
            add column anonymize_ip boolean not null default false;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table meta.projects
            drop column cors_origins, drop column respect_dnt,
            drop column persist_anonymous_id, drop column anonymize_ip;
        """
    )
