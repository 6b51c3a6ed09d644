"""Alembic environment for the app metadata database (schema `meta`)."""

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url is set by connectors.metadata.migrate"

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    connection.exec_driver_sql("create schema if not exists meta")
    connection.commit()
    context.configure(
        connection=connection,
        version_table="alembic_version",
        version_table_schema="meta",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
