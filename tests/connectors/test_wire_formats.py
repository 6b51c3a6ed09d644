"""Every SDK message type mapped to the internal event shape: table-driven, no servers."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from connectors.capture import (
    CaptureError,
    CaptureLimits,
    CaptureRequest,
    Origin,
    anonymous_id,
    to_rows,
)
from connectors.wire_formats import (
    MESSAGE_ID_NAMESPACE,
    message_uuid,
    posthog_request,
    segment_request,
)

LIMITS = CaptureLimits(max_body_bytes=2_000_000, max_event_bytes=200_000, max_batch_events=600)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ORIGIN = Origin(project_id=7, salt="s3", ip="203.0.113.9", user_agent="sdk/1", received_at=NOW)
KEY = "sqb_pk_test"
BASIC = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()


def ph(
    body: Any,
    *,
    content_type: str | None = None,
    encoding: str | None = None,
    query: dict[str, str] | None = None,
) -> CaptureRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return posthog_request(
        raw,
        content_type=content_type,
        content_encoding=encoding,
        query=query or {},
        limits=LIMITS,
    )


def seg(
    body: Any,
    message_type: str | None = None,
    *,
    auth: str | None = BASIC,
    encoding: str | None = None,
) -> CaptureRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return segment_request(
        raw,
        content_encoding=encoding,
        authorization=auth,
        message_type=message_type,
        limits=LIMITS,
    )


def rows(request: CaptureRequest, origin: Origin = ORIGIN) -> list[dict[str, Any]]:
    return to_rows(request.events, origin, request.field, LIMITS)


def one_row(request: CaptureRequest, origin: Origin = ORIGIN) -> dict[str, Any]:
    (row,) = rows(request, origin)
    return row


def subset(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: actual.get(k) for k in expected} == expected, actual


# --- PostHog: every call of the SDKs, as they put it on the wire -----------------------

POSTHOG_MESSAGES = [
    # posthog-python capture()
    (
        {
            "event": "signup",
            "distinct_id": "u1",
            "properties": {"plan": "pro", "$lib": "posthog-python"},
        },
        "signup",
        "u1",
        {"plan": "pro", "$lib": "posthog-python"},
    ),
    # posthog-python set(): $set at the top level goes into properties, as PostHog does
    (
        {"event": "$set", "distinct_id": "u1", "$set": {"name": "Ada"}, "properties": {}},
        "$set",
        "u1",
        {"$set": {"name": "Ada"}},
    ),
    (
        {"event": "$set_once", "distinct_id": "u1", "$set_once": {"first": "2026-01-01"}},
        "$set_once",
        "u1",
        {"$set_once": {"first": "2026-01-01"}},
    ),
    # posthog-python alias(previous_id="anon-1", distinct_id="u1")
    (
        {
            "event": "$create_alias",
            "distinct_id": "anon-1",
            "properties": {"distinct_id": "anon-1", "alias": "u1"},
        },
        "$create_alias",
        "anon-1",
        {"alias": "u1"},
    ),
    # posthog-python group_identify()
    (
        {
            "event": "$groupidentify",
            "distinct_id": "u1",
            "properties": {
                "$group_type": "company",
                "$group_key": "acme",
                "$group_set": {"employees": 11},
            },
        },
        "$groupidentify",
        "u1",
        {"$group_type": "company", "$group_key": "acme", "$group_set": {"employees": 11}},
    ),
    # posthog-js identify(): distinct id and token in properties, $set/$set_once on top,
    # properties' own $set merged under them (the top level wins a clash)
    (
        {
            "event": "$identify",
            "properties": {
                "distinct_id": "u1",
                "$anon_distinct_id": "anon-1",
                "token": KEY,
                "$set": {"email": "old@x", "plan": "free"},
            },
            "$set": {"email": "ada@x"},
            "$set_once": {"signup_source": "ad"},
        },
        "$identify",
        "u1",
        {
            "$anon_distinct_id": "anon-1",
            "$set": {"email": "ada@x", "plan": "free"},
            "$set_once": {"signup_source": "ad"},
        },
    ),
    # posthog-js $pageview with the device id only
    (
        {
            "event": "$pageview",
            "properties": {"$device_id": "dev-9", "$current_url": "https://shop.example/a"},
        },
        "$pageview",
        "dev-9",
        {"$current_url": "https://shop.example/a"},
    ),
]


@pytest.mark.parametrize(("event", "name", "distinct_id", "properties"), POSTHOG_MESSAGES)
def test_posthog_messages(
    event: dict[str, Any], name: str, distinct_id: str, properties: dict[str, Any]
) -> None:
    request = ph({"api_key": KEY, "batch": [event]})
    assert request.api_key == KEY
    row = one_row(request)
    assert (row["event_name"], row["distinct_id"]) == (name, distinct_id)
    subset(row["properties"], properties)


EVENT = {"event": "e", "distinct_id": "u1", "properties": {"token": KEY}}
JSON_EVENT = json.dumps(EVENT).encode()


def form(**fields: str) -> bytes:
    return urlencode(fields).encode()


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("raw", "content_type", "encoding", "query"),
    [
        pytest.param(JSON_EVENT, "application/json", None, {}, id="single event"),
        pytest.param(json.dumps([EVENT]).encode(), None, None, {}, id="array"),
        pytest.param(
            json.dumps({"token": KEY, "batch": [EVENT]}).encode(), None, None, {}, id="token"
        ),
        pytest.param(gzip.compress(JSON_EVENT), None, "gzip", {}, id="Content-Encoding"),
        pytest.param(gzip.compress(JSON_EVENT), "text/plain", None, {}, id="gzip magic"),
        pytest.param(
            gzip.compress(JSON_EVENT), "text/plain", None, {"compression": "gzip-js"}, id="?gzip"
        ),
        pytest.param(
            form(data=base64.b64encode(JSON_EVENT).decode()), FORM, None, {}, id="form base64"
        ),
        pytest.param(
            form(data=base64.b64encode(JSON_EVENT).decode(), compression="base64"),
            FORM,
            None,
            {},
            id="form compression=base64",
        ),
        pytest.param(
            form(data=base64.b64encode(gzip.compress(JSON_EVENT)).decode()),
            FORM,
            None,
            {"compression": "gzip-js"},
            id="form gzip-js",
        ),
        pytest.param(
            form(data=base64.b64encode(JSON_EVENT).decode()).replace(b"%2B", b"+"),
            FORM + "; charset=UTF-8",
            None,
            {},
            id="form with an unencoded +",
        ),
        pytest.param(form(data=JSON_EVENT.decode()), FORM, None, {}, id="form JSON data"),
        pytest.param(JSON_EVENT, FORM, None, {}, id="curl -d JSON"),
        pytest.param(
            base64.b64encode(JSON_EVENT), "text/plain", None, {"compression": "base64"}, id="b64"
        ),
    ],
)
def test_posthog_body_encodings(
    raw: bytes, content_type: str | None, encoding: str | None, query: dict[str, str]
) -> None:
    request = ph(raw, content_type=content_type, encoding=encoding, query=query)
    assert request.api_key == KEY
    row = one_row(request)
    assert (row["event_name"], row["distinct_id"]) == ("e", "u1")


@pytest.mark.parametrize(
    ("raw", "content_type", "query", "status", "field", "message"),
    [
        (form(data="x", compression="lz64"), FORM, {}, 415, "compression", "lz64"),
        (JSON_EVENT, None, {"compression": "lz64"}, 415, "compression", "lz64"),
        (JSON_EVENT, None, {"compression": "brotli"}, 415, "compression", "brotli"),
        (form(compression="base64"), FORM, {}, 400, "data", "missing"),
        (form(data="%%%not base64"), FORM, {}, 400, "data", "base64"),
        (form(data=base64.b64encode(b"{oops").decode()), FORM, {}, 400, "body", "malformed"),
        (
            form(data=base64.b64encode(b"plain").decode()),
            FORM,
            {"compression": "gzip-js"},
            400,
            "data",
            "not gzip",
        ),
        (b"plain", "text/plain", {"compression": "gzip-js"}, 400, "body", "not gzip"),
        (
            json.dumps({"api_key": KEY, "sent_at": "yesterday", "batch": [EVENT]}).encode(),
            None,
            {},
            400,
            "sent_at",
            "ISO-8601",
        ),
        (
            json.dumps({"batch": [{"event": "a", "$set": ["x"]}]}).encode(),
            None,
            {},
            400,
            "batch[0].$set",
            "JSON object",
        ),
        (
            json.dumps({"event": "a", "$set": {}, "properties": {"$set": 3}}).encode(),
            None,
            {},
            400,
            "properties.$set",
            "JSON object",
        ),
    ],
)
def test_posthog_rejections_name_the_field(
    raw: bytes,
    content_type: str | None,
    query: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    with pytest.raises(CaptureError) as err:
        rows(ph(raw, content_type=content_type, query=query))
    assert (err.value.status, err.value.field) == (status, field), err.value
    assert message in err.value.message


def iso(t: datetime) -> str:
    return t.isoformat()


def test_posthog_sent_at_corrects_the_client_clock() -> None:
    # the client's clock is 1 h fast; it sent 10 min after the event happened
    client_now = NOW + timedelta(hours=1)
    event = {"event": "e", "distinct_id": "u", "timestamp": iso(client_now - timedelta(minutes=10))}
    request = ph({"api_key": KEY, "sent_at": iso(client_now), "batch": [event]})
    assert one_row(request)["timestamp"] == iso(NOW - timedelta(minutes=10))
    # posthog-js sends it as ?_=<milliseconds>; the body's value wins when both are there
    millis = str(int(client_now.timestamp() * 1000))
    assert one_row(ph([event], query={"_": millis}))["timestamp"] == iso(
        NOW - timedelta(minutes=10)
    )
    both = ph({"sent_at": iso(NOW), "batch": [event]}, query={"_": millis})
    assert one_row(both)["timestamp"] == event["timestamp"]
    # seconds (older SDKs) are not milliseconds: ignored, as PostHog does
    seconds = str(int(client_now.timestamp()))
    assert one_row(ph([event], query={"_": seconds}))["timestamp"] == event["timestamp"]


def test_posthog_sent_at_exceptions() -> None:
    client_now = NOW + timedelta(hours=1)
    ts = iso(client_now - timedelta(minutes=10))
    ignored = {"event": "e", "timestamp": ts, "properties": {"$ignore_sent_at": True}}
    no_ts = {"event": "e"}
    offset = {"event": "e", "timestamp": ts, "offset": 90_000}
    body = {"sent_at": iso(client_now), "batch": [ignored, no_ts, offset]}
    got = [r["timestamp"] for r in rows(ph(body))]
    assert got == [ts, iso(NOW), iso(NOW - timedelta(seconds=90))]


def test_future_rule_applies_after_the_correction() -> None:
    # an event 3 days after its own sent_at is still wrong: receive time, value kept
    far = iso(NOW + timedelta(days=3))
    row = one_row(ph({"sent_at": iso(NOW), "batch": [{"event": "e", "timestamp": far}]}))
    assert row["timestamp"] == iso(NOW)
    assert row["properties"]["$original_timestamp"] == far
    # a historical import through an SDK (sent now, happened in 2015) keeps its date
    old = {"event": "e", "timestamp": "2015-03-01T09:30:00+00:00"}
    sent_now = ph({"sent_at": iso(NOW + timedelta(seconds=2)), "batch": [old]})
    assert one_row(sent_now)["timestamp"] == "2015-03-01T09:29:58+00:00"


@pytest.mark.parametrize(
    ("event", "sent_at", "field"),
    [
        ({"event": "e", "timestamp": "1970-01-02T00:00:00Z"}, "2026-11-25T00:00:00Z", "timestamp"),
        ({"event": "e", "timestamp": "1970-01-01T00:00:00Z"}, "9999-12-31T00:00:00Z", "timestamp"),
        ({"event": "e", "offset": 1e300}, None, "offset"),
        ({"event": "e", "offset": "5"}, None, "offset"),
        ({"event": "e", "offset": 2 * 10**12}, None, "timestamp"),  # 63 years
    ],
)
def test_corrections_that_leave_the_calendar(
    event: dict[str, Any], sent_at: str | None, field: str
) -> None:
    body = {"batch": [event], **({"sent_at": sent_at} if sent_at else {})}
    with pytest.raises(CaptureError) as err:
        rows(ph(body))
    assert (err.value.status, err.value.field) == (400, f"batch[0].{field}")


def test_a_correction_past_9999_is_the_future_rule() -> None:
    event = {"event": "e", "timestamp": "9999-12-31T00:00:00Z"}
    row = one_row(ph({"sent_at": "1970-01-01T00:00:00Z", "batch": [event]}))
    assert row["timestamp"] == iso(NOW)
    assert row["properties"]["$original_timestamp"] == "9999-12-31T00:00:00+00:00"


def test_posthog_anonymised_ip_and_the_anonymous_id() -> None:
    anonymising = Origin(7, "s3", "203.0.113.9", "sdk/1", NOW, anonymize_ip=True)
    row = one_row(ph({"event": "e"}), anonymising)
    assert row["ip"] == "203.0.113.0"
    assert row["distinct_id"] == anonymous_id("s3", "203.0.113.0", "sdk/1")
    row = one_row(ph({"event": "e", "properties": {"$ip": "2001:db8:1:2::7"}}), anonymising)
    assert row["ip"] == row["properties"]["$ip"] == "2001:db8:1::"


# --- Segment: every message type -----------------------------------------------------

MESSAGE_ID = "ajs-next-1b2c3d"
CONTEXT = {
    "ip": "198.51.100.23",
    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "page": {"url": "https://shop.example/cart?x=1", "path": "/cart", "referrer": "https://q.ex/"},
    "locale": "de-DE",
}
SEGMENT_MESSAGES = [
    (
        {"type": "track", "event": "Order Completed", "properties": {"total": 30}},
        "Order Completed",
        {"total": 30, "$current_url": "https://shop.example/cart?x=1", "$pathname": "/cart"},
    ),
    (
        {"type": "identify", "traits": {"email": "ada@x", "plan": "pro"}},
        "$identify",
        {"$set": {"email": "ada@x", "plan": "pro"}},
    ),
    (
        {
            "type": "page",
            "name": "Pricing",
            "category": "Docs",
            "properties": {
                "url": "https://shop.example/pricing",
                "path": "/pricing",
                "referrer": "https://google.com/",
                "title": "Pricing – Shop",
            },
        },
        "$pageview",
        {
            "name": "Pricing",
            "category": "Docs",
            "title": "Pricing – Shop",
            "$current_url": "https://shop.example/pricing",
            "$host": "shop.example",
            "$pathname": "/pricing",
            "$referrer": "https://google.com/",
        },
    ),
    (
        {"type": "screen", "name": "Home", "properties": {"variant": "b"}},
        "$screen",
        {"$screen_name": "Home", "variant": "b"},
    ),
    (
        {"type": "group", "groupId": "acme", "traits": {"name": "Acme", "type": "company"}},
        "$groupidentify",
        {
            "$group_type": "company",
            "$group_key": "acme",
            "$group_set": {"name": "Acme", "type": "company"},
        },
    ),
    (
        {"type": "group", "groupId": 42, "traits": {"name": "Team"}},
        "$groupidentify",
        {"$group_type": "group", "$group_key": "42"},
    ),
    (
        {"type": "alias", "previousId": "anon-1"},
        "$create_alias",
        {"alias": "anon-1"},
    ),
]


@pytest.mark.parametrize(("message", "name", "properties"), SEGMENT_MESSAGES)
def test_segment_messages_in_a_batch(
    message: dict[str, Any], name: str, properties: dict[str, Any]
) -> None:
    message = {
        **message,
        "userId": "u1",
        "anonymousId": "a-7",
        "messageId": MESSAGE_ID,
        "context": CONTEXT,
    }
    request = seg({"batch": [message]})
    assert request.api_key == KEY
    row = one_row(request)
    assert (row["event_name"], row["distinct_id"]) == (name, "u1")
    subset(row["properties"], {**properties, "$user_id": "u1", "$anon_distinct_id": "a-7"})
    assert row["event_id"] == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{KEY}\x00{MESSAGE_ID}"))
    assert row["ip"] == "198.51.100.23"
    assert row["user_agent"] == CONTEXT["userAgent"]
    assert row["lib"] == "analytics.js"
    assert row["properties"]["$lib_version"] == "next-1.70.0"
    assert row["properties"]["$segment_context"] == {"page": CONTEXT["page"], "locale": "de-DE"}


@pytest.mark.parametrize(("message", "name", "properties"), SEGMENT_MESSAGES)
def test_segment_single_message_endpoints(
    message: dict[str, Any], name: str, properties: dict[str, Any]
) -> None:
    kind = message["type"]
    body = {k: v for k, v in message.items() if k != "type"}  # the path says it
    body.update(userId="u1", writeKey=KEY, context=CONTEXT)
    request = seg(body, kind, auth=None)
    assert request.api_key == KEY
    row = one_row(request)
    assert (row["event_name"], row["distinct_id"]) == (name, "u1")
    subset(row["properties"], properties)
    assert row["ip"] == "198.51.100.23"


def test_segment_anonymous_only_and_numbers() -> None:
    row = one_row(seg({"batch": [{"type": "track", "event": "x", "anonymousId": 123}]}))
    assert row["distinct_id"] == "123"
    assert row["properties"] == {"$anon_distinct_id": "123"}
    assert row["ip"] == ORIGIN.ip and row["user_agent"] == ORIGIN.user_agent  # no context


def test_segment_message_ids() -> None:
    real = str(uuid.uuid4())
    assert message_uuid(real, KEY, "messageId") == real
    assert message_uuid(real.upper(), KEY, "messageId") == real
    made = message_uuid("ajs-1", KEY, "messageId")
    assert made == message_uuid("ajs-1", KEY, "messageId")  # a retry: the same id
    assert made != message_uuid("ajs-1", "other-key", "messageId")
    assert made != message_uuid("ajs-2", KEY, "messageId")
    assert message_uuid(None, KEY, "m") != message_uuid(None, KEY, "m")  # none: new each time


@pytest.mark.parametrize(
    ("message", "batch_extra", "expected"),
    [
        # analytics-python: timestamp set by the client, sentAt on the batch
        (
            {"timestamp": "2026-11-21T12:50:00+00:00"},
            {"sentAt": "2026-11-21T13:00:00+00:00"},
            "2026-11-21T11:50:00+00:00",
        ),
        # originalTimestamp and the message's own sentAt (analytics.js)
        (
            {
                "originalTimestamp": "2026-11-21T11:59:00.000Z",
                "sentAt": "2026-11-21T12:00:30.000Z",
            },
            {"sentAt": "2030-01-01T00:00:00Z"},
            "2026-11-21T11:58:30+00:00",
        ),
        # both: corrected already (a replay) → timestamp as it is
        (
            {
                "timestamp": "2024-02-02T10:00:00Z",
                "originalTimestamp": "2024-02-02T09:00:00Z",
                "sentAt": "2024-02-02T09:00:05Z",
            },
            {},
            "2024-02-02T10:00:00+00:00",
        ),
        # no sentAt: as sent
        ({"timestamp": "2024-02-02T10:00:00Z"}, {}, "2024-02-02T10:00:00+00:00"),
        # nothing: receive time
        ({}, {"sentAt": "2026-11-21T13:00:00Z"}, NOW.isoformat()),
    ],
)
def test_segment_timestamps(
    message: dict[str, Any], batch_extra: dict[str, Any], expected: str
) -> None:
    body = {"batch": [{"type": "track", "event": "x", "userId": "u", **message}], **batch_extra}
    assert one_row(seg(body))["timestamp"] == expected


def test_segment_batch_context_is_merged_under_the_messages() -> None:
    body = {
        "context": {"ip": "192.0.2.1", "library": {"name": "rudder-python", "version": "2"}},
        "batch": [
            {"type": "track", "event": "a", "userId": "u"},
            {"type": "track", "event": "b", "userId": "u", "context": {"ip": "192.0.2.2"}},
        ],
    }
    first, second = rows(seg(body))
    assert (first["ip"], second["ip"]) == ("192.0.2.1", "192.0.2.2")
    assert first["lib"] == second["lib"] == "rudder-python"


def test_segment_context_ip_is_anonymised_everywhere() -> None:
    anonymising = Origin(7, "s3", "203.0.113.9", "sdk/1", NOW, anonymize_ip=True)
    row = one_row(
        seg({"batch": [{"type": "track", "event": "x", "userId": "u", "context": CONTEXT}]}),
        anonymising,
    )
    assert row["ip"] == row["properties"]["$ip"] == "198.51.100.0"
    assert "198.51.100.23" not in json.dumps(row)


def test_segment_keys() -> None:
    body = {"batch": [{"type": "track", "event": "x", "userId": "u"}]}
    assert seg(body).api_key == KEY
    assert seg({**body, "writeKey": KEY}, auth=None).api_key == KEY
    assert seg({**body, "writeKey": KEY}).api_key == KEY
    assert seg(body, auth=None).api_key is None
    gz = seg(gzip.compress(json.dumps(body).encode()), encoding="gzip")
    assert one_row(gz)["event_name"] == "x"


@pytest.mark.parametrize(
    ("body", "message_type", "auth", "status", "field", "message"),
    [
        ({"batch": []}, None, BASIC, 400, "batch", "no events"),
        ({"writeKey": KEY}, None, None, 400, "batch", "missing"),
        ([{"type": "track"}], None, BASIC, 400, "body", "JSON object"),
        ({"batch": [{"event": "x", "userId": "u"}]}, None, BASIC, 400, "batch[0].type", "missing"),
        ({"batch": [{"type": "boo", "userId": "u"}]}, None, BASIC, 400, "batch[0].type", "boo"),
        ({"type": "identify", "userId": "u"}, "track", BASIC, 400, "type", "/v1/track"),
        ({"batch": [{"type": "track", "event": "x"}]}, None, BASIC, 400, "batch[0].userId", "or"),
        ({"event": "x", "userId": {"a": 1}}, "track", BASIC, 400, "userId", "string"),
        ({"userId": "u"}, "track", BASIC, 400, "event", "missing"),
        ({"userId": "u", "event": "x", "properties": [1]}, "track", BASIC, 400, "properties", ""),
        ({"userId": "u", "traits": "x"}, "identify", BASIC, 400, "traits", "JSON object"),
        ({"userId": "u"}, "group", BASIC, 400, "groupId", "missing"),
        ({"anonymousId": "a", "previousId": "p"}, "alias", BASIC, 400, "userId", "previousId"),
        ({"userId": "u"}, "alias", BASIC, 400, "previousId", "missing"),
        ({"userId": "u", "name": 5}, "page", BASIC, 400, "name", "string"),
        ({"userId": "u", "event": "x", "messageId": {}}, "track", BASIC, 400, "messageId", ""),
        ({"userId": "u", "event": "x", "timestamp": "noon"}, "track", BASIC, 400, "timestamp", ""),
        (
            {"userId": "u", "event": "x", "originalTimestamp": 5},
            "track",
            BASIC,
            400,
            "originalTimestamp",
            "ISO-8601",
        ),
        ({"sentAt": "later", "batch": [{}]}, None, BASIC, 400, "sentAt", "ISO-8601"),
        ({"userId": "u", "event": "x", "context": 1}, "track", BASIC, 400, "context", "object"),
        ({"userId": "u", "event": "x", "writeKey": 5}, "track", None, 400, "writeKey", "string"),
        ({"userId": "u", "event": "x", "writeKey": "k2"}, "track", BASIC, 400, "writeKey", "diff"),
        ({"userId": "u", "event": "x"}, "track", "Bearer abc", 401, "Authorization", "Basic"),
        ({"userId": "u", "event": "x"}, "track", "Basic %%%", 400, "Authorization", "base64"),
    ],
)
def test_segment_rejections_name_the_field(
    body: Any, message_type: str | None, auth: str | None, status: int, field: str, message: str
) -> None:
    with pytest.raises(CaptureError) as err:
        rows(seg(body, message_type, auth=auth))
    assert (err.value.status, err.value.field) == (status, field), err.value
    assert message in err.value.message


def test_segment_limits_name_which() -> None:
    small = {"type": "track", "event": "x", "userId": "u"}
    big = {**small, "properties": {"blob": "x" * (32 * 1024)}}
    with pytest.raises(CaptureError) as err:
        seg({"batch": [small, big]})
    assert (err.value.status, err.value.field) == (400, "batch[1]")
    assert "32 KB per message" in err.value.message
    with pytest.raises(CaptureError) as err:
        seg({**big, "type": None}, "track")
    assert err.value.field == "body" and "32 KB per message" in err.value.message
    just_under = {**small, "properties": {"blob": "x" * (30 * 1024)}}
    with pytest.raises(CaptureError) as err:
        seg({"batch": [just_under] * 17})  # each fits, together 510 KB
    assert (err.value.status, err.value.field) == (400, "body")
    assert "500 KB per request" in err.value.message
    assert len(seg({"batch": [just_under] * 16}).events) == 16
