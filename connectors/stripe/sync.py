"""One sync of a Stripe connection: its dlt source run into the warehouse, with the steps
around the load that the Dagster path (which runs the pipeline through dagster-dlt) and a
plain call share.

    report = sync_stripe(conn, secrets, settings=s, warehouse_url=url, mode="incremental",
                         pending=store.pending_webhooks(conn.id))

Before the load: a fresh pipeline whose state (the cursors) is restored from the warehouse,
and the deletions a previous run committed but did not get to apply. The source itself picks
"full" when the connection was never backfilled or its events cursor is older than Stripe's
event retention. After the load: rows of re-fetched objects that Stripe answered as deleted
are marked `deleted` (their last known state kept), a full sync marks the rows it no longer
listed, and children of re-fetched parents that are no longer in them are removed.

Raises StripeAuthError (the caller records it on the connection) and StripeUnavailable;
a restricted key's missing permission is not an error but `SyncReport.skipped`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dlt
import psycopg
from psycopg import sql

from connectors.connections.destination import (
    Runner,
    connection_pipeline,
    find_error,
    pipeline_name,
    run_pipeline,
)
from connectors.connections.types import SyncMode, SyncReport
from connectors.settings import Settings
from connectors.stripe.client import StripeAuthError, StripeClient, StripeError
from connectors.stripe.source import (
    CHILDREN,
    RESOURCE_NAMES,
    SOURCE_NAME,
    SyncLog,
    stripe_source,
)
from connectors.stripe.tables import BY_TABLE

if TYPE_CHECKING:
    from connectors.metadata.connections import ConnectionRecord

log = logging.getLogger(__name__)

# a parent's foreign key column in each child table
_CHILD_KEY = {"subscription_items": "subscription", "invoice_lines": "invoice"}


def sync_stripe(
    conn: ConnectionRecord,
    secrets: dict[str, Any],
    *,
    settings: Settings,
    warehouse_url: str,
    mode: SyncMode,
    pending: Sequence[dict[str, Any]] = (),
    run: Runner | None = None,
    now: Callable[[], float] = time.time,
) -> SyncReport:
    client = StripeClient(
        secrets["api_key"],
        settings.stripe_api_url,
        timeout_s=settings.connector_timeout_seconds,
        max_retries=settings.connector_max_retries,
    )
    try:
        expected = (conn.config or {}).get("mode")
        if expected and client.mode != expected:
            # modes never mix: the connection's mode was fixed by its first key
            raise StripeAuthError(
                f"the key is a {client.mode}-mode key; this connection reads {expected}-mode data"
            )
        pipeline = connection_pipeline("stripe", conn.id, settings, warehouse_url)
        pipeline.sync_destination()
        # deletions a previous run committed with its load but did not apply (it was killed)
        _after_load(warehouse_url, conn.id, _source_state(pipeline).get("post"))
        sync_log = SyncLog()
        source = stripe_source(
            lambda: client,
            connection_id=conn.id,
            project_id=conn.project_id,
            mode=mode,
            pending=pending,
            now=now,
            log=sync_log,
        )
        try:
            (run or run_pipeline)(source, pipeline)
        except Exception as err:
            cause = find_error(err, StripeError)
            if cause is not None:
                raise cause from err
            raise
    finally:
        client.close()
    state = _source_state(pipeline)
    deleted = _after_load(warehouse_url, conn.id, state.get("post"))
    _prune_state(warehouse_url, conn.id)
    report = SyncReport(
        mode=sync_log.mode or mode,
        rows=_rows(sync_log),
        cursor=cursor_of(state),
        skipped=list(sync_log.skipped),
        deleted=deleted,
    )
    log.info(
        "stripe connection %d: %s sync, rows %s, skipped %s",
        conn.id,
        report.mode,
        report.rows,
        [s.resource for s in report.skipped],
    )
    return report


def _rows(sync_log: SyncLog) -> dict[str, int]:
    """Rows loaded per table, 0 for a table read with nothing new (not for a skipped one)."""
    skipped = {s.resource for s in sync_log.skipped}
    rows = {t: 0 for t in RESOURCE_NAMES if t not in skipped}
    rows.update(sync_log.rows)
    return rows


def _source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    state: dict[str, Any] = pipeline.state.get("sources", {}).get(SOURCE_NAME, {})
    return state


def _iso(ts: Any) -> str | None:
    return datetime.fromtimestamp(int(ts), UTC).isoformat() if isinstance(ts, int) else None


def cursor_of(state: dict[str, Any]) -> dict[str, Any]:
    """The cursors of a restored (or just committed) source state, for reports and the
    status API: ISO times, no ids."""
    resources = state.get("resources", {})
    return {
        "backfill_done": bool(state.get("backfill_done")),
        "events": _iso(state.get("events_cursor")),
        "created": {
            name: _iso(r.get("created"))
            for name, r in sorted(resources.items())
            if isinstance(r, dict) and r.get("created") is not None
        },
    }


def _after_load(
    warehouse_url: str, connection_id: int, post: dict[str, Any] | None
) -> dict[str, int]:
    """Apply what a committed run left to do, in one transaction; idempotent, so a run may
    apply what the previous one already did. Returns rows marked deleted or removed per
    table."""
    counts: dict[str, int] = {}
    post = post or {}
    cid = int(connection_id)
    with psycopg.connect(warehouse_url, connect_timeout=10) as db, db.transaction():
        for resource, ids in sorted((post.get("deleted") or {}).items()):
            spec = BY_TABLE.get(resource)
            if spec is None or "deleted" not in dict(spec.columns) or not ids:
                continue
            cur = db.execute(
                sql.SQL(
                    "update {} set deleted = true where connection_id = %s and id = any (%s)"
                    " and deleted is not true"
                ).format(spec.identifier),
                (cid, list(ids)),
            )
            _add(counts, resource, cur.rowcount)
        fetched_at = post.get("fetched_at")
        for resource in post.get("reconcile") or ():
            spec = BY_TABLE.get(resource)
            if spec is None or "deleted" not in dict(spec.columns) or not fetched_at:
                continue
            # rows a complete listing did not return are gone from Stripe
            cur = db.execute(
                sql.SQL(
                    "update {} set deleted = true where connection_id = %s"
                    " and fetched_at < %s::timestamptz and deleted is not true"
                ).format(spec.identifier),
                (cid, fetched_at),
            )
            _add(counts, resource, cur.rowcount)
        for child, parent in CHILDREN.items():
            # children of a re-fetched parent that it no longer has
            cur = db.execute(
                sql.SQL(
                    "delete from {} c using {} p where p.connection_id = %s"
                    " and c.connection_id = p.connection_id and c.{} = p.id"
                    " and c.fetched_at < p.fetched_at"
                ).format(
                    BY_TABLE[child].identifier,
                    BY_TABLE[parent].identifier,
                    sql.Identifier(_CHILD_KEY[child]),
                ),
                (cid,),
            )
            _add(counts, child, cur.rowcount)
    return counts


def _prune_state(warehouse_url: str, connection_id: int, keep: int = 5) -> None:
    """dlt adds a state row per load that changed the state; all but the newest few of the
    connection's pipeline are history no run reads."""
    with psycopg.connect(warehouse_url, connect_timeout=10) as db:
        db.execute(
            "delete from stripe._dlt_pipeline_state s where s.pipeline_name = %(name)s"
            " and s.created_at < (select min(created_at) from (select created_at"
            " from stripe._dlt_pipeline_state where pipeline_name = %(name)s"
            " order by created_at desc limit %(keep)s) newest)",
            {"name": pipeline_name("stripe", connection_id), "keep": keep},
        )


def _add(counts: dict[str, int], table: str, n: int) -> None:
    if n > 0:
        counts[table] = counts.get(table, 0) + n
