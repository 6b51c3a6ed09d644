"""The built web UI (`ui/dist`, see api/ui_build.py): `index.html` at `/`, revalidated on
every load, and the content-hashed files under `/assets/`, cached for a year."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"


class _HashedAssets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def mount(app: FastAPI, dist: Path) -> None:
    index = dist / "index.html"

    @app.get("/", include_in_schema=False)
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

    app.mount("/assets", _HashedAssets(directory=dist / "assets", check_dir=False), "assets")
