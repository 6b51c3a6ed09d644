"""What every API route promises besides its own models: the error body, the error
statuses it documents, ids as path parameters, and request validation that answers 400
naming each field — never FastAPI's 422, which echoes the input back (a body may hold a
webhook URL, a token or a password)."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, ConfigDict, create_model
from pydantic.fields import FieldInfo

# RFC 3339, as the schema's `date-time` says; pydantic alone also takes unix times and dates.
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("not a date-time like 2026-11-21T10:00:00Z")
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]

# Ids are PostgreSQL bigints: anything larger is unknown, not a server error.
MAX_ID = 2**63 - 1


def resource_id(what: str) -> Any:
    """A `Path` for the id of a stored `what` (alert, project …)."""
    return Path(ge=1, le=MAX_ID, description=f"The {what}'s id.")


class Problem(BaseModel):
    """Every 4xx/5xx answer of the API: a sentence for people, naming the field at fault."""

    detail: str


_MEANING = {
    400: "The request is not valid; `detail` names the field and what is wrong.",
    401: "No API token (or web UI session), or an unknown or revoked one.",
    403: "An admin token is needed, or a cookie-signed request lacks the CSRF header.",
    404: "No such thing in this workspace.",
    409: "Conflicts with what exists (e.g. a name already taken).",
    503: "A server this API depends on is unreachable.",
}


def problems(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses; `meanings` (`e400="…"`) words one for a route."""
    return {
        status: {"model": Problem, "description": meanings.get(f"e{status}", _MEANING[status])}
        for status in statuses
    }


# Every route behind `CurrentToken`/`AdminToken` may answer these.
AUTHENTICATED = problems(401, 403)


def describe(errors: list[Any]) -> str:
    """`rule.op: Input should be '>' …; surprise: Extra inputs are not permitted` — where
    (without the `body`/`query`/`path` prefix) and what, never the input itself."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts))


class ValidatedRoute(APIRoute):
    """A route whose request validation failures are a 400 `Problem` (see `describe`),
    documented on every route that takes parameters or a body."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        takes_input = self.body_field is not None or any(
            (self.dependant.path_params, self.dependant.query_params)
        )
        if takes_input and 400 not in self.responses and "400" not in self.responses:
            self.responses[400] = problems(400)[400]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def validated(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as err:
                raise HTTPException(400, describe(list(err.errors()))) from None

        return validated


def partial(model: type[BaseModel], name: str, *, min_fields: int = 0) -> type[BaseModel]:
    """`model` with no field required, for a PATCH body: a field given is checked as
    `model` checks it (null only where `model` takes null); `model_fields_set` says
    which were given. Model-level validators are left to the merged result."""

    def schema_extra(schema: dict[str, Any]) -> None:
        # A field left out keeps its stored value: there is no default to show.
        for prop in schema.get("properties", {}).values():
            prop.pop("default", None)
        if min_fields:
            schema["minProperties"] = min_fields

    fields: dict[str, Any] = {
        field: (
            info.annotation,
            FieldInfo.merge_field_infos(info, default=None, default_factory=None),
        )
        for field, info in model.model_fields.items()
    }
    return create_model(  # type: ignore[no-any-return, call-overload]
        name,
        __config__=ConfigDict(extra="forbid", json_schema_extra=schema_extra),
        __doc__=f"Any fields of {model.__name__}; those left out keep their value.",
        **fields,
    )
