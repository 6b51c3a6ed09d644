"""A read-only GA4 Data API client: `runReport`, paged by offset, with retries.

    client = GA4Client("123456", credentials, base_url=settings.ga4_api_url)
    for page in client.report({"dateRanges": [...], "dimensions": [...], "metrics": [...]}):
        page["rows"], page["metricHeaders"], page["metadata"]["timeZone"]

Paging: `limit`/`offset` until `offset` reaches `rowCount` (a report with no rows has neither
`rows` nor `rowCount`). Each page is ordered by every dimension, so a row cannot move to
another page when metric values change between two requests (today's partial numbers do).

Retries: 429 (RESOURCE_EXHAUSTED, the property's quota), 5xx and connection errors/timeouts are
retried up to `max_retries` times, after `Retry-After` seconds when Google sends it (at most
60) or else a capped jittered backoff (`connectors.stripe.client.backoff_delay`); then a
GoogleUnavailable. A 401 is answered once by a fresh token (the old one may have expired);
a second one is a GoogleAuthError. 403 is a GooglePermissionError naming the property and the
service account. Messages never carry the token.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import httpx

from connectors.google_analytics.errors import (
    GoogleAuthError,
    GooglePermissionError,
    GoogleRequestError,
    GoogleUnavailable,
)
from connectors.stripe.client import backoff_delay

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://analyticsdata.googleapis.com"
PAGE_SIZE = 100_000  # GA allows up to 250,000 rows a page
MAX_RETRY_AFTER_S = 60.0
_PROPERTY_RE = re.compile(r"^(?:properties/)?(\d{1,20})$")

Report = dict[str, Any]


class TokenSource(Protocol):
    """Access tokens for the Data API (auth.ServiceAccountCredentials)."""

    @property
    def client_email(self) -> str: ...

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


def property_id_of(text: str) -> str:
    """The numeric id of a GA4 property given as "123456" or "properties/123456"."""
    match = _PROPERTY_RE.match(str(text).strip())
    if match is None:
        raise ValueError("a GA4 property id is a number (Admin > Property details), e.g. 123456789")
    return match.group(1)


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (at most 60), or None when absent or an HTTP date."""
    raw = response.headers.get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def google_error(response: httpx.Response) -> tuple[str | None, str]:
    """(status name, message) of a google.rpc.Status body, or of an OAuth error body; the
    message cut at 500 characters (a token URI is user input: its server's answer too)."""
    name, message = _google_error(response)
    return (name[:100] if name else None), message[:500]


def _google_error(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code}"
    error = body.get("error")
    if isinstance(error, dict):
        status, message = error.get("status"), error.get("message")
        return (str(status) if status else None), str(message or response.reason_phrase)
    if isinstance(error, str):  # the token endpoint: {"error", "error_description"}
        return error, str(body.get("error_description") or error)
    return None, response.reason_phrase or f"HTTP {response.status_code}"


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    what: str,
    max_retries: int,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> httpx.Response:
    """`send()` until it answers something other than 429/5xx (returned as is), retrying
    those and transport errors `max_retries` times; then GoogleUnavailable naming `what`."""
    attempt = 0
    while True:
        status: int | None = None
        delay: float | None = None
        try:
            response = send()
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__} on {what}"
        else:
            if response.status_code != 429 and response.status_code < 500:
                return response
            status = response.status_code
            name, message = google_error(response)
            reason = f"{what} answered {status} ({name or 'error'}): {message}"
            delay = retry_after(response)
        if attempt >= max_retries:
            raise GoogleUnavailable(
                f"{reason}; gave up after {attempt + 1} attempts",
                status=status,
                attempts=attempt + 1,
            )
        if delay is None:
            delay = backoff_delay(attempt, rng)
        log.warning("ga4: %s, retry %d in %.2f s", reason, attempt + 1, delay)
        sleep(delay)
        attempt += 1


class GA4Client:
    """The Data API for one property with one service account's tokens. Use as a context
    manager or call `close()`."""

    def __init__(
        self,
        property_id: str,
        credentials: TokenSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 30.0,
        max_retries: int = 6,
        page_size: int = PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 1 <= page_size <= 250_000:
            raise ValueError("page_size must be between 1 and 250000")
        self.property_id = property_id_of(property_id)
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.page_size = page_size
        self._sleep = sleep
        self._rng = rng
        # the Data API's URL is the operator's setting, not user input: no outbound policy
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "sqlbook-ga4-connector"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"GA4Client(property_id={self.property_id!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GA4Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- API -----------------------------------------------------------------------------

    def run_report(self, body: Report) -> Report:
        """One `runReport` call (one page), retried as the module says."""
        path = f"/v1beta/properties/{self.property_id}:runReport"
        what = f"GA4 runReport for property {self.property_id}"
        refreshed = False
        while True:
            headers = {"Authorization": f"Bearer {self.credentials.token()}"}
            response = send_with_retries(
                functools.partial(self._http.post, path, json=body, headers=headers),
                what=what,
                max_retries=self.max_retries,
                sleep=self._sleep,
                rng=self._rng,
            )
            if response.status_code == 401 and not refreshed:
                self.credentials.invalidate()  # expired or revoked: one fresh token decides
                refreshed = True
                continue
            if response.status_code >= 400:
                raise self._error(response)
            result = response.json()
            if not isinstance(result, dict):
                raise GoogleRequestError(response.status_code, None, "not a JSON object")
            return result

    def report(self, body: Report) -> Iterator[Report]:
        """Every page of a report: `body` plus `limit`/`offset` (and an order by every
        dimension), until `rowCount` rows were read. A report without rows is one page."""
        dimensions = [d["name"] for d in body.get("dimensions", [])]
        request = dict(body)
        request.setdefault("orderBys", [{"dimension": {"dimensionName": d}} for d in dimensions])
        offset = 0
        while True:
            page = self.run_report(request | {"limit": self.page_size, "offset": offset})
            yield page
            rows = page.get("rows") or []
            offset += len(rows)
            if not rows or offset >= int(page.get("rowCount") or 0):
                return

    def time_zone(self) -> str:
        """The property's time zone (its reports' `metadata.timeZone`), from a one-row report."""
        page = self.run_report(
            {
                "dateRanges": [{"startDate": "today", "endDate": "today"}],
                "metrics": [{"name": "sessions"}],
                "limit": 1,
            }
        )
        zone = (page.get("metadata") or {}).get("timeZone")
        if not zone:
            raise GoogleRequestError(200, None, "the report has no metadata.timeZone")
        return str(zone)

    # --- errors --------------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> Exception:
        status = response.status_code
        name, message = google_error(response)
        if status == 401:
            return GoogleAuthError(
                f"Google refused the access token of service account "
                f"{self.credentials.client_email} (401 {name or 'UNAUTHENTICATED'}): {message}"
            )
        if status == 403:
            return GooglePermissionError(self.property_id, self.credentials.client_email, message)
        return GoogleRequestError(status, name, message)
