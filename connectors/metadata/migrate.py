"""Apply Alembic migrations to the metadata database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from connectors.servers import with_driver

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%'; URL-encoded passwords contain it.
    config.set_main_option(
        "sqlalchemy.url", with_driver(database_url, "psycopg").replace("%", "%%")
    )
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
