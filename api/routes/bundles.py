"""Export and import of insights, dashboards, alerts and plugins as JSON bundles (issue 18).

`GET /api/export/{kind}/{id}` answers the object as a bundle (connectors/templates/bundle.py:
insights by local ref, data sources by name, no secrets) to anyone who may open it: an
insight or dashboard in a folder they may open (a 404 as a missing one otherwise), an
alert as GET /api/alerts/{id} shows it (its insight's folder; one with its own SQL needs
the `sql` permission), any plugin the workspace draws with (its id is its name).

`POST /api/import` creates the bundle's objects in a folder the caller may edit (403/400
naming `folder_id` otherwise), mapping data sources by name (`datasources` maps old names
to the workspace's) and answering what it could not map in `unmapped`; a data source it
cannot map refuses the import (400 `unmapped_datasources`, nothing created). Only admins
add the bundle's plugins (others get them reported; the insights drawn with them fall
back to a table); an alert with its own SQL needs the `sql` permission. Imports are
audited (`bundle.imported`, with what was created), and so are exports
(`bundle.exported`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State, permissions_of
from api.events import audit
from api.routes.folders import destination
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, Problem, problems
from api.state import AppState
from connectors.metadata.alerts import AlertOwner
from connectors.metadata.insights import FolderNotFound
from connectors.metadata.store import TokenOwner
from connectors.templates.bundle import (
    Bundle,
    BundleInvalid,
    ImportRefused,
    ObjectNotFound,
    export_bundle,
    file_name,
    import_bundle,
    parse_bundle,
)

router = APIRouter(tags=["bundles"], responses=AUTHENTICATED)

Kind = Literal["insight", "dashboard", "alert", "plugin"]


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: dict[str, Any] = Field(description="A bundle as GET /api/export/{kind}/{id} gives.")
    folder_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="Where the insights and dashboard go; null: the top level."
    )
    datasources: dict[
        Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)],
        Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)],
    ] = Field(
        default_factory=dict,
        max_length=100,
        description="{the bundle's data source name: this workspace's} for names that differ.",
    )
    dry_run: bool = Field(default=False, description="Check and report; create nothing.")


class CreatedPublic(BaseModel):
    kind: str
    id: int | str | None = Field(description="null in a dry run; a plugin's is its name.")
    name: str
    url: str | None


class UnmappedPublic(BaseModel):
    what: str = Field(description="datasource | parameter | plugin | channel | alert | project")
    name: str
    reason: str


class ImportResult(BaseModel):
    created: list[CreatedPublic]
    unmapped: list[UnmappedPublic]
    dry_run: bool = False


class UnmappedProblem(Problem):
    error: Literal["unmapped_datasources"] | None = Field(
        default=None, description="Set when data sources could not be mapped."
    )
    unmapped: list[UnmappedPublic] | None = Field(
        default=None, description="With `unmapped_datasources`: each one."
    )


def _visible_alert(state: AppState, token: TokenOwner, alert_id: int) -> None:
    """A 404 unless the caller may see the alert (as GET /api/alerts/{id})."""
    record = state.alerts.get(alert_id, token.workspace_id)
    missing = HTTPException(404, f"no alert {alert_id} in this workspace")
    if record is None:
        raise missing
    ref = record.spec.get("insight")
    if ref is None:
        if "sql" not in permissions_of(token):
            raise missing
        return
    insight = state.insights.get(token.workspace_id, int(ref["id"]))
    if insight is None or not state.access.for_owner(token).can_view(insight.folder_id):
        raise missing


@router.get(
    "/api/export/{kind}/{object_id}",
    responses={
        200: {"description": "The bundle (sqlbook_bundle 1), as an attachment."},
        **problems(
            400,
            404,
            e400="An object that names an insight the caller cannot open.",
            e404="No such object in this workspace (or not one the caller may open).",
        ),
    },
)
async def export_object(
    kind: Kind,
    object_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_.-]+$",
            description="The object's id (a plugin's: its name).",
        ),
    ],
    token: CanView,
    state: State,
    request: Request,
) -> JSONResponse:
    """The object and what it needs (a dashboard's insights, the insights an insight's
    click actions and options name, uploaded plugins drawn with) as one JSON bundle."""
    if kind != "plugin" and (not object_id.isdigit() or not 1 <= int(object_id) <= MAX_ID):
        raise HTTPException(404, f"no {kind} {object_id} in this workspace")

    def export() -> Bundle:
        access = state.access.for_owner(token)
        if kind == "alert":
            _visible_alert(state, token, int(object_id))
        try:
            return export_bundle(
                state, token.workspace_id, kind, object_id, can_view=access.can_view
            )
        except ObjectNotFound as err:
            raise HTTPException(404, str(err)) from None
        except BundleInvalid as err:
            raise HTTPException(400, str(err)) from None

    bundle = await run_in_threadpool(export)
    await audit(
        request,
        state,
        token,
        "bundle.exported",
        object_type=kind,
        object_id=object_id,
        detail={"name": bundle.name, "insights": len(bundle.insights)},
    )
    return JSONResponse(
        bundle.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{file_name(bundle)}"'},
    )


@router.post(
    "/api/import",
    status_code=201,
    response_model=ImportResult,
    responses={
        200: {"model": ImportResult, "description": "A dry run: what it would create."},
        400: {
            "model": UnmappedProblem,
            "description": "A bundle that does not validate (`detail` names the field, e.g."
            " `bundle.insights.0.sql`), a folder not in the workspace, or data sources the"
            " workspace does not have (`unmapped_datasources`, listed in `unmapped`).",
        },
        **problems(
            403,
            e403="A folder the caller may only view; an alert with its own SQL without the"
            " `sql` permission.",
        ),
    },
)
async def import_objects(
    body: ImportBody, token: CanEdit, state: State, request: Request
) -> JSONResponse:
    """Create the bundle's objects; what could not be mapped is in `unmapped`."""

    def run() -> dict[str, Any]:
        try:
            bundle = parse_bundle(body.bundle)
        except BundleInvalid as err:
            raise HTTPException(400, f"bundle.{err}") from None
        access = state.access.for_owner(token)
        destination(access, body.folder_id, "folder_id")
        if any(a.sql is not None for a in bundle.alerts) and "sql" not in permissions_of(token):
            raise HTTPException(
                403,
                f"bundle.alerts.0.sql: an alert with its own SQL needs the 'sql' permission;"
                f" your role is {token.role}",
            )
        try:
            report = import_bundle(
                state,
                token.workspace_id,
                bundle,
                actor=token.actor,
                folder_id=body.folder_id,
                datasources=body.datasources,
                dry_run=body.dry_run,
                can_upload_plugins=token.role == "admin" and token.shared is None,
                owner=AlertOwner(user_id=token.user_id, token_id=token.token_id, actor=token.actor),
            )
        except BundleInvalid as err:
            raise HTTPException(400, f"bundle.{err}") from None
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None
        except ImportRefused as err:
            return {"refused": str(err), "unmapped": [u.to_dict() for u in err.report.unmapped]}
        return report.to_dict() | {"kind": bundle.kind, "name": bundle.name}

    answer = await run_in_threadpool(run)
    if "refused" in answer:
        return JSONResponse(
            {
                "detail": answer["refused"],
                "error": "unmapped_datasources",
                "unmapped": answer["unmapped"],
            },
            status_code=400,
        )
    if not answer["dry_run"]:
        await audit(
            request,
            state,
            token,
            "bundle.imported",
            object_type=answer["kind"],
            object_id=next(
                (c["id"] for c in answer["created"] if c["kind"] == answer["kind"]), None
            ),
            detail={
                "name": answer["name"],
                "created": [{"kind": c["kind"], "id": c["id"]} for c in answer["created"]],
                "unmapped": answer["unmapped"],
                "folder_id": body.folder_id,
            },
        )
    result = {k: answer[k] for k in ("created", "unmapped", "dry_run")}
    return JSONResponse(result, status_code=200 if answer["dry_run"] else 201)
