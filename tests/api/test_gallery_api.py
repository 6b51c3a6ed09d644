"""The template gallery over HTTP on the real embedded PostgreSQL: each template installed
into a workspace holding known data — a Stripe account from the fake Stripe API synced into
the warehouse, events captured through /capture, ingested and rolled up — and the numbers
its dashboard shows compared with the ones worked out by hand in
tests/connectors/test_gallery_datasets.py. Also: what the list says a workspace lacks,
folders and roles, another workspace's Stripe rows never counted, and the audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.analytics.rollups import refresh_day
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.settings import Settings
from connectors.stripe.sync import sync_stripe
from tests.conftest import api_client, make_settings
from tests.connectors.test_gallery_datasets import (
    FUNNEL_EXPECTED,
    MONTHS,
    RANGE,
    RETENTION_EXPECTED,
    SAAS_EXPECTED,
    WEB_EXPECTED,
    captured_events,
    event_days,
    four_weeks,
    seed_saas,
    web_range,
    week_zero,
)
from tests.fakes.stripe_api import StripeFake
from tests.ingestion_runs import ingest_stream
from tests.people import bearer, make_member, unique_email

KEY = "sk_test_" + "GalleryApiKey0123456789"
OTHER_KEY = "sk_test_" + "GalleryOtherKey012345678"


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake.running() as running:
        running.add_key(KEY)
        seed_saas(running)
        yield running


@pytest.fixture(scope="module")
def stream_key() -> str:
    return f"test:gallery:{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def settings(servers: ServerUrls, sqlbook_home: Path, fake: StripeFake, stream_key: str) -> Any:
    return make_settings(
        servers, sqlbook_home, stripe_api_url=fake.url, stream_key=stream_key,
        outbound_allow_private=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with api_client(settings) as client:
        yield client


def _workspace(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"gallery-{uuid.uuid4().hex[:10]}")


def _auth(ws: NewWorkspace) -> dict[str, str]:
    return bearer(ws.api_token)


def connect_stripe(
    api: TestClient, ws: NewWorkspace, settings: Settings, warehouse_url: str, key: str, fake: Any
) -> None:
    """A Stripe connection in the workspace, synced in full from the fake."""
    made = api.post(
        "/api/connections",
        json={"kind": "stripe", "name": "Stripe", "api_key": key},
        headers=_auth(ws),
    )
    assert made.status_code == 201, made.text
    record = api.app.state.sqlbook.connections.get(ws.workspace_id, made.json()["id"])  # type: ignore[attr-defined]
    sync_stripe(record, {"api_key": key, "webhook_secrets": []}, settings=settings,
                warehouse_url=warehouse_url, mode="full", now=fake.clock)  # fmt: skip


@pytest.fixture(scope="module")
def saas(
    api: TestClient, metadata: MetadataStore, settings: Settings, servers: ServerUrls, fake: Any
) -> NewWorkspace:
    ws = _workspace(metadata)
    connect_stripe(api, ws, settings, servers.warehouse_url, KEY, fake)
    return ws


@pytest.fixture(scope="module")
def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def web(
    api: TestClient, metadata: MetadataStore, servers: ServerUrls, stream_key: str, today: date
) -> NewWorkspace:
    """A workspace whose events came in through /capture, were ingested by the `events`
    asset and rolled up day by day, as Dagster does."""
    ws = _workspace(metadata)
    t = week_zero(today)
    body = {"api_key": ws.project.capture_key, "batch": captured_events(t)}
    assert api.post("/capture", json=body).status_code == 200
    ingest_stream(servers.redis_url, stream_key, servers.warehouse_url)
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        stored = conn.execute(
            "select count(*) from events where project_id = %s", (ws.project.id,)
        ).fetchone()
        assert stored is not None and stored[0] == len(body["batch"])
        for day in event_days(t):
            refresh_day(conn, day)
    return ws


def install(api: TestClient, ws: NewWorkspace, slug: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"/api/templates/{slug}/install", json=body, headers=_auth(ws))
    assert r.status_code == 201, r.text
    assert r.json()["unmapped"] == []  # every filter found its parameters
    return r.json()


def run_tiles(
    api: TestClient, ws: NewWorkspace, dashboard_id: int, filters: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each insight tile's result by its title (or its insight's name)."""
    board = api.get(f"/api/dashboards/{dashboard_id}", headers=_auth(ws)).json()
    names = {
        t["id"]: t.get("title") or t["insight"]["name"]
        for t in board["tiles"]
        if t.get("insight_id")
    }
    r = api.post(
        f"/api/dashboards/{dashboard_id}/run",
        json={"filters": filters, "cache": False},
        headers=_auth(ws),
    )
    assert r.status_code == 200, r.text
    out = {}
    for tile in r.json()["tiles"]:
        assert "error" not in tile, tile
        out[names[tile["tile_id"]]] = tile["result"]
    assert len(out) == len(names), "a tile title appears twice"
    return out


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    columns = [c["name"] for c in result["columns"]]
    return [dict(zip(columns, row, strict=True)) for row in result["rows"]]


def by_month(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["month"][:7]: r for r in rows(result)}


def approx(value: Any) -> Any:
    return pytest.approx(float(value), abs=0.00051) if value is not None else None


# --- the list ---------------------------------------------------------------------------


def test_the_list_names_each_template_and_what_the_workspace_lacks(
    api: TestClient, metadata: MetadataStore, saas: NewWorkspace
) -> None:
    bare = _workspace(metadata)
    listed = {t["slug"]: t for t in api.get("/api/templates", headers=_auth(bare)).json()}
    assert list(listed) == ["web-analytics", "product-funnel", "retention", "saas-revenue"]
    revenue = listed["saas-revenue"]
    assert revenue["name"] == "SaaS revenue"
    assert (revenue["available"], revenue["missing"]) == (False, ["a Stripe connection"])
    assert "stripe.invoice_lines" in revenue["requires"]
    assert "MRR movements" in revenue["insights"]
    assert listed["web-analytics"]["available"] is True
    assert "rollup_sessions_hourly" in listed["web-analytics"]["requires"]
    with_stripe = {t["slug"]: t for t in api.get("/api/templates", headers=_auth(saas)).json()}
    assert (with_stripe["saas-revenue"]["available"], with_stripe["saas-revenue"]["missing"]) == (
        True,
        [],
    )
    assert api.get("/api/templates").status_code == 401


def test_saas_revenue_needs_a_stripe_connection_and_creates_nothing_without_one(
    api: TestClient, metadata: MetadataStore
) -> None:
    bare = _workspace(metadata)
    r = api.post("/api/templates/saas-revenue/install", json={}, headers=_auth(bare))
    assert r.status_code == 409, r.text
    assert r.json()["missing"] == ["a Stripe connection"]
    assert "Stripe connection" in r.json()["detail"]
    assert api.get("/api/dashboards", headers=_auth(bare)).json() == []
    assert api.get("/api/insights", headers=_auth(bare)).json() == []
    unknown = api.post("/api/templates/nope/install", json={}, headers=_auth(bare))
    assert unknown.status_code == 404 and "saas-revenue" in unknown.json()["detail"]
    extra = api.post("/api/templates/retention/install", json={"folder": 1}, headers=_auth(bare))
    assert extra.status_code == 400 and "folder" in extra.json()["detail"]


# --- SaaS revenue -------------------------------------------------------------------------


def test_saas_revenue_shows_the_hand_computed_numbers(
    api: TestClient, saas: NewWorkspace, metadata: MetadataStore
) -> None:
    installed = install(api, saas, "saas-revenue")
    assert installed["url"] == f"/dashboards/{installed['dashboard_id']}"
    kinds = sorted(c["kind"] for c in installed["created"])
    assert kinds == ["dashboard"] + ["insight"] * 6
    assert installed["unmapped"] == []

    # the currency filter offers the currencies the account bills in
    options = api.get(
        f"/api/dashboards/{installed['dashboard_id']}/filters/currency/options", headers=_auth(saas)
    )
    assert options.json() == {"options": ["eur", "jpy", "usd"]}, options.text

    usd = SAAS_EXPECTED["usd"]
    tiles = run_tiles(api, saas, installed["dashboard_id"], {"range": RANGE, "currency": "usd"})
    mrr = by_month(tiles["MRR by month"])
    assert list(mrr) == MONTHS
    for month in MONTHS:
        assert float(mrr[month]["mrr"]) == usd["mrr"][month], month
        assert mrr[month]["customers"] == usd["customers"][month], month
        arpa = usd["mrr"][month] / usd["customers"][month]
        assert float(mrr[month]["arpa"]) == pytest.approx(arpa, abs=0.005), month
    # the number tiles read the same insight: the latest month first, with the month before
    assert tiles["MRR"]["rows"] == tiles["MRR by month"]["rows"]

    moves = by_month(tiles["MRR movements"])
    for month, (new, expansion, contraction, churned) in usd["movements"].items():
        got = moves[month]
        kinds = ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr")
        assert [float(got[k]) for k in kinds] == [new, expansion, contraction, churned]
        assert float(got["net_new_mrr"]) == new + expansion + contraction + churned
    # the movements add up to the change of MRR month to month
    for before, month in zip(MONTHS, MONTHS[1:], strict=False):
        assert float(moves[month]["net_new_mrr"]) == usd["mrr"][month] - usd["mrr"][before]

    churn = by_month(tiles["Churn rate"])
    assert churn["2025-06"]["customer_churn_rate"] is None  # nobody paid in May
    for month in MONTHS[1:]:
        assert approx(churn[month]["customer_churn_rate"]) == usd["customer_churn"].get(month, 0)
        assert approx(churn[month]["mrr_churn_rate"]) == usd["mrr_churn"].get(month, 0)
    assert churn["2025-08"]["churned_customers"] == 1

    refunds = by_month(tiles["Refunds by month"])
    for month in MONTHS:
        count, amount = usd["refunds"].get(month, (0, 0))
        assert (refunds[month]["refunds"], float(refunds[month]["refunded"])) == (count, amount)

    currencies = {r["currency"]: r for r in rows(tiles["MRR by currency"])}
    assert {c: float(r["mrr"]) for c, r in currencies.items()} == {
        "usd": 520.0,
        "jpy": 1200.0,
        "eur": 90.0,
    }

    for currency in ("eur", "jpy"):
        expected = SAAS_EXPECTED[currency]
        tiles = run_tiles(
            api, saas, installed["dashboard_id"], {"range": RANGE, "currency": currency}
        )
        mrr = by_month(tiles["MRR by month"])
        assert {m: float(r["mrr"]) for m, r in mrr.items()} == expected["mrr"], currency
        assert {m: r["customers"] for m, r in mrr.items()} == expected["customers"], currency
        refunds = by_month(tiles["Refunds by month"])
        for month, (count, amount) in expected.get("refunds", {}).items():
            assert (refunds[month]["refunds"], float(refunds[month]["refunded"])) == (
                count,
                amount,
            )

    events = metadata_events(metadata, saas.workspace_id, "template.installed")
    assert events and events[-1]["detail"]["template"] == "saas-revenue"
    assert events[-1]["object_id"] == str(installed["dashboard_id"])


def test_another_workspaces_stripe_rows_are_never_counted(
    api: TestClient, metadata: MetadataStore, settings: Settings, servers: ServerUrls
) -> None:
    """A second workspace with a Stripe connection of its own (an account with one $7
    subscription) sees its own MRR only, though both live in the same tables."""
    with StripeFake.running() as other:
        other.add_key(OTHER_KEY)
        cus = other.create_customer(email="z@example.com")
        product = other.create_product(name="Tiny")
        price = other.create_price(product=product["id"], unit_amount=700)
        sub = other.create_subscription(customer=cus["id"], prices=[price["id"]])
        other.create_invoice(customer=cus["id"], subscription=sub["id"], lines=((700, "Tiny"),),
                             created=other.clock() - 86_400)  # fmt: skip
        ws = _workspace(metadata)
        own = make_settings(servers, settings.home, stripe_api_url=other.url,
                            outbound_allow_private=True)  # fmt: skip
        with api_client(own) as client:
            connect_stripe(client, ws, own, servers.warehouse_url, OTHER_KEY, other)
            installed = install(client, ws, "saas-revenue")
            month = datetime.fromtimestamp(other.clock() - 86_400, UTC).date()
            span = {"from": month.replace(day=1).isoformat(), "to": month.isoformat()}
            tiles = run_tiles(client, ws, installed["dashboard_id"], {"range": span})
            options = client.get(
                f"/api/dashboards/{installed['dashboard_id']}/filters/currency/options",
                headers=_auth(ws),
            ).json()
    assert options == {"options": ["usd"]}
    mrr = rows(tiles["MRR by month"])
    assert [(float(r["mrr"]), r["customers"]) for r in mrr] == [(7.0, 1)]
    assert [r["currency"] for r in rows(tiles["MRR by currency"])] == ["usd"]


# --- web analytics, funnel, retention ---------------------------------------------------


def test_web_analytics_shows_the_hand_computed_numbers(
    api: TestClient, web: NewWorkspace, today: date
) -> None:
    installed = install(api, web, "web-analytics")
    t = week_zero(today)
    tiles = run_tiles(api, web, installed["dashboard_id"], {"range": web_range(t)})
    totals = rows(tiles["Visitors"])[0]
    assert {k: float(v) for k, v in totals.items()} == WEB_EXPECTED["totals"]
    for title in ("Sessions", "Bounce rate", "Average session (s)"):
        assert tiles[title]["rows"] == tiles["Visitors"]["rows"]
    daily = rows(tiles["Visitors, sessions and pageviews by day"])
    assert [r["day"][:10] for r in daily] == [
        (t + timedelta(days=1)).isoformat(),
        (t + timedelta(days=2)).isoformat(),
    ]
    assert [(r["visitors"], r["sessions"], r["pageviews"]) for r in daily] == WEB_EXPECTED["daily"]
    pages = [tuple(r.values()) for r in rows(tiles["Top pages"])]
    assert pages == WEB_EXPECTED["pages"]
    referrers = [
        (r["referrer"], r["sessions"], r["visitors"], float(r["bounce_rate"]))
        for r in rows(tiles["Top referrers"])
    ]
    assert referrers == WEB_EXPECTED["referrers"]
    assert [tuple(r.values())[:2] for r in rows(tiles["Devices"])] == WEB_EXPECTED["devices"]
    assert [tuple(r.values())[:2] for r in rows(tiles["Browsers"])] == WEB_EXPECTED["browsers"]
    utm = [tuple(r.values())[:4] for r in rows(tiles["Campaigns (UTM)"])]
    assert utm == WEB_EXPECTED["utm"]
    # the default range (the last 30 days) runs too, on whatever the rollups hold
    assert run_tiles(api, web, installed["dashboard_id"], {})["Visitors"]["row_count"] == 1


def test_the_funnel_shows_the_hand_computed_numbers(
    api: TestClient, web: NewWorkspace, today: date
) -> None:
    installed = install(api, web, "product-funnel")
    t = week_zero(today)
    filters = {"range": four_weeks(t), "step_1": "$pageview", "step_2": "signed_up",
               "step_3": "purchased", "window_days": 14}  # fmt: skip
    tiles = run_tiles(api, web, installed["dashboard_id"], filters)
    steps = [
        (r["step"], r["persons"], approx(r["conversion_rate"]), approx(r["step_conversion_rate"]))
        for r in rows(tiles["Funnel steps"])
    ]
    assert steps == FUNNEL_EXPECTED["steps"]
    assert [r["label"] for r in rows(tiles["Funnel steps"])] == [
        "1. $pageview",
        "2. signed_up",
        "3. purchased",
    ]
    weekly = {
        (date.fromisoformat(r["week"][:10]) - t).days // 7: (r["started"], r["converted"])
        for r in rows(tiles["Funnel conversion by week"])
    }
    assert weekly == FUNNEL_EXPECTED["weekly"]
    # a 16-day window takes in u5's purchase 15 days after their first pageview
    wider = run_tiles(api, web, installed["dashboard_id"], {**filters, "window_days": 16})
    assert [r["persons"] for r in rows(wider["Funnel steps"])] == [6, 2, 2]


def test_retention_shows_the_hand_computed_numbers(
    api: TestClient, web: NewWorkspace, today: date
) -> None:
    installed = install(api, web, "retention")
    t = week_zero(today)
    filters = {"range": four_weeks(t), "start_event": "$pageview", "return_event": "$pageview"}
    tiles = run_tiles(api, web, installed["dashboard_id"], filters)
    cohorts = {}
    for r in rows(tiles["Weekly retention cohorts"]):
        offset = (date.fromisoformat(r["cohort"][:10]) - t).days // 7
        weeks = [None if r[f"week_{n}"] is None else float(r[f"week_{n}"]) for n in range(1, 9)]
        cohorts[offset] = (r["persons"], weeks)
    assert cohorts == RETENTION_EXPECTED["cohorts"]
    curve = [
        (r["week"], r["persons"], r["returned"], float(r["retained_pct"]))
        for r in rows(tiles["Retention curve"])
    ]
    assert curve == RETENTION_EXPECTED["curve"]


# --- folders, roles ---------------------------------------------------------------------


def test_install_goes_into_a_folder_the_caller_may_edit(
    api: TestClient, metadata: MetadataStore
) -> None:
    ws = _workspace(metadata)
    folder = api.post("/api/folders", json={"name": "Growth"}, headers=_auth(ws))
    assert folder.status_code == 201, folder.text
    fid = folder.json()["id"]
    installed = install(api, ws, "retention", folder_id=fid)
    board = api.get(f"/api/dashboards/{installed['dashboard_id']}", headers=_auth(ws)).json()
    assert board["folder_id"] == fid
    for created in installed["created"]:
        if created["kind"] == "insight":
            got = api.get(f"/api/insights/{created['id']}", headers=_auth(ws)).json()
            assert got["folder_id"] == fid
    missing = api.post(
        "/api/templates/retention/install", json={"folder_id": 987654321}, headers=_auth(ws)
    )
    assert missing.status_code == 400 and "folder_id" in missing.json()["detail"]

    _, _, viewer = make_member(metadata, ws, unique_email("viewer"), "viewer")
    assert api.get("/api/templates", headers=bearer(viewer)).status_code == 200
    refused = api.post("/api/templates/retention/install", json={}, headers=bearer(viewer))
    assert refused.status_code == 403

    other = _workspace(metadata)
    foreign = api.post(
        "/api/templates/retention/install", json={"folder_id": fid}, headers=_auth(other)
    )
    assert foreign.status_code == 400 and "folder_id" in foreign.json()["detail"]


def metadata_events(metadata: MetadataStore, workspace_id: int, action: str) -> list[Any]:
    with metadata.connection() as conn:
        return conn.execute(
            "select object_id, detail from meta.audit_events"
            " where workspace_id = %s and action = %s order by at",
            (workspace_id, action),
        ).fetchall()
