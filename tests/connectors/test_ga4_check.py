"""The GA4 credential check against the Google fake over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from connectors.google_analytics.check import CHECK_RETRIES, check_credentials
from connectors.outbound import OutboundPolicy
from tests.fakes.google_api import GoogleFake

PROPERTY = "123456789"
NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
LOCAL = OutboundPolicy(allow_private=True)  # the fake is on loopback


@pytest.fixture(scope="module")
def fake() -> Iterator[GoogleFake]:
    with GoogleFake.running(
        time_zone="Pacific/Auckland", now=NOW, first_day=date(2026, 10, 1)
    ) as fake:
        yield fake


@pytest.fixture
def key(fake: GoogleFake) -> dict[str, str]:
    return fake.service_account(property_ids=[PROPERTY])


def check(fake: GoogleFake, key: Any, prop: str = PROPERTY, **options: Any) -> Any:
    defaults: dict[str, Any] = {"base_url": fake.data_api_url, "policy": LOCAL, "timeout_s": 5.0}
    options = defaults | options
    return check_credentials(prop, key, sleep=lambda _s: None, **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_secret_free(result: Any, key: dict[str, str]) -> None:
    text = repr(result)
    assert key["private_key"][40:100] not in text and "PRIVATE KEY" not in text


def test_a_key_that_reads_the_property_passes(fake: GoogleFake, key: dict[str, str]) -> None:
    result = check(fake, key)

    assert result.ok and result.status == 200
    assert result.details == {"time_zone": "Pacific/Auckland", "client_email": key["client_email"]}
    assert PROPERTY in result.message
    assert_secret_free(result, key)


def test_user_reports_are_asked_once_each(fake: GoogleFake, key: dict[str, str]) -> None:
    reports = [{"name": "by_page", "dimensions": ["landingPage"], "metrics": ["sessions"]}]

    assert check(fake, key, reports=reports).ok

    last = fake.calls(":runReport")[-1].body
    assert last["dimensions"] == [{"name": "date"}, {"name": "landingPage"}]
    assert last["limit"] == 1


def test_a_report_google_refuses_is_named(fake: GoogleFake, key: dict[str, str]) -> None:
    reports = [{"name": "typo", "metrics": ["sesions"]}]

    result = check(fake, key, reports=reports)

    assert (result.ok, result.status) == (False, 400)
    assert result.message.startswith("report typo:") and "sesions" in result.message


def test_a_property_not_granted_is_refused_naming_it(fake: GoogleFake, key: dict[str, str]) -> None:
    result = check(fake, key, prop="987654321")

    assert (result.ok, result.status) == (False, 400)
    assert "987654321" in result.message and key["client_email"] in result.message


def test_a_revoked_key_is_refused_with_google_s_reason(fake: GoogleFake) -> None:
    key = fake.service_account(property_ids=[PROPERTY])
    fake.revoke(key["client_email"])

    result = check(fake, key)

    assert (result.ok, result.status) == (False, 400)
    assert "invalid_grant" in result.message
    assert_secret_free(result, key)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "user"}, "type"),
        ({"private_key": "not a key"}, "private_key"),
        ({"client_email": ""}, "client_email"),
    ],
)
def test_a_malformed_key_is_refused_naming_the_field(
    fake: GoogleFake, key: dict[str, str], change: dict[str, str], field: str
) -> None:
    result = check(fake, key | change)

    assert (result.ok, result.status) == (False, 400)
    assert field in result.message
    assert_secret_free(result, key)


@pytest.mark.parametrize("prop", ["", "UA-12345-1", "12/../34"])
def test_a_property_id_that_is_not_a_number_is_refused(
    fake: GoogleFake, key: dict[str, str], prop: str
) -> None:
    before = len(fake.requests)

    result = check(fake, key, prop=prop)

    assert (result.ok, result.status) == (False, 400)
    assert result.message.startswith("property_id:")
    assert len(fake.requests) == before


def test_a_token_uri_the_policy_refuses_is_a_400(fake: GoogleFake, key: dict[str, str]) -> None:
    aimed = key | {"token_uri": "https://127.0.0.1:9/token"}

    result = check(fake, aimed, policy=OutboundPolicy(allow_private=False))

    assert (result.ok, result.status) == (False, 400)
    assert "loopback" in result.message


def test_an_unreachable_token_endpoint_is_a_503(fake: GoogleFake, key: dict[str, str]) -> None:
    aimed = key | {"token_uri": f"http://127.0.0.1:{closed_port()}/token"}

    result = check(fake, aimed)

    assert (result.ok, result.status) == (False, 503)
    assert "token endpoint" in result.message


def test_an_unreachable_data_api_is_a_503(fake: GoogleFake, key: dict[str, str]) -> None:
    result = check(fake, key, base_url=f"http://127.0.0.1:{closed_port()}")

    assert (result.ok, result.status) == (False, 503)


def test_quota_that_stays_exhausted_is_a_503(fake: GoogleFake, key: dict[str, str]) -> None:
    fake.exhaust_quota(CHECK_RETRIES + 1)  # every attempt the check makes

    result = check(fake, key)

    assert (result.ok, result.status) == (False, 503)
    assert "RESOURCE_EXHAUSTED" in result.message
