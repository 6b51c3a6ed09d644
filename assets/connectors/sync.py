"""What a connector asset does for one partition (= one connection): load the connection,
hold its sync lock, run the connector's sync with dagster-dlt's runner, record the sync,
and hand Dagster one materialisation per table loaded plus the tables' checks.

Why not `@dlt_assets`: it wants a `dlt.Pipeline` when the definitions load, and
`dlt.pipeline()` creates its working folder on disk (under ~/.dlt or /var/dlt) right then.
The assets are built here from the same translator instead (`connector_specs`, with no
pipeline), and `DagsterDltResource.run` gets the source and pipeline made at run time for
the partition's connection: its asset keys come from the translator, which names them
after the dlt resource alone, so the keys of the run-time source are the definition's.

Dagster's UI and event log show every workspace to whoever reaches them, so what this puts
there is ids, modes, counts, cursors and what was skipped — never a credential, a row value
or a provider's answer beyond its error message (which the clients keep key-free)."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import dagster as dg
import httpx
import psycopg
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from psycopg import sql

from assets.resources import SqlbookResource
from connectors.connections.destination import error_chain, find_error
from connectors.connections.types import SyncMode, SyncReport
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.metadata.store import MetadataStore
from connectors.observability import metrics
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings

CONNECTION_TAG = "sqlbook/connection"
SYNC_MODE_TAG = "sqlbook/sync_mode"
TRIGGER_TAG = "sqlbook/sync_trigger"
GROUP = "connectors"
SYNC_MODES: tuple[str, ...] = get_args(SyncMode)

# The clients retry 429/5xx themselves (honouring Retry-After / Stripe-Should-Retry); a sync
# that still fails for a passing reason (the retry budget ran out, the warehouse or the
# network was down) is tried again by Dagster after 30 s, 60 s, 120 s (±20 %). Anything else
# (refused credentials, a bug) fails at once: retrying would only hammer the provider.
MAX_RETRIES = 3


def retry_wait(retry_number: int) -> float:
    return min(30.0 * 2**retry_number, 600.0) * random.uniform(0.8, 1.2)


# dagster-dlt's own metadata that is kept: when, where and how many. Its `jobs` list (local
# file paths, dlt's job messages) is left out.
_DLT_METADATA = frozenset(
    {
        "first_run",
        "started_at",
        "finished_at",
        "dataset_name",
        "destination_type",
        "rows_loaded",
        "dagster/column_schema",
        "dagster/table_name",
        "dagster/storage_kind",
    }
)

Event = dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckResult


@contextlib.contextmanager
def connection_store(
    sqlbook: SqlbookResource,
) -> Iterator[tuple[ConnectionStore, Settings, SecretBox]]:
    settings = sqlbook.settings()
    if not settings.database_url:
        raise RuntimeError("SQLBOOK_DATABASE_URL is not set")
    box = SecretBox(load_secret_key(settings))
    with MetadataStore(settings.database_url, max_size=4) as metadata:
        yield ConnectionStore(metadata, box), settings, box


def source_asset(kind: str, description: str) -> dg.AssetSpec:
    """The provider's API as an external asset upstream of its tables, for lineage."""
    return dg.AssetSpec(f"{kind}_api", group_name=GROUP, kinds={kind}, description=description)


@dataclass
class ConnectorTranslator(DagsterDltTranslator):
    """dlt resource `charges` of the Stripe source → asset `stripe_charges` (table
    `stripe.charges`) in group `connectors`, downstream of `stripe_api`; a child table
    (a dlt transformer, like `subscription_items`) downstream of its parent's asset."""

    kind: str = "stripe"
    # what a table of this connector holds, "{table}" filled in
    about: str = "`{table}`: one partition per connection."

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        resource = data.resource
        table = resource.table_name if isinstance(resource.table_name, str) else resource.name
        upstream = f"{self.kind}_api"
        if resource.is_transformer:
            pipe = resource._pipe  # noqa: SLF001 — as dagster-dlt's own default does
            while pipe.has_parent:
                pipe = pipe.parent
            upstream = f"{self.kind}_{pipe.name}"
        return dg.AssetSpec(
            key=dg.AssetKey(f"{self.kind}_{resource.name}"),
            deps=[dg.AssetKey(upstream)],
            group_name=GROUP,
            description=self.about.format(table=f"{self.kind}.{table}"),
            kinds={"dlt", "postgres", self.kind},
            metadata=dict(TableMetadataSet(table_name=f"{self.kind}.{table}")),
        )

    def table_of(self, key: dg.AssetKey) -> str:
        """`stripe_charges` → `charges` (the resource, and the table in schema `kind`)."""
        return key.path[-1].removeprefix(f"{self.kind}_")


def connector_specs(
    source: Any, translator: ConnectorTranslator
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """The asset of every resource of `source` (built with no client: no I/O) and the
    checks each table gets after a sync."""
    specs = [
        translator.get_asset_spec(DltResourceTranslatorData(resource=resource, pipeline=None))
        for resource in source.selected_resources.values()
    ]
    checks = [
        check
        for spec in specs
        for check in (
            dg.AssetCheckSpec(
                "no_duplicate_keys",
                asset=spec.key,
                description="No two rows of the synced connection share the table's key "
                "(connection_id, id …).",
            ),
            dg.AssetCheckSpec(
                "rows_after_sync",
                asset=spec.key,
                description="The connection has rows in the table after a sync that loaded some.",
            ),
        )
    ]
    return specs, checks


class DltRunner:
    """`run(source, pipeline)` for the connectors' sync functions: runs the pipeline through
    dagster-dlt (state restored from the warehouse first, subsets honoured) and keeps the
    MaterializeResults it gives for the asset to hand on after the sync's own steps."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        translator: ConnectorTranslator,
    ) -> None:
        self._context = context
        self._dlt = dlt
        self._translator = translator
        self.results: dict[dg.AssetKey, dg.MaterializeResult] = {}

    def __call__(self, source: Any, pipeline: Any) -> Any:
        for result in self._dlt.run(
            context=self._context,
            dlt_source=source,
            dlt_pipeline=pipeline,
            dagster_dlt_translator=self._translator,
        ):
            assert isinstance(result, dg.MaterializeResult) and result.asset_key is not None
            self.results[result.asset_key] = _merge(self.results.get(result.asset_key), result)
        trace = pipeline.last_trace
        return trace.last_load_info if trace is not None else None


def _merge(
    earlier: dg.MaterializeResult | None, later: dg.MaterializeResult
) -> dg.MaterializeResult:
    """One result per table when a sync runs its pipeline more than once (rows added up)."""
    metadata = {k: v for k, v in (later.metadata or {}).items() if k in _DLT_METADATA}
    if earlier is not None:
        rows = _int_value((earlier.metadata or {}).get("rows_loaded")) + _int_value(
            metadata.get("rows_loaded")
        )
        metadata = {**(earlier.metadata or {}), **metadata, "rows_loaded": rows}
    return dg.MaterializeResult(asset_key=later.asset_key, metadata=metadata)


def _int_value(value: Any) -> int:
    value = getattr(value, "value", value)
    return int(value) if isinstance(value, int) else 0


# (store, connection, its secrets, settings, mode, runner) -> what the sync did
SyncStep = Callable[
    [ConnectionStore, ConnectionRecord, dict[str, Any], Settings, str, DltRunner], SyncReport
]


@dataclass(frozen=True)
class Failed:
    """How a sync failed, for its sync row and the connection's status."""

    code: str
    message: str
    auth: bool = False  # the provider refused the credentials
    transient: bool = False  # worth another try later


def provider_errors(
    provider: str,
    *,
    auth: type[BaseException],
    unavailable: type[BaseException],
    base: type[BaseException],
) -> Callable[[BaseException], Failed | None]:
    """What the connection's status says about a failed sync, from a connector's error
    classes (whose messages never carry a credential): refused credentials, the provider
    unreachable after the client's retries (worth another try), any other refusal."""

    def classify(err: BaseException) -> Failed | None:
        if (refused := find_error(err, auth)) is not None:
            return Failed("auth_failed", str(refused), auth=True)
        if (down := find_error(err, unavailable)) is not None:
            return Failed(f"{provider}_unavailable", str(down), transient=True)
        if (other := find_error(err, base)) is not None:
            return Failed(f"{provider}_error", str(other))
        return None

    return classify


def transient(err: BaseException) -> bool:
    """A network or database hiccup somewhere in the chain (dlt wraps the load's)."""
    types: list[type[BaseException]] = [
        psycopg.OperationalError,
        httpx.TransportError,
        ConnectionError,
        TimeoutError,
    ]
    with contextlib.suppress(ImportError):
        import psycopg2

        types.append(psycopg2.OperationalError)
    return find_error(err, tuple(types)) is not None


def sync_partition(
    context: dg.AssetExecutionContext,
    *,
    kind: str,
    dlt: DagsterDltResource,
    sqlbook: SqlbookResource,
    translator: ConnectorTranslator,
    sync: SyncStep,
    classify: Callable[[BaseException], Failed | None],
) -> Iterator[Event]:
    """The body of a connector's assets for the partition's connection."""
    connection_id = int(context.partition_key)
    mode = context.run.tags.get(SYNC_MODE_TAG, "incremental")
    if mode not in SYNC_MODES:
        mode = "incremental"
    selected = _parents_first(context.assets_def, context.selected_asset_keys)
    facts: dict[str, Any] = {"connection_id": connection_id, "mode": mode}
    with connection_store(sqlbook) as (store, settings, box):
        if not selected:  # only checks were asked for: check what is there, sync nothing
            yield from _checks(context, kind, connection_id, translator, settings, {})
            return
        # the lock first, then the connection: a delete waits for the lock, so a connection
        # read under it stays until the sync row is written
        with store.sync_lock(connection_id) as held:
            conn = store.get_any(connection_id) if held else None
            if conn is None or conn.kind != kind:
                state = "locked" if not held else "deleted"
                context.log.info(
                    f"{kind} connection {connection_id}: "
                    + (
                        "another sync holds its lock; this run ends without syncing"
                        if not held
                        else "no longer exists; nothing to do"
                    )
                )
                yield from _observe(context, selected, {**facts, "state": state})
                return
            facts |= {"workspace_id": conn.workspace_id, "project_id": conn.project_id}
            sync_id = store.start_sync(connection_id, run_id=context.run_id, mode=mode)
            facts["sync_id"] = sync_id
            secrets = conn.secrets(box)
            runner = DltRunner(context, dlt, translator)
            try:
                report = sync(store, conn, secrets, settings, mode, runner)
            except BaseException as err:
                _failed(context, store, kind, conn, sync_id, err, classify, secrets, facts)
                raise  # the error itself is what Dagster should see (else _failed raised)
            store.finish_sync(sync_id, status="succeeded", report=report, error=None)
            metrics.connector_sync(kind, "succeeded")
    facts["mode"] = report.mode  # the sync may have chosen `full`
    context.log.info(
        f"{kind} connection {connection_id} synced ({report.mode}): "
        f"{sum(report.rows.values())} row(s), {len(report.skipped)} resource(s) skipped"
    )
    yield from _results(context, kind, selected, runner, report, facts, translator, settings)


def _parents_first(
    assets_def: dg.AssetsDefinition, keys: Iterable[dg.AssetKey]
) -> list[dg.AssetKey]:
    """The keys with each table after the tables it is made from (a multi-asset yields its
    assets in that order), else by name."""
    deps = assets_def.asset_deps

    def depth(key: dg.AssetKey) -> int:
        inside = [d for d in deps.get(key, ()) if d in deps and d != key]
        return 1 + max((depth(d) for d in inside), default=0)

    return sorted(keys, key=lambda k: (depth(k), k.to_user_string()))


def _failed(
    context: dg.AssetExecutionContext,
    store: ConnectionStore,
    kind: str,
    conn: ConnectionRecord,
    sync_id: int,
    err: BaseException,
    classify: Callable[[BaseException], Failed | None],
    secrets: Mapping[str, Any],
    facts: Mapping[str, Any],
) -> None:
    """Record a failed sync (and refused credentials on the connection), then raise what
    Dagster should see: a Failure without retries for refused credentials, a retry request
    for a passing fault, else the error itself (a Failure in its place if its text would
    show a credential)."""
    failed = classify(err) or Failed(
        "sync_failed",
        f"the sync failed ({_root(err).__class__.__name__}); the operator finds the details "
        f"in Dagster run {context.run_id}",
    )
    texts = _secret_texts(secrets)
    message = _redact(failed.message, texts)
    error = {"code": failed.code, "message": message}
    store.finish_sync(sync_id, status="failed", report=None, error=error)
    metrics.connector_sync(kind, "failed")
    where = f"{kind} connection {conn.id}"
    if failed.auth:
        store.set_auth_error(conn.id, {**error, "at": datetime.now(UTC).isoformat()})
        raise dg.Failure(
            description=f"{where}: the provider refused the credentials ({message}); "
            "scheduled syncs wait until they are replaced or a sync is asked for",
            metadata={**facts, "error": failed.code},
            allow_retries=False,
        ) from None
    leaks = isinstance(err, Exception) and _leaks(err, texts)
    if (failed.transient or transient(err)) and context.retry_number < MAX_RETRIES:
        wait = retry_wait(context.retry_number)
        context.log.warning(f"{where}: {message}; trying again in {wait:.0f} s")
        retry = dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait)
        if leaks:
            raise retry from None
        raise retry from err
    if leaks:
        raise dg.Failure(
            description=f"{where}: {message}",
            metadata={**facts, "error": failed.code},
            allow_retries=False,
        ) from None


def _observe(
    context: dg.AssetExecutionContext, keys: Iterable[dg.AssetKey], metadata: Mapping[str, Any]
) -> Iterator[dg.AssetObservation]:
    for key in keys:
        yield dg.AssetObservation(
            asset_key=key, partition=context.partition_key, metadata=dict(metadata)
        )


def _table_value(values: Mapping[str, Any], kind: str, table: str) -> Any:
    for name in (table, f"{kind}.{table}"):
        if name in values:
            return values[name]
    return None


def _results(
    context: dg.AssetExecutionContext,
    kind: str,
    selected: Sequence[dg.AssetKey],
    runner: DltRunner,
    report: SyncReport,
    facts: Mapping[str, Any],
    translator: ConnectorTranslator,
    settings: Settings,
) -> Iterator[Event]:
    skipped = {s.resource: s.reason for s in report.skipped}
    cursor = json.loads(json.dumps(report.cursor, default=str))
    connection_id = int(facts["connection_id"])
    synced: list[tuple[dg.AssetKey, str]] = []
    for key in selected:
        table = translator.table_of(key)
        reason = _table_value(skipped, kind, table)
        if reason is not None:
            yield from _observe(context, [key], {**facts, "state": "skipped", "reason": reason})
        elif key not in runner.results:
            # not in this connection's source, or the sync did not run its pipeline
            yield from _observe(context, [key], {**facts, "state": "not_synced"})
        else:
            synced.append((key, table))
    stats = table_stats(kind, connection_id, [t for _, t in synced], settings.warehouse_url)
    for key, table in synced:
        metadata: dict[str, Any] = {
            **(runner.results[key].metadata or {}),
            **facts,
            "state": "synced",
            "rows": int(_table_value(report.rows, kind, table) or 0),
            "deleted": int(_table_value(report.deleted, kind, table) or 0),
            "cursor": dg.MetadataValue.json(cursor),
        }
        if table in stats:
            metadata |= dict(TableMetadataSet(partition_row_count=stats[table].rows))
        if report.skipped:
            metadata["skipped"] = dg.MetadataValue.json(
                [{"resource": s.resource, "reason": s.reason} for s in report.skipped]
            )
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
    loaded = {table: int(_table_value(report.rows, kind, table) or 0) for _, table in synced}
    yield from _checks(context, kind, connection_id, translator, settings, loaded, stats)


def _checks(
    context: dg.AssetExecutionContext,
    kind: str,
    connection_id: int,
    translator: ConnectorTranslator,
    settings: Settings,
    loaded: Mapping[str, int],
    stats: Mapping[str, TableStats] | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of the tables: keys unique for the connection, and rows there
    when the sync loaded some (`loaded`: rows per table this run wrote)."""
    wanted = context.selected_asset_check_keys
    tables = sorted({translator.table_of(k.asset_key) for k in wanted})
    if stats is None:
        stats = table_stats(kind, connection_id, tables, settings.warehouse_url)
    for table in tables:
        found = stats.get(table)
        if found is None:
            continue
        key = dg.AssetKey(f"{kind}_{table}")
        if dg.AssetCheckKey(key, "no_duplicate_keys") in wanted:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="no_duplicate_keys",
                passed=found.duplicated_keys == 0,
                metadata={
                    "connection_id": connection_id,
                    "key": ", ".join(found.key),
                    "duplicated_keys": found.duplicated_keys,
                },
            )
        if dg.AssetCheckKey(key, "rows_after_sync") in wanted:
            rows_loaded = loaded.get(table, 0)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="rows_after_sync",
                passed=found.rows > 0 or rows_loaded == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "connection_id": connection_id,
                    "rows": found.rows,
                    "loaded": rows_loaded,
                },
            )


@dataclass(frozen=True)
class TableStats:
    key: tuple[str, ...]
    rows: int  # the connection's rows in the table
    duplicated_keys: int  # key values of the connection held by more than one row


def table_stats(
    kind: str, connection_id: int, tables: Sequence[str], warehouse_url: str | None
) -> dict[str, TableStats]:
    """The connection's rows per table, and how many of its keys are duplicated (the
    tables' primary keys make that 0; the check says so rather than assumes it)."""
    from connectors.connections.tables import all_tables

    specs = {spec.name: spec for spec in all_tables()}
    found: dict[str, TableStats] = {}
    if not tables or not warehouse_url:
        return found
    with psycopg.connect(warehouse_url, connect_timeout=10, autocommit=True) as conn:
        for table in tables:
            spec = specs.get(f"{kind}.{table}")
            if spec is None:
                continue
            key_columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.primary_key)
            row = conn.execute(
                sql.SQL(
                    "select (select count(*) from {t} where connection_id = %(id)s),"
                    " (select count(*) from (select 1 from {t} where connection_id = %(id)s"
                    " group by {k} having count(*) > 1) d)"
                ).format(t=spec.identifier, k=key_columns),
                {"id": connection_id},
            ).fetchone()
            assert row is not None
            found[table] = TableStats(spec.primary_key, int(row[0]), int(row[1]))
    return found


def _secret_texts(secrets: Mapping[str, Any]) -> list[str]:
    """Every credential string of the connection (for keeping them out of errors)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if len(value) >= 8:
                out.append(value)
                out.extend(line for line in value.splitlines() if len(line) >= 16)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(secrets)
    return out


def _root(err: BaseException) -> BaseException:
    wrapped = getattr(err, "exception", None)
    return wrapped if isinstance(wrapped, BaseException) else err


def _leaks(err: BaseException, secrets: Sequence[str]) -> bool:
    if not secrets:
        return False
    text = "\n".join(f"{e!r} {e}" for e in error_chain(err))
    return any(secret in text for secret in secrets)


def _redact(message: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "[redacted]")
    return message


__all__ = [
    "CONNECTION_TAG",
    "GROUP",
    "SYNC_MODE_TAG",
    "MAX_RETRIES",
    "TRIGGER_TAG",
    "ConnectorTranslator",
    "DltRunner",
    "Failed",
    "connection_store",
    "connector_specs",
    "provider_errors",
    "source_asset",
    "sync_partition",
    "table_stats",
]
