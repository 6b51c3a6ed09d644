"""Through the API and the Dagster ingestion assets: a repeated warehouse query sees new
events (and persons) as soon as ingestion has committed them, and says how fresh it is."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import dagster as dg
from fastapi.testclient import TestClient

from assets.ingestion import events, persons
from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import ClientFactory
from tests.ingestion_runs import ingest_stream
from tests.streams import FAKE_PROJECT, append, event_batch
from tests.waiting import poll


def materialize(servers: ServerUrls, stream_key: str, *selection: dg.AssetsDefinition) -> None:
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        assets=(events, persons),
        selection=selection,
    )
    assert result.success


def ask(api: TestClient, token: str, sql: str, *params: Any) -> tuple[Any, bool, str]:
    r = api.post(
        "/api/query",
        json={"sql": sql, "params": list(params), "cache_ttl_s": 3600},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body["rows"][0][0], body["cache"]["hit"], body["data_as_of"]


def test_a_repeated_query_sees_ingested_events_and_persons_at_once(
    client_with: ClientFactory, servers: ServerUrls, stream_key: str, metadata: MetadataStore
) -> None:
    mine = metadata.create_workspace(f"fresh-a-{uuid.uuid4().hex[:8]}")
    other = metadata.create_workspace(f"fresh-b-{uuid.uuid4().hex[:8]}")
    name = f"third-{uuid.uuid4().hex[:6]}"
    count = "select count(*) from events where event_name = $1"
    people = "select count(*) from person_distinct_ids"
    # an installation that has ingested before (the first bump ever sets the epoch)
    append(servers.redis_url, stream_key, FAKE_PROJECT + 310, event_batch(1))
    materialize(servers, stream_key, events)
    with client_with() as api:
        n, hit, fresh_as_of = ask(api, mine.api_token, count, name)
        assert (n, hit) == (0, False)
        n, hit, as_of = ask(api, mine.api_token, count, name)
        assert (n, hit, as_of) == (0, True, fresh_as_of)  # a hit keeps its run's time

        append(servers.redis_url, stream_key, other.project.id, event_batch(2, name))
        materialize(servers, stream_key, events)
        assert ask(api, mine.api_token, count, name)[:2] == (0, True)  # not its projects

        append(servers.redis_url, stream_key, mine.project.id, event_batch(3, name))
        materialize(servers, stream_key, events)
        n, hit, as_of = ask(api, mine.api_token, count, name)
        assert (n, hit) == (3, False)
        assert datetime.fromisoformat(as_of) > datetime.fromisoformat(fresh_as_of)

        # persons follow their events in a later step; it bumps the versions too
        before, hit, _ = ask(api, mine.api_token, people)
        assert not hit
        assert ask(api, mine.api_token, people)[:2] == (before, True)
        materialize(servers, stream_key, persons)
        after, hit, _ = ask(api, mine.api_token, people)
        assert (after, hit) == (before + 3, False)


def test_an_async_result_says_when_it_was_computed(
    client_with: ClientFactory, metadata: MetadataStore
) -> None:
    ws = metadata.create_workspace(f"fresh-c-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {ws.api_token}"}
    with client_with() as api:
        before = datetime.now().astimezone()
        r = api.post("/api/queries", json={"sql": "select 1", "cache": False}, headers=headers)
        query_id = r.json()["query_id"]
        job = poll(
            "the query to finish",
            lambda: api.get(f"/api/queries/{query_id}", headers=headers).json(),
            lambda j: j["status"] == "done",
        )
        assert datetime.fromisoformat(job["result"]["data_as_of"]) >= before
