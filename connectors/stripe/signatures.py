"""Stripe webhook signatures: check a `Stripe-Signature` header against the raw body.

Stripe sends `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where each `v1` is
HMAC-SHA256, keyed by an endpoint secret (`whsec_…`), of `<t>.` followed by the body bytes
exactly as received. While a secret is being rolled Stripe adds one `v1` per active secret,
and an endpoint may have several secrets configured, so any `v1` matching any secret passes.
`v0` (test-mode legacy) and unknown schemes are ignored, as Stripe's own libraries do.

Checks run in the order Stripe's libraries use: the header's shape, then the signature, then
the timestamp — so "outside the tolerance" is only ever said of an authentic but replayed or
delayed delivery — and last the body, which is parsed only once it is known to be Stripe's.
Unlike Stripe's Python library, a timestamp too far in the future is refused as well.

A `SignatureError`'s reason is safe to log and to answer with: it never contains a secret,
a signature or the header; of the header it names only the timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_TOLERANCE_S = 300
SCHEME = "v1"

# Unix seconds; a bound on the digits keeps int() cheap and far from its 4300-digit limit.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class SignatureError(Exception):
    """A webhook that must be refused (answer 400, store nothing); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The event Stripe signed, or `SignatureError` with a secret-free reason.

    `payload` is the request body as received (never re-serialised JSON), `header` the
    `Stripe-Signature` value, `secrets` the endpoint's signing secrets, `now` unix seconds.
    """
    if not isinstance(payload, bytes):
        raise TypeError("payload must be the raw request body as bytes")
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    keys = [s for s in secrets if s]  # an empty key is no secret: anyone could sign with it
    if not keys:
        raise SignatureError("no webhook signing secret is configured for this endpoint")

    timestamp, signatures = _parse_header(header)
    signed = timestamp.encode() + b"." + payload
    expected = [_digest(key, signed) for key in keys]
    # Every pair is compared, in constant time, so timing says nothing about which matched.
    matched = [hmac.compare_digest(e, s) for e in expected for s in signatures]
    if not any(matched):
        raise SignatureError(
            f"no {SCHEME} signature matches the endpoint's signing secrets"
            f" ({len(signatures)} signature(s) against {len(keys)} secret(s))"
        )

    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance_s:
        raise SignatureError(
            f"timestamp t={timestamp} is {_seconds(age)} s old; the tolerance is {tolerance_s} s"
        )
    if -age > tolerance_s:
        raise SignatureError(
            f"timestamp t={timestamp} is {_seconds(-age)} s in the future;"
            f" the tolerance is {tolerance_s} s"
        )
    return _event(payload)


def sign(payload: bytes, secret: str, t: int, *, expiring: Sequence[str] = ()) -> str:
    """The `Stripe-Signature` header Stripe would send for `payload` at unix time `t`.

    `expiring` are older secrets still inside their roll window: Stripe signs with each of
    them too, one more `v1` apiece, after the current secret's.
    """
    if isinstance(expiring, str):
        raise TypeError("expiring must be a sequence of secrets, not one string")
    signed = f"{t:d}.".encode() + payload
    parts = [f"t={t:d}"]
    parts += [f"{SCHEME}={_digest(key, signed).decode()}" for key in (secret, *expiring)]
    return ",".join(parts)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _digest(secret: str, signed: bytes) -> bytes:
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()


def _parse_header(header: str | None) -> tuple[str, list[bytes]]:
    """The timestamp's digits and every `v1` value; reasons never echo the header."""
    if header is None:
        raise SignatureError("the Stripe-Signature header is missing")
    if not header.strip():
        raise SignatureError("malformed Stripe-Signature header: it is empty")
    timestamp: str | None = None
    signatures: list[bytes] = []
    for position, element in enumerate(header.split(","), start=1):
        key, sep, value = element.strip().partition("=")
        if not sep:
            raise SignatureError(
                f"malformed Stripe-Signature header: element {position} is not key=value"
            )
        if key == "t":
            if timestamp is not None:
                raise SignatureError("malformed Stripe-Signature header: more than one t=")
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError(
                    "malformed Stripe-Signature header: t= is not a unix timestamp in seconds"
                )
            timestamp = value
        elif key == SCHEME:
            # Any text is accepted here (ASGI decodes headers as latin-1); what is not the
            # lower-case hex of a digest simply never matches.
            signatures.append(value.encode("utf-8", "surrogatepass"))
    if timestamp is None:
        raise SignatureError("malformed Stripe-Signature header: no t= timestamp")
    if not signatures:
        raise SignatureError(f"malformed Stripe-Signature header: no {SCHEME}= signature")
    return timestamp, signatures


def _event(payload: bytes) -> dict[str, Any]:
    try:
        # Decoded first: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("the body is not UTF-8") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        raise SignatureError("the body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise SignatureError('the body is not a Stripe event (its "object" is not "event")')
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise SignatureError('the body is not a Stripe event (its "id" does not start "evt_")')
    return event
