"""The built web UI (`ui/dist`, see api/ui_build.py): `index.html` at `/` and at the
single-page app's own paths (`/editor`, `/tokens`, `/insights`, `/insights/…`, `/web`,
`/analytics/…`, `/dashboards`, `/dashboards/…`, `/settings/…`, `/templates`, `/search`: a
link or a reload lands on the page it names), revalidated on every load, and the
content-hashed files under `/assets/`, cached for a year. Only those paths: anything
else, `/api/…` above all, keeps its own answer (an unknown API path is the API's JSON
404). The shared views' pages, `/public/{token}` and `/embed/{type}/{id}`, are served by
routes/public_links.py and routes/embeds.py (their framing policy depends on the link or
the embed's secret: api/shared_views.spa_page)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
# the paths the web UI's router owns (ui/src/App.tsx)
APP_PATHS = (
    "/",
    "/editor",
    "/tokens",
    "/insights",
    "/insights/{page:path}",
    "/connections",
    "/web",
    "/analytics",
    "/analytics/{page:path}",
    "/dashboards",
    "/dashboards/{page:path}",
    "/settings",
    "/settings/{page:path}",
    "/templates",
    "/search",
)


class _HashedAssets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def mount(app: FastAPI, dist: Path) -> None:
    index = dist / "index.html"

    async def web_ui() -> Response:
        if not index.is_file():
            return PlainTextResponse(
                f"the web UI is not built ({index} is missing): `make run` builds it, or "
                "`sqlbook build-ui`",
                status_code=503,
            )
        return FileResponse(
            index,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    for path in APP_PATHS:
        app.add_api_route(path, web_ui, methods=["GET"], include_in_schema=False)
    app.mount("/assets", _HashedAssets(directory=dist / "assets", check_dir=False), "assets")
