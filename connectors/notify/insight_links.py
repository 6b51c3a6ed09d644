"""Links an alert on an insight sends: the insight's page with the parameter values that
fired, and a signed, expiring URL of its chart picture that works without a session
(Slack's incoming webhooks cannot upload a file, so the message shows an image that Slack
fetches from sqlbook).

A chart token is `<payload>.<signature>`, both base64url without padding: the payload is
compact JSON `{"w": workspace id, "i": insight id, "p": parameter values, "e": expiry
(unix seconds)}`, the signature HMAC-SHA256 over the payload text with a key derived from
the installation's secret key. The token says which picture, never grants anything else:
the API draws it by running the insight with those values in its workspace's scope."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from connectors.settings import Settings, api_url

# How long a chart link in a notification works.
CHART_LINK_TTL = timedelta(days=7)
CHART_PATH = "/api/shared/charts/"
_KEY_PURPOSE = b"sqlbook shared chart link v1"


def public_base(settings: Settings) -> str:
    """The API's address for links (`connectors.settings.api_url`)."""
    return api_url(settings)


def query_items(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Parameter values as the UI's URL carries them: `p.<name>=value`, repeated for a
    list, `p.<name>.from`/`.to` for a date range, booleans true/false, unset empty."""
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        key = f"p.{name}"
        if isinstance(value, dict) and set(value) <= {"from", "to"}:
            items += [(f"{key}.{end}", _text(value[end])) for end in ("from", "to") if end in value]
        elif isinstance(value, list | tuple):
            items += [(key, _text(v)) for v in value]
        else:
            items.append((key, _text(value)))
    return items


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def insight_page_url(settings: Settings, insight_id: int, params: Mapping[str, Any]) -> str:
    """`<base>/insights/42?p.region=EU&p.region=US&p.range=last_30_days`."""
    query = urlencode(query_items(params), quote_via=quote)
    return f"{public_base(settings)}/insights/{insight_id}" + (f"?{query}" if query else "")


# --- signed chart links ----------------------------------------------------------------------


class ChartLinkRefused(Exception):
    """Not a token sqlbook signed (malformed or tampered with)."""


class ChartLinkExpired(Exception):
    """A token sqlbook signed, past its expiry."""


@dataclass(frozen=True)
class ChartGrant:
    workspace_id: int
    insight_id: int
    params: dict[str, Any]
    expires_at: datetime


def _key(secret_key: bytes) -> bytes:
    return hmac.new(secret_key, _KEY_PURPOSE, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_chart(
    secret_key: bytes,
    workspace_id: int,
    insight_id: int,
    params: Mapping[str, Any],
    expires_at: datetime,
) -> str:
    payload = json.dumps(
        {"w": workspace_id, "i": insight_id, "p": dict(params), "e": int(expires_at.timestamp())},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
    body = _b64(payload)
    signature = hmac.new(_key(secret_key), body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}"


def read_chart(secret_key: bytes, token: str, now: datetime | None = None) -> ChartGrant:
    """The grant a token carries; ChartLinkRefused unless sqlbook signed it as it is,
    ChartLinkExpired once its time is up."""
    body, _, signature = token.partition(".")
    try:
        given = _unb64(signature)
        expected = hmac.new(_key(secret_key), body.encode("ascii"), hashlib.sha256).digest()
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ChartLinkRefused("not a chart link sqlbook signed") from None
    if not hmac.compare_digest(given, expected):
        raise ChartLinkRefused("not a chart link sqlbook signed")
    try:
        data = json.loads(_unb64(body))
        grant = ChartGrant(
            workspace_id=int(data["w"]),
            insight_id=int(data["i"]),
            params=dict(data["p"]),
            expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError):
        raise ChartLinkRefused("not a chart link sqlbook signed") from None
    if grant.expires_at <= (now or datetime.now(UTC)):
        raise ChartLinkExpired("this chart link has expired")
    return grant


def chart_url(
    settings: Settings,
    secret_key: bytes,
    workspace_id: int,
    insight_id: int,
    params: Mapping[str, Any],
    now: datetime,
) -> str:
    token = sign_chart(secret_key, workspace_id, insight_id, params, now + CHART_LINK_TTL)
    return f"{public_base(settings)}{CHART_PATH}{token}.png"
