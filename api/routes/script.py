"""GET /t.js — the first-party tracking script (api/static/t.js, built from t.src.js), and
the `<script>` tag that installs it for a project.

The bytes are read once and compressed once; every response is a dictionary lookup.
`/t.js` is cached for a day, so a new script reaches sites within one; `/t/<version>.js`
never changes and is cached for a year (pin it, with Subresource Integrity if you like).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response

from api.deps import Public
from api.schemas import problems
from connectors.metadata.store import Project

router = APIRouter(tags=["tracking script"], dependencies=[Public])

LATEST_MAX_AGE = 86_400
IMMUTABLE = "public, max-age=31536000, immutable"
_HEADER = re.compile(r"^// sqlbook-js (\S+) src:([0-9a-f]+)")
_NO_VERSION = problems(404, e404="This API serves another version; /t.js is the current one.")


@dataclass(frozen=True)
class Script:
    version: str
    source_hash: str  # of t.src.js when t.js was built (the build writes it on line 1)
    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str


@cache
def script() -> Script:
    body = resources.files("api").joinpath("static/t.js").read_bytes()
    header = _HEADER.match(body.decode())
    if header is None:
        raise RuntimeError("api/static/t.js must start with '// sqlbook-js <version> src:<hash>'")
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Script(
        version=header.group(1),
        source_hash=header.group(2),
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        etag=f'"{digest}"',
        gzip_etag=f'"{digest}-gzip"',
    )


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _quality(q[2:]) == 0)
    return False


def _quality(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def _matches(if_none_match: str, js: Script) -> bool:
    """If-None-Match compares weakly: either encoding's tag stands for the same script."""
    if if_none_match.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return js.etag in tags or js.gzip_etag in tags


def _serve(request: Request, cache_control: str) -> Response:
    js = script()
    use_gzip = _accepts_gzip(request.headers.get("accept-encoding", ""))
    headers = {
        "Cache-Control": cache_control,
        "ETag": js.gzip_etag if use_gzip else js.etag,
        "Vary": "Accept-Encoding",
        # Any site may load it, also with crossorigin + integrity=… or under COEP.
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match", ""), js):
        return Response(status_code=304, headers=headers)
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    body = js.gzipped if use_gzip else js.body
    return Response(
        body if request.method != "HEAD" else b"",
        media_type="application/javascript; charset=utf-8",
        headers={**headers, "Content-Length": str(len(body))},
    )


_SCRIPT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The script (gzip when accepted); HEAD: its headers only.",
        "content": {"application/javascript": {"schema": {"type": "string"}}},
    },
    304: {"description": "If-None-Match named this script."},
}


@router.get("/t.js", response_class=Response, responses=_SCRIPT)
@router.head("/t.js", response_class=Response, responses=_SCRIPT, operation_id="head_t_js")
async def latest_script(request: Request) -> Response:
    return _serve(request, f"public, max-age={LATEST_MAX_AGE}")


@router.get("/t/{version}.js", response_class=Response, responses={**_SCRIPT, **_NO_VERSION})
@router.head(
    "/t/{version}.js",
    response_class=Response,
    responses={**_SCRIPT, **_NO_VERSION},
    operation_id="head_t_version_js",
)
async def versioned_script(version: str, request: Request) -> Response:
    if version != script().version:
        raise HTTPException(
            404,
            f"no tracking script version {version!r}; this API serves "
            f"{script().version} (or use /t.js for the current one)",
        )
    return _serve(request, IMMUTABLE)


def snippet(api_url: str, project: Project) -> str:
    """The one-line `<script>` tag for a project: its capture key, and the attributes its
    policy asks for (localStorage id only when allowed, Do-Not-Track checked in the
    browser too when the project honours it). `api_url` is where browsers reach the API."""
    base = api_url.rstrip("/")
    attrs = [("src", f"{base}/t.js"), ("data-key", project.capture_key)]
    if urlsplit(base).path not in ("", "/"):
        # behind a path prefix: the script's own origin is not where capture lives
        attrs.append(("data-api", base))
    if project.policy.persist_anonymous_id:
        attrs.append(("data-persist", "1"))
    if project.policy.respect_dnt:
        attrs.append(("data-dnt", "1"))
    rendered = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in attrs)
    return f"<script defer{rendered}></script>"
