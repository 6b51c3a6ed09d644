"""Schemathesis over the published /openapi.json: every operation, with data the schema
allows and data it forbids, against the real app on the session's PostgreSQL and Redis.

No answer may be a server error; where the handlers conform, the answer's status, content
type and body must be documented, data the schema allows must not be refused for a reason
the schema could have said, and data it forbids must be refused. Bounded and seeded: the
same cases every run, a few seconds per operation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python.asgi import shutdown_lifespans

from api.app import create_app
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.settings import Settings
from tests.conftest import make_settings

SEED = 11
MAX_EXAMPLES = 25

# Operations whose schema does not yet describe what the handler accepts: for these only
# `not_a_server_error` is checked. Each entry says what the schema allows that the
# handler refuses; shrink this list as the routes are fixed (their files are named).
SCHEMA_NOT_YET_HONEST: dict[str, str] = {}

# A 400 these handlers give for what no JSON schema can say; data the schema allows may
# get it, and it is documented on the operation.
_FORM_DATA = (
    "api/routes/capture.py: a form's `data` must decode (base64, gzip-js) to the JSON body"
    " the schema describes; JSON Schema cannot say what an encoded string holds"
)
REFUSED_FOR_MEANING: dict[str, str] = {
    **{f"POST {path}": _FORM_DATA for path in ("/capture", "/e", "/i/v0/e", "/track", "/batch")},
    "POST /api/alerts": "the SQL (checked as a query), the data source, channel URLs, cron",
    "PATCH /api/alerts/{alert_id}": "as POST /api/alerts, on the merged alert",
    "PATCH /api/projects/{project_id}": "an origin's port over 65535; '*' beside origins;"
    " a time zone zoneinfo does not know",
    # insights (api/routes/insights.py, folders.py): ids the workspace does not hold, and
    # what the data source's dialect makes of the SQL
    "POST /api/folders": "a parent_id that is not a folder of the workspace",
    "PATCH /api/folders/{folder_id}": "a parent_id not of the workspace, or under itself;"
    " no field at all",
    "POST /api/insights": "the SQL (compiled for the data source's dialect, every {{name}}"
    " declared, one read query), the data source, folder and click-action insights of the"
    " workspace, an enum's options insight",
    "PATCH /api/insights/{insight_id}": "as POST /api/insights, on the merged insight",
    "POST /api/insights/{insight_id}/run": "parameter values checked against the insight's"
    " specs (unknown, wrong type, not an option), max_rows beyond the operator's cap",
    "POST /api/insights/{insight_id}/duplicate": "a folder_id not of the workspace",
    "PUT /api/folders/{folder_id}/permissions": "an entry's member or group not of the"
    " workspace; a personal folder's access",
    "GET /api/insights/{insight_id}/parameters/{name}/options": "a parameter that is not an"
    " enum; p.… values the specs refuse",
    "GET /api/insights/{insight_id}/revisions/{version}/diff": "version 1 without `against`",
    "POST /api/insights/{insight_id}/revisions/{version}/restore": "a revision that no longer"
    " saves as it is (its data source or a click action's insight is gone)",
    # dashboards (api/routes/dashboards.py): the grid, the workspace's insights and folders,
    # a tile's parameters, and what a cron and a time zone are
    "POST /api/dashboards": "a tile off the 12 columns (x + w) or overlapping another, a"
    " tile with both or neither of insight_id and text, a tile's insight not of the"
    " workspace or in the trash, a mapping onto a parameter the insight lacks or of another"
    " type, a folder or an enum filter's options insight not of the workspace, the snapshot"
    " cron and time zone",
    "PATCH /api/dashboards/{dashboard_id}": "as POST /api/dashboards, on the merged"
    " dashboard; tile ids not of the dashboard; no field at all",
    "POST /api/dashboards/{dashboard_id}/tiles": "as a tile of POST /api/dashboards",
    "PATCH /api/dashboards/{dashboard_id}/tiles/{tile_id}": "as POST …/tiles, on the merged"
    " tile; no field at all",
    "PUT /api/dashboards/{dashboard_id}/layout": "a tile id not of the dashboard, a place"
    " off the 12 columns or overlapping another tile",
    "POST /api/dashboards/{dashboard_id}/duplicate": "a folder_id not of the workspace",
    "POST /api/dashboards/{dashboard_id}/revisions/{version}/restore": "a revision that no"
    " longer saves as it is (a tile's insight is gone since)",
    # dashboard subscriptions (api/routes/dashboard_subscriptions.py): what a cron and a
    # time zone are, the channels, the dashboard's tiles and filters
    "POST /api/dashboards/{dashboard_id}/subscriptions": "a cron expression or time zone"
    " that is not one; a channel that is not email, slack, sms or whatsapp, or not valid;"
    " an address outside SQLBOOK_SUBSCRIPTION_ALLOWED_DOMAINS; a Slack bot channel that is"
    " not an ID; csv_tiles not insight tiles of the dashboard; filter values its filters refuse",
    "PATCH /api/dashboards/{dashboard_id}/subscriptions/{subscription_id}": "as POST"
    " …/subscriptions, on the merged subscription",
    # charts (api/routes/charts.py): what the result's columns and Vega-Lite make of it
    "POST /api/plugins": "a template whose placeholders name undeclared props or columns, or"
    " that does not compile as Vega-Lite with the manifest's defaults",
    "POST /api/charts/spec": "a visualization naming a column the columns lack, a table (no"
    " chart), a plugin the workspace does not have, props its manifest refuses",
    "GET /api/insights/{insight_id}/chart.png": "p.… values the specs refuse, a visualization"
    " that does not fit the result",
    "GET /api/insights/{insight_id}/chart.svg": "as chart.png",
    # analytics (api/routes/analytics.py): a definition is free-form JSON its kind's
    # compiler reads (documented in the README), and the workspace's projects
    **{
        f"POST /api/analytics/{kind}": "a definition the kind's compiler refuses (a field"
        " named in `detail`); no project_id while the workspace has several projects"
        for kind in ("trends", "funnel", "retention", "paths", "sessions")
    },
    "POST /api/query": "the SQL (read-only, as the dialect parses it), parameters that do not"
    " fit it, timeout_s/max_rows/cache_ttl_s beyond the operator's caps",
    "POST /api/queries": "as POST /api/query",
    "POST /api/datasources": "the URL (the kind's form, an address the outbound policy or"
    " sqlbook's own servers rule out), the name 'warehouse', options beyond the caps",
    "POST /api/datasources/test": "as POST /api/datasources, and the database's own refusal",
    # connections (api/routes/connections.py): what the provider makes of the credentials
    "POST /api/connections": "the provider's answer to the credentials (a key Stripe refuses,"
    " a service-account key Google refuses, a token_uri the outbound policy refuses), a"
    " project not of the workspace, a schedule that is no cron expression, GA4 reports"
    " (a default report's name, a repeated metric or dimension)",
    "POST /api/connections/test": "as POST /api/connections, the credentials",
    "PATCH /api/connections/{connection_id}": "as POST /api/connections, on the connection;"
    " a Stripe key of the other mode; fields of the other kind",
    # sharing (api/routes/public_links.py, embeds.py): the object's parameters, the
    # workspace's expiry rule, what an origin is
    "POST /api/public-links": "locked_params/allowed_params naming parameters the object"
    " lacks or values they refuse; expires_at past, or null where links must expire; an"
    " object_id beyond a bigint (the schema's maximum is a float)",
    "POST /api/embedding-secrets": "frame_ancestors that are not scheme://host[:port]"
    " origins (a path, a port over 65535)",
    # bundles (api/routes/bundles.py): a bundle is checked as its own objects' routes would
    "POST /api/import": "a bundle that does not hold together (refs, version) or whose"
    " insights, dashboard or alert their own routes would refuse; data sources the"
    " workspace lacks (unmapped_datasources); a folder not of the workspace",
    # AI assistance (api/routes/ai.py): what the data source's dialect and catalog make of
    # the SQL or the table named
    "POST /api/ai/explain": "a table the data source lacks; SQL that is not one read"
    " statement of the source's dialect, or reads a table it may not",
    "POST /api/ai/answer": "SQL that is not one read statement, parameters that do not fit"
    " it (checked as POST /api/query)",
    # the template gallery (api/routes/gallery.py): the folder to install into
    "POST /api/templates/{slug}/install": "a folder_id not of the workspace (or beyond a"
    " bigint: the schema's maximum is a float)",
    # the Stripe-Signature is an HMAC of the raw body with the connection's signing secret
    "POST /webhooks/stripe/{connection_id}": "the Stripe-Signature, the event's livemode;"
    " a connection without a signing secret",
}

# A 503 these handlers give when the server the request names cannot be reached: the
# connection test answers `cannot connect to host:port` for every such failure alike (an
# unknown host, a closed port), documented; not a fault of sqlbook's.
UNREACHABLE_TARGET: dict[str, str] = {
    "POST /api/datasources/test": "the host and port in the body",
    "POST /api/insights": "the data source the body names, when registered and unreachable",
    "PATCH /api/insights/{insight_id}": "as POST /api/insights",
    "POST /api/connections": "Stripe's API (SQLBOOK_STRIPE_API_URL), the token_uri in the body",
    "POST /api/connections/test": "as POST /api/connections",
    # the model's server (SQLBOOK_AI_URL): unset in this run, so 503 `ai_disabled`, as
    # documented; set and unreachable, 502/503/504 naming it
    "POST /api/ai/sql": "the AI server SQLBOOK_AI_URL names (unset here: ai_disabled)",
    "POST /api/ai/answer": "as POST /api/ai/sql",
}

# Paths another path's template also matches: `Allow` rightly names that one's methods too.
SHARED_PATH: dict[str, str] = {
    "POST /api/datasources/test": "also GET/DELETE /api/datasources/{ref} with ref 'test'",
}


def _schema() -> schemathesis.schemas.BaseSchema:
    """The schema as the app publishes it; it depends on no setting or server."""
    app = create_app(
        Settings(_env_file=None, database_url="postgresql:///unused", redis_url="redis:///")  # type: ignore[call-arg]
    )
    accepted = ["2xx", "401", "403", "404", "409"]
    unreachable = {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}
    shared = {"allow_header_conformance": {"enabled": False}}
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "operations": [
                {
                    # One filter: `include-method` beside `include-path` would pick
                    # the operations either one matches.
                    "include-name": operation,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [
                                *accepted,
                                *([400] if operation in REFUSED_FOR_MEANING else []),
                                *([503] if operation in UNREACHABLE_TARGET else []),
                            ]
                        },
                        **(unreachable if operation in UNREACHABLE_TARGET else {}),
                        **(shared if operation in SHARED_PATH else {}),
                    },
                }
                for operation in {**REFUSED_FOR_MEANING, **UNREACHABLE_TARGET, **SHARED_PATH}
            ],
        }
    )
    return schemathesis.openapi.from_dict(app.openapi(), config=config)


schema = _schema()


@pytest.fixture(scope="module")
def fuzzed_workspace(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"openapi-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def app(servers: ServerUrls, sqlbook_home: Path) -> Iterator[FastAPI]:
    """One app for the module; schemathesis runs its lifespan. Private and loopback
    targets are refused, so alert test sends and data-source checks never dial out."""
    settings = make_settings(
        servers,
        sqlbook_home,
        stream_key=f"test:events:{uuid.uuid4().hex[:10]}",
        outbound_allow_private=False,
    )
    yield create_app(settings)
    shutdown_lifespans()


@pytest.fixture(scope="module")
def own_token_id(metadata: MetadataStore, fuzzed_workspace: NewWorkspace) -> int:
    (token,) = metadata.tokens(fuzzed_workspace.workspace_id)
    return token.id


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, app: FastAPI, fuzzed_workspace: NewWorkspace, own_token_id: int
) -> None:
    operation = f"{case.method.upper()} {case.path}"
    # Revoking or rotating the token this run signs in with would end the run (a path
    # parameter may come as the string "1").
    if str((case.path_parameters or {}).get("token_id")) == str(own_token_id):
        return
    # The schema was loaded as a document, not from the app: point it at the app so the
    # `ignored_auth` check's requests without the token reach it in-process too.
    case.operation.app = case.operation.schema.app = app
    headers = {"Authorization": f"Bearer {fuzzed_workspace.api_token}"}
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        # a case whose headers break the schema may be the one without the required
        # bearer token: sent as generated, so its refusal (401) is what is checked
        headers = {}
    if operation in SCHEMA_NOT_YET_HONEST:
        case.call_and_validate(app=app, headers=headers, checks=[not_a_server_error])
        return
    case.call_and_validate(app=app, headers=headers)


def test_the_schema_promises_400_and_names_the_token() -> None:
    """FastAPI's 422 is never answered (validation errors are a 400 naming the field), so
    it is never documented; every operation that asks for a token says so, and its 401."""
    document = schema.raw_schema
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if operation.get("security"):
                assert "401" in operation["responses"], (method, path)
    assert document["paths"]["/api/tokens"]["post"]["security"] == [{"apiToken": []}]


def test_405_lists_every_method_of_the_path(client, workspace) -> None:
    r = client.request(
        "PUT", "/api/alerts", headers={"Authorization": f"Bearer {workspace.api_token}"}
    )
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"  # Starlette said GET: the first route's


def test_a_body_that_is_not_json_is_a_400_without_the_input(client, workspace) -> None:
    r = client.post(
        "/api/tokens",
        content=b'{"name": "secret-name", ',
        headers={
            "Authorization": f"Bearer {workspace.api_token}",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("body: not valid JSON")
    assert "secret-name" not in r.text
