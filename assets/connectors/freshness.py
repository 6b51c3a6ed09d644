"""Freshness of the connector tables: every connection that is not paused has synced
successfully within twice its schedule's interval. One check per table asset, over all the
connections of its kind (the partitions); it names the stale connections by id. Run by the
`connector_freshness` schedule (orchestration/connectors.py)."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from croniter import croniter

from assets.connectors.sync import connection_store
from assets.resources import SqlbookResource
from connectors.metadata.connections import ConnectionRecord, ConnectionStore

CHECK_NAME = "connections_fresh"


def schedule_interval(cron: str, now: datetime) -> timedelta:
    """The gap between the schedule's next two occurrences after `now`."""
    it = croniter(cron, now)
    first = it.get_next(datetime)
    return it.get_next(datetime) - first


@dataclass(frozen=True)
class Staleness:
    checked: list[int]
    stale: list[int]
    oldest_success: datetime | None


def staleness(
    store: ConnectionStore, connections: Sequence[ConnectionRecord], now: datetime
) -> Staleness:
    checked: list[int] = []
    stale: list[int] = []
    oldest: datetime | None = None
    for conn in connections:
        if conn.paused or not croniter.is_valid(conn.schedule):
            continue
        checked.append(conn.id)
        allowed = 2 * schedule_interval(conn.schedule, now)
        last = store.last_success(conn.id)
        finished = last.get("finished_at") if last else None
        if finished is not None and (oldest is None or finished < oldest):
            oldest = finished
        since = finished if finished is not None else conn.created_at
        if since < now - allowed:
            stale.append(conn.id)
    return Staleness(checked, stale, oldest)


def freshness_check(kind: str, keys: Sequence[dg.AssetKey]) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{kind}_connections_fresh",
        specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description="Every active connection synced successfully within twice its "
                "schedule's interval.",
            )
            for key in keys
        ],
        can_subset=True,
    )
    def check(
        context: dg.AssetCheckExecutionContext, sqlbook: SqlbookResource
    ) -> Iterator[dg.AssetCheckResult]:
        now = datetime.now(UTC)
        with connection_store(sqlbook) as (store, _, _):
            found = staleness(store, store.list_all(kind), now)
        metadata: dict[str, Any] = {
            "connections": len(found.checked),
            "stale_connections": dg.MetadataValue.json(found.stale),
            "oldest_success": found.oldest_success.isoformat() if found.oldest_success else "",
        }
        for check_key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=CHECK_NAME,
                passed=not found.stale,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=metadata,
            )

    return check
