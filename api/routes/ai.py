"""Assistive AI: question → SQL, explain, answer (issue 18). Off until SQLBOOK_AI_URL is set.

GET  /api/ai/status                       enabled, model, send_samples (any member)
POST /api/ai/sql                          a question → a checked SQL suggestion (sql)
POST /api/ai/suggestions/{id}/accept      the user pressed Run on it (sql)
GET  /api/ai/schema-hints?datasource=     deterministic hints, AI on or off (view)
POST /api/ai/explain                      hints + the model's summary of a table/query (view)
POST /api/ai/answer                       run read-only as the asker, summarise (sql)

Each is audited (`ai.sql`, `ai.accepted`, `ai.explain`, `ai.answer`): who, the question,
the SQL suggested and whether it was refused or accepted; never a prompt or the key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, JsonValue
from starlette.concurrency import run_in_threadpool

from api.deps import CanQuery, SignedIn, State, permissions_of
from api.events import audit
from api.schemas import AUTHENTICATED, NO_NUL, Problem, QueryProblem, problems
from api.state import AppState
from connectors.ai import assistant
from connectors.ai.assistant import Asker
from connectors.ai.client import AIError, ChatModel
from connectors.ai.hints import schema_hints
from connectors.ai.proposal import Refused
from connectors.ai.store import Suggestion, SuggestionStore, new_id
from connectors.insights.parameters import InvalidParameter, ParameterSpec
from connectors.metadata.store import TokenOwner
from connectors.metadata.workspace_settings import WorkspaceSettingsStore
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.runner import Actor

router = APIRouter(prefix="/api/ai", tags=["ai"], responses=AUTHENTICATED)

Datasource = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
SuggestionId = Annotated[
    str,
    Path(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$", description="POST /api/ai/sql's id."),
]


class AIProblem(Problem):
    error: str | None = Field(
        default=None,
        description="ai_disabled (503), ai_rate_limited (503, with Retry-After),"
        " ai_unavailable (503), ai_unauthorized or ai_failed (502), ai_timeout (504),"
        " ai_suggestion_refused (422), or a query error of the data source",
    )


_AI_ERRORS: dict[int | str, dict[str, Any]] = {
    **problems(
        503,
        model=AIProblem,
        e503="`ai_disabled` (no SQLBOOK_AI_URL), `ai_rate_limited` (Retry-After),"
        " `ai_unavailable`; or the data source is unreachable (`datasource_unavailable`).",
    ),
    502: {
        "model": AIProblem,
        "description": "The AI server failed or refused the key (`ai_failed`, `ai_unauthorized`).",
    },
    504: {
        "model": AIProblem,
        "description": "The AI server did not answer in time (`ai_timeout`).",
    },
}
_NO_SOURCE = problems(404, e404="No data source of this name or id in the workspace.")


class AIStatus(BaseModel):
    enabled: bool = Field(description="SQLBOOK_AI_URL is set.")
    model: str | None
    send_samples: bool = Field(description="The workspace's ai_send_samples setting.")


class SqlQuestion(BaseModel):
    question: Annotated[str, Field(min_length=1, max_length=2000, pattern=NO_NUL)]
    datasource: Datasource = "warehouse"


class SqlSuggestion(BaseModel):
    id: str
    sql: str = Field(description="With `{{name}}` for each literal lifted into a parameter.")
    parameters: list[ParameterSpec]
    explanation: str
    tables: list[str] = Field(description='"schema.table" the statement reads.')
    dialect: str
    attempts: int = Field(description="1, or 2 when the first proposal was refused.")
    datasource: str


class SuggestionRefused(BaseModel):
    detail: str
    error: str = "ai_suggestion_refused"
    id: str
    attempts: int = 2


class JoinHint(BaseModel):
    column: str
    to_table: str
    to_column: str
    reason: str = Field(description='"foreign key", "same name and type", "column names the table"')


class TableHints(BaseModel):
    time_columns: list[str]
    id_columns: list[str]
    joins: list[JoinHint]
    suggested_filters: list[str]
    suggested_metrics: list[str]


class SchemaHints(BaseModel):
    datasource: str
    tables: dict[str, TableHints]


class ExplainRequest(BaseModel):
    datasource: Datasource = "warehouse"
    table: Annotated[str, Field(min_length=1, max_length=300, pattern=NO_NUL)] | None = Field(
        default=None, description='"schema.table"'
    )
    sql: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None


class ExplainAnswer(BaseModel):
    hints: SchemaHints
    summary: str | None = Field(description="The model's words; null with AI off.")
    summary_error: str | None = Field(
        default=None, description="Why there is no summary when the model failed (hints stand)."
    )
    tables: list[str]


class AnswerRequest(BaseModel):
    datasource: Datasource = "warehouse"
    sql: Annotated[str, Field(min_length=1, max_length=100_000)]
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    suggestion_id: (
        Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")] | None
    ) = None
    question: Annotated[str, Field(max_length=2000, pattern=NO_NUL)] | None = None


class Number(BaseModel):
    label: str
    value: float | int | str | None


class AnswerQuery(BaseModel):
    sql: str
    parameters: dict[str, Any]


class DataAnswer(BaseModel):
    summary: str
    numbers: list[Number]
    query: AnswerQuery
    columns: list[dict[str, str]]
    row_count: int
    truncated: bool


def _model(state: AppState) -> ChatModel | None:
    return ChatModel.from_settings(state.settings)


def _asker(token: TokenOwner) -> Asker:
    return Asker(
        Actor(token.workspace_id, token.token_id, token.actor, token.ip),
        token.project_ids,
        can_query="sql" in permissions_of(token),
    )


def _ai_error(err: AIError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _send_samples(state: AppState, workspace_id: int) -> bool:
    found = WorkspaceSettingsStore(state.metadata).get(workspace_id)
    return bool(found and found.ai_send_samples)


@router.get("/status", response_model=AIStatus)
async def ai_status(token: SignedIn, state: State) -> AIStatus:
    send = await run_in_threadpool(_send_samples, state, token.workspace_id)
    enabled = bool(state.settings.ai_url)
    return AIStatus(
        enabled=enabled,
        model=(state.settings.ai_model or "default") if enabled else None,
        send_samples=send,
    )


@router.post(
    "/sql",
    response_model=SqlSuggestion,
    responses={
        422: {"model": SuggestionRefused, "description": "Refused twice: `detail` says why."},
        **_NO_SOURCE,
        **_AI_ERRORS,
        **problems(400, 408, model=QueryProblem),
    },
)
async def suggest_sql(
    body: SqlQuestion, token: CanQuery, state: State, request: Request
) -> SqlSuggestion | JSONResponse:
    """A SELECT for the question, checked before it is shown: one read-only statement by
    the guard of /api/query, parsed by sqlglot in the source's dialect, reading only the
    source's tables, and EXPLAINed under the caller's scope (never run); literals in its
    filters lifted into `{{name}}` parameters. A refused proposal is sent back to the
    model once with the reason; refused again → 422 `ai_suggestion_refused`."""
    model = _model(state)
    question = body.question.strip()
    if not question:
        raise HTTPException(400, "question: empty")

    def work() -> tuple[assistant.Source, assistant.SuggestOutcome]:
        return assistant.suggest_sql(
            state.queries,
            model,
            token.workspace_id,
            body.datasource,
            question,
            _asker(token),
            send_samples=_send_samples(state, token.workspace_id),
        )

    try:
        source, outcome = await run_in_threadpool(work)
    except AIError as err:
        if err.code != "ai_disabled":
            await _audit(request, state, token, "ai.sql", "error", question, body.datasource)
        return _ai_error(err)
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err
    checked = outcome.checked
    suggestion = Suggestion(
        id=new_id(),
        workspace_id=token.workspace_id,
        actor=token.actor,
        datasource=source.target.name,
        question=question,
        sql=checked.sql if checked else outcome.proposed,
        parameters=[p.model_dump(exclude_defaults=True) for p in checked.parameters]
        if checked
        else [],
        explanation=checked.explanation if checked else "",
        tables=checked.tables if checked else [],
        dialect=source.dialect,
        status="suggested" if checked else "refused",
        error=outcome.reason,
        attempts=outcome.attempts,
    )
    await run_in_threadpool(
        SuggestionStore(state.metadata).add,
        suggestion,
        user_id=token.user_id,
        model=model.model if model else None,
    )
    await _audit(
        request,
        state,
        token,
        "ai.sql",
        "ok" if checked else "refused",
        question,
        source.target.name,
        suggestion_id=suggestion.id,
        sql=suggestion.sql,
        attempts=outcome.attempts,
        reason=outcome.reason,
    )
    if checked is None:
        return JSONResponse(
            SuggestionRefused(
                detail=f"the suggested SQL was refused twice: {outcome.reason}",
                id=suggestion.id,
                attempts=outcome.attempts,
            ).model_dump(),
            status_code=422,
        )
    return SqlSuggestion(
        id=suggestion.id,
        sql=checked.sql,
        parameters=checked.parameters,
        explanation=checked.explanation,
        tables=checked.tables,
        dialect=source.dialect,
        attempts=outcome.attempts,
        datasource=source.target.name,
    )


@router.post(
    "/suggestions/{suggestion_id}/accept",
    status_code=204,
    responses=problems(
        404, 409, e404="No such suggestion in this workspace.", e409="The suggestion was refused."
    ),
)
async def accept_suggestion(
    suggestion_id: SuggestionId, token: CanQuery, state: State, request: Request
) -> Response:
    """The user pressed Run on the suggestion (the run itself is a normal /api/query or
    insight run); audited as `ai.accepted`."""
    found = await run_in_threadpool(
        SuggestionStore(state.metadata).accept, token.workspace_id, suggestion_id
    )
    if found is None:
        raise HTTPException(404, f"no suggestion {suggestion_id!r} in this workspace")
    if found.status == "refused":
        raise HTTPException(409, "this suggestion was refused: there is nothing to run")
    await audit(
        request,
        state,
        token,
        "ai.accepted",
        object_type="ai_suggestion",
        object_id=suggestion_id,
        detail={
            "question": found.question,
            "sql": found.sql,
            "datasource": found.datasource,
            "suggested_by": found.actor,
        },
    )
    return Response(status_code=204)


@router.get(
    "/schema-hints",
    response_model=SchemaHints,
    responses={**_NO_SOURCE, **problems(503, model=QueryProblem)},
)
async def read_schema_hints(
    token: CanQuery,
    state: State,
    datasource: Annotated[str, Query(min_length=1, max_length=100, pattern=NO_NUL)] = "warehouse",
) -> SchemaHints:
    """Per table: time columns, id columns, join candidates (foreign keys, id-like columns
    of the same name and type, a column named after a table), suggested filters and
    metrics. Deterministic; no model involved, so it works with AI off."""

    def work() -> SchemaHints:
        source = assistant.open_source(state.queries, token.workspace_id, datasource, _asker(token))
        hints = schema_hints(source.catalog)
        return SchemaHints.model_validate({"datasource": source.target.name, "tables": hints})

    try:
        return await run_in_threadpool(work)
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post(
    "/explain",
    response_model=ExplainAnswer,
    responses={**_NO_SOURCE, **problems(400), **_AI_ERRORS},
)
async def explain(
    body: ExplainRequest, token: CanQuery, state: State, request: Request
) -> ExplainAnswer | JSONResponse:
    """What a table (or the tables of a query) holds: the deterministic hints, and with AI
    on the model's summary (it is shown names, types and comments only)."""
    if (body.table is None) == (body.sql is None):
        raise HTTPException(400, "table or sql: give exactly one")
    model = _model(state)

    def work() -> dict[str, Any]:
        source = assistant.open_source(
            state.queries, token.workspace_id, body.datasource, _asker(token)
        )
        if body.table is not None:
            table = source.catalog.find(body.table)
            if table is None:
                raise HTTPException(400, f"table: no table {body.table!r} in {source.target.name}")
            tables = [table.qualified]
        else:
            try:
                tables = assistant.tables_of_sql(body.sql or "", source)
            except Refused as err:
                raise HTTPException(400, f"sql: {err}") from None
        out = assistant.explain(model, source, tables, body.sql)
        out["hints"] = {"datasource": source.target.name, **out["hints"]}
        return out

    try:
        out = await run_in_threadpool(work)
    except AIError as err:
        return _ai_error(err)
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err
    await audit(
        request,
        state,
        token,
        "ai.explain",
        object_type="datasource",
        object_id=body.datasource,
        detail={"tables": out["tables"], "sql": body.sql, "model": model is not None},
    )
    return ExplainAnswer.model_validate(out)


@router.post(
    "/answer",
    response_model=DataAnswer,
    responses={
        **problems(400, 408, 409, model=QueryProblem),
        **problems(404, e404="No such data source or suggestion in this workspace."),
        **_AI_ERRORS,
    },
)
async def answer(
    body: AnswerRequest, token: CanQuery, state: State, request: Request
) -> DataAnswer | JSONResponse:
    """Runs the SQL read-only through the query path as the caller (their scope, the
    guard, the audit), then has the model summarise exactly the rows it returned; the
    summary cites the query, and `numbers` are read from the result itself."""
    model = _model(state)
    suggestions = SuggestionStore(state.metadata)

    def work() -> assistant.Answer:
        specs: list[ParameterSpec] | None = None
        question = body.question
        if body.suggestion_id is not None:
            found = suggestions.get(token.workspace_id, body.suggestion_id)
            if found is None:
                raise HTTPException(
                    404, f"suggestion_id: no suggestion {body.suggestion_id!r} in this workspace"
                )
            question = question or found.question
            if found.sql == body.sql:
                specs = [ParameterSpec.model_validate(p) for p in found.parameters]
        return assistant.run_answer(
            state.queries,
            model,
            token.workspace_id,
            body.datasource,
            body.sql,
            body.parameters,
            specs,
            _asker(token),
            question,
        )

    try:
        result = await run_in_threadpool(work)
    except AIError as err:
        return _ai_error(err)
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err
    except InvalidParameter as err:
        raise HTTPException(400, f"parameters.{err.message}") from None
    await audit(
        request,
        state,
        token,
        "ai.answer",
        object_type="ai_suggestion" if body.suggestion_id else "datasource",
        object_id=body.suggestion_id or body.datasource,
        detail={
            "sql": body.sql,
            "question": body.question,
            "row_count": result.row_count,
            "query_id": result.result.query_id,
        },
    )
    return DataAnswer(
        summary=result.summary,
        numbers=[Number(**n) for n in result.numbers],
        query=AnswerQuery(sql=result.sql, parameters=result.parameters),
        columns=result.columns,
        row_count=result.row_count,
        truncated=result.result.truncated,
    )


async def _audit(
    request: Request,
    state: AppState,
    token: TokenOwner,
    action: str,
    result: str,
    question: str,
    datasource: str,
    **detail: Any,
) -> None:
    await audit(
        request,
        state,
        token,
        action,
        result=result,
        object_type="ai_suggestion" if "suggestion_id" in detail else "datasource",
        object_id=detail.get("suggestion_id") or datasource,
        detail={"question": question, "datasource": datasource, **detail},
    )
