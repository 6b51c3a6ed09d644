"""Assistive AI and search by meaning in a real browser: headless Chromium
(tests/e2e/conftest.py) on the real API (uvicorn) over the session's embedded PostgreSQL and
Redis, with the scripted OpenAI-compatible fake (tests/fakes/openai_api.py) as the model.

Two APIs: one with SQLBOOK_AI_URL pointing at the fake, one with AI off. With AI on, a
question in the editor's Ask box fills the editor and its parameter input with the checked
suggestion (nothing runs), Run runs it with the value typed there and records it as
accepted, and "Answer from data" summarises the result citing the query; a suggestion the
checks refuse twice shows the reason and leaves the editor alone. With AI off the Ask box
is disabled with a note, while the schema sidebar still shows the deterministic hints
(time and id columns, join candidates), Explain shows them for a table, and the Search page
finds the refunds table and the "Refunds by week" insight."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, add_events_of_a_day, sign_in
from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake
from tests.live import free_port, serve_api
from tests.waiting import poll

pytestmark = pytest.mark.e2e

AI_KEY = "sk-test-" + "AiUiKey4Sqlbook" * 2
SIGNUPS_SQL = (
    "select event_name, count(*) as n from events where event_name = 'signup' group by event_name"
)


@pytest.fixture(scope="module")
def model() -> Iterator[OpenAIFake]:
    with OpenAIFake.running(api_key=AI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def ai_on(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, model: OpenAIFake
) -> Iterator[str]:
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        ai_url=model.url,
        ai_model=DEFAULT_MODEL,
        ai_api_key=AI_KEY,
    )
    with serve_api(settings) as url:
        yield url


@pytest.fixture(scope="module")
def ai_off(ui_dist: Path, servers: ServerUrls, sqlbook_home: Path) -> Iterator[str]:
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield url


def workspace_with_events(metadata: MetadataStore, servers: ServerUrls) -> NewWorkspace:
    """30 events of 2026-06-01: signup, pageview, login in turn (10 each)."""
    ws = metadata.create_workspace(f"ai-ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(servers.warehouse_url, ws.project.id)
    return ws


@pytest.fixture
def live_on(ai_on: str, metadata: MetadataStore, servers: ServerUrls, model: OpenAIFake) -> LiveApi:
    model.reset()
    return LiveApi(ai_on, workspace_with_events(metadata, servers))


@pytest.fixture
def live_off(ai_off: str, metadata: MetadataStore, servers: ServerUrls) -> LiveApi:
    return LiveApi(ai_off, workspace_with_events(metadata, servers))


@pytest.fixture
def context(browser) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


def signed_in(context: Any, live: LiveApi) -> Page:
    page = context.new_page()
    sign_in(page, live.login_link())
    page.evaluate("window.__noReload = true")
    return page


class Api:
    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def audit(self, action: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/api/audit/events?action={action}")["items"])


def editor_text(page: Page) -> Locator:
    return page.locator(".cm-content")


def result_cells(page: Page) -> list[str]:
    row = page.locator("[data-testid=result-grid] [role=row][aria-rowindex]").first
    return row.locator("[role=gridcell]").all_inner_texts()


def column_item(table: Locator, column: str) -> Locator:
    """A column's line under a table in the schema sidebar."""
    return table.locator("ul.columns > li").filter(
        has=table.page.get_by_role("button", name=column, exact=True)
    )


def test_ask_fills_the_editor_and_parameter_run_accepts_and_answer_cites_it(
    context, live_on: LiveApi, model: OpenAIFake
):
    api = Api(live_on)
    page = signed_in(context, live_on)
    ask = page.get_by_role("search", name="Ask AI")
    expect(ask.get_by_text(DEFAULT_MODEL)).to_be_visible()
    expect(ask.get_by_text("schema only")).to_be_visible()

    model.reply_sql(SIGNUPS_SQL, "Counts the signups.")
    ask.get_by_label("Ask a question").fill("how many signups were there?")
    ask.get_by_role("button", name="Ask", exact=True).click()

    # the suggestion fills the editor, with the literal lifted into a typed input
    suggestion = page.get_by_role("region", name="Suggestion")
    expect(suggestion).to_contain_text("Suggested for “how many signups were there?”")
    expect(suggestion).to_contain_text("Counts the signups.")
    expect(suggestion).to_contain_text("Reads public.events")
    expect(editor_text(page)).to_contain_text("$1")
    assert "'signup'" not in editor_text(page).inner_text()
    params = page.get_by_label("Parameters")
    expect(params.get_by_label("$1", exact=True)).to_have_value("signup")
    expect(params.get_by_label("type of $1")).to_have_value("text")
    expect(params.locator(".param-label-ai")).to_have_text("event_name")

    # what went to the model: the question and the schema, no sample values, no key
    sent = model.chat_requests()
    assert len(sent) == 1
    assert "how many signups were there?" in sent[0].text
    assert "events" in sent[0].text and "event_name" in sent[0].text
    assert "user-00" not in sent[0].text  # a distinct_id of the workspace's events
    assert AI_KEY not in sent[0].raw.decode()
    # suggested, not accepted and not run
    (asked,) = poll("the ai.sql audit event", lambda: api.audit("ai.sql"), bool)
    assert "how many signups were there?" in json.dumps(asked["detail"])
    assert api.audit("ai.accepted") == []
    expect(page.get_by_test_id("result-meta")).to_have_count(0)

    # Run binds the value in the input (changed to another event) and accepts the suggestion
    params.get_by_label("$1", exact=True).fill("login")
    page.get_by_role("button", name="▶ Run").click()
    expect(page.get_by_test_id("result-meta").locator("span").first).to_have_text("1 row")
    assert result_cells(page) == ["login", "10"]
    poll("the ai.accepted audit event", lambda: api.audit("ai.accepted"), lambda e: len(e) == 1)
    # a second Run of the same suggestion is not a second acceptance
    page.get_by_role("button", name="▶ Run").click()
    expect(page.get_by_test_id("result-meta").locator("span").first).to_have_text("1 row")
    assert len(api.audit("ai.accepted")) == 1

    # Answer from data: the query runs again read-only; the summary cites it
    model.reply("There were 10 logins.")
    page.get_by_role("button", name="Answer from data").click()
    answer = page.get_by_role("region", name="Answer")
    expect(answer).to_contain_text("There were 10 logins.")
    expect(answer).to_contain_text("Source: 1 row of the query")
    numbers = answer.get_by_label("Numbers")
    count = numbers.locator("div").filter(has=page.get_by_text("n", exact=True))
    expect(count.locator("dd")).to_have_text("10")
    answer.get_by_text("Based on this query").click()
    expect(answer.locator("pre")).to_contain_text("{{event_name}}")
    expect(answer).to_contain_text('"login"')
    expect(answer).to_contain_text("1 row")
    # only the rows the query returned went to the model
    last = model.chat_requests()[-1].text
    assert "login" in last and "pageview" not in last
    poll("the ai.answer audit event", lambda: api.audit("ai.answer"), bool)

    # saved as an insight, the suggestion keeps its named parameter, the value typed as default
    page.get_by_role("button", name="Save as insight…").click()
    dialog = page.get_by_role("dialog", name="Save as insight")
    expect(dialog.get_by_label("type of event_name")).to_have_value("text")
    dialog.get_by_label("Insight name").fill("Events of one name")
    dialog.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/insights/\d+$"))
    saved = api.call("GET", f"/api/insights/{page.url.rsplit('/', 1)[1]}")
    assert "{{event_name}}" in saved["sql"] and "$1" not in saved["sql"]
    assert [(p["name"], p["type"], p["default"]) for p in saved["parameters"]] == [
        ("event_name", "text", "login")
    ]
    assert page.evaluate("window.__noReload") is True


def test_a_refused_suggestion_says_why_and_leaves_the_editor_alone(
    context, live_on: LiveApi, model: OpenAIFake
):
    page = signed_in(context, live_on)
    editor_text(page).click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text("select 42 as kept")
    # the model insists on something the guard refuses: two tries, then the reason
    model.reply_sql("drop table events")
    model.reply_sql("select 1; drop table events")
    ask = page.get_by_role("search", name="Ask AI")
    ask.get_by_label("Ask a question").fill("remove all events")
    ask.get_by_role("button", name="Ask", exact=True).click()
    alert = ask.get_by_role("alert")
    expect(alert).to_contain_text("No safe suggestion")
    expect(alert).to_contain_text("nothing was run")
    expect(editor_text(page)).to_have_text("select 42 as kept")
    expect(page.get_by_role("region", name="Suggestion")).to_have_count(0)
    assert len(model.chat_requests()) == 2
    # the events are all still there
    rows = Api(live_on).call(
        "POST", "/api/query", {"sql": "select count(*) as n from events", "datasource": "warehouse"}
    )["rows"]
    assert rows == [[30]]


def test_admin_lets_sample_values_go_to_the_model(context, live_on: LiveApi, model: OpenAIFake):
    api = Api(live_on)
    page = signed_in(context, live_on)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Workspace").click()
    settings = page.get_by_role("region", name="Workspace settings")
    toggle = settings.get_by_label("Send sample values to the AI")
    expect(toggle).not_to_be_checked()
    toggle.check()
    settings.get_by_role("button", name="Save settings").click()
    expect(settings.get_by_role("status")).to_have_text("Saved.")
    assert api.call("GET", "/api/workspace/settings")["ai_send_samples"] is True
    assert api.call("GET", "/api/ai/status")["send_samples"] is True
    changed = api.audit("workspace.settings_changed")
    assert "ai_send_samples" in json.dumps(changed[0]["detail"])

    # the editor says so, and the next question carries sample values of the columns
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Editor").click()
    ask = page.get_by_role("search", name="Ask AI")
    expect(ask.get_by_text("sample values shared")).to_be_visible()
    model.reply_sql("select count(*) as n from events")
    ask.get_by_label("Ask a question").fill("how many events?")
    ask.get_by_role("button", name="Ask", exact=True).click()
    expect(page.get_by_role("region", name="Suggestion")).to_contain_text("how many events?")
    expect(editor_text(page)).to_have_text(
        re.compile(r"^select count\(\*\) as n from events$", re.I)
    )
    assert "signup" in model.chat_requests()[-1].text

    # Explain SQL: the hints of the tables it reads, and the model's words
    model.reply("Counts every event of the workspace.")
    page.get_by_role("button", name="Explain SQL").click()
    dialog = page.get_by_role("dialog", name="Explain the query")
    expect(dialog).to_contain_text("Counts every event of the workspace.")
    hints = dialog.get_by_role("region", name="hints for public.events")
    expect(hints.get_by_label("Time columns")).to_contain_text("timestamp")
    assert "select count(*) as n from events" in model.chat_requests()[-1].text.lower()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)


def test_with_ai_off_the_ask_box_says_so_and_schema_hints_still_show(context, live_off: LiveApi):
    page = signed_in(context, live_off)
    ask = page.get_by_role("search", name="Ask AI")
    expect(ask.get_by_label("Ask a question")).to_be_disabled()
    expect(ask.get_by_role("button", name="Ask", exact=True)).to_be_disabled()
    expect(ask.get_by_role("note")).to_contain_text("AI assistance is off")
    expect(ask.get_by_role("note")).to_contain_text("SQLBOOK_AI_URL")

    # deterministic hints beside the columns: time and id columns, join candidates
    schema = page.get_by_role("complementary", name="Schema")
    events = schema.locator("li", has=page.get_by_role("button", name="events", exact=True))
    expect(column_item(events, "timestamp").locator(".hint-badge.time")).to_have_text("time")
    expect(column_item(events, "distinct_id").locator(".hint-badge.id")).to_have_text("id")
    expect(column_item(events, "event_name").locator(".hint-badge")).to_have_count(0)
    schema.get_by_label("filter schema").fill("refunds")
    joins = schema.get_by_label("joins of stripe.refunds")
    expect(joins).to_contain_text("charge → stripe.charges.id")

    # Explain on a table: the same hints, no model words
    schema.get_by_role("button", name="explain stripe.refunds").click()
    dialog = page.get_by_role("dialog", name="Explain stripe.refunds")
    expect(dialog).to_contain_text("AI assistance is off")
    hints = dialog.get_by_role("region", name="hints for stripe.refunds")
    expect(hints.get_by_label("Time columns")).to_contain_text("created")
    expect(hints.get_by_label("Key fields")).to_contain_text("id")
    expect(hints.get_by_label("Likely joins")).to_contain_text("charge → stripe.charges.id")
    expect(hints.get_by_label("Suggested metrics")).to_contain_text("sum(amount)")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)
    assert page.evaluate("window.__noReload") is True


def test_search_finds_the_refunds_table_and_insight_with_ai_off(context, live_off: LiveApi):
    api = Api(live_off)
    insight = api.call(
        "POST",
        "/api/insights",
        {
            "name": "Refunds by week",
            "sql": "select date_trunc('week', created) as week, sum(amount) as refunded"
            " from stripe.refunds group by 1 order by 1",
        },
        status=201,
    )
    api.call(
        "POST",
        "/api/insights",
        {"name": "Weekly signups", "sql": "select count(*) from events"},
        status=201,
    )
    page = signed_in(context, live_off)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Search").click()
    box = page.get_by_label("Search insights, dashboards, tables and columns")
    box.fill("where do we track refunds?")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"/search\?q=where\+do\+we\+track\+refunds%3F$"))
    results = page.get_by_role("list", name="Search results")
    top = results.locator("li")
    expect(top.first).to_be_visible()
    first_five = top.all_inner_texts()[:5]
    assert any("stripe.refunds" in t and t.startswith("table") for t in first_five), first_five
    assert any("Refunds by week" in t and t.startswith("insight") for t in first_five), first_five
    assert not any("Weekly signups" in t for t in first_five[:2]), first_five

    # a table opens in the editor's schema sidebar
    refunds = top.filter(has=page.get_by_text("stripe.refunds", exact=True)).first
    refunds.get_by_role("link", name="Open in the editor").click()
    expect(page).to_have_url(f"{live_off.url}/")
    schema = page.get_by_role("complementary", name="Schema")
    expect(schema.get_by_label("filter schema")).to_have_value("stripe.refunds")
    expect(schema.get_by_role("button", name="charge", exact=True)).to_be_visible()
    page.go_back()
    expect(top.first).to_be_visible()

    # only insights: the kinds are in the URL too
    page.get_by_role("checkbox", name="Tables").uncheck()
    page.get_by_role("checkbox", name="Columns").uncheck()
    expect(page).to_have_url(re.compile(r"kinds=insight%2Cdashboard"))
    expect(results.locator("li").first).to_contain_text("Refunds by week")
    expect(results.get_by_text("stripe.refunds", exact=True)).to_have_count(0)

    # a result opens its page
    results.get_by_role("link", name="Refunds by week").click()
    expect(page).to_have_url(f"{live_off.url}/insights/{insight['id']}")
    assert page.evaluate("window.__noReload") is True
