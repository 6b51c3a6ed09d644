"""Service-account auth for the Data API: a signed JWT exchanged for an access token.

    key = parse_service_account(secrets["service_account"])   # GoogleAuthError if malformed
    credentials = ServiceAccountCredentials(key, policy=OutboundPolicy.from_settings(settings))
    credentials.token()  # "ya29…", cached until a minute before it expires

The grant is Google's JWT bearer flow: an RS256 JWT (`iss` = the key's `client_email`, `scope`
= analytics.readonly, `aud` = the token URI, one hour) posted to the key's `token_uri` as
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…`. The token URI is part of
the key a workspace admin pastes, so it is user input: the request goes through the outbound
policy (connectors/outbound.py: no metadata, link-local or — unless the operator allows it —
private addresses), follows no redirect, and plain http is accepted only where the operator
allows private targets (a local test server or proxy), since the assertion is a bearer
credential for an hour.

Google refusing the key (`invalid_grant`: the key was deleted or the account disabled;
`unauthorized_client`, `invalid_scope` …) is a GoogleAuthError with Google's description;
429/5xx/unreachable are retried, then GoogleUnavailable. Neither the private key nor the
assertion nor the token appears in an error, a repr or the log.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connectors.google_analytics.client import google_error, send_with_retries
from connectors.google_analytics.errors import GoogleAuthError, GoogleUnavailable
from connectors.outbound import (
    OutboundPolicy,
    OutboundRefused,
    OutboundUnreachable,
    PolicyTransport,
)

log = logging.getLogger(__name__)

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
ANALYTICS_READONLY = "https://www.googleapis.com/auth/analytics.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600  # Google's maximum
REFRESH_MARGIN_S = 60  # a token this close to expiry is replaced before use


class ServiceAccountKey(BaseModel):
    """The fields of a service-account JSON key the connector uses (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["service_account"]
    client_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    private_key: SecretStr
    private_key_id: str | None = Field(default=None, max_length=200)
    token_uri: str = Field(default=GOOGLE_TOKEN_URI, max_length=2000)
    project_id: str | None = None


def parse_service_account(raw: Mapping[str, Any] | str) -> ServiceAccountKey:
    """The key as pasted (the JSON text or its object); GoogleAuthError naming each bad field,
    never a value."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise GoogleAuthError("the service-account key is not JSON") from None
    if not isinstance(raw, Mapping):
        raise GoogleAuthError("the service-account key is not a JSON object")
    try:
        key = ServiceAccountKey.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'key'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise GoogleAuthError(f"the service-account key is not valid: {problems}") from None
    _private_key(key)  # fail early on a key that cannot sign
    scheme = urlsplit(key.token_uri).scheme
    if scheme not in ("https", "http") or not urlsplit(key.token_uri).hostname:
        raise GoogleAuthError("the service-account key's token_uri is not an http(s) URL")
    return key


def _private_key(key: ServiceAccountKey) -> rsa.RSAPrivateKey:
    try:
        loaded = serialization.load_pem_private_key(
            key.private_key.get_secret_value().encode(), password=None
        )
    except (ValueError, TypeError):  # the message could quote the key: not kept
        loaded = None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise GoogleAuthError("the service-account key's private_key is not a PEM RSA key")
    return loaded


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_assertion(key: ServiceAccountKey, now: float, scope: str = ANALYTICS_READONLY) -> str:
    """The RS256 JWT of the bearer grant, valid one hour from `now`."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key.private_key_id:
        header["kid"] = key.private_key_id
    claims = {
        "iss": key.client_email,
        "scope": scope,
        "aud": key.token_uri,
        "iat": int(now),
        "exp": int(now) + ASSERTION_LIFETIME_S,
    }
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = _private_key(key).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


class ServiceAccountCredentials:
    """Access tokens of one service account, fetched when needed and cached (thread-safe)."""

    def __init__(
        self,
        key: ServiceAccountKey,
        *,
        policy: OutboundPolicy,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.key = key
        self._policy = policy
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"ServiceAccountCredentials(client_email={self.client_email!r})"

    @property
    def client_email(self) -> str:
        return self.key.client_email

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
                self._token, self._expires_at = self._grant()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _grant(self) -> tuple[str, float]:
        uri = self.key.token_uri
        host = urlsplit(uri).hostname or "?"
        if urlsplit(uri).scheme != "https" and not self._policy.allow_private:
            raise GoogleAuthError(
                f"the service-account key's token_uri must use https (host {host})"
            )
        now = self._clock()
        form = {"grant_type": JWT_BEARER, "assertion": sign_assertion(self.key, now)}
        what = f"the token endpoint {host}"
        try:
            with httpx.Client(
                transport=PolicyTransport(self._policy),
                timeout=self._timeout_s,
                follow_redirects=False,
                headers={"User-Agent": "sqlbook-ga4-connector"},
            ) as http:
                response = send_with_retries(
                    lambda: http.post(uri, data=form),
                    what=what,
                    max_retries=self._max_retries,
                    sleep=self._sleep,
                    rng=self._rng,
                )
        except OutboundRefused as exc:
            raise GoogleAuthError(
                f"the service-account key's token_uri is refused: {exc}"
            ) from None
        except OutboundUnreachable as exc:
            raise GoogleUnavailable(f"{what} is unreachable: {exc}") from None
        if response.status_code >= 300:
            error, description = google_error(response)
            raise GoogleAuthError(
                f"Google refused the key of service account {self.client_email} "
                f"({response.status_code} {error or 'error'}): {description}"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise GoogleAuthError(f"{what} answered without an access token") from None
        log.info("ga4: token for %s, valid %.0f s", self.client_email, expires_in)
        return token, now + expires_in
