"""What existing SDKs send, turned into the internal event dicts `to_rows` takes.

Two families, each with its own routes (api/routes/capture.py):

**PostHog** (posthog-js, posthog-python, posthog-node …) on ``/capture``, ``/e``,
``/i/v0/e``, ``/track``, ``/batch``. Bodies: one event, a JSON array of events, or
``{"api_key" | "token", "batch": [...], "sent_at"}`` (the key may instead come in the
query, ``?api_key=`` or ``?token=``; both must then agree); gzip by ``Content-Encoding``, by
magic bytes or by ``?compression=gzip-js``; or a form ``data=<base64 JSON>`` with
``compression`` absent / ``base64`` (base64 JSON) or ``gzip-js`` (the data is gzip).
Events are PostHog's own shape already, so they pass through — ``$identify``, ``$set``,
``$set_once``, ``$create_alias``, ``$groupidentify`` included — with two changes PostHog
makes too: a top-level ``$set`` / ``$set_once`` is merged into ``properties`` (the
top-level value wins a clash, as in PostHog's ``normalizeEvent``), and the request's
``sent_at`` (body, else the ``_`` query parameter in milliseconds) is put on every event
for the clock-skew rule in `connectors.capture`.

``compression=lz64`` (LZ-string) is answered 415: PostHog removed it from posthog-js in
2023 and from posthog-js-lite in v5, and PyPI has no maintained decoder (``lzstring``'s
last release is from 2018).

**Segment** (analytics.js, analytics-python, RudderStack's SDKs …) on ``/v1/batch``
(``{"batch": [...], "writeKey"?, "sentAt"?, "context"?}``) and one message per request on
``/v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen``, ``/v1/group``,
``/v1/alias`` (the path gives ``type`` when the body has none). The write key comes from
``Authorization: Basic base64(key:)`` or ``writeKey`` in the body.

=========  ==================  ============================================================
type       internal ``event``  internal properties
=========  ==================  ============================================================
track      ``event``           ``properties``
identify   ``$identify``       ``$set`` = ``traits``
page       ``$pageview``       ``properties`` + ``$current_url`` (url), ``$host``,
                               ``$pathname`` (path), ``$referrer`` (referrer); ``name`` and
                               ``category`` kept as properties of those names; ``title``
                               stays ``title`` (what posthog-js sends)
screen     ``$screen``         ``properties`` + ``$screen_name`` = ``name``
group      ``$groupidentify``  ``$group_type`` = ``traits.type`` or ``"group"``,
                               ``$group_key`` = ``groupId``, ``$group_set`` = ``traits``
alias      ``$create_alias``   ``alias`` = ``previousId`` (distinct id = ``userId``)
=========  ==================  ============================================================

Every Segment message, whatever its type:

* distinct id = ``userId``, else ``anonymousId`` (one of them is required, as at
  Segment); both are kept: ``properties.$user_id`` and ``properties.$anon_distinct_id``.
* event id = ``messageId`` when it is a UUID, else UUIDv5(write key + ``messageId``), so a
  retried message gets the same id and the warehouse keeps it once; none → a new UUID.
* time: ``timestamp`` (or ``originalTimestamp``) corrected with ``sentAt`` (the message's,
  else the batch's) as Segment does — ``receivedAt - (sentAt - originalTimestamp)``, the
  same formula as PostHog's; a message carrying both ``timestamp`` and
  ``originalTimestamp`` was corrected already (a replay) and its ``timestamp`` is used as is.
* ``context.ip`` → ``$ip`` (the row's ip), ``context.userAgent`` → ``$raw_user_agent``
  (the row's user agent), ``context.library.name`` / ``.version`` → ``$lib`` /
  ``$lib_version``, ``context.page`` url / path / referrer → ``$current_url`` /
  ``$pathname`` / ``$referrer`` unless the properties say otherwise; the rest of
  ``context`` (campaign, device, os, locale, traits …) is kept as ``$segment_context``.
  Batch-level ``context`` is merged under each message's.
* ``integrations`` (Segment's destination switches) and other envelope fields are not
  stored.
* Segment's limits: a message over 32 KB or a request over 500 KB is a 400 naming which.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connectors.capture import (
    GZIP_MAGIC,
    MAX_DISTINCT_ID,
    CaptureError,
    CaptureLimits,
    CaptureRequest,
    check_batch,
    decompress,
    gunzip,
    parse_json,
    parse_posthog,
    parse_timestamp,
)

SEGMENT_MAX_MESSAGE_BYTES = 32 * 1024
SEGMENT_MAX_BATCH_BYTES = 500 * 1024
SEGMENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# UUIDv5 namespace of ids made from Segment messageIds that are not UUIDs.
MESSAGE_ID_NAMESPACE = uuid.UUID("e46aa5c3-dc7a-4fef-9dec-22da0af77b0d")

_COMPRESSIONS = {
    "": None,
    "none": None,
    "base64": "base64",
    "b64": "base64",
    "gzip": "gzip",
    "gzip-js": "gzip",
    "lz64": "lz64",
    "lz-string": "lz64",
}


def _path(field: str, i: int) -> str:
    return f"{field}[{i}]" if field else ""


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- PostHog -------------------------------------------------------------------------


def posthog_request(
    raw: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    query: Mapping[str, str],
    limits: CaptureLimits,
) -> CaptureRequest:
    """A PostHog capture request (any of its paths and body encodings) as internal events."""
    payload = decode_posthog_body(raw, content_type, content_encoding, query, limits)
    request = parse_posthog(payload, limits)
    sent_at = _posthog_sent_at(payload, query)
    events = [
        _posthog_event(event, _path(request.field, i), sent_at)
        for i, event in enumerate(request.events)
    ]
    key = request.api_key
    query_key = posthog_query_key(query)
    if key and query_key and key != query_key:
        raise CaptureError(400, "api_key", "differs from the key in the query string")
    return CaptureRequest(key or query_key, events, request.field, sent_at)


def posthog_query_key(query: Mapping[str, str]) -> str | None:
    """The project key when it travels in the URL (`?api_key=` or `?token=`): known before
    the body is read, so an unknown key costs no decompression."""
    return query.get("api_key") or query.get("token") or None


def decode_posthog_body(
    raw: bytes,
    content_type: str | None,
    content_encoding: str | None,
    query: Mapping[str, str],
    limits: CaptureLimits,
) -> Any:
    """The JSON inside whatever posthog-js and friends wrap it in."""
    body = decompress(raw, content_encoding, limits)
    compression = _compression(query.get("compression"))
    if _is_form(content_type) and not _looks_like_json(body):
        form = _parse_form(body)
        if form.get("compression"):
            compression = _compression(form["compression"])
        if "data" not in form:
            raise CaptureError(
                400, "data", "missing: a form body carries the events in data=<base64 JSON>"
            )
        body = _form_data(form["data"].encode("latin-1"), compression, limits)
    elif compression == "lz64":
        raise _lz64()
    elif compression == "base64" and not _looks_like_json(body):
        body = _unbase64(body, "body", limits)
    elif compression == "gzip" and not _looks_like_json(body):
        raise CaptureError(400, "body", "compression=gzip-js but the body is not gzip data")
    return parse_json(body)


def _compression(value: str | None) -> str | None:
    name = (value or "").strip().lower()
    if name not in _COMPRESSIONS:
        raise CaptureError(415, "compression", f"unsupported compression {value!r}")
    return _COMPRESSIONS[name]


def _lz64() -> CaptureError:
    return CaptureError(
        415,
        "compression",
        "lz64 (LZ-string) is not supported; send compression=gzip-js or base64",
    )


def _is_form(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


def _looks_like_json(body: bytes) -> bool:
    text = body.lstrip()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:].lstrip()
    return text[:1] in (b"{", b"[")


def _parse_form(body: bytes) -> dict[str, str]:
    # latin-1 keeps every byte as it was sent (data may be raw gzip, or UTF-8 JSON)
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    except ValueError as err:
        raise CaptureError(400, "body", f"malformed form body: {err}") from err
    return dict(pairs)


def _form_data(data: bytes, compression: str | None, limits: CaptureLimits) -> bytes:
    if compression == "lz64":
        raise _lz64()
    if data[:2] == GZIP_MAGIC:
        return gunzip(data, limits)
    if _looks_like_json(data):
        return data
    decoded = _unbase64(data, "data", limits)
    if decoded[:2] == GZIP_MAGIC:
        return gunzip(decoded, limits)
    if compression == "gzip":
        raise CaptureError(400, "data", "compression=gzip-js but data is not gzip")
    return decoded


def _unbase64(text: bytes, field: str, limits: CaptureLimits) -> bytes:
    # a `+` the client did not percent-encode arrives as a space; URL-safe is fine too
    cleaned = text.strip().replace(b" ", b"+").replace(b"-", b"+").replace(b"_", b"/")
    cleaned = cleaned.replace(b"\n", b"").replace(b"\r", b"")
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        out = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CaptureError(400, field, f"not valid base64: {err}") from err
    if len(out) > limits.max_body_bytes:
        raise CaptureError(413, field, "larger than the body limit once decoded")
    return out


def _posthog_sent_at(payload: Any, query: Mapping[str, str]) -> str | None:
    """The body's `sent_at`, else posthog-js' `_` query parameter (milliseconds; a value in
    seconds, from older SDKs, is ignored as PostHog does)."""
    if isinstance(payload, dict) and payload.get("sent_at") not in (None, ""):
        sent = parse_timestamp(payload["sent_at"], "sent_at")
        return sent.isoformat() if sent else None
    millis = query.get("_", "")
    if millis.isdigit():
        try:
            sent = datetime.fromtimestamp(int(millis) / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            return None
        if sent.year > 2020:
            return sent.isoformat()
    return None


def _posthog_event(event: dict[str, Any], path: str, sent_at: str | None) -> dict[str, Any]:
    event = dict(event)
    for key in ("$set", "$set_once"):
        if key not in event:
            continue
        top = event.pop(key)
        if top is None:
            continue
        if not isinstance(top, dict):
            raise CaptureError(400, _at(path, key), "must be a JSON object")
        properties = event.get("properties")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            continue  # to_rows names `properties`
        inner = properties.get(key) or {}
        if not isinstance(inner, dict):
            raise CaptureError(400, _at(path, f"properties.{key}"), "must be a JSON object")
        event["properties"] = {**properties, key: {**inner, **top}}
    if sent_at is not None:
        event["sent_at"] = sent_at
    return event


# --- Segment -------------------------------------------------------------------------


def segment_request(
    raw: bytes,
    *,
    content_encoding: str | None,
    authorization: str | None,
    message_type: str | None,
    limits: CaptureLimits,
) -> CaptureRequest:
    """A Segment HTTP API request as internal events. `message_type` is the type the path
    implies (``/v1/track`` → ``track``); None for ``/v1/batch``."""
    body = decompress(raw, content_encoding, limits)
    if len(body) > SEGMENT_MAX_BATCH_BYTES:
        raise CaptureError(
            400,
            "body",
            f"request is {len(body)} bytes; Segment's limit is 500 KB per request",
        )
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise CaptureError(400, "body", "expected a JSON object")
    key = segment_key(authorization, payload.get("writeKey"))
    if message_type is None:
        if "batch" not in payload:
            raise CaptureError(400, "batch", "missing")
        field = "batch"
        messages = check_batch(payload["batch"], field, limits)
        batch_sent_at = _iso(payload.get("sentAt"), "sentAt")
        batch_context = _object(payload.get("context"), "context")
    else:
        field = ""
        messages = [{k: v for k, v in payload.items() if k != "writeKey"}]
        batch_sent_at, batch_context = None, {}
    events = [
        _segment_event(
            message, _path(field, i), message_type, key or "", batch_sent_at, batch_context
        )
        for i, message in enumerate(messages)
    ]
    return CaptureRequest(key, events, field, batch_sent_at)


def segment_key(authorization: str | None, body_key: Any) -> str | None:
    """`Authorization: Basic base64(writeKey:)` and/or `writeKey` in the body."""
    header_key = None
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise CaptureError(
                401, "Authorization", "send 'Basic base64(writeKey:)'; other schemes are unknown"
            )
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as err:
            raise CaptureError(400, "Authorization", "Basic credentials are not base64") from err
        header_key = decoded.partition(":")[0] or None
    if body_key is not None and not isinstance(body_key, str):
        raise CaptureError(400, "writeKey", "must be a string")
    body_key = body_key or None
    if header_key and body_key and header_key != body_key:
        raise CaptureError(400, "writeKey", "differs from the key in the Authorization header")
    return header_key or body_key


def message_uuid(message_id: Any, write_key: str, field: str) -> str:
    if message_id is None or message_id == "":
        return str(uuid.uuid4())
    if isinstance(message_id, bool) or not isinstance(message_id, str | int):
        raise CaptureError(400, field, "must be a string")
    text = str(message_id)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{write_key}\x00{text}"))


def _segment_event(
    message: Any,
    path: str,
    implied: str | None,
    write_key: str,
    batch_sent_at: str | None,
    batch_context: dict[str, Any],
) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise CaptureError(400, path or "body", "each message must be a JSON object")
    size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
    if size > SEGMENT_MAX_MESSAGE_BYTES:
        raise CaptureError(
            400, path or "body", f"message is {size} bytes; Segment's limit is 32 KB per message"
        )
    kind = message.get("type") or implied
    if kind is None:
        raise CaptureError(400, _at(path, "type"), f"missing; one of {', '.join(SEGMENT_TYPES)}")
    if implied is not None and kind != implied:
        raise CaptureError(400, _at(path, "type"), f"{kind!r} sent to /v1/{implied}")
    if kind not in SEGMENT_TYPES:
        raise CaptureError(
            400, _at(path, "type"), f"unknown type {kind!r}; one of {', '.join(SEGMENT_TYPES)}"
        )

    user_id = _id(message.get("userId"), _at(path, "userId"))
    anonymous_id = _id(message.get("anonymousId"), _at(path, "anonymousId"))
    if kind == "alias" and user_id is None:
        raise CaptureError(400, _at(path, "userId"), "missing; alias needs userId and previousId")
    if user_id is None and anonymous_id is None:
        raise CaptureError(400, _at(path, "userId"), "userId or anonymousId is required")
    context = {**batch_context, **_object(message.get("context"), _at(path, "context"))}

    event: dict[str, Any] = {"distinct_id": user_id if user_id is not None else anonymous_id}
    properties: dict[str, Any]
    if kind == "track":
        event["event"] = message.get("event")
        properties = _object(message.get("properties"), _at(path, "properties"))
    elif kind == "identify":
        event["event"] = "$identify"
        properties = {"$set": _object(message.get("traits"), _at(path, "traits"))}
    elif kind == "page":
        event["event"] = "$pageview"
        properties = _page(message, path)
    elif kind == "screen":
        event["event"] = "$screen"
        properties = _object(message.get("properties"), _at(path, "properties"))
        _keep(properties, message, path, "category", "category")
        _keep(properties, message, path, "name", "$screen_name")
    elif kind == "group":
        event["event"] = "$groupidentify"
        traits = _object(message.get("traits"), _at(path, "traits"))
        group_id = _id(message.get("groupId"), _at(path, "groupId"))
        if group_id is None:
            raise CaptureError(400, _at(path, "groupId"), "missing")
        group_type = traits.get("type")
        properties = {
            "$group_type": group_type if isinstance(group_type, str) and group_type else "group",
            "$group_key": group_id,
            "$group_set": traits,
        }
    else:  # alias
        event["event"] = "$create_alias"
        previous_id = _id(message.get("previousId"), _at(path, "previousId"))
        if previous_id is None:
            raise CaptureError(400, _at(path, "previousId"), "missing")
        properties = {"alias": previous_id}

    if user_id is not None:
        properties["$user_id"] = user_id
    if anonymous_id is not None:
        properties["$anon_distinct_id"] = anonymous_id
    _context(properties, context)
    event["properties"] = properties
    event["uuid"] = message_uuid(message.get("messageId"), write_key, _at(path, "messageId"))

    timestamp = _iso(message.get("timestamp"), _at(path, "timestamp"))
    original = _iso(message.get("originalTimestamp"), _at(path, "originalTimestamp"))
    sent_at = _iso(message.get("sentAt"), _at(path, "sentAt")) or batch_sent_at
    if timestamp and original:
        event["timestamp"] = timestamp  # corrected already: a replay of Segment's output
    elif timestamp or original:
        event["timestamp"] = timestamp or original
        if sent_at:
            event["sent_at"] = sent_at
    return event


def _page(message: dict[str, Any], path: str) -> dict[str, Any]:
    properties = _object(message.get("properties"), _at(path, "properties"))
    _keep(properties, message, path, "name", "name")
    _keep(properties, message, path, "category", "category")
    for source, target in (("url", "$current_url"), ("path", "$pathname")):
        if isinstance(properties.get(source), str):
            properties[target] = properties[source]
    if isinstance(properties.get("referrer"), str):
        properties["$referrer"] = properties["referrer"]
    return properties


def _keep(
    properties: dict[str, Any], message: dict[str, Any], path: str, source: str, target: str
) -> None:
    value = message.get(source)
    if value is None:
        return
    if not isinstance(value, str):
        raise CaptureError(400, _at(path, source), "must be a string")
    properties.setdefault(target, value)


def _context(properties: dict[str, Any], context: dict[str, Any]) -> None:
    rest = dict(context)
    ip = rest.pop("ip", None)
    if isinstance(ip, str) and ip:
        properties["$ip"] = ip
    agent = rest.pop("userAgent", None)
    if isinstance(agent, str) and agent:
        properties["$raw_user_agent"] = agent
    library = rest.pop("library", None)
    if isinstance(library, dict):
        if library.get("name") is not None:
            properties["$lib"] = library["name"]
        if library.get("version") is not None:
            properties["$lib_version"] = library["version"]
    page = rest.get("page")
    if isinstance(page, dict):
        for source, target in (
            ("url", "$current_url"),
            ("path", "$pathname"),
            ("referrer", "$referrer"),
        ):
            if isinstance(page.get(source), str):
                properties.setdefault(target, page[source])
    url = properties.get("$current_url")
    if isinstance(url, str) and "$host" not in properties:
        try:
            host = urlsplit(url).netloc
        except ValueError:
            host = ""
        if host:
            properties["$host"] = host
    if rest:
        properties["$segment_context"] = rest


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CaptureError(400, field, "must be a JSON object")
    return dict(value)


def _id(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CaptureError(400, field, "must be a string or a number")
    text = str(value)
    if len(text) > MAX_DISTINCT_ID:
        raise CaptureError(400, field, f"longer than {MAX_DISTINCT_ID} characters")
    return text


def _iso(value: Any, field: str) -> str | None:
    parsed = parse_timestamp(value, field)
    return parsed.isoformat() if parsed else None
