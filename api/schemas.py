"""What every API route promises besides its own models: the error bodies, the error
statuses it documents, ids as path parameters, and request validation that answers 400
naming each field — never FastAPI's 422, which echoes the input back (a body may hold a
webhook URL, a token or a password). `invalid_request` is the app's one handler for
validation errors; `published` makes /openapi.json say so."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

# RFC 3339, as the schema's `date-time` says; pydantic alone also takes unix times and dates.
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("not a date-time like 2026-11-21T10:00:00Z")
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]

# A name is PostgreSQL text, which holds no NUL.
NO_NUL = r"^[^\x00]*$"

# Ids are PostgreSQL bigints: anything larger is unknown, not a server error.
MAX_ID = 2**63 - 1


def resource_id(what: str) -> Any:
    """A `Path` for the id of a stored `what` (alert, project …)."""
    return Path(ge=1, le=MAX_ID, description=f"The {what}'s id.")


class Problem(BaseModel):
    """Every 4xx/5xx answer of the API: a sentence for people, naming the field at fault."""

    detail: str


class QueryProblem(Problem):
    """A query (or a data source's connection) refused or failed: `error` says which way;
    a 400 for a request that does not validate has `detail` only."""

    error: str | None = Field(
        default=None,
        description="query_rejected, bad_parameter, query_failed, query_timeout,"
        " query_cancelled, datasource_unavailable, queue_full, result_too_large",
    )
    message: str | None = Field(default=None, description="The same sentence as `detail`.")
    position: int | None = Field(default=None, description="1-based, in the SQL, when known.")
    line: int | None = None
    column: int | None = None


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}

_MEANING = {
    400: "The request is not valid; `detail` names the field and what is wrong.",
    401: "No API token (or web UI session), or an unknown or revoked one.",
    403: "An admin token is needed, or a cookie-signed request lacks the CSRF header.",
    404: "No such thing in this workspace.",
    408: "The query ran past its timeout (`query_timeout`).",
    409: "Conflicts with what exists (e.g. a name already taken).",
    503: "A server this API depends on is unreachable.",
}


def problems(
    *statuses: int, model: type[Problem] = Problem, **meanings: str
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses, answered with `model`; `meanings`
    (`e400="…"`) words one for a route. A 503 comes with Retry-After."""
    return {
        status: {
            "model": model,
            "description": meanings.get(f"e{status}", _MEANING[status]),
            **({"headers": _RETRY_AFTER} if status == 503 else {}),
        }
        for status in statuses
    }


# Every route behind `CurrentToken`/`AdminToken` may answer these.
AUTHENTICATED = problems(401, 403)


def describe(errors: list[Any]) -> str:
    """`rule.op: Input should be '>' …; surprise: Extra inputs are not permitted` — where
    (without the `body`/`query`/`path` prefix) and what, never the input itself."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # loc is the character's offset
            parts.append(f"body: not valid JSON ({error.get('ctx', {}).get('error', 'invalid')})")
            continue
        loc = [str(p) for p in error.get("loc", ())]
        if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts))


async def invalid_request(_request: Request, err: Exception) -> JSONResponse:
    """The app's handler of `RequestValidationError`: a 400 `Problem` (see `describe`)."""
    assert isinstance(err, RequestValidationError)
    return JSONResponse({"detail": describe(list(err.errors()))}, status_code=400)


def published(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's OpenAPI document as the API answers: where it documents its 422 (every
    operation with parameters or a body), a 400 `Problem` — unless the route words its
    own 400; and a 401 wherever a token is asked for."""

    def problem(status: int) -> dict[str, Any]:
        ref = {"$ref": "#/components/schemas/Problem"}
        return {"description": _MEANING[status], "content": {"application/json": {"schema": ref}}}

    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", problem(400))
            if operation.get("security"):
                responses.setdefault("401", problem(401))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    components.setdefault("Problem", Problem.model_json_schema())
    return schema


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
