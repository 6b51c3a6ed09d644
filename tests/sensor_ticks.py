"""Test helper: one tick of a sensor that keeps a dynamic partition per scheduled object
(insight snapshot schedules, dashboard subscriptions), applied as the daemon would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from assets.resources import SqlbookResource


def apply_tick(
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
    sensor: Callable[..., Any],
    partitions: str,
) -> dict[str, Any]:
    """Partitions added and deleted first; the runs it asks for by partition key (other
    tests' objects share the database, so callers look for their own keys)."""
    context = dg.build_sensor_context(instance=instance, resources={"sqlbook": sqlbook})
    result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return {"runs": {}, "added": [], "deleted": []}
    assert isinstance(result, dg.SensorResult)
    added: list[str] = []
    deleted: list[str] = []
    for change in result.dynamic_partitions_requests or []:
        keys = list(change.partition_keys or [])
        if isinstance(change, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(partitions, keys)
            added += keys
        else:
            for key in keys:
                instance.delete_dynamic_partition(partitions, key)
            deleted += keys
    runs = {str(r.partition_key): r for r in result.run_requests or []}
    return {"runs": runs, "added": added, "deleted": deleted}
