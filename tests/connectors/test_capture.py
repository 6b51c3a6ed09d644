"""The capture edge as pure rules: table-driven, no servers."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connectors.capture import (
    CaptureError,
    CaptureLimits,
    Origin,
    anonymous_id,
    decode_body,
    parse_posthog,
    to_rows,
)

LIMITS = CaptureLimits(max_body_bytes=10_000, max_event_bytes=2_000, max_batch_events=5)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ORIGIN = Origin(project_id=7, salt="s3", ip="203.0.113.9", user_agent="curl/8", received_at=NOW)


def rows_of(payload: object) -> list[dict]:
    req = parse_posthog(payload, LIMITS)
    return to_rows(req.events, ORIGIN, req.field, LIMITS)


def test_batch_maps_to_rows() -> None:
    event_id = str(uuid.uuid4())
    req = parse_posthog(
        {
            "api_key": "k",
            "batch": [
                {
                    "event": "signup",
                    "distinct_id": "u1",
                    "uuid": event_id,
                    "properties": {"plan": "pro", "$lib": "web", "$session_id": "s-1"},
                    "timestamp": "2026-11-20T10:00:00+02:00",
                }
            ],
        },
        LIMITS,
    )
    assert req.api_key == "k"
    (row,) = to_rows(req.events, ORIGIN, "batch", LIMITS)
    assert row == {
        "event_id": event_id,
        "project_id": 7,
        "event_name": "signup",
        "distinct_id": "u1",
        "properties": {"plan": "pro", "$lib": "web", "$session_id": "s-1"},
        "timestamp": "2026-11-20T08:00:00+00:00",
        "received_at": NOW.isoformat(),
        "ip": "203.0.113.9",
        "user_agent": "curl/8",
        "lib": "web",
        "session_id": "s-1",
    }


def test_single_event_body_and_token_alias() -> None:
    req = parse_posthog({"token": "k2", "event": "x", "distinct_id": 42}, LIMITS)
    assert req.api_key == "k2"
    (row,) = to_rows(req.events, ORIGIN, "", LIMITS)
    assert row["distinct_id"] == "42"
    assert row["timestamp"] == NOW.isoformat()  # no timestamp: the receive time
    uuid.UUID(row["event_id"])  # generated


def test_key_on_events_only() -> None:
    assert parse_posthog({"batch": [{"event": "a", "api_key": "k"}]}, LIMITS).api_key == "k"
    assert parse_posthog([{"event": "a", "token": "k"}], LIMITS).api_key == "k"
    in_properties = [{"event": "a", "properties": {"token": "k"}}, {"event": "b"}]
    assert parse_posthog(in_properties, LIMITS).api_key == "k"
    with pytest.raises(CaptureError, match="must be a string") as err:
        parse_posthog([{"event": "a"}, {"event": "b", "api_key": {"x": 1}}], LIMITS)
    assert err.value.field == "batch[1].api_key"
    with pytest.raises(CaptureError, match="different keys"):
        parse_posthog(
            {"batch": [{"event": "a", "api_key": "k"}, {"event": "b", "api_key": "j"}]}, LIMITS
        )


def test_missing_distinct_id_is_derived_from_ip_agent_and_salt() -> None:
    (row,) = rows_of({"event": "pageview"})
    assert row["distinct_id"] == anonymous_id("s3", "203.0.113.9", "curl/8")
    assert row["distinct_id"] != anonymous_id("other-salt", "203.0.113.9", "curl/8")
    assert row["distinct_id"] != anonymous_id("s3", "203.0.113.10", "curl/8")


def test_ip_property_overrides_socket_address() -> None:
    (row,) = rows_of({"event": "x", "distinct_id": "a", "properties": {"$ip": "2001:db8::1"}})
    assert row["ip"] == "2001:db8::1"
    (row,) = rows_of({"event": "x", "distinct_id": "a", "properties": {"$ip": "not-an-ip"}})
    assert row["ip"] == "203.0.113.9"


def test_far_future_timestamp_is_stamped_with_receive_time() -> None:
    future = (NOW + timedelta(days=3)).isoformat()
    (row,) = rows_of({"event": "x", "distinct_id": "a", "timestamp": future})
    assert row["timestamp"] == NOW.isoformat()
    assert row["properties"]["$original_timestamp"] == future


def test_naive_and_historical_timestamps() -> None:
    (row,) = rows_of({"event": "x", "distinct_id": "a", "timestamp": "2015-03-01T09:30:00"})
    assert row["timestamp"] == "2015-03-01T09:30:00+00:00"


def test_nul_and_lone_surrogates_are_replaced() -> None:
    (row,) = rows_of(
        {"event": "a\x00b", "distinct_id": "u\x00", "properties": {"k\x00": ["v\x00", "\ud800"]}}
    )
    assert "\x00" not in json.dumps(row)
    assert row["event_name"] == "a\ufffdb"
    json.dumps(row).encode("utf-8")  # encodable: no lone surrogates left


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"batch": [{"distinct_id": "a"}]}, "batch[0].event", "missing"),
        ({"batch": [{"event": "ok"}, {"event": ""}]}, "batch[1].event", "non-empty"),
        ({"batch": [{"event": 5}]}, "batch[0].event", "non-empty string"),
        ({"batch": [{"event": "a", "timestamp": "yesterday"}]}, "batch[0].timestamp", "ISO-8601"),
        ({"batch": [{"event": "a", "timestamp": 1700000000}]}, "batch[0].timestamp", "ISO-8601"),
        (
            {"batch": [{"event": "a", "timestamp": "1969-12-31T00:00:00Z"}]},
            "batch[0].timestamp",
            "1970",
        ),
        ({"batch": [{"event": "a", "uuid": "nope"}]}, "batch[0].uuid", "not a UUID"),
        ({"batch": [{"event": "a", "properties": [1]}]}, "batch[0].properties", "JSON object"),
        (
            {"batch": [{"event": "a", "distinct_id": {"x": 1}}]},
            "batch[0].distinct_id",
            "string or a number",
        ),
        ({"batch": [{"event": "a", "distinct_id": "x" * 201}]}, "batch[0].distinct_id", "200"),
        ({"batch": []}, "batch", "no events"),
        ({"batch": {"event": "a"}}, "batch", "list"),
        ({"batch": [{"event": "a"}] * 6}, "batch", "at most 5"),
        ({"batch": ["a"]}, "batch[0]", "JSON object"),
        ({"event": "a", "properties": {"big": "x" * 3000}}, "body", "limit"),
        ("just a string", "body", "JSON object"),
        ({"api_key": 5, "event": "a"}, "api_key", "string"),
    ],
)
def test_rejections_name_the_field(payload: object, field: str, message: str) -> None:
    with pytest.raises(CaptureError) as err:
        rows_of(payload)
    assert err.value.status == 400
    assert err.value.field == field
    assert message in err.value.message


def test_decode_plain_and_gzip() -> None:
    body = json.dumps({"event": "a"}).encode()
    assert decode_body(body, None, LIMITS) == {"event": "a"}
    assert decode_body(gzip.compress(body), "gzip", LIMITS) == {"event": "a"}
    # gzip without the header (some SDKs): found by its magic bytes
    assert decode_body(gzip.compress(body), None, LIMITS) == {"event": "a"}


@pytest.mark.parametrize(
    ("raw", "encoding", "status", "message"),
    [
        (b"{not json", None, 400, "malformed JSON at line 1"),
        (b"", None, 400, "empty"),
        (b"\xff\xfe{}", None, 400, "UTF-8"),
        (b"\x1f\x8bgarbage", None, 400, "invalid gzip"),
        (b"x" * 10_001, None, 413, "limit"),
        (gzip.compress(b" " * 50_000 + b"{}", mtime=0), "gzip", 413, "once decompressed"),
    ],
)
def test_decode_rejections(raw: bytes, encoding: str | None, status: int, message: str) -> None:
    with pytest.raises(CaptureError) as err:
        decode_body(raw, encoding, LIMITS)
    assert err.value.status == status and err.value.field == "body"
    assert message in err.value.message


def test_unknown_content_encoding_is_415() -> None:
    with pytest.raises(CaptureError) as err:
        decode_body(b"{}", "br", LIMITS)
    assert err.value.status == 415


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"event": "a", "properties": {"x": 1e400}}', "out of range"),
        (b'{"event": "a", "properties": {"x": NaN}}', "not valid JSON"),
        (b'{"event": "a", "properties": {"x": -Infinity}}', "not valid JSON"),
        (b'{"event": "a", "properties": {"x": ' + b"9" * 5000 + b"}}", "unusable number"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_numbers_and_nesting_json_cannot_store(raw: bytes, message: str) -> None:
    limits = CaptureLimits(max_body_bytes=1_000_000, max_event_bytes=2_000, max_batch_events=5)
    with pytest.raises(CaptureError) as err:
        decode_body(raw, None, limits)
    assert err.value.status == 400 and message in err.value.message


def test_properties_nested_too_deep_name_the_event() -> None:
    limits = CaptureLimits(max_body_bytes=1_000_000, max_event_bytes=1_000_000, max_batch_events=5)
    req = parse_posthog({"batch": [{"event": "a", "properties": {"p": nested(150)}}]}, limits)
    with pytest.raises(CaptureError) as err:
        to_rows(req.events, ORIGIN, "batch", limits)
    assert err.value.field == "batch[0].properties"
    ok = parse_posthog({"event": "a", "properties": {"p": nested(90)}}, limits)
    assert to_rows(ok.events, ORIGIN, "", limits)[0]["properties"]["p"] == nested(90)


def test_browser_identify_names_the_anonymous_id_it_replaces() -> None:
    anonymous = to_rows(
        [{"event": "$pageview", "properties": {"$lib": "sqlbook-js"}}], ORIGIN, "", LIMITS
    )[0]
    identify = {"event": "$identify", "distinct_id": "user-1", "properties": {"$lib": "sqlbook-js"}}
    (row,) = to_rows([identify], ORIGIN, "", LIMITS)
    assert row["properties"]["$anon_distinct_id"] == anonymous["distinct_id"]
    # a server SDK's identify: its IP and agent are the server's, never linked
    server = {
        "event": "$identify",
        "distinct_id": "user-2",
        "properties": {"$lib": "posthog-python"},
    }
    assert "$anon_distinct_id" not in to_rows([server], ORIGIN, "", LIMITS)[0]["properties"]
    # an explicit one is kept
    explicit = {**identify, "properties": {"$lib": "sqlbook-js", "$anon_distinct_id": "cookie-9"}}
    assert (
        to_rows([explicit], ORIGIN, "", LIMITS)[0]["properties"]["$anon_distinct_id"] == "cookie-9"
    )
