"""t.js in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) loads a small single-page site from one origin, and the tracking script from
the sqlbook API on another. What the browser sends goes through capture into the Redis
stream and is ingested into the warehouse, where the rows are checked."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from connectors.ingest import ingest_range
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse
from tests.conftest import make_settings
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

# The site: one HTML shell for every path, so reloads work. Links navigate with
# history.pushState as SPA routers do, and set the title afterwards as they do.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Home</title><link rel="icon" href="data:,">
<script>
  window.sqlbook = window.sqlbook || function(){(sqlbook.q=sqlbook.q||[]).push(arguments)}
</script>
<script>sqlbook('early', {queued: true})</script>
%(snippet)s
</head><body>
<nav><a id="to-home" href="/">Home</a> <a id="to-pricing" href="/pricing">Pricing</a></nav>
<button id="signup">Sign up</button>
<script>
  const links = [["to-home", "/", "Home"], ["to-pricing", "/pricing", "Pricing"]];
  for (const [id, path, title] of links) {
    document.getElementById(id).addEventListener("click", (e) => {
      e.preventDefault();
      history.pushState({path}, "", path);
      document.title = title;
    });
  }
  const signup = document.getElementById("signup");
  signup.addEventListener("click", () => sqlbook('signup', {plan: 'pro'}));
</script>
</body></html>
"""


@dataclass
class Site:
    origin: str
    head: dict[str, str] = field(default_factory=lambda: {"snippet": ""})


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    port = free_port()
    state = Site(origin=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = (PAGE % state.head).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class LiveApi:
    url: str
    stream_key: str


@pytest.fixture(scope="module")
def api(servers: ServerUrls, sqlbook_home: Path) -> Iterator[LiveApi]:
    """The API on its own origin (another port), with a stream of this module's own."""
    stream_key = f"test:events:{uuid.uuid4().hex[:10]}"
    settings = make_settings(servers, sqlbook_home, stream_key=stream_key, api_port=free_port())
    with serve_api(settings) as url:
        yield LiveApi(url, stream_key)


@pytest.fixture
def project(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")


def configure(api: LiveApi, site: Site, ws: NewWorkspace, **settings: object) -> str:
    """PATCH the project's settings, then put its snippet (from the API) in the site."""
    headers = {"Authorization": f"Bearer {ws.api_token}"}
    if settings:
        patched = httpx.patch(
            f"{api.url}/api/projects/{ws.project.id}", json=settings, headers=headers
        )
        assert patched.status_code == 200, patched.text
    snippet = httpx.get(f"{api.url}/api/projects/{ws.project.id}/snippet", headers=headers)
    assert snippet.status_code == 200, snippet.text
    html: str = snippet.json()["html"]
    assert f'src="{api.url}/t.js"' in html
    site.head["snippet"] = html
    return html


def stream_rows(redis_url: str, stream_key: str, project_id: int) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        rows: list[dict[str, Any]] = []
        for _id, fields in client.xrange(stream_key):
            rows.extend(r for r in json.loads(fields[b"e"]) if r["project_id"] == project_id)
        return rows
    finally:
        client.close()


def wait_for(page: Any, what: str, check: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait in Playwright's loop: the sync API delivers events (requests seen, routes to
    answer) only while it is called, never during a time.sleep. The deadline is for a
    broken page, not a measure of speed."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        page.wait_for_timeout(50)


# A request the test makes from the page to the API (its health check, answered 200),
# after whatever the page has scheduled so far: the script defers a page view by
# setTimeout 0, and timers of equal delay run in order.
SEND_MARKER = """url => new Promise(done => setTimeout(() => {
  fetch(url, {mode: "no-cors", cache: "no-store"}).catch(() => {}).finally(done);
}, 0))"""


class Captures:
    """The page's requests to the capture endpoint in the order the browser issued them,
    and what became of each: its HTTP status, or "failed" when no answer came."""

    def __init__(self, page: Any, api: LiveApi):
        self.page = page
        self.endpoint = f"{api.url}/e"
        self.marker_prefix = f"{api.url}/health?marker="
        self.requests: list[Any] = []
        self._outcome: dict[int, int | str] = {}  # id(request) → status or "failed"
        page.on("request", self._issued)
        page.on("response", lambda r: self._answered(r.request, r.status))
        page.on("requestfailed", lambda r: self._answered(r, "failed"))

    def _tracked(self, request: Any) -> bool:
        return str(request.url).startswith((self.endpoint, self.marker_prefix))

    def _issued(self, request: Any) -> None:
        if self._tracked(request):
            self.requests.append(request)

    def _answered(self, request: Any, outcome: int | str) -> None:
        if self._tracked(request):
            self._outcome.setdefault(id(request), outcome)

    def _page_requests(self) -> list[Any]:
        return [r for r in self.requests if str(r.url).startswith(self.endpoint)]

    @property
    def sent(self) -> list[str]:
        """URLs of the page's capture requests (not the test's markers)."""
        return [r.url for r in self._page_requests()]

    @property
    def bodies(self) -> list[str]:
        return [r.post_data or "" for r in self._page_requests()]

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self._page_requests()]

    @property
    def outcomes(self) -> list[int | str]:
        """What became of each of the page's requests answered so far."""
        return [self._outcome[id(r)] for r in self._page_requests() if id(r) in self._outcome]

    def settle(self) -> None:
        """Return once every capture request the page has made is answered, up to a
        marker request sent after everything the page had scheduled: anything the script
        sends (a duplicate page view, a deferred one) was issued before the marker, so
        once the marker is seen and all before it are answered, what they stored is in
        the stream. Only a retry after a failed send comes later (2 s on): tests check
        outcomes for failures, and wait for the retry where they expect one."""
        marker = f"{self.marker_prefix}{uuid.uuid4().hex}"
        self.page.evaluate(SEND_MARKER, marker)

        def settled() -> bool:
            seen = any(r.url == marker for r in self.requests)
            return seen and all(id(r) in self._outcome for r in self.requests)

        wait_for(self.page, "every capture request of the page to be answered", settled)


def ingest_and_read(servers: ServerUrls, api: LiveApi, project_id: int) -> list[dict[str, Any]]:
    """Ingest what the stream holds into the warehouse; this project's rows, oldest first."""
    client = redis.Redis.from_url(servers.redis_url)
    try:
        reader = CaptureStreamReader(client, api.stream_key)
        head, tail = reader.head(), reader.tail()
        if head and tail:
            report = ingest_range(reader, PostgresWarehouse(servers.warehouse_url), head, tail)
            assert report.complete and report.dead_lettered == 0
    finally:
        client.close()
    with psycopg.connect(servers.warehouse_url) as conn:
        cur = conn.execute(
            "select event_id::text, event_name, distinct_id, properties, lib, timestamp"
            " from events where project_id = %s order by timestamp, event_id",
            (project_id,),
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_pageviews_events_and_identify_land_in_the_warehouse(
    browser: Any, site: Site, api: LiveApi, servers: ServerUrls, project: NewWorkspace
) -> None:
    snippet = configure(api, site, project, cors_origins=[site.origin])
    assert "data-persist" not in snippet and "data-dnt" not in snippet
    context = browser.new_context()
    page = context.new_page()
    captures = Captures(page, api)
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.goto(f"{site.origin}/")
    # the page view and the call queued before load
    wait_for(page, "2 capture requests", lambda: len(captures.sent) >= 2)
    page.click("#to-pricing")
    wait_for(page, "the page view of /pricing", lambda: len(captures.sent) >= 3)
    # the same URL again, or only a new #fragment: no page view
    page.evaluate("history.replaceState({scroll: 1}, '', location.href)")
    page.evaluate("history.pushState(null, '', '/pricing')")
    page.evaluate("history.pushState(null, '', '/pricing#faq')")
    page.evaluate("history.back()")  # popstate back to /pricing
    page.click("#signup")
    wait_for(page, "the signup event", lambda: len(captures.sent) >= 4)
    page.evaluate("sqlbook('identify', 'user-42', {email: 'ada@example.com'})")
    wait_for(page, "the identify event", lambda: len(captures.sent) >= 5)
    page.click("#to-home")
    wait_for(page, "the page view of /", lambda: len(captures.sent) >= 6)
    page.evaluate("sqlbook('upgraded', {plan: 'team', seats: 3})")

    # nothing kept in the browser: no cookie, no storage
    assert (
        page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0
    )
    assert context.cookies() == []
    captures.settle()
    context.close()
    assert problems == []
    assert all(url.startswith(f"{api.url}/e?beacon=1") for url in captures.sent)
    assert len(captures.sent) == 7 and captures.outcomes == [204] * 7

    rows = ingest_and_read(servers, api, project.project.id)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["event_name"], []).append(row)
    assert sorted(by_name) == ["$identify", "$pageview", "early", "signup", "upgraded"]
    assert len(rows) == 7, [(r["event_name"], r["properties"].get("$current_url")) for r in rows]

    pageviews = by_name["$pageview"]
    assert [p["properties"]["$current_url"] for p in pageviews] == [
        f"{site.origin}/",
        f"{site.origin}/pricing",
        f"{site.origin}/",
    ]
    assert [p["properties"]["title"] for p in pageviews] == ["Home", "Pricing", "Home"]
    assert [p["properties"]["$referrer"] for p in pageviews] == [
        "",
        f"{site.origin}/",
        f"{site.origin}/pricing",
    ]
    first = pageviews[0]["properties"]
    assert first["$host"] == site.origin.removeprefix("http://")
    assert first["$pathname"] == "/"
    assert first["$screen_width"] > 0 and first["$screen_height"] > 0
    assert first["$lib"] == "sqlbook-js" and first["$lib_version"]
    assert {r["lib"] for r in rows} == {"sqlbook-js"}
    assert len({r["event_id"] for r in rows}) == 7

    (signup,) = by_name["signup"]
    assert signup["properties"]["plan"] == "pro"
    assert signup["properties"]["$pathname"] == "/pricing"
    assert by_name["early"][0]["properties"]["queued"] is True

    # before identify: the server's anonymous id (no id was sent); after: the user's
    anonymous = {r["distinct_id"] for r in (*pageviews[:2], signup, *by_name["early"])}
    assert len(anonymous) == 1 and anonymous.pop().startswith("anon_")
    (identify,) = by_name["$identify"]
    assert identify["distinct_id"] == "user-42"
    assert identify["properties"]["$set"] == {"email": "ada@example.com"}
    assert pageviews[2]["distinct_id"] == "user-42"
    (upgraded,) = by_name["upgraded"]
    assert upgraded["distinct_id"] == "user-42"
    assert upgraded["properties"]["plan"] == "team" and upgraded["properties"]["seats"] == 3


def test_persisted_anonymous_id_when_the_project_allows_it(
    browser: Any, site: Site, api: LiveApi, servers: ServerUrls, project: NewWorkspace
) -> None:
    snippet = configure(api, site, project, persist_anonymous_id=True)
    assert 'data-persist="1"' in snippet
    context = browser.new_context()
    page = context.new_page()
    captures = Captures(page, api)
    page.goto(f"{site.origin}/")
    wait_for(page, "2 capture requests", lambda: len(captures.sent) >= 2)
    stored = page.evaluate("localStorage.getItem('sqlbook_id')")
    assert uuid.UUID(stored)
    # answered before the page goes away: a reload aborts what is still in flight, and the
    # browser then reports a beacon the server may or may not have had as "failed"
    wait_for(page, "answers to the first 2", lambda: len(captures.outcomes) >= 2)
    page.reload()  # the same visitor on the next page load
    wait_for(page, "2 more after the reload", lambda: len(captures.sent) >= 4)
    page.evaluate("sqlbook('identify', 'user-7')")
    wait_for(page, "the identify event", lambda: len(captures.sent) >= 5)
    assert context.cookies() == []
    captures.settle()
    context.close()
    assert len(captures.sent) == 5 and captures.outcomes == [204] * 5

    rows = ingest_and_read(servers, api, project.project.id)
    assert len(rows) == 5
    assert [r["distinct_id"] for r in rows if r["event_name"] != "$identify"] == [stored] * 4
    (identify,) = [r for r in rows if r["event_name"] == "$identify"]
    assert identify["distinct_id"] == "user-7"
    assert identify["properties"]["$anon_distinct_id"] == stored


def test_a_disallowed_origin_lands_nothing(
    browser: Any, site: Site, api: LiveApi, servers: ServerUrls, project: NewWorkspace
) -> None:
    configure(api, site, project, cors_origins=["https://shop.example"])
    context = browser.new_context()
    page = context.new_page()
    captures = Captures(page, api)
    page.goto(f"{site.origin}/")
    page.click("#to-pricing")
    page.click("#signup")
    captures.settle()
    context.close()
    # the browser did send (the page views, the queued call, signup): the API refused
    assert captures.outcomes == [403] * 4
    assert stream_rows(servers.redis_url, api.stream_key, project.project.id) == []
    assert ingest_and_read(servers, api, project.project.id) == []


DNT_INIT = """
Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'});
Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});
"""


@pytest.mark.parametrize("where", ["browser", "server"])
def test_do_not_track_sends_nothing(
    where: str,
    browser: Any,
    site: Site,
    api: LiveApi,
    servers: ServerUrls,
    project: NewWorkspace,
) -> None:
    """data-dnt="1" (in the snippet when the project respects DNT): the script sends
    nothing at all. Without it, the API still drops what a DNT browser sends."""
    snippet = configure(api, site, project, respect_dnt=True)
    assert 'data-dnt="1"' in snippet
    if where == "server":
        site.head["snippet"] = snippet.replace(' data-dnt="1"', "")
    context = browser.new_context(extra_http_headers={"DNT": "1"})
    context.add_init_script(DNT_INIT)
    page = context.new_page()
    captures = Captures(page, api)
    scripts: list[str] = []
    page.on("requestfinished", lambda r: scripts.append(r.url) if "/t.js" in r.url else None)
    page.goto(f"{site.origin}/")
    assert page.evaluate("navigator.doNotTrack") == "1"
    page.click("#to-pricing")
    page.click("#signup")
    page.evaluate("sqlbook('identify', 'user-9', {email: 'dnt@example.com'})")
    # the script ran: under DNT the queue stub is replaced by a no-op, else it is running
    wait_for(page, "t.js to load", lambda: scripts == [f"{api.url}/t.js"])
    page.wait_for_function("typeof sqlbook == 'function' && !sqlbook.q")
    captures.settle()
    if where == "browser":
        assert page.evaluate("!sqlbook.version")  # the no-op, which sent nothing
        assert captures.sent == []
    else:
        # a success: nothing to retry
        assert captures.outcomes == [204] * 5
    context.close()
    assert stream_rows(servers.redis_url, api.stream_key, project.project.id) == []
    assert ingest_and_read(servers, api, project.project.id) == []


def test_fetch_fallback_retries_with_the_same_uuid(
    browser: Any, site: Site, api: LiveApi, servers: ServerUrls, project: NewWorkspace
) -> None:
    """No beacon (an old browser, or its queue is full): a keepalive fetch of text/plain,
    so no preflight; a send that fails is retried with the same uuid, stored once."""
    configure(api, site, project, cors_origins=[site.origin])
    context = browser.new_context()
    context.add_init_script("Navigator.prototype.sendBeacon = () => false")
    page = context.new_page()
    captures = Captures(page, api)
    failed: list[str] = []

    def fail_the_first(route: Any) -> None:
        if not failed:
            failed.append(route.request.post_data)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(f"{api.url}/e", fail_the_first)
    page.goto(f"{site.origin}/")
    # the page view, the queued call, and (2 s after the failure) one retry
    wait_for(page, "the retry of the failed send", lambda: len(captures.sent) >= 3)
    captures.settle()  # the retry answered 200: the script schedules nothing more
    context.close()

    assert set(captures.methods) == {"POST"}  # no OPTIONS: no preflight
    assert set(captures.sent) == {f"{api.url}/e"}
    assert sorted(map(str, captures.outcomes)) == ["200", "200", "failed"]
    (first,) = failed
    assert captures.bodies.count(first) == 2
    rows = ingest_and_read(servers, api, project.project.id)
    assert sorted(r["event_name"] for r in rows) == ["$pageview", "early"]
    assert json.loads(first)["uuid"] in {r["event_id"] for r in rows}
