"""From a capture request body to the one internal event shape.

The edge does all validation, so a batch is either accepted whole or rejected whole with
an error naming the field; what reaches the stream is already a warehouse row.

The internal event is PostHog's: `event`, `distinct_id`, `properties` (with `$set`,
`$set_once`, `$ip`, `$raw_user_agent`, `$lib` …), `timestamp`, `uuid`, and the request's
`sent_at` (or an `offset`) for clock-skew correction. `connectors.wire_formats` turns
every SDK's wire format into it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import math
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connectors.capture_policy import anonymize_ip

MAX_EVENT_NAME = 400
MAX_DISTINCT_ID = 200
# A client clock this far ahead is wrong; the event is stamped with the receive time
# (PostHog does the same) and the client's value kept in `$original_timestamp`.
MAX_FUTURE_SKEW = timedelta(hours=23)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


class CaptureError(Exception):
    """A request the client must fix. `field` is the JSON path of the offending value."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CaptureLimits:
    max_body_bytes: int
    max_event_bytes: int
    max_batch_events: int
    # How many times its compressed size a body may expand to (past RATIO_FLOOR_BYTES);
    # 0 = only max_body_bytes bounds it.
    max_compression_ratio: float = 100.0

    def inflate_limit(self, compressed_bytes: int) -> int:
        """How large a body of `compressed_bytes` may become once decompressed."""
        if self.max_compression_ratio <= 0:
            return self.max_body_bytes
        by_ratio = max(RATIO_FLOOR_BYTES, int(compressed_bytes * self.max_compression_ratio))
        return min(self.max_body_bytes, by_ratio)


# Below this size a decompressed body is fine whatever its ratio (a small batch of similar
# events compresses far better than 100:1, and costs nothing to parse).
RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CaptureRequest:
    api_key: str | None
    events: list[dict[str, Any]]
    field: str  # JSON path of the events list in the body, for error messages
    sent_at: str | None = None


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def decode_body(raw: bytes, content_encoding: str | None, limits: CaptureLimits) -> Any:
    """Undo gzip (by header or magic bytes) within the size limit, then parse JSON."""
    return parse_json(decompress(raw, content_encoding, limits))


GZIP_MAGIC = b"\x1f\x8b"


def decompress(raw: bytes, content_encoding: str | None, limits: CaptureLimits) -> bytes:
    """The body as sent before any Content-Encoding (or gzip found by its magic bytes),
    refusing a body over the size limit before or after decompression."""
    if len(raw) > limits.max_body_bytes:
        raise CaptureError(413, "body", f"larger than the {_mib(limits.max_body_bytes)} limit")
    encoding = (content_encoding or "").lower().strip()
    if encoding in ("gzip", "x-gzip") or raw[:2] == GZIP_MAGIC:
        return gunzip(raw, limits)
    if encoding == "deflate":
        return _inflate(zlib.decompressobj(), raw, limits, "deflate")
    if encoding not in ("", "identity"):
        raise CaptureError(415, "Content-Encoding", f"unsupported encoding {encoding!r}")
    return raw


# Every digit → "0", everything else → " ": a run of 19 digits is then a plain substring
# search, ~15x faster than a regex over a body full of UUIDs.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def _has_long_number(raw: bytes) -> bool:
    return _LONG_RUN in raw.translate(_DIGITS)


def parse_json(raw: bytes) -> Any:
    """UTF-8 JSON that PostgreSQL's jsonb can hold, or a CaptureError naming the field."""
    if not raw.strip():
        raise CaptureError(400, "body", "empty request body")
    # orjson parses several times faster; it refuses what we refuse too (NaN, 1e400, lone
    # surrogates, deep nesting) but reads integers beyond 64 bits as floats, so bodies with
    # long digit runs, and everything it refuses, take the exact path below (and its
    # precise error message). That path is bounded too: an integer costs one short
    # Python call (at most 20 digits are ever converted), and integers beyond 64 bits are
    # refused with the field that holds them, as PostHog does.
    if not _has_long_number(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CaptureError(400, "body", f"not UTF-8 text (byte {err.start})") from err
    oversized: list[_Oversized] = []

    def int64(digits: str) -> int | _Oversized:
        value = _int64(digits)
        if isinstance(value, _Oversized):
            oversized.append(value)
        return value

    try:
        payload = json.loads(
            text, parse_float=_finite_float, parse_constant=_no_constant, parse_int=int64
        )
    except json.JSONDecodeError as err:
        raise CaptureError(
            400, "body", f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from err
    except RecursionError as err:
        raise CaptureError(400, "body", "JSON nested too deeply") from err
    except ValueError as err:  # from the hooks below
        raise CaptureError(400, "body", f"unusable number: {err}") from err
    if oversized:
        path, value = _first_oversized(payload)
        raise CaptureError(
            400,
            path,
            f"unusable number: integer {value.digits[:24]}{'…' if len(value.digits) > 24 else ''}"
            " does not fit in 64 bits; send it as a string",
        )
    return payload


INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class _Oversized:
    """An integer literal beyond 64 bits, kept as text until its field is named."""

    digits: str


def _int64(digits: str) -> int | _Oversized:
    if len(digits) > 21:  # a sign and 20 digits: anything longer is out of range
        return _Oversized(digits)
    value = int(digits)
    if value < INT64_MIN or value > UINT64_MAX:
        return _Oversized(digits)
    return value


def _first_oversized(payload: Any) -> tuple[str, _Oversized]:
    """The JSON path of the first oversized integer (walked only to name the field)."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Oversized):
            return path or "body", value
        if isinstance(value, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{path or 'body'}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    raise AssertionError("an oversized integer was parsed but not found")


def _finite_float(text: str) -> float:
    # 1e400 parses to inf, which neither JSON nor PostgreSQL's jsonb can hold
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def gunzip(raw: bytes, limits: CaptureLimits) -> bytes:
    return _inflate(zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), raw, limits, "gzip")


def _inflate(decompressor: Any, raw: bytes, limits: CaptureLimits, kind: str) -> bytes:
    """Decompress, never producing more than the body may expand to (`max_length`): a
    decompression bomb costs the bytes it is allowed, no more."""
    limit = limits.inflate_limit(len(raw))
    try:
        out = decompressor.decompress(raw, limit + 1)
    except zlib.error as err:
        raise CaptureError(400, "body", f"invalid {kind} data: {err}") from err
    if not decompressor.eof and not decompressor.unconsumed_tail and len(out) <= limit:
        raise CaptureError(400, "body", f"truncated {kind} data")
    if len(out) > limit or decompressor.unconsumed_tail:
        if limit < limits.max_body_bytes:
            raise CaptureError(
                413,
                "body",
                f"compression ratio over {limits.max_compression_ratio:g}:1 ({len(raw)} bytes of"
                f" {kind} expand past {_mib(limit)}); send smaller batches",
            )
        raise CaptureError(
            413, "body", f"larger than the {_mib(limits.max_body_bytes)} limit once decompressed"
        )
    return out


def parse_posthog(payload: Any, limits: CaptureLimits) -> CaptureRequest:
    """PostHog's shapes: a single event, a JSON array of events, or
    ``{"api_key" | "token", "batch": [...], "sent_at"}``."""
    api_key: Any = None
    sent_at: Any = None
    field = "batch"
    if isinstance(payload, list):
        events = check_batch(payload, field, limits)
    elif isinstance(payload, dict):
        api_key = payload.get("api_key", payload.get("token"))
        sent_at = payload.get("sent_at")
        if "batch" in payload:
            events = check_batch(payload["batch"], field, limits)
        else:
            field = ""  # a single event: errors name its fields directly
            event = {k: v for k, v in payload.items() if k not in ("api_key", "token", "sent_at")}
            events = check_batch([event], field, limits)
    else:
        raise CaptureError(400, "body", "expected a JSON object")
    if api_key is None:
        api_key = _key_on_events(events, field)
    elif not isinstance(api_key, str):
        raise CaptureError(400, "api_key", "must be a string")
    return CaptureRequest(api_key, events, field, sent_at if isinstance(sent_at, str) else None)


def _key_on_events(events: list[dict[str, Any]], field: str) -> str | None:
    """Some SDKs put the key on each event, or in its properties (posthog-js: `token`)."""
    keys: set[str] = set()
    for i, event in enumerate(events):
        props = event.get("properties")
        key = event.get("api_key", event.get("token"))
        if key is None and isinstance(props, dict):
            key = props.get("token")
        if key is None:
            continue
        if not isinstance(key, str):
            name = "api_key" if "api_key" in event else "token"
            raise CaptureError(400, f"{field}[{i}].{name}" if field else name, "must be a string")
        keys.add(key)
    if len(keys) > 1:
        raise CaptureError(400, "api_key", "events in one request carry different keys")
    return keys.pop() if keys else None


def check_batch(batch: Any, field: str, limits: CaptureLimits) -> list[dict[str, Any]]:
    if not isinstance(batch, list):
        raise CaptureError(400, field, "must be a list of events")
    if not batch:
        raise CaptureError(400, field, "contains no events")
    if len(batch) > limits.max_batch_events:
        raise CaptureError(
            400, field, f"{len(batch)} events; at most {limits.max_batch_events} per request"
        )
    for i, event in enumerate(batch):
        path = f"{field}[{i}]" if field else ""
        if not isinstance(event, dict):
            raise CaptureError(400, path or "body", "each event must be a JSON object")
    return batch


@dataclass(frozen=True)
class Origin:
    """What the request itself says about where events came from."""

    project_id: int
    salt: str
    ip: str | None
    user_agent: str | None
    received_at: datetime
    anonymize_ip: bool = False  # the project's policy: keep the network, not the host


def to_rows(
    events: list[dict[str, Any]], origin: Origin, field: str, limits: CaptureLimits
) -> list[dict[str, Any]]:
    """Validate every event and map it to a warehouse row. One bad event rejects the batch."""
    rows = []
    for i, event in enumerate(events):
        path = f"{field}[{i}]" if field else ""
        try:
            rows.append(_to_row(event, origin, path, limits))
        except RecursionError as err:
            raise CaptureError(
                400, _at(path, "properties"), f"nested deeper than {MAX_DEPTH} levels"
            ) from err
    return rows


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _to_row(
    event: dict[str, Any], origin: Origin, path: str, limits: CaptureLimits
) -> dict[str, Any]:
    name = event.get("event")
    if name is None:
        raise CaptureError(400, _at(path, "event"), "missing")
    if not isinstance(name, str) or not name.strip():
        raise CaptureError(400, _at(path, "event"), "must be a non-empty string")
    if len(name) > MAX_EVENT_NAME:
        raise CaptureError(400, _at(path, "event"), f"longer than {MAX_EVENT_NAME} characters")

    properties = event.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise CaptureError(400, _at(path, "properties"), "must be a JSON object")
    else:
        properties = _clean(properties)
    name = scrub(name)

    timestamp = _event_time(event, properties, path, origin.received_at)
    if timestamp > origin.received_at + MAX_FUTURE_SKEW:
        # keep what the client said (its own clock), not our correction of it
        sent = parse_timestamp(event.get("timestamp"), _at(path, "timestamp"))
        properties["$original_timestamp"] = (sent or timestamp).isoformat()
        timestamp = origin.received_at

    event_id = _event_id(event.get("uuid"), _at(path, "uuid"))
    ip = parse_ip(properties.get("$ip")) or origin.ip
    if origin.anonymize_ip:
        ip = anonymize_ip(ip)
        if "$ip" in properties:
            properties["$ip"] = ip
    raw_agent = properties.get("$raw_user_agent")
    user_agent = raw_agent if isinstance(raw_agent, str) and raw_agent else origin.user_agent
    distinct_id = _distinct_id(event, properties, path)
    if distinct_id is None:
        distinct_id = anonymous_id(origin.salt, ip, user_agent)
    elif (
        name == "$identify"
        and properties.get("$lib") == BROWSER_LIB
        and not properties.get("$anon_distinct_id")
    ):
        # sqlbook-js stores nothing by default, so the visitor's earlier events carry the
        # id derived here; naming it lets persons link them to the identified user. Only
        # for our browser script: a server SDK's IP and agent are the server's, and would
        # merge every user it identifies into one person.
        properties["$anon_distinct_id"] = anonymous_id(origin.salt, ip, user_agent)
    session_id = properties.get("$session_id")
    lib = properties.get("$lib")

    row = {
        "event_id": event_id,
        "project_id": origin.project_id,
        "event_name": name,
        "distinct_id": distinct_id,
        "properties": properties,
        "timestamp": timestamp.isoformat(),
        "received_at": origin.received_at.isoformat(),
        "ip": ip,
        "user_agent": scrub(user_agent),
        "lib": scrub(str(lib)[:200]) if lib is not None else None,
        "session_id": scrub(str(session_id)[:200]) if session_id not in (None, "") else None,
    }
    size = len(orjson.dumps(row, default=str))
    if size > limits.max_event_bytes:
        raise CaptureError(
            400,
            path or "body",
            f"event is {size} bytes; the limit is {_mib(limits.max_event_bytes)}",
        )
    return row


MAX_DEPTH = 100
BROWSER_LIB = "sqlbook-js"  # `$lib` of api/static/t.js


def _clean(properties: dict[str, Any]) -> dict[str, Any]:
    """`scrub(properties)`, skipping the walk when one C-speed encode shows there is
    nothing to replace (no NUL, no lone surrogate) and the nesting cannot be too deep."""
    try:
        encoded = orjson.dumps(properties)
    except orjson.JSONEncodeError:  # lone surrogates, or nested beyond orjson's limit
        return scrub(properties)  # type: ignore[no-any-return]
    if b"\\u0000" in encoded or encoded.count(b"{") + encoded.count(b"[") > MAX_DEPTH:
        return scrub(properties)  # type: ignore[no-any-return]
    return properties


def scrub(value: Any, depth: int = 0) -> Any:
    """PostgreSQL text and jsonb refuse NUL and lone surrogates (JSON allows both): replace
    them with U+FFFD here, or one such event would block ingestion of its whole range."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if depth > MAX_DEPTH and isinstance(value, dict | list):
        raise RecursionError(f"deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {scrub(k): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    return value


def _timestamp(value: Any, field: str, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise CaptureError(400, field, "must be an ISO-8601 string")
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError as err:
        raise CaptureError(400, field, f"not an ISO-8601 timestamp: {value[:64]!r}") from err
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)  # no offset given: read as UTC, as PostHog does
    ts = ts.astimezone(UTC)
    if ts < EARLIEST:
        raise CaptureError(400, field, f"before 1970-01-01: {value[:64]!r}")
    return ts


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime; None for no value."""
    if value is None or value == "":
        return None
    return _timestamp(value, field, EARLIEST)


def _event_time(
    event: dict[str, Any], properties: dict[str, Any], path: str, now: datetime
) -> datetime:
    """PostHog's rule (plugin-server `parseEventTimestamp`): with a client `sent_at`, the
    client clock's error is taken out — `now + (timestamp - sent_at)` — unless the event
    asks for `$ignore_sent_at`; an `offset` (milliseconds before sending) gives
    `now - offset` and wins. No timestamp and no offset: the receive time."""
    timestamp = _timestamp(event.get("timestamp"), _at(path, "timestamp"), now)
    sent_at = event.get("sent_at")
    if (
        event.get("timestamp") not in (None, "")
        and sent_at not in (None, "")
        and not properties.get("$ignore_sent_at")
    ):
        skew = timestamp - _timestamp(sent_at, _at(path, "sent_at"), now)
        try:
            timestamp = now + skew
        except OverflowError:
            if skew < timedelta(0):  # before year 1
                raise CaptureError(
                    400, _at(path, "timestamp"), "before 1970-01-01 once corrected by sent_at"
                ) from None
            timestamp = datetime.max.replace(tzinfo=UTC)  # after 9999: the future rule takes it
    offset = event.get("offset")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise CaptureError(400, _at(path, "offset"), "must be a number of milliseconds")
        try:
            timestamp = now - timedelta(milliseconds=offset)
        except OverflowError as err:
            raise CaptureError(400, _at(path, "offset"), "out of range") from err
    if timestamp < EARLIEST:
        raise CaptureError(
            400, _at(path, "timestamp"), "before 1970-01-01 once corrected by sent_at/offset"
        )
    return timestamp


_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _event_id(value: Any, field: str) -> str:
    if value is None or value == "":
        return str(uuid.uuid4())
    if not isinstance(value, str):
        raise CaptureError(400, field, "must be a UUID string")
    if _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    try:
        return str(uuid.UUID(value))
    except ValueError as err:
        raise CaptureError(400, field, f"not a UUID: {value[:64]!r}") from err


def _distinct_id(event: dict[str, Any], properties: dict[str, Any], path: str) -> str | None:
    for source, value in (
        ("distinct_id", event.get("distinct_id")),
        ("properties.distinct_id", properties.get("distinct_id")),
        ("properties.$device_id", properties.get("$device_id")),
    ):
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CaptureError(400, _at(path, source), "must be a string or a number")
        text = scrub(str(value))
        if len(text) > MAX_DISTINCT_ID:
            raise CaptureError(400, _at(path, source), f"longer than {MAX_DISTINCT_ID} characters")
        return text
    return None


def parse_ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _parse_ip(value)


@functools.lru_cache(maxsize=4096)
def _parse_ip(value: str) -> str | None:
    """Cached: the connection's address is parsed on every request, and a client sends
    many (ipaddress takes microseconds)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def anonymous_id(salt: str, ip: str | None, user_agent: str | None) -> str:
    """A stable id for a visitor that sent none: hash of project salt, IP and user agent."""
    digest = hashlib.sha256(f"{salt}\x00{ip or ''}\x00{user_agent or ''}".encode()).hexdigest()
    return f"anon_{digest[:32]}"
