"""The signature on every outbound event, and `verify`, the check a receiver runs.

Header: ``Sqlbook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
The timestamp is inside what is signed, so a captured request cannot be replayed later
with a new timestamp: a receiver refuses a signature whose `t` is further than its
tolerance from its own clock. Several `v1=` values may appear (while a secret is being
rotated); one matching is enough.

This module needs only the standard library, so a receiver in Python can copy it as is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Sqlbook-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The signature does not hold: the message says why (malformed, stale, mismatch)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` under `secret`."""
    signed = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the Sqlbook-Signature header for `body`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Checks a Sqlbook-Signature header against the raw request body; returns its
    timestamp. Raises SignatureError when the header is missing or malformed, its
    timestamp is more than `tolerance` seconds from `now` (a replay, or a clock far off),
    or no `v1` signature matches. Compare against the body bytes as received, before any
    JSON parsing."""
    if not header:
        raise SignatureError("no Sqlbook-Signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the signature's timestamp is not a number") from None
        elif key == "v1" and value:
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise SignatureError("the signature header needs t=<timestamp> and v1=<signature>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"the signature's timestamp is {int(abs(current - timestamp))} s away from now"
            f" (tolerance {int(tolerance)} s): refused as a possible replay"
        )
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("the signature does not match the body")
    return timestamp


__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "SignatureError",
    "sign_header",
    "signature",
    "verify",
]
