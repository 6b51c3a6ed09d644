"""The Google fake over real HTTP: the JWT bearer grant and GA4 `runReport`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import jwt
import pytest

from tests.fakes.google_api import ANALYTICS_READONLY, JWT_BEARER, GoogleFake

PROPERTY = "123456789"
NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)  # 10:30 in Los Angeles


@pytest.fixture(scope="module")
def fake() -> Iterator[GoogleFake]:
    with GoogleFake.running(
        time_zone="America/Los_Angeles", now=NOW, first_day=date(2026, 10, 1)
    ) as fake:
        yield fake


@pytest.fixture(scope="module")
def key(fake: GoogleFake) -> dict[str, str]:
    return fake.service_account(property_ids=[PROPERTY])


def assertion(key: dict[str, str], **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": key["client_email"],
        "sub": key["client_email"],
        "aud": key["token_uri"],
        "scope": ANALYTICS_READONLY,
        "iat": now,
        "exp": now + 3600,
    } | claims
    return jwt.encode(
        payload, key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]}
    )


def grant(key: dict[str, str], signed: str | None = None) -> httpx.Response:
    data = {"grant_type": JWT_BEARER, "assertion": signed or assertion(key)}
    return httpx.post(key["token_uri"], data=data)


def token(key: dict[str, str]) -> str:
    response = grant(key)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def run_report(
    fake: GoogleFake, access_token: str, body: dict[str, Any], prop: str = PROPERTY
) -> httpx.Response:
    return httpx.post(
        f"{fake.data_api_url}/v1beta/properties/{prop}:runReport",
        json=body,
        headers={"Authorization": f"Bearer {access_token}"},
    )


def report(fake: GoogleFake, key: dict[str, str], **body: Any) -> dict[str, Any]:
    response = run_report(fake, token(key), body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def daily_sessions(result: dict[str, Any]) -> dict[str, int]:
    return {
        r["dimensionValues"][0]["value"]: int(r["metricValues"][0]["value"])
        for r in result.get("rows", [])
    }


# --- token endpoint -------------------------------------------------------------------------


def test_a_jwt_signed_with_the_key_gets_a_bearer_token(key: dict[str, str]) -> None:
    response = grant(key)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"].startswith("ya29.")
    assert key["type"] == "service_account" and "BEGIN PRIVATE KEY" in key["private_key"]


def test_a_tampered_jwt_is_refused(fake: GoogleFake, key: dict[str, str]) -> None:
    header, payload, signature = assertion(key).split(".")
    other = assertion(key, scope="https://www.googleapis.com/auth/cloud-platform")
    tampered = f"{header}.{other.split('.')[1]}.{signature}"
    someone_else = fake.service_account(property_ids=[PROPERTY])
    forged = assertion(someone_else, iss=key["client_email"], sub=key["client_email"])

    for signed in (tampered, forged):
        response = grant(key, signed)
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid JWT Signature.",
        }


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "invalid_grant"),
        ({"iss": "nobody@example.iam.gserviceaccount.com"}, "invalid_grant"),
        ({"scope": ""}, "invalid_scope"),
    ],
)
def test_bad_claims_are_refused(key: dict[str, str], claims: dict[str, Any], error: str) -> None:
    response = grant(key, assertion(key, **claims))

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_expired_unknown_and_revoked_tokens_are_unauthenticated(fake: GoogleFake) -> None:
    key = fake.service_account(property_ids=[PROPERTY])
    body = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "today"}],
        "metrics": [{"name": "sessions"}],
    }
    fresh = token(key)
    assert run_report(fake, fresh, body).status_code == 200

    unknown = run_report(fake, "ya29.nope", body)
    fake.revoke(key["client_email"])
    revoked = run_report(fake, fresh, body)

    for response in (unknown, revoked):
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert grant(key).json()["error"] == "invalid_grant"

    other = fake.service_account(property_ids=[PROPERTY])
    old = token(other)
    fake.expire_tokens()
    assert run_report(fake, old, body).status_code == 401


# --- runReport ------------------------------------------------------------------------------


def test_paging_with_limit_offset_and_row_count(fake: GoogleFake, key: dict[str, str]) -> None:
    body: dict[str, Any] = {
        "dateRanges": [{"startDate": "2026-11-01", "endDate": "2026-11-14"}],
        "dimensions": [{"name": "date"}, {"name": "sessionSourceMedium"}, {"name": "country"}],
        "metrics": [{"name": "sessions"}],
    }
    whole = report(fake, key, **body)
    total = whole["rowCount"]
    assert total == len(whole["rows"]) > 100

    pages, offset = [], 0
    while True:
        page = report(fake, key, **body, limit="100", offset=str(offset))
        assert page["rowCount"] == total
        if "rows" not in page:
            break
        pages.extend(page["rows"])
        offset += 100

    assert pages == whole["rows"]
    assert offset == -(-total // 100) * 100
    past_the_end = report(fake, key, **body, limit=100, offset=total + 5)
    assert "rows" not in past_the_end and past_the_end["rowCount"] == total


def test_values_are_strings_with_typed_metric_headers(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    result = report(
        fake,
        key,
        dateRanges=[{"startDate": "2026-11-10", "endDate": "2026-11-10"}],
        dimensions=[{"name": "date"}, {"name": "deviceCategory"}],
        metrics=[
            {"name": "sessions"},
            {"name": "engagementRate"},
            {"name": "averageSessionDuration"},
            {"name": "purchaseRevenue"},
        ],
        orderBys=[{"dimension": {"dimensionName": "deviceCategory"}}],
    )

    assert result["kind"] == "analyticsData#runReport"
    assert result["metadata"] == {"currencyCode": "USD", "timeZone": "America/Los_Angeles"}
    assert result["dimensionHeaders"] == [{"name": "date"}, {"name": "deviceCategory"}]
    assert result["metricHeaders"] == [
        {"name": "sessions", "type": "TYPE_INTEGER"},
        {"name": "engagementRate", "type": "TYPE_FLOAT"},
        {"name": "averageSessionDuration", "type": "TYPE_SECONDS"},
        {"name": "purchaseRevenue", "type": "TYPE_CURRENCY"},
    ]
    assert [r["dimensionValues"][1]["value"] for r in result["rows"]] == [
        "desktop",
        "mobile",
        "tablet",
    ]
    for row in result["rows"]:
        values = [v["value"] for v in row["dimensionValues"] + row["metricValues"]]
        assert all(isinstance(v, str) for v in values)
        assert row["dimensionValues"][0]["value"] == "20261110"
        assert values[2].isdigit()
        assert 0 <= float(values[3]) <= 1


def test_dates_are_days_in_the_property_time_zone(key: dict[str, str]) -> None:
    body = {
        "dateRanges": [{"startDate": "2026-11-05", "endDate": "2026-11-06"}],
        "dimensions": [{"name": "date"}],
        "metrics": [{"name": "sessions"}],
    }
    results, hourly = {}, {}
    for zone in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
        with GoogleFake.running(time_zone=zone, now=NOW, first_day=date(2026, 10, 1)) as fake:
            zone_key = fake.service_account(property_ids=[PROPERTY])
            results[zone] = report(fake, zone_key, **body)
            hourly[zone] = daily_sessions(
                report(fake, zone_key, **body | {"dimensions": [{"name": "dateHour"}]})
            )
        assert results[zone]["metadata"]["timeZone"] == zone

    utc, la, kolkata = (daily_sessions(results[z]) for z in results)
    assert set(utc) == set(la) == set(kolkata) == {"20261105", "20261106"}
    assert utc != la and utc != kolkata  # the same sessions, cut at other midnights
    # Los Angeles is UTC-8 in November: its 5th runs from 08:00 UTC on the 5th to 08:00 on the 6th
    la_5th_in_utc = [f"20261105{h:02}" for h in range(8, 24)] + [
        f"20261106{h:02}" for h in range(8)
    ]
    assert la["20261105"] == sum(hourly["UTC"].get(h, 0) for h in la_5th_in_utc)
    # and each zone's hours add up to its days
    for zone, days in zip(results, (utc, la, kolkata), strict=True):
        assert sum(hourly[zone].values()) == sum(days.values())
        assert {h[:8] for h in hourly[zone]} == set(days)


def test_today_has_only_the_hours_so_far_and_relative_dates_resolve(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    result = report(
        fake,
        key,
        dateRanges=[{"startDate": "2daysAgo", "endDate": "today"}],
        dimensions=[{"name": "dateHour"}],
        metrics=[{"name": "sessions"}],
    )

    hours = sorted(r["dimensionValues"][0]["value"] for r in result["rows"])
    assert hours[0].startswith("20261118") and hours[-1] <= "2026112010"


def test_a_property_not_granted_is_permission_denied(fake: GoogleFake, key: dict[str, str]) -> None:
    body = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "today"}],
        "metrics": [{"name": "sessions"}],
    }

    response = run_report(fake, token(key), body, prop="987654321")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(("field", "name"), [("dimensions", "pageTitleX"), ("metrics", "sesions")])
def test_an_unknown_dimension_or_metric_is_named(
    fake: GoogleFake, key: dict[str, str], field: str, name: str
) -> None:
    body = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "today"}],
        "metrics": [{"name": "sessions"}],
        field: [{"name": name}],
    }

    response = run_report(fake, token(key), body)

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert name in response.json()["error"]["message"]


def test_quota_exhaustion_then_success(fake: GoogleFake, key: dict[str, str]) -> None:
    body = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "today"}],
        "metrics": [{"name": "sessions"}],
    }
    access = token(key)
    fake.exhaust_quota(2)
    fake.fail(503)
    before = len(fake.calls(":runReport"))

    statuses = [run_report(fake, access, body) for _ in range(4)]

    assert [r.status_code for r in statuses] == [429, 429, 503, 200]
    error = statuses[0].json()["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert "quota" in error["message"]
    assert statuses[2].json()["error"]["status"] == "UNAVAILABLE"
    logged = fake.calls(":runReport")[before:]
    assert [r.status for r in logged] == [429, 429, 503, 200]
    assert logged[-1].body == body
    assert logged[-1].headers["authorization"] == f"Bearer {access}"


def test_revisions_change_the_last_days_only(key: dict[str, str]) -> None:
    body = {
        "dateRanges": [{"startDate": "6daysAgo", "endDate": "today"}],
        "dimensions": [{"name": "date"}],
        "metrics": [{"name": "sessions"}],
    }
    with GoogleFake.running(
        time_zone="America/Los_Angeles", now=NOW, first_day=date(2026, 10, 1)
    ) as fake:
        revised_key = fake.service_account(property_ids=[PROPERTY])
        before = daily_sessions(report(fake, revised_key, **body))
        fake.revise(date(2026, 11, 19), 1.5)
        fake.revise("2026-11-20", 0.5)
        after = daily_sessions(report(fake, revised_key, **body))

    assert sorted(before) == [f"202611{d}" for d in range(14, 21)]
    assert {d for d in before if before[d] != after[d]} == {"20261119", "20261120"}
    assert after["20261119"] > before["20261119"] and after["20261120"] < before["20261120"]


def test_a_token_without_an_analytics_scope_is_refused_by_the_data_api(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    scope = "https://www.googleapis.com/auth/cloud-platform"
    granted = grant(key, assertion(key, scope=scope))
    body = {
        "dateRanges": [{"startDate": "today", "endDate": "today"}],
        "metrics": [{"name": "sessions"}],
    }

    response = run_report(fake, granted.json()["access_token"], body)

    assert granted.status_code == 200  # Google grants the scopes asked for
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_an_empty_report_has_neither_rows_nor_row_count(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    result = report(
        fake,
        key,
        dateRanges=[{"startDate": "2026-09-01", "endDate": "2026-09-30"}],  # before first_day
        dimensions=[{"name": "date"}],
        metrics=[{"name": "sessions"}],
    )

    assert "rows" not in result and "rowCount" not in result
    assert result["metricHeaders"] == [{"name": "sessions", "type": "TYPE_INTEGER"}]


def test_rows_whose_metrics_are_all_zero_need_keep_empty_rows(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    body: dict[str, Any] = {
        "dateRanges": [{"startDate": "2026-11-10", "endDate": "2026-11-10"}],
        "dimensions": [{"name": "dateHour"}, {"name": "landingPage"}],
        "metrics": [{"name": "conversions"}],
    }

    dropped = report(fake, key, **body)
    kept = report(fake, key, **body, keepEmptyRows=True)

    assert all(r["metricValues"][0]["value"] != "0" for r in dropped["rows"])
    assert kept["rowCount"] > dropped["rowCount"]
    assert any(r["metricValues"][0]["value"] == "0" for r in kept["rows"])


def test_dlt_rest_client_authenticates_and_pages_through_a_report(fake: GoogleFake) -> None:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import OAuthJWTAuth
    from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

    key = fake.service_account(property_ids=[PROPERTY])
    auth = OAuthJWTAuth(
        client_id=key["client_email"],
        private_key=key["private_key"],
        auth_endpoint=key["token_uri"],
        scopes=[ANALYTICS_READONLY],
    )
    client = RESTClient(base_url=fake.data_api_url, auth=auth)
    paginator = OffsetPaginator(
        limit=20, offset_body_path="offset", limit_body_path="limit", total_path="rowCount"
    )
    body = {
        "dateRanges": [{"startDate": "2026-11-01", "endDate": "2026-11-10"}],
        "dimensions": [{"name": "date"}, {"name": "deviceCategory"}],
        "metrics": [{"name": "sessions"}],
    }

    pages = list(
        client.paginate(
            f"/v1beta/properties/{PROPERTY}:runReport",
            method="POST",
            json=body,
            paginator=paginator,
            data_selector="rows",
        )
    )

    assert [len(p) for p in pages] == [20, 10]  # 10 days x 3 devices
    assert fake.calls(":runReport")[-1].body == body | {"offset": 20, "limit": 20}
