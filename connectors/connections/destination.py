"""The dlt destination and pipeline of a connection: the warehouse's PostgreSQL, dataset
(schema) named after the connector kind, one pipeline per connection.

The warehouse URL is libpq's (an embedded server's host is a unix-socket directory in
the query: `postgresql://u:p@/db?host=/tmp/dir`), which dlt's URL parser does not take:
its credentials are built field by field here, the socket directory passed on as libpq's
`host` parameter. The password lives only in the credentials object dlt connects with.

dlt's local working folder is dropped each time a pipeline is made, so the state of record
(the cursors) is what the last successful load committed to the warehouse: a failed or
killed run leaves nothing behind that a later run would load or trust.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dlt
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from psycopg import conninfo

from connectors.settings import Settings

E = TypeVar("E", bound=BaseException)
# How a sync runs its pipeline: `run_pipeline`, or Dagster's runner through dagster-dlt.
Runner = Callable[[Any, dlt.Pipeline], Any]

# libpq parameters that are neither host, port, database nor login: passed on as given
_PASSED_ON = ("sslmode", "sslrootcert", "application_name", "client_encoding")


def dlt_credentials(warehouse_url: str) -> PostgresCredentials:
    params: dict[str, Any] = conninfo.conninfo_to_dict(warehouse_url)
    creds = PostgresCredentials()
    creds.database = str(params.get("dbname") or params.get("user") or "postgres")
    creds.username = str(params.get("user") or "postgres")
    creds.password = str(params.get("password") or "")
    host = str(params.get("host") or "")
    port = str(params.get("port") or "").split(",")[0]
    creds.port = int(port or 5432)
    query: dict[str, Any] = {k: str(params[k]) for k in _PASSED_ON if params.get(k)}
    if not host or host.startswith("/"):
        creds.host = "localhost"  # dlt wants a host; libpq's `host` parameter wins
        if host:
            query["host"] = host
    else:
        creds.host = host
    creds.query = query
    creds.resolve()
    return creds


def staging_dataset_layout(connection_id: int) -> str:
    """dlt merges through a staging dataset it empties at each load: one per connection,
    so two connections loading at once into the same tables never share one."""
    return f"%s_staging_{int(connection_id)}"


def dlt_destination(warehouse_url: str, *, connection_id: int | None = None) -> Any:
    options: dict[str, Any] = {}
    if connection_id is not None:
        options["staging_dataset_name_layout"] = staging_dataset_layout(connection_id)
    return dlt.destinations.postgres(
        credentials=dlt_credentials(warehouse_url), create_indexes=False, **options
    )


def pipeline_name(kind: str, connection_id: int) -> str:
    return f"{kind}_connection_{int(connection_id)}"


def connection_pipeline(
    kind: str, connection_id: int, settings: Settings, warehouse_url: str
) -> dlt.Pipeline:
    """A fresh pipeline for one sync of the connection: its state and schema are restored
    from the warehouse when it runs."""
    _quiet_dlt()
    _arrow_rows_like_json_rows()
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name(kind, connection_id),
        pipelines_dir=str(settings.dlt_dir()),
        destination=dlt_destination(warehouse_url, connection_id=connection_id),
        dataset_name=kind,
    )
    pipeline.drop()
    return pipeline


def _arrow_rows_like_json_rows() -> None:
    # dlt gives rows it normalises `_dlt_load_id` and `_dlt_id`, Arrow tables not by
    # default; the connector tables require both (not null)
    dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
    dlt.config["normalize.parquet_normalizer.add_dlt_id"] = True
    # the files live for one run on local disk: compressing them only costs CPU
    dlt.config["data_writer.disable_compression"] = True


def _expected_arrow_difference(record: logging.LogRecord) -> bool:
    """dlt warns that an Arrow batch's types differ from the column hints it keeps: by
    design (JSON travels as text into jsonb, Arrow columns are nullable)."""
    return "when merging arrow schema with dlt schema" not in record.getMessage()


def _quiet_dlt() -> None:
    # dlt logs each load step at INFO; ours says what a sync did (counts, cursors only)
    logger = logging.getLogger("dlt")
    logger.setLevel(logging.WARNING)
    if _expected_arrow_difference not in logger.filters:
        logger.addFilter(_expected_arrow_difference)


def run_pipeline(source: Any, pipeline: dlt.Pipeline) -> Any:
    """The default `Runner`: dlt's own run."""
    return pipeline.run(source)


def error_chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (dlt's PipelineStepFailed and ResourceExtractionError
    keep it as `.exception`), its causes and contexts; each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exception", None)
        todo += [
            current.__context__,
            current.__cause__,
            wrapped if isinstance(wrapped, BaseException) else None,
        ]


def find_error(err: BaseException, kind: type[E] | tuple[type[E], ...]) -> E | None:
    """The first exception of `kind` in `err`'s chain (under dlt's wrappers)."""
    return next((e for e in error_chain(err) if isinstance(e, kind)), None)
