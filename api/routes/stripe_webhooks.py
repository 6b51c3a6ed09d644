"""Stripe webhooks: POST /webhooks/stripe/{connection_id}, the endpoint a Stripe account's
webhook points at.

No token: the `Stripe-Signature` is the authentication (HMAC-SHA256 of the raw body with
the connection's signing secrets, 300 s tolerance, any `v1` of a secret being rolled).
The answer must come in milliseconds and say nothing Stripe would retry in vain: the
event is checked and stored (once per event id), never fetched or merged here — the
Dagster webhook sensor turns stored events into a sync that re-fetches their objects.
Nothing of the connection's secrets outlives the request."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Public, State
from api.schemas import Problem, problems, resource_id
from api.state import AppState
from connectors.metadata.connections import ConnectionRecord
from connectors.stripe.signatures import SignatureError, verify

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks/stripe", tags=["webhooks"], dependencies=[Public])

MAX_BODY_BYTES = 1024 * 1024  # Stripe's events are a few kB; its own limit is far below


class WebhookReceived(BaseModel):
    received: bool
    duplicate: bool


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


_EVENT_BODY = {
    "description": "The event as Stripe sends it, signed (the raw bytes are verified).",
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^evt_"},
                    "object": {"type": "string", "enum": ["event"]},
                    "type": {"type": "string"},
                    "created": {"type": "integer"},
                    "livemode": {"type": "boolean"},
                    "data": {"type": "object"},
                },
                "required": ["id", "object", "type", "created", "livemode", "data"],
            }
        }
    },
}


@router.post(
    "/{connection_id}",
    response_model=WebhookReceived,
    openapi_extra={"requestBody": _EVENT_BODY},
    responses={
        **problems(
            400,
            404,
            e400="Refused, nothing stored: the connection has no signing secret, the"
            " signature does not match or its timestamp is outside the tolerance, the body"
            " is not a Stripe event, or the event's livemode is not the connection's mode.",
            e404="No Stripe connection of this id.",
        ),
        413: {"model": Problem, "description": "The body is over 1 MiB; nothing stored."},
    },
)
async def receive_stripe_webhook(
    connection_id: Annotated[int, resource_id("Stripe connection")],
    request: Request,
    state: State,
    stripe_signature: Annotated[
        str | None,
        Header(
            alias="Stripe-Signature",
            description="t=<unix seconds>,v1=<HMAC-SHA256 hex>[,v1=…]",
        ),
    ] = None,
) -> JSONResponse:
    """Verify and store one Stripe event; a redelivery answers `duplicate: true`."""
    try:
        payload = await _read_body(request)
        duplicate = not await run_in_threadpool(
            _store, state, connection_id, payload, stripe_signature
        )
    except _Refused as refused:
        log.info("stripe webhook for connection %s refused: %s", connection_id, refused.detail)
        return JSONResponse({"detail": refused.detail}, status_code=refused.status)
    return JSONResponse({"received": True, "duplicate": duplicate})


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Refused(413, f"body: larger than the {MAX_BODY_BYTES} byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Refused(413, f"body: larger than the {MAX_BODY_BYTES} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _store(state: AppState, connection_id: int, payload: bytes, signature: str | None) -> bool:
    """Check and store the event: True when new, False when stored already."""
    record = state.connections.get_any(connection_id)
    if record is None or record.kind != "stripe":
        raise _Refused(404, f"no Stripe connection {connection_id}")
    event = _verified(state, record, payload, signature)
    livemode = record.config.get("mode") == "live"
    if event.get("livemode") is not livemode:
        raise _Refused(
            400,
            f"livemode: a {'live' if event.get('livemode') else 'test'}-mode event for a"
            f" {'live' if livemode else 'test'}-mode connection",
        )
    if not isinstance(event.get("type"), str):
        raise _Refused(400, 'the body is not a Stripe event (it has no "type")')
    return state.connections.record_webhook(connection_id, event)


def _verified(
    state: AppState, record: ConnectionRecord, payload: bytes, signature: str | None
) -> dict[str, Any]:
    secrets = record.secrets(state.queries.box).get("webhook_secrets") or []
    if not secrets:
        raise _Refused(
            400,
            "the connection has no webhook signing secret: add it (PATCH webhook_secret)"
            " before pointing Stripe at this endpoint",
        )
    try:
        return verify(payload, signature, secrets)
    except SignatureError as err:
        raise _Refused(400, err.reason) from None
