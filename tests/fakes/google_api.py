"""A fake Google OAuth token endpoint and GA4 Data API (v1beta `runReport`) on loopback.

It speaks the real shapes, so connector code points at it through settings alone: a
service-account key's `token_uri` names the token endpoint, and the Data API's base URL
(Google's is `https://analyticsdata.googleapis.com`) is `fake.data_api_url`::

    with GoogleFake.running(time_zone="America/Los_Angeles") as fake:
        key = fake.service_account(property_ids=["123"])
        ...  # POST key["token_uri"], then POST {fake.data_api_url}/v1beta/properties/123:runReport

Token endpoint (`POST /token`): the JWT bearer grant, RS256 verified against the public half
of the key pair `service_account()` generated; `iss`, `aud`, `scope`, `iat`/`exp` checked
with Google's error bodies. Tokens live `token_ttl` seconds (3599, as Google's).

Data: sessions bucketed by UTC minute, generated deterministically from the property id and
the hour, each with a source/medium, landing page, country and device. `date` is the bucket's
day in the property's time zone, so the same buckets fall on different days in different
zones. Buckets exist from `first_day` up to `now` (a fixed datetime or the real clock).
`revise(day, factor)` scales a local day's counts, as GA does for the last days.

Faults: `exhaust_quota(n)` (429 RESOURCE_EXHAUSTED), `fail(status, n)` (500/503), `revoke()`
a service account (its key and tokens stop working); `requests` records every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ANALYTICS_READONLY = "https://www.googleapis.com/auth/analytics.readonly"
# scopes that let a token read the Data API
_ANALYTICS_SCOPES = {ANALYTICS_READONLY, "https://www.googleapis.com/auth/analytics"}
MAX_LIMIT = 250_000
DEFAULT_LIMIT = 10_000
_SCHEMA_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"

# --- the report schema ---------------------------------------------------------------------

_SOURCE_MEDIUMS = (
    "google / organic",
    "(direct) / (none)",
    "newsletter / email",
    "google / cpc",
    "news.ycombinator.com / referral",
)
_LANDING_PAGES = ("/", "/pricing", "/docs/getting-started", "/blog/sql-notebooks", "/signup")
_COUNTRIES = ("United States", "Germany", "India", "Japan", "Brazil")
_DEVICES = ("desktop", "mobile", "tablet")


@dataclass(frozen=True)
class SessionBucket:
    """Sessions that started in one minute with one combination of dimensions."""

    at: datetime  # UTC
    source_medium: str
    landing_page: str
    country: str
    device: str
    sessions: int
    users: int
    pageviews: int
    engaged: int
    conversions: int
    engagement_seconds: int
    revenue_micros: int


def _dimension_value(name: str, bucket: SessionBucket, zone: ZoneInfo) -> str:
    local = bucket.at.astimezone(zone)
    match name:
        case "date":
            return local.strftime("%Y%m%d")
        case "dateHour":
            return local.strftime("%Y%m%d%H")
        case "hour":
            return local.strftime("%H")
        case "sessionSourceMedium":
            return bucket.source_medium
        case "sessionSource":
            return bucket.source_medium.split(" / ")[0]
        case "sessionMedium":
            return bucket.source_medium.split(" / ")[1]
        case "landingPage" | "landingPagePlusQueryString":
            return bucket.landing_page
        case "country":
            return bucket.country
        case "deviceCategory":
            return bucket.device
    raise KeyError(name)


DIMENSIONS = (
    "date",
    "dateHour",
    "hour",
    "sessionSourceMedium",
    "sessionSource",
    "sessionMedium",
    "landingPage",
    "landingPagePlusQueryString",
    "country",
    "deviceCategory",
)


@dataclass(frozen=True)
class _Sums:
    sessions: int = 0
    users: int = 0
    pageviews: int = 0
    engaged: int = 0
    conversions: int = 0
    engagement_seconds: int = 0
    revenue_micros: int = 0

    def __add__(self, b: SessionBucket | _Sums) -> _Sums:
        return _Sums(
            self.sessions + b.sessions,
            self.users + b.users,
            self.pageviews + b.pageviews,
            self.engaged + b.engaged,
            self.conversions + b.conversions,
            self.engagement_seconds + b.engagement_seconds,
            self.revenue_micros + b.revenue_micros,
        )


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


# name -> (GA's metric type, value from the summed buckets)
METRICS: dict[str, tuple[str, Callable[[_Sums], int | float]]] = {
    "sessions": ("TYPE_INTEGER", lambda s: s.sessions),
    "totalUsers": ("TYPE_INTEGER", lambda s: s.users),
    "activeUsers": ("TYPE_INTEGER", lambda s: s.users),
    "screenPageViews": ("TYPE_INTEGER", lambda s: s.pageviews),
    "engagedSessions": ("TYPE_INTEGER", lambda s: s.engaged),
    "conversions": ("TYPE_INTEGER", lambda s: s.conversions),
    "keyEvents": ("TYPE_INTEGER", lambda s: s.conversions),
    "engagementRate": ("TYPE_FLOAT", lambda s: _ratio(s.engaged, s.sessions)),
    "bounceRate": ("TYPE_FLOAT", lambda s: _ratio(s.sessions - s.engaged, s.sessions)),
    "screenPageViewsPerSession": ("TYPE_FLOAT", lambda s: _ratio(s.pageviews, s.sessions)),
    "userEngagementDuration": ("TYPE_SECONDS", lambda s: s.engagement_seconds),
    "averageSessionDuration": (
        "TYPE_SECONDS",
        lambda s: _ratio(s.engagement_seconds, s.sessions),
    ),
    "purchaseRevenue": ("TYPE_CURRENCY", lambda s: s.revenue_micros / 1_000_000),
    "totalRevenue": ("TYPE_CURRENCY", lambda s: s.revenue_micros / 1_000_000),
}


def _format(value: int | float) -> str:
    """GA's strings: integers bare, other numbers with as many digits as they need."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@lru_cache(maxsize=100_000)
def _hour_buckets(property_id: str, hour: datetime) -> tuple[SessionBucket, ...]:
    seed = hashlib.sha256(f"{property_id}|{hour.isoformat()}".encode()).digest()
    rng = random.Random(seed)
    # busier in the (UTC) afternoon, so days differ by time zone
    count = 2 + (hour.hour % 12) // 4 + rng.randint(0, 2)
    buckets = []
    for _ in range(count):
        sessions = rng.randint(1, 25)
        conversions = rng.choice((0, 0, 0, 1, 2)) * (1 + sessions // 10)
        buckets.append(
            SessionBucket(
                at=hour + timedelta(minutes=rng.randrange(60)),
                source_medium=rng.choice(_SOURCE_MEDIUMS),
                landing_page=rng.choice(_LANDING_PAGES),
                country=rng.choice(_COUNTRIES),
                device=rng.choice(_DEVICES),
                sessions=sessions,
                users=rng.randint(max(1, sessions // 2), sessions),
                pageviews=sessions + rng.randint(0, 3 * sessions),
                engaged=rng.randint(0, sessions),
                conversions=conversions,
                engagement_seconds=sessions * rng.randint(5, 400),
                revenue_micros=conversions * rng.randint(1, 20_000) * 10_000,
            )
        )
    return tuple(buckets)


def _scaled(bucket: SessionBucket, factor: float) -> SessionBucket:
    def scale(n: int) -> int:
        return round(n * factor)

    return SessionBucket(
        bucket.at,
        bucket.source_medium,
        bucket.landing_page,
        bucket.country,
        bucket.device,
        scale(bucket.sessions),
        scale(bucket.users),
        scale(bucket.pageviews),
        scale(bucket.engaged),
        scale(bucket.conversions),
        scale(bucket.engagement_seconds),
        scale(bucket.revenue_micros),
    )


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """A google.rpc.Status error body."""

    STATUS = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        body = {
            "error": {"code": self.code, "message": self.message, "status": self.STATUS[self.code]}
        }
        headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
        return JSONResponse(body, self.code, headers=headers if self.code == 401 else None)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_QUOTA = (
    "Exhausted property tokens per hour for this property. These quota tokens will return in "
    "under an hour. To learn more, see "
    "https://developers.google.com/analytics/devguides/reporting/data/v1/quotas"
)
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
    "timeframe. Check your iat and exp values in the JWT claim."
)


# --- the fake -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, the form as a dict, or the raw text
    status: int


@dataclass
class _Account:
    client_email: str
    private_key_id: str
    public_key: rsa.RSAPublicKey
    property_ids: set[str]
    revoked: bool = False


@dataclass
class _Token:
    client_email: str
    scopes: set[str]
    expires_at: float


@dataclass
class GoogleFake:
    """State of the fake; `running()` serves it. Attributes are safe to change from tests."""

    time_zone: str = "UTC"
    currency_code: str = "USD"
    now: datetime | None = None  # the data's clock; None: the real one
    first_day: date | None = None  # first local day with data; default 90 days before now
    token_ttl: int = 3599
    clock: Callable[[], float] = time.time  # for tokens and JWT iat/exp
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    _accounts: dict[str, _Account] = field(default_factory=dict)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _revisions: dict[date, float] = field(default_factory=dict)
    _faults: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- serving --------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, **options: Any) -> Iterator[GoogleFake]:
        """Serve a new fake on 127.0.0.1 (a free port, uvicorn in a thread) until exit."""
        fake = cls(**options)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(fake.app(), log_level="warning", lifespan="off", access_log=False)
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the Google fake did not start (see the captured stderr)"
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1beta/{resource:path}", self._data_api, methods=["POST"]),
            ]
        )

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def data_api_url(self) -> str:
        """Stands for `https://analyticsdata.googleapis.com` (the version is in the path)."""
        return self.base_url

    # --- test controls --------------------------------------------------------------------

    def service_account(
        self, property_ids: list[str] | tuple[str, ...] = (), *, name: str | None = None
    ) -> dict[str, str]:
        """A complete service-account JSON key, granted read access to `property_ids`."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = name or f"sync-{secrets.token_hex(3)}"
        project = "sqlbook-test"
        email = f"{name}@{project}.iam.gserviceaccount.com"
        key_id = secrets.token_hex(20)
        with self._lock:
            self._accounts[email] = _Account(
                email, key_id, key.public_key(), {str(p) for p in property_ids}
            )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(int.from_bytes(hashlib.sha256(email.encode()).digest()[:8])),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def grant(self, client_email: str, property_id: str) -> None:
        with self._lock:
            self._accounts[client_email].property_ids.add(str(property_id))

    def revoke(self, client_email: str) -> None:
        """The key is deleted: grants fail and tokens already issued stop working."""
        with self._lock:
            self._accounts[client_email].revoked = True

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0

    def revise(self, day: date | str, factor: float) -> None:
        """Scale every count of local day `day` by `factor` (GA revising a recent day)."""
        day = date.fromisoformat(day) if isinstance(day, str) else day
        with self._lock:
            self._revisions[day] = factor

    def exhaust_quota(self, n: int = 1) -> None:
        """The next `n` runReport calls answer 429 RESOURCE_EXHAUSTED."""
        self.fail(429, n)

    def fail(self, status: int, n: int = 1) -> None:
        """The next `n` runReport calls answer `status` (429, 500 or 503) with Google's body."""
        with self._lock:
            self._faults.extend([status] * n)

    def calls(self, path_part: str) -> list[RecordedRequest]:
        return [r for r in self.requests if path_part in r.path]

    def today(self) -> date:
        return self._now().astimezone(ZoneInfo(self.time_zone)).date()

    # --- data -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.now or datetime.now(UTC)

    def buckets(self, property_id: str, start: date, end: date) -> list[SessionBucket]:
        """The property's buckets on local days `start`..`end`, revisions applied."""
        zone = ZoneInfo(self.time_zone)
        first = self.first_day or (self.today() - timedelta(days=90))
        start = max(start, first)
        lo = datetime.combine(start, datetime.min.time(), zone).astimezone(UTC)
        hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone)
        hi_utc = min(hi.astimezone(UTC), self._now().astimezone(UTC))
        hour = lo.replace(minute=0, second=0, microsecond=0)
        found = []
        while hour < hi_utc:
            for bucket in _hour_buckets(property_id, hour):
                if not lo <= bucket.at < hi_utc:
                    continue
                factor = self._revisions.get(bucket.at.astimezone(zone).date())
                found.append(bucket if factor is None else _scaled(bucket, factor))
            hour += timedelta(hours=1)
        return found

    def _resolve_date(self, text: str) -> date:
        today = self.today()
        if text == "today":
            return today
        if text == "yesterday":
            return today - timedelta(days=1)
        if m := re.fullmatch(r"(\d+)daysAgo", text):
            return today - timedelta(days=int(m.group(1)))
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ApiError(
                400, f"Invalid date: {text!r}. Use YYYY-MM-DD, NdaysAgo, yesterday, or today."
            ) from None

    # --- HTTP -----------------------------------------------------------------------------

    async def _record(self, request: StarletteRequest, response: JSONResponse) -> JSONResponse:
        raw = (await request.body()).decode(errors="replace")
        body: Any = raw
        if "json" in request.headers.get("content-type", ""):
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        elif "form" in request.headers.get("content-type", ""):
            body = {k: v[0] for k, v in parse_qs(raw).items()}
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    path,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                    response.status_code,
                )
            )
        return response

    async def _token(self, request: StarletteRequest) -> JSONResponse:
        return await self._record(request, await self._grant(request))

    async def _grant(self, request: StarletteRequest) -> JSONResponse:
        raw = (await request.body()).decode(errors="replace")
        if "json" in request.headers.get("content-type", ""):
            try:
                form = {k: str(v) for k, v in json.loads(raw).items()}
            except (ValueError, AttributeError):
                return _oauth_error("invalid_request", "Invalid JSON payload.")
        else:
            form = {k: v[0] for k, v in parse_qs(raw).items()}
        grant_type = form.get("grant_type")
        if grant_type is None:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type: ")
        if grant_type != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        account = self._accounts.get(str(claims.get("iss", "")))
        if account is None:
            return _oauth_error("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256":
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        kid = header.get("kid")
        if account.revoked or (kid is not None and kid != account.private_key_id):
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != self.token_uri:
            return _oauth_error(
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The expected value was {self.token_uri}, "
                f"however the value was {claims.get('aud')}.",
            )
        now = self.clock()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, int | float)
            or not isinstance(exp, int | float)
            or exp - iat > 3600
            or exp <= now
            or iat > now + 60  # Google allows a little clock skew
        ):
            return _oauth_error("invalid_grant", _SHORT_LIVED)
        sub = claims.get("sub")
        if sub is not None and sub != account.client_email:
            return _oauth_error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client "
                "not authorized for any of the scopes requested.",
            )
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes:
            return _oauth_error(
                "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = _Token(account.client_email, scopes, now + self.token_ttl)
        return JSONResponse(
            {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    async def _data_api(self, request: StarletteRequest) -> JSONResponse:
        try:
            response = await self._run_report(request)
        except ApiError as e:
            response = e.response()
        return await self._record(request, response)

    async def _run_report(self, request: StarletteRequest) -> JSONResponse:
        resource = request.path_params["resource"]
        m = re.fullmatch(r"properties/([^/:]+):runReport", resource)
        if m is None:
            raise ApiError(404, f"Method not found: /v1beta/{resource}")
        self._authorize(request)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            message = {
                429: _QUOTA,
                500: "Internal error encountered.",
                503: "The service is currently unavailable.",
            }.get(fault, "Fault injected by the fake.")
            raise ApiError(fault, message)
        property_id = m.group(1)
        if not property_id.isdigit():
            raise ApiError(400, f"Invalid property ID: {property_id}. A numeric ID is required.")
        token = self._tokens[request.headers["authorization"].split(" ", 1)[1]]
        if property_id not in self._accounts[token.client_email].property_ids:
            raise ApiError(
                403,
                "User does not have sufficient permissions for this property. To learn more "
                "about Property ID, see https://developers.google.com/analytics/devguides/"
                "reporting/data/v1/property-id.",
            )
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        # the report is built off the event loop: big ranges take a few hundred ms
        return JSONResponse(await asyncio.to_thread(self._report, property_id, body))

    def _authorize(self, request: StarletteRequest) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self._tokens.get(value) if scheme.lower() == "bearer" else None
        if (
            token is None
            or token.expires_at <= self.clock()
            or self._accounts[token.client_email].revoked
        ):
            raise ApiError(401, _UNAUTHENTICATED)
        if not token.scopes & _ANALYTICS_SCOPES:
            raise ApiError(403, "Request had insufficient authentication scopes.")

    def _report(self, property_id: str, body: dict[str, Any]) -> dict[str, Any]:
        known = {
            "property",
            "dateRanges",
            "dimensions",
            "metrics",
            "limit",
            "offset",
            "keepEmptyRows",
            "orderBys",
            "currencyCode",
            "returnPropertyQuota",
            "metricAggregations",
        }
        for name in body:
            if name not in known:
                raise ApiError(
                    400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                )
        dimensions = [str(d.get("name")) for d in body.get("dimensions", [])]
        metrics = [str(d.get("name")) for d in body.get("metrics", [])]
        ranges = body.get("dateRanges") or []
        for name in dimensions:
            if name not in DIMENSIONS:
                raise ApiError(
                    400,
                    f"Field {name} is not a valid dimension. For a list of valid dimensions "
                    f"and metrics, see {_SCHEMA_URL} ",
                )
        for name in metrics:
            if name not in METRICS:
                raise ApiError(
                    400,
                    f"Field {name} is not a valid metric. For a list of valid dimensions "
                    f"and metrics, see {_SCHEMA_URL} ",
                )
        if not metrics and not dimensions:
            raise ApiError(400, "Requests must have at least one metric or dimension.")
        if len(dimensions) > 9:
            raise ApiError(400, "Requests are limited to 9 dimensions.")
        if len(metrics) > 10:
            raise ApiError(400, "Requests are limited to 10 metrics.")
        if not ranges or len(ranges) > 4:
            raise ApiError(400, "Requests must have between 1 and 4 dateRanges.")
        try:
            limit = int(body.get("limit") or DEFAULT_LIMIT)
            offset = int(body.get("offset") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "limit and offset must be integers.") from None
        if limit < 0 or offset < 0:
            raise ApiError(400, "limit and offset must be non-negative.")
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)

        zone = ZoneInfo(self.time_zone)
        several = len(ranges) > 1
        groups: dict[tuple[str, ...], _Sums] = {}
        for i, rng in enumerate(ranges):
            start = self._resolve_date(str(rng.get("startDate", "")))
            end = self._resolve_date(str(rng.get("endDate", "")))
            if end < start:
                raise ApiError(400, "The dateRange's endDate must be on or after its startDate.")
            label = [str(rng.get("name") or f"date_range_{i}")] if several else []
            for bucket in self.buckets(property_id, start, end):
                key = tuple(_dimension_value(d, bucket, zone) for d in dimensions) + tuple(label)
                groups[key] = groups.get(key, _Sums()) + bucket

        headers = dimensions + (["dateRange"] if several else [])
        rows = [(key, [METRICS[m][1](sums) for m in metrics]) for key, sums in groups.items()]
        if not body.get("keepEmptyRows"):
            rows = [r for r in rows if not metrics or any(v != 0 for v in r[1])]
        self._order(rows, body.get("orderBys") or [], headers, metrics)
        page = rows[offset : offset + limit]
        report: dict[str, Any] = {
            "dimensionHeaders": [{"name": d} for d in headers],
            "metricHeaders": [{"name": m, "type": METRICS[m][0]} for m in metrics],
        }
        if page:
            report["rows"] = [
                {
                    "dimensionValues": [{"value": v} for v in key],
                    "metricValues": [{"value": _format(v)} for v in values],
                }
                for key, values in page
            ]
        if rows:
            report["rowCount"] = len(rows)
        report["metadata"] = {
            "currencyCode": body.get("currencyCode") or self.currency_code,
            "timeZone": self.time_zone,
        }
        if body.get("returnPropertyQuota"):
            report["propertyQuota"] = {
                "tokensPerDay": {"consumed": 1, "remaining": 199_999},
                "tokensPerHour": {"consumed": 1, "remaining": 39_999},
                "concurrentRequests": {"consumed": 0, "remaining": 10},
                "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
                "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
                "tokensPerProjectPerHour": {"consumed": 1, "remaining": 13_999},
            }
        report["kind"] = "analyticsData#runReport"
        return report

    @staticmethod
    def _order(
        rows: list[tuple[tuple[str, ...], list[int | float]]],
        order_bys: list[dict[str, Any]],
        dimensions: list[str],
        metrics: list[str],
    ) -> None:
        """Sort in place: `orderBys` last to first (stable), after a deterministic default of
        the first metric descending then the dimension values."""
        rows.sort(key=lambda r: r[0])
        if metrics:
            rows.sort(key=lambda r: r[1][0], reverse=True)
        for order in reversed(order_bys):
            desc = bool(order.get("desc"))
            if "dimension" in order:
                name = order["dimension"].get("dimensionName")
                if name not in dimensions:
                    raise ApiError(400, f"orderBys refers to {name}, which is not in dimensions.")
                i = dimensions.index(name)
                numeric = order["dimension"].get("orderType") == "NUMERIC"

                def dim_key(r: Any, i: int = i, numeric: bool = numeric) -> Any:
                    v = r[0][i]
                    return float(v) if numeric and _is_number(v) else v

                rows.sort(key=dim_key, reverse=desc)
            elif "metric" in order:
                name = order["metric"].get("metricName")
                if name not in metrics:
                    raise ApiError(400, f"orderBys refers to {name}, which is not in metrics.")
                j = metrics.index(name)

                def metric_key(r: Any, j: int = j) -> Any:
                    return r[1][j]

                rows.sort(key=metric_key, reverse=desc)
            else:
                raise ApiError(400, "An orderBy needs a dimension or a metric.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
