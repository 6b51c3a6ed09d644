"""The capture baseline: a bare FastAPI endpoint that only parses the body and XADDs it,
into the same Redis (`appendfsync always`: the entry is on disk when Redis answers), run
by uvicorn with the flags `sqlbook up` gives the API. What sqlbook's capture adds on top
(keys, projects, policy, validation, limits, accounting) is the difference.

    SQLBOOK_BARE_REDIS_URL=unix:///… SQLBOOK_BARE_STREAM=… \
        python -m uvicorn tests.bench.bare_capture:app_from_environment --factory …
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import orjson
import redis.asyncio as aredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


def create_app(redis_url: str, stream: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = aredis.Redis.from_url(redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/capture")
    async def capture(request: Request) -> Response:
        raw = await request.body()
        payload = orjson.loads(raw)
        events = payload.get("batch", [payload]) if isinstance(payload, dict) else payload
        await request.app.state.redis.xadd(
            stream, {"p": "0", "n": str(len(events)), "b": str(len(raw)), "e": raw}
        )
        return JSONResponse({"status": 1})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_environment() -> FastAPI:
    return create_app(os.environ["SQLBOOK_BARE_REDIS_URL"], os.environ["SQLBOOK_BARE_STREAM"])
