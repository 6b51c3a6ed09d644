"""A read-only Stripe API client for the connector sync: lists, retrieves, events, retries.

    client = StripeClient("rk_live_…", timeout_s=30, max_retries=5)
    for charge in client.list("charges", created_gte=cursor):
        ...

Paging: Stripe lists are newest first; the next page is asked with `starting_after=<the last
id of this page>` while `has_more`. Such a cursor is anchored on an object, not an offset, so
an object created while a client pages sorts *before* the anchor and is not returned by this
walk (and nothing already returned shifts into a later page, so no id is seen twice); the
sync picks it up on its next run (a `created` cursor, or the events it emitted). An object
deleted meanwhile simply stops appearing. The sync must therefore not treat one walk as a
snapshot of "now": it is a snapshot of what existed when the first page was read.

Retries: 429, 5xx and connection errors/timeouts are retried up to `max_retries` times, unless
Stripe says `Stripe-Should-Retry: false` (then never; `true` makes any status retryable, as in
Stripe's own libraries). The delay is `Retry-After` seconds when given (at most 60), else
exponential backoff with jitter: `uniform(0.5, 1) × 0.5 s × 2^n`, capped at 20 s. `sleep` is
injectable so tests never wait. GETs are idempotent, so retrying them is always safe.

Errors never carry the API key: not in the exception, its message, its args or the log.
Stripe echoes a masked key (`rk_live_****abcd`) in some 401/403 messages; those are redacted.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.stripe.com"
API_VERSION = "2024-06-20"
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 20.0
MAX_EVENT_TYPES = 20  # Stripe's limit on `types[]`
_KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]+$")
# a key, whole or as Stripe masks it in error messages ("sk_live_********abcd")
_KEY_IN_TEXT = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+")
_RESOURCE_RE = re.compile(r"^[a-z_]+(?:/[A-Za-z0-9_]+/[a-z_]+)?$")
_ID_RE = re.compile(r"^[A-Za-z0-9_]+$")

Obj = dict[str, Any]
Query = list[tuple[str, str]]  # a module-level alias: `list` is a method of StripeClient
Mode = Literal["test", "live"]


class StripeError(Exception):
    """Base of the client's errors; messages are safe to log and to show (no key)."""


class StripeAuthError(StripeError):
    """401: the key is invalid or revoked. Retrying will not help; stop syncing."""


class StripePermissionError(StripeError):
    """403: a restricted key lacks the read permission for `resource`."""

    def __init__(self, resource: str, message: str = "") -> None:
        self.resource = resource
        self.message = message
        super().__init__(
            f"the key has no read permission for Stripe {resource}"
            + (f": {message}" if message else "")
        )


class StripeRequestError(StripeError):
    """Any other 4xx (404 `resource_missing`, 400 bad parameter, …), with Stripe's message."""

    def __init__(
        self, status: int, type: str | None, message: str, code: str | None = None
    ) -> None:
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        super().__init__(f"Stripe answered {status} ({type or 'error'}): {message}")


class StripeUnavailable(StripeError):
    """Retries exhausted (429 / 5xx / connection errors), or a retryable failure Stripe said
    not to retry."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        self.status = status
        self.attempts = attempts
        super().__init__(message)


def key_mode(api_key: str) -> Mode:
    """ "test" or "live" from a secret (`sk_`) or restricted (`rk_`) key's prefix."""
    match = _KEY_RE.match(api_key) if isinstance(api_key, str) else None
    if not match:
        # never echo the value: it may be a real secret pasted in the wrong field
        raise ValueError(
            "not a Stripe secret or restricted key (expected sk_test_, sk_live_, rk_test_ "
            "or rk_live_ followed by letters and digits)"
        )
    return "live" if match.group(2) == "live" else "test"


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `attempt` (0-based): 0.5 × 2^n with jitter in [50 %, 100 %],
    capped at 20 s."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2**attempt))
    return ceiling * (0.5 + 0.5 * rng())


class StripeClient:
    """Read-only Stripe client over httpx. One per connection (the key is per tenant, never a
    process-wide global); use as a context manager or call `close()`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.mode: Mode = key_mode(api_key)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self._sleep = sleep
        self._rng = rng
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Stripe-Version": API_VERSION,
                "User-Agent": "sqlbook-stripe-connector",
            },
        )

    def __repr__(self) -> str:  # no key
        return f"StripeClient(mode={self.mode!r}, base_url={self.base_url!r})"

    @property
    def livemode(self) -> bool:
        return self.mode == "live"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StripeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- API -----------------------------------------------------------------------------------

    def list(
        self,
        resource: str,
        *,
        created_gte: int | None = None,
        created_lt: int | None = None,
        limit: int = 100,
        expand: Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[Obj]:
        """Every object of `/v1/<resource>` (e.g. "charges", "invoices/in_…/lines"), newest
        first, across pages. `expand` names fields of each object ("customer"); the `data.`
        prefix lists need is added. `params` adds list filters (`{"status": "all"}`)."""
        if not 1 <= limit <= 100:
            raise ValueError("limit must be between 1 and 100")
        query: Query = [("limit", str(limit))]
        if created_gte is not None:
            query.append(("created[gte]", str(int(created_gte))))
        if created_lt is not None:
            query.append(("created[lt]", str(int(created_lt))))
        for field in expand:
            query.append(("expand[]", field if field.startswith("data.") else f"data.{field}"))
        query += _encode(params or {})
        return self._paginate(resource, query)

    def retrieve(self, resource: str, object_id: str, *, expand: Iterable[str] = ()) -> Obj:
        """`GET /v1/<resource>/<id>`; a missing object is a StripeRequestError(404)."""
        if not _ID_RE.match(object_id):
            raise ValueError("not a Stripe object id")
        query = [("expand[]", field) for field in expand]
        return self._get(f"/v1/{_resource(resource)}/{object_id}", query, resource)

    def events(
        self,
        types: Iterable[str] | None = None,
        created_gt: int | None = None,
        *,
        limit: int = 100,
    ) -> Iterator[Obj]:
        """Events newer than `created_gt` (Stripe keeps 30 days), newest first, optionally only
        `types` (at most 20)."""
        wanted = list(types or ())
        if len(wanted) > MAX_EVENT_TYPES:
            raise ValueError(f"at most {MAX_EVENT_TYPES} event types per request")
        query: Query = [("limit", str(limit))]
        if created_gt is not None:
            query.append(("created[gt]", str(int(created_gt))))
        query += [("types[]", t) for t in wanted]
        return self._paginate("events", query)

    # --- plumbing ------------------------------------------------------------------------------

    def _paginate(self, resource: str, query: Query) -> Iterator[Obj]:
        path = f"/v1/{_resource(resource)}"
        cursor: str | None = None
        while True:
            page = self._get(
                path, query + ([("starting_after", cursor)] if cursor else []), resource
            )
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            cursor = str(data[-1]["id"])

    def _get(self, path: str, query: Query, resource: str) -> Obj:
        attempt = 0
        while True:
            delay: float | None
            try:
                response = self._http.get(path, params=tuple(query))
            except httpx.TransportError as exc:
                # the exception text can hold the URL, never the key (it is only in a header)
                reason = f"{type(exc).__name__} on GET {path}"
                status: int | None = None
                delay = None
            else:
                if response.status_code < 400:
                    body = response.json()
                    if not isinstance(body, dict):
                        raise StripeRequestError(response.status_code, None, "not a JSON object")
                    return body
                retry = self._retryable(response)
                if retry is None:
                    raise self._error(response, resource)
                status = response.status_code
                reason = f"HTTP {status} on GET {path}"
                if not retry:
                    raise StripeUnavailable(
                        f"{reason}: Stripe asked not to retry ({self._message(response)})",
                        status=status,
                        attempts=attempt + 1,
                    )
                delay = _retry_after(response)
            if attempt >= self.max_retries:
                raise StripeUnavailable(
                    f"{reason}; gave up after {attempt + 1} attempts",
                    status=status,
                    attempts=attempt + 1,
                )
            if delay is None:
                delay = backoff_delay(attempt, self._rng)
            log.warning("stripe: %s, retry %d in %.2f s", reason, attempt + 1, delay)
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _retryable(response: httpx.Response) -> bool | None:
        """True: retry; False: a retryable status Stripe said not to retry; None: not a
        transient failure (map it to an error)."""
        should = response.headers.get("Stripe-Should-Retry")
        transient = response.status_code == 429 or response.status_code >= 500
        if should == "false":
            return False if transient else None
        if should == "true" or transient:
            return True
        return None

    def _message(self, response: httpx.Response) -> str:
        return self._redact(str(_error_body(response).get("message") or response.reason_phrase))

    def _redact(self, text: str) -> str:
        return _KEY_IN_TEXT.sub("[redacted key]", text.replace(self._key, "[redacted key]"))

    def _error(self, response: httpx.Response, resource: str) -> StripeError:
        error = _error_body(response)
        message = self._message(response)
        if response.status_code == 401:
            return StripeAuthError(f"the Stripe API key was refused (401): {message}")
        if response.status_code == 403:
            return StripePermissionError(resource, message)
        return StripeRequestError(
            response.status_code,
            str(error["type"]) if error.get("type") else None,
            message,
            str(error["code"]) if error.get("code") else None,
        )


def _error_body(response: httpx.Response) -> Obj:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: Stripe sends seconds; fall back to backoff
    if seconds is None or seconds < 0:
        return None
    return min(seconds, 60.0)


def _resource(resource: str) -> str:
    if not _RESOURCE_RE.match(resource):
        raise ValueError(f"not a Stripe resource path: {resource!r}")
    return resource


def _encode(params: Mapping[str, Any]) -> Query:
    """Stripe's form encoding for GET: lists as `name[]`, booleans lowercase."""
    out: Query = []
    for name, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        key = f"{name}[]" if isinstance(value, (list, tuple)) else name
        for v in values:
            out.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return out
