"""What Dagster keeps of ingestion runs: ids, ranges, counts and timings, never the
captured values (the Dagster UI shows every workspace to whoever reaches it)."""

from __future__ import annotations

import uuid

import dagster as dg

from assets.ingestion import events, persons
from assets.resources import SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from tests.assets.test_alerts_pipeline import stored_for_run
from tests.conftest import ClientFactory
from tests.ingestion_runs import ingest_stream


def test_ingestion_runs_keep_counts_not_captured_values(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    stream_key: str,
    sqlbook: SqlbookResource,
) -> None:
    mark = uuid.uuid4().hex[:8]
    secrets = {
        "distinct id": f"ceo-{mark}@victim.example",
        "event name": f"event_{mark}",
        "property": f"plan_{mark}",
        "person property": f"personprop_{mark}",
    }
    key = workspace.project.capture_key
    with client_with() as api:
        for body in (
            {"event": secrets["event name"], "properties": {"plan": secrets["property"]}},
            {"event": "$identify", "properties": {"$set": {"title": secrets["person property"]}}},
        ):
            r = api.post(
                "/capture", json={"api_key": key, "distinct_id": secrets["distinct id"], **body}
            )
            assert r.status_code == 200, r.text

    instance = dg.DagsterInstance.ephemeral()
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        sqlbook=sqlbook,
        instance=instance,
        assets=(events, persons),
    )
    assert result.success
    (mat,) = [
        m
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("events")  # not the `event_days` it reports
    ]
    assert mat.metadata["inserted"].value == 2
    (mat,) = result.asset_materializations_for_node("persons")
    assert mat.metadata["persons_created"].value >= 1  # the values reached the warehouse

    stored = "\n".join(stored_for_run(instance, result.run_id))
    assert [what for what, text in secrets.items() if text in stored] == []
