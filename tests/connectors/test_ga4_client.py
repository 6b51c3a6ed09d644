"""GA4 auth, Data API client and report specs against the Google fake over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from connectors.google_analytics.auth import (
    ServiceAccountCredentials,
    parse_service_account,
)
from connectors.google_analytics.client import GA4Client, property_id_of, send_with_retries
from connectors.google_analytics.errors import (
    GoogleAuthError,
    GooglePermissionError,
    GoogleRequestError,
    GoogleUnavailable,
)
from connectors.google_analytics.reports import (
    DEFAULT_REPORTS,
    ReportSpecError,
    metric_value,
    parse_reports,
    request_body,
    rows_of,
)
from connectors.outbound import OutboundPolicy
from tests.fakes.google_api import GoogleFake

PROPERTY = "123456789"
NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
LOCAL = OutboundPolicy(allow_private=True)  # the fake is on loopback


class Sleeps(list[float]):
    """An injected `sleep` that records the delays asked and never waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def fake() -> Iterator[GoogleFake]:
    with GoogleFake.running(
        time_zone="America/Los_Angeles", now=NOW, first_day=date(2026, 10, 1)
    ) as fake:
        yield fake


@pytest.fixture
def key(fake: GoogleFake) -> dict[str, str]:
    return fake.service_account(property_ids=[PROPERTY])


def credentials(key: dict[str, str], policy: OutboundPolicy = LOCAL) -> ServiceAccountCredentials:
    return ServiceAccountCredentials(
        parse_service_account(key), policy=policy, timeout_s=5, max_retries=1, sleep=Sleeps()
    )


def client(
    fake: GoogleFake,
    key: dict[str, str],
    *,
    sleeps: Sleeps | None = None,
    max_retries: int = 3,
    page_size: int = 100_000,
    prop: str = PROPERTY,
) -> GA4Client:
    return GA4Client(
        prop,
        credentials(key),
        base_url=fake.data_api_url,
        timeout_s=5,
        max_retries=max_retries,
        page_size=page_size,
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=lambda: 1.0,
    )


BODY = request_body(
    ["date", "sessionSourceMedium", "country"], ["sessions"], "2026-11-01", "2026-11-07"
)


# --- auth -----------------------------------------------------------------------------------


def test_a_token_is_granted_once_and_reused(fake: GoogleFake, key: dict[str, str]) -> None:
    before = len(fake.calls("/token"))
    with client(fake, key) as ga:
        ga.run_report(BODY | {"limit": 1})
        ga.run_report(BODY | {"limit": 1})

    grants = fake.calls("/token")[before:]
    assert [g.status for g in grants] == [200]
    assert grants[0].body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_an_expired_token_is_replaced_without_failing(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    with client(fake, key) as ga:
        ga.run_report(BODY | {"limit": 1})
        fake.expire_tokens()
        before = len(fake.requests)
        page = ga.run_report(BODY | {"limit": 1})

    assert page["rows"]
    assert [(r.path.split(":")[-1], r.status) for r in fake.requests[before:]] == [
        ("runReport", 401),
        ("/token", 200),
        ("runReport", 200),
    ]


def test_a_revoked_key_is_an_auth_error_without_the_key(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    fake.revoke(key["client_email"])

    with client(fake, key) as ga, pytest.raises(GoogleAuthError) as caught:
        ga.run_report(BODY)

    message = str(caught.value)
    assert "invalid_grant" in message and key["client_email"] in message
    assert "PRIVATE KEY" not in message and key["private_key_id"] not in message


def test_a_key_revoked_after_its_token_was_issued_is_an_auth_error(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    with client(fake, key) as ga:
        ga.run_report(BODY | {"limit": 1})
        fake.revoke(key["client_email"])
        with pytest.raises(GoogleAuthError, match="invalid_grant"):
            ga.run_report(BODY | {"limit": 1})


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "authorized_user"}, "type"),
        ({"client_email": "not-an-email"}, "client_email"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "PEM"),
        ({"private_key": None}, "private_key"),
        ({"token_uri": "file:///etc/passwd"}, "token_uri"),
    ],
)
def test_a_malformed_key_names_the_field_not_the_value(
    key: dict[str, str], change: dict[str, Any], problem: str
) -> None:
    bad = {k: v for k, v in (key | change).items() if v is not None}

    with pytest.raises(GoogleAuthError) as caught:
        parse_service_account(bad)

    assert problem in str(caught.value)
    assert "BEGIN" not in str(caught.value) and key["private_key"][40:80] not in str(caught.value)


def test_the_key_may_be_given_as_json_text(key: dict[str, str]) -> None:
    parsed = parse_service_account(json.dumps(key))

    assert parsed.client_email == key["client_email"]
    assert key["private_key"] not in repr(parsed)


@pytest.mark.parametrize(
    ("token_uri", "policy", "reason"),
    [
        (None, OutboundPolicy(allow_private=False), "https"),  # the fake: http on loopback
        ("https://127.0.0.1:9/token", OutboundPolicy(allow_private=False), "loopback"),
        ("http://169.254.169.254/token", LOCAL, "metadata"),
        ("http://metadata.google.internal/token", LOCAL, "metadata"),
    ],
)
def test_the_token_uri_goes_through_the_outbound_policy(
    fake: GoogleFake,
    key: dict[str, str],
    token_uri: str | None,
    policy: OutboundPolicy,
    reason: str,
) -> None:
    aimed = key | ({"token_uri": token_uri} if token_uri else {})
    before = len(fake.requests)

    with pytest.raises(GoogleAuthError, match=reason):
        credentials(aimed, policy).token()

    assert len(fake.requests) == before


# --- runReport ------------------------------------------------------------------------------


def test_pages_by_offset_until_the_row_count(fake: GoogleFake, key: dict[str, str]) -> None:
    with client(fake, key) as ga:
        whole = list(ga.report(BODY))
    before = len(fake.calls(":runReport"))
    with client(fake, key, page_size=40) as ga:
        pages = list(ga.report(BODY))

    assert len(whole) == 1
    total = whole[0]["rowCount"]
    assert total > 100
    assert [len(p["rows"]) for p in pages] == [40] * (total // 40) + (
        [total % 40] if total % 40 else []
    )
    assert [r for p in pages for r in p["rows"]] == whole[0]["rows"]
    requests = fake.calls(":runReport")[before:]
    assert [r.body["offset"] for r in requests] == [40 * i for i in range(len(pages))]
    assert {r.body["limit"] for r in requests} == {40}
    # ordered by every dimension, so a row never moves between pages
    assert requests[0].body["orderBys"] == [
        {"dimension": {"dimensionName": d}} for d in ("date", "sessionSourceMedium", "country")
    ]


def test_a_report_without_rows_is_one_page(fake: GoogleFake, key: dict[str, str]) -> None:
    body = request_body(["date"], ["sessions"], "2026-09-01", "2026-09-30")

    with client(fake, key) as ga:
        pages = list(ga.report(body))

    assert len(pages) == 1 and "rows" not in pages[0]
    assert pages[0]["metadata"]["timeZone"] == "America/Los_Angeles"


def test_the_time_zone_is_the_property_s(fake: GoogleFake, key: dict[str, str]) -> None:
    with client(fake, key) as ga:
        assert ga.time_zone() == "America/Los_Angeles"


def test_quota_exhaustion_is_retried_with_backoff(fake: GoogleFake, key: dict[str, str]) -> None:
    sleeps = Sleeps()
    fake.exhaust_quota(2)
    fake.fail(503)

    with client(fake, key, sleeps=sleeps, max_retries=3) as ga:
        page = ga.run_report(BODY | {"limit": 1})

    assert page["rows"]
    assert sleeps == [0.5, 1.0, 2.0]


def test_exhausted_retries_are_a_clear_error(fake: GoogleFake, key: dict[str, str]) -> None:
    sleeps = Sleeps()
    fake.exhaust_quota(3)

    with (
        client(fake, key, sleeps=sleeps, max_retries=2) as ga,
        pytest.raises(GoogleUnavailable) as caught,
    ):
        ga.run_report(BODY)

    assert caught.value.status == 429 and caught.value.attempts == 3
    assert "RESOURCE_EXHAUSTED" in str(caught.value) and PROPERTY in str(caught.value)
    assert "Exhausted property tokens" in str(caught.value)
    assert len(sleeps) == 2


def test_retry_after_is_honoured() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"code": 429}}),
            httpx.Response(503, headers={"Retry-After": "3600"}),
            httpx.Response(200, json={}),
        ]
    )
    http = httpx.Client(transport=httpx.MockTransport(lambda _request: next(answers)))
    sleeps = Sleeps()

    response = send_with_retries(
        lambda: http.get("http://ga.test/"), what="test", max_retries=3, sleep=sleeps
    )

    assert response.status_code == 200
    assert sleeps == [7.0, 60.0]  # capped


def test_a_property_not_granted_is_a_permission_error_naming_it(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    with client(fake, key, prop="987654321") as ga, pytest.raises(GooglePermissionError) as caught:
        ga.run_report(BODY)

    assert caught.value.property_id == "987654321"
    assert "987654321" in str(caught.value) and key["client_email"] in str(caught.value)
    assert "sufficient permissions" in str(caught.value)


def test_an_unknown_metric_is_a_request_error_naming_it(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    with client(fake, key) as ga, pytest.raises(GoogleRequestError) as caught:
        ga.run_report(request_body(["date"], ["sesions"], "yesterday", "today"))

    assert caught.value.status == 400 and "sesions" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"), [("123456789", "123456789"), ("properties/42", "42"), (" 7 ", "7")]
)
def test_property_ids(given: str, expected: str) -> None:
    assert property_id_of(given) == expected


@pytest.mark.parametrize("given", ["", "abc", "123/../../x", "properties/", "12 34"])
def test_bad_property_ids(given: str) -> None:
    with pytest.raises(ValueError, match="number"):
        property_id_of(given)


# --- values ---------------------------------------------------------------------------------


def test_metric_values_are_typed_by_their_headers(fake: GoogleFake, key: dict[str, str]) -> None:
    body = request_body(
        ["date", "deviceCategory"],
        ["sessions", "engagementRate", "averageSessionDuration", "purchaseRevenue"],
        "2026-11-10",
        "2026-11-10",
    )
    with client(fake, key) as ga:
        (page,) = list(ga.report(body))

    rows = list(rows_of(page))

    assert len(rows) == 3
    for day, dims, metrics in rows:
        assert day == date(2026, 11, 10)
        assert set(dims) == {"deviceCategory"}
        assert isinstance(metrics["sessions"], int)
        assert all(
            isinstance(metrics[m], float)
            for m in ("engagementRate", "averageSessionDuration", "purchaseRevenue")
        )


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("42", "TYPE_INTEGER", 42),
        ("0.5", "TYPE_FLOAT", 0.5),
        ("12", "TYPE_CURRENCY", 12.0),
        ("93.25", "TYPE_SECONDS", 93.25),
        ("3", "TYPE_MILLISECONDS", 3.0),
        ("", "TYPE_INTEGER", None),
        ("n/a", "TYPE_FLOAT", None),
    ],
)
def test_metric_value(text: str, kind: str, value: int | float | None) -> None:
    typed = metric_value(text, kind)
    assert typed == value and type(typed) is type(value)


# --- report specs ---------------------------------------------------------------------------


def test_a_user_report_gets_date_first() -> None:
    (spec,) = parse_reports(
        [{"name": "by_page", "dimensions": ["landingPage", "date"], "metrics": ["sessions"]}]
    )

    assert spec.dimensions == ("date", "landingPage")
    assert parse_reports(None) == []


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ([{"name": "Bad-Name", "metrics": ["sessions"]}], "reports[0].name"),
        ([{"name": "x" * 42, "metrics": ["sessions"]}], "reports[0].name"),
        ([{"name": "daily", "metrics": ["sessions"]}], "default report"),
        ([{"name": "ok", "metrics": []}], "reports[0].metrics"),
        ([{"name": "ok", "metrics": [f"m{i}" for i in range(11)]}], "reports[0].metrics"),
        (
            [{"name": "ok", "dimensions": [f"d{i}" for i in range(9)], "metrics": ["sessions"]}],
            "reports[0].dimensions",
        ),
        ([{"name": "ok", "dimensions": ["page path"], "metrics": ["sessions"]}], "dimensions[0]"),
        ([{"name": "ok", "metrics": ["sessions", "sessions"]}], "repeat sessions"),
        ([{"name": "ok", "metrics": ["sessions"], "filter": "x"}], "reports[0].filter"),
        (
            [{"name": "a", "metrics": ["sessions"]}, {"name": "a", "metrics": ["keyEvents"]}],
            "more than one report is named a",
        ),
    ],
)
def test_bad_user_reports_are_named(reports: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ReportSpecError) as caught:
        parse_reports(reports)

    assert message in str(caught.value)


def test_custom_dimension_names_are_allowed() -> None:
    (spec,) = parse_reports(
        [{"name": "plans", "dimensions": ["customEvent:plan"], "metrics": ["keyEvents"]}]
    )

    assert spec.dimensions == ("date", "customEvent:plan")


def test_default_reports_ask_only_for_what_the_api_allows(
    fake: GoogleFake, key: dict[str, str]
) -> None:
    with client(fake, key) as ga:
        for report in DEFAULT_REPORTS:
            assert report.dimensions[0].api_name == "date"
            assert len(report.dimensions) <= 9 and 1 <= len(report.metrics) <= 10
            body = request_body(
                [d.api_name for d in report.dimensions],
                [m.api_name for m in report.metrics],
                "yesterday",
                "today",
            )
            (page, *_) = list(ga.report(body))
            headers = {h["name"]: h["type"] for h in page["metricHeaders"]}
            for metric in report.metrics:
                integer = headers[metric.api_name] == "TYPE_INTEGER"
                assert (metric.sql_type == "bigint") == integer, metric
