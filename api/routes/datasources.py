"""Data sources: the built-in warehouse plus the connections a workspace registers.
Secrets go in and never come out: responses show host, port, database and user only."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Request
from psycopg import conninfo
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.json_schema import JsonDict
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CanQuery, CanView, State
from api.events import audit
from api.schemas import AUTHENTICATED, NO_NUL, QueryProblem, problems
from connectors.metadata.datasources import DatasourceExists, DatasourceRecord
from connectors.outbound import OutboundPolicy
from connectors.warehouse.registry import (
    WAREHOUSE,
    DatasourceInvalid,
    DatasourceNotFound,
    NewDatasource,
    build_source,
    check_new,
    datasource_key,
    own_server_urls,
)
from connectors.warehouse.runner import SourceOptions

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/datasources", tags=["datasources"], responses=AUTHENTICATED)

# A DNS name (letters, digits, dots, hyphens, underscores) or an IP address; nothing that
# could end the host part of a URL or start an option.
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}|[0-9A-Fa-f:.]{2,45}")

Ref = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="'warehouse', a data source's name or id.",
    ),
]

# The JSON Schema of what `DatasourceCreate.problem` checks (its messages are clearer).
_URL_OR_HOST: JsonDict = {
    "anyOf": [
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
        {"required": ["host"], "properties": {"host": {"type": "string"}}},
    ]
}


class DatasourceOptions(BaseModel):
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    max_rows: Annotated[int, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=64)] | None = None
    cache_ttl_s: Annotated[int, Field(ge=0)] | None = None


class DatasourceCreate(BaseModel):
    """A connection: `url`, or `host` with the other fields."""

    model_config = ConfigDict(json_schema_extra=_URL_OR_HOST)

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
    kind: Literal["postgres", "clickhouse"]
    url: SecretStr | None = Field(
        default=None,
        description="A full connection URL, or fields:",
        json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    host: str | None = Field(
        default=None,
        description="A host name or IP address.",
        json_schema_extra={"pattern": f"^({_HOST.pattern})$"},
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    options: DatasourceOptions = Field(default_factory=DatasourceOptions)

    def problem(self) -> str | None:
        """What the schema says of url and host (`_URL_OR_HOST`, their patterns), with
        the words a person filling in the form needs; and the name 'warehouse'."""
        if self.name.strip().lower() == WAREHOUSE:
            return "'warehouse' is the built-in data source's name"
        if self.url is None and not self.host:
            return "give either url or host (with port, database, user, password)"
        if self.url is not None and not self.url.get_secret_value().strip():
            return "url: empty (give a connection URL, or host, port, database, user)"
        if self.host is not None and not _HOST.fullmatch(self.host):
            return "host: a host name or IP address"
        return None

    def connection_url(self) -> str:
        """The URL as given, or one made of the fields (each quoted, so no field can add
        options of its own)."""
        if self.url is not None:
            return self.url.get_secret_value()
        password = self.password.get_secret_value() if self.password is not None else None
        if self.kind == "postgres":
            fields = {"host": self.host, "port": self.port, "dbname": self.database}
            return conninfo.make_conninfo(
                "", **{k: v for k, v in fields.items() if v}, user=self.user, password=password
            )
        auth = quote(self.user or "", safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        host = f"[{self.host}]" if ":" in (self.host or "") else self.host
        port = f":{self.port}" if self.port else ""
        return f"clickhouse://{auth}@{host}{port}/{quote(self.database or '', safe='')}"


_REFUSED = problems(
    400,
    model=QueryProblem,
    e400="Not a connection this workspace may register: `detail` names the field — also"
    " for what the schema cannot say: a URL that is not one of the kind's, an address the"
    " outbound policy refuses or one of sqlbook's own servers, the name 'warehouse',"
    " options beyond the operator's caps (`bad_parameter`).",
)
_NOT_FOUND = problems(404, e404="No data source of this name or id in the workspace.")
_UNREACHABLE = problems(
    400,
    503,
    model=QueryProblem,
    e400="The database refused (`query_failed`: a wrong password, an unknown database).",
    e503="`datasource_unavailable`: cannot connect to host:port.",
)


class DatasourcePublic(BaseModel):
    id: int | str
    name: str
    kind: str
    config: dict[str, Any]
    options: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _public(record: DatasourceRecord) -> DatasourcePublic:
    return DatasourcePublic(
        id=record.id,
        name=record.name,
        kind=record.kind,
        config=record.public_config,
        options=record.options,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _warehouse_public() -> DatasourcePublic:
    return DatasourcePublic(
        id=WAREHOUSE,
        name=WAREHOUSE,
        kind="warehouse",
        config={"description": "this workspace's events (read-only, scoped)"},
        options={},
    )


@router.get("", response_model=list[DatasourcePublic])
async def list_datasources(token: CanView, state: State) -> list[DatasourcePublic]:
    records = await run_in_threadpool(state.datasources.list, token.workspace_id)
    return [_warehouse_public(), *(_public(r) for r in records)]


@router.post(
    "",
    status_code=201,
    response_model=DatasourcePublic,
    responses={**_REFUSED, **problems(409, e409="A data source of this name exists.")},
)
async def create_datasource(
    body: DatasourceCreate, token: AdminToken, state: State, request: Request
) -> DatasourcePublic:
    if problem := body.problem():
        raise HTTPException(400, problem)
    state.runner.check_source_options(SourceOptions(**body.options.model_dump()))

    def create() -> DatasourceRecord:
        new = _checked(state, body)
        try:
            return state.datasources.create(
                token.workspace_id,
                name=body.name.strip(),
                kind=new.kind,
                url=new.url,
                public_config=new.public_config,
                options=body.options.model_dump(exclude_none=True),
            )
        except DatasourceExists as err:
            raise HTTPException(409, str(err)) from err

    record = await run_in_threadpool(create)
    await audit(
        request,
        state,
        token,
        "datasource.created",
        object_type="datasource",
        object_id=record.id,
        detail={"name": record.name, "kind": record.kind, "options": record.options},
    )
    return _public(record)


@router.post("/test", responses={**_UNREACHABLE, **_REFUSED})
async def test_new_datasource(
    body: DatasourceCreate, token: AdminToken, state: State
) -> dict[str, Any]:
    """ "Test connection" before saving: the same checks as POST, then `select 1`."""
    if problem := body.problem():
        raise HTTPException(400, problem)

    def test() -> dict[str, Any]:
        new = _checked(state, body)
        source = build_source(
            new.kind,
            new.url,
            SourceOptions(),
            1,
            policy=OutboundPolicy.from_settings(state.settings),
            own_servers=own_server_urls(state.settings),
        )
        try:
            source.test()
        finally:
            source.close()
        return {"ok": True, "datasource": body.name.strip()}

    return await run_in_threadpool(test)


@router.get("/{ref}", response_model=DatasourcePublic, responses=_NOT_FOUND)
async def read_datasource(ref: Ref, token: CanView, state: State) -> DatasourcePublic:
    if ref == WAREHOUSE:
        return _warehouse_public()
    return _public(await run_in_threadpool(_record, state, token.workspace_id, ref))


@router.delete(
    "/{ref}",
    status_code=204,
    responses={**_NOT_FOUND, **problems(400, e400="The built-in warehouse cannot be removed.")},
)
async def delete_datasource(ref: Ref, token: AdminToken, state: State, request: Request) -> None:
    if ref == WAREHOUSE:
        raise HTTPException(400, "the built-in warehouse cannot be removed")
    record = await run_in_threadpool(_record, state, token.workspace_id, ref)
    await run_in_threadpool(state.datasources.delete, token.workspace_id, record.id)
    await run_in_threadpool(state.sources.forget, record.id)
    await audit(
        request,
        state,
        token,
        "datasource.deleted",
        object_type="datasource",
        object_id=record.id,
        detail={"name": record.name, "kind": record.kind},
    )


@router.post("/{ref}/test", responses={**_NOT_FOUND, **_UNREACHABLE})
async def test_datasource(ref: Ref, token: CanQuery, state: State) -> dict[str, Any]:
    def test() -> dict[str, Any]:
        target = _target(state, token.workspace_id, ref)
        target.source.test()
        return {"ok": True, "datasource": target.name}

    return await run_in_threadpool(test)


@router.get(
    "/{ref}/schema",
    responses={**_NOT_FOUND, **_UNREACHABLE, **problems(408, model=QueryProblem)},
)
async def read_schema(ref: Ref, token: CanQuery, state: State) -> dict[str, Any]:
    def schema() -> dict[str, Any]:
        target = _target(state, token.workspace_id, ref)
        tables = target.source.schema(state.queries.scope(token.workspace_id, token.project_ids))
        return {"datasource": target.name, "tables": [t.to_dict() for t in tables]}

    return await run_in_threadpool(schema)


@router.post("/{ref}/reset", responses={**_NOT_FOUND, **_UNREACHABLE})
async def reset_datasource(ref: Ref, token: CanQuery, state: State) -> dict[str, Any]:
    def reset() -> dict[str, Any]:
        target = _target(state, token.workspace_id, ref)
        target.source.reset()
        return {"ok": True, "datasource": target.name}

    return await run_in_threadpool(reset)


def _checked(state: State, body: DatasourceCreate) -> NewDatasource:
    """check_new for a request: 400 naming the field; the URL is never logged or shown."""
    settings = state.settings
    try:
        return check_new(
            body.kind,
            body.connection_url(),
            own_servers=own_server_urls(settings),
            allow_chdb=settings.datasource_allow_chdb,
            policy=OutboundPolicy.from_settings(settings),
        )
    except DatasourceInvalid as err:
        raise HTTPException(400, str(err)) from None


def _record(state: State, workspace_id: int, ref: str) -> DatasourceRecord:
    record = state.datasources.get(workspace_id, datasource_key(ref))
    if record is None:
        raise HTTPException(404, f"no data source {ref!r} in this workspace")
    return record


def _target(state: State, workspace_id: int, ref: str) -> Any:
    try:
        return state.sources.target(workspace_id, ref)
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err
