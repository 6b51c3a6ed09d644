"""The template gallery in a real browser: headless Chromium (Debian's /usr/bin/chromium,
Playwright) on the real API (uvicorn) over the session's embedded PostgreSQL and Redis.
Templates lists the four templates; SaaS revenue says it needs a Stripe connection and
cannot be installed until the workspace has one; once a Stripe account (the fake Stripe
API, tests/connectors/test_gallery_datasets.py) is connected and synced, Install opens the
new dashboard, whose tiles draw the numbers worked out by hand for that account."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from connectors.stripe.sync import sync_stripe
from connectors.templates.gallery import GALLERY_DIR
from tests.conftest import make_settings
from tests.connectors.test_gallery_datasets import seed_saas
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.fakes.stripe_api import StripeFake
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

KEY = "sk_test_" + "GalleryBrowserKey0123456"


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake.running() as running:
        running.add_key(KEY)
        seed_saas(running)
        yield running


@pytest.fixture(scope="module")
def settings(servers: ServerUrls, sqlbook_home: Path, ui_dist: Path, fake: StripeFake) -> Any:
    return make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        stripe_api_url=fake.url,
        outbound_allow_private=True,
    )


@pytest.fixture(scope="module")
def live_ui(settings: Any, metadata: MetadataStore) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"gallery-ui-{uuid.uuid4().hex[:8]}")
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture
def page(browser: Any, live_ui: LiveApi) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1400}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    yield ctx.new_page()
    ctx.close()


def connect_stripe(live: LiveApi, settings: Any, servers: ServerUrls, fake: StripeFake) -> None:
    made = httpx.post(
        f"{live.url}/api/connections",
        json={"kind": "stripe", "name": "Stripe", "api_key": KEY},
        headers={"Authorization": f"Bearer {live.workspace.api_token}"},
        timeout=60,
    )
    assert made.status_code == 201, made.text
    # what a sync reads of the connection (the Dagster asset passes the stored record)
    record = SimpleNamespace(
        id=made.json()["id"], project_id=live.workspace.project.id, config={"mode": "test"}
    )
    sync_stripe(record, {"api_key": KEY, "webhook_secrets": []}, settings=settings,  # type: ignore[arg-type]
                warehouse_url=servers.warehouse_url, mode="full", now=fake.clock)  # fmt: skip


def test_install_saas_revenue_and_see_its_tiles(
    page: Page, live_ui: LiveApi, settings: Any, servers: ServerUrls, fake: StripeFake
) -> None:
    sign_in(page, live_ui.login_link())
    page.get_by_role("link", name="Templates").click()
    expect(page).to_have_url(f"{live_ui.url}/templates")
    for name in ("Web analytics", "Product funnel", "Retention", "SaaS revenue"):
        expect(page.get_by_role("region", name=name)).to_be_visible()
    revenue = page.get_by_role("region", name="SaaS revenue")
    expect(revenue.get_by_role("list", name="SaaS revenue insights")).to_contain_text(
        "MRR movements"
    )
    # no Stripe connection yet: said so, and Install is off
    expect(revenue.get_by_role("note")).to_contain_text("Needs a Stripe connection")
    expect(revenue.get_by_role("button", name="Install SaaS revenue")).to_be_disabled()
    expect(page.get_by_role("region", name="Web analytics").get_by_role("button")).to_be_enabled()

    # a bundle file imports from here too: the gallery's own retention file, previewed
    page.get_by_role("button", name="Import a bundle…").click()
    dialog = page.get_by_role("dialog", name="Import a bundle")
    dialog.get_by_label("Bundle file").set_input_files(str(GALLERY_DIR / "retention.json"))
    expect(dialog.get_by_label("Import preview")).to_contain_text("Weekly retention cohorts")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)

    connect_stripe(live_ui, settings, servers, fake)
    # back to the gallery through the app (its router; the page asks the API again)
    page.get_by_role("link", name="Dashboards").click()
    page.get_by_role("link", name="Templates").click()
    revenue = page.get_by_role("region", name="SaaS revenue")
    expect(revenue.get_by_role("button", name="Install SaaS revenue")).to_be_enabled()
    expect(revenue.get_by_role("note")).to_have_count(0)
    revenue.get_by_role("button", name="Install SaaS revenue").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(live_ui.url)}/dashboards/\d+$"))
    expect(page.get_by_role("heading", name="SaaS revenue")).to_be_visible()
    for title in ("MRR", "ARPA", "Customers", "Customer churn", "MRR movements"):
        expect(page.locator(f'article[aria-label="{title}"]')).to_be_visible()

    # June to November 2025, the months of the account (dollars, the default currency)
    page.goto(f"{page.url}?f.range.from=2025-06-01&f.range.to=2025-11-30")
    expect(page.locator('article[aria-label="MRR"] svg')).to_contain_text("520.00")
    expect(page.locator('article[aria-label="ARPA"] svg')).to_contain_text("86.67")
    expect(page.locator('article[aria-label="Customers"] svg')).to_contain_text("6")
    expect(page.locator('article[aria-label="Customer churn"] svg')).to_contain_text("0.0%")
    by_currency = page.locator('article[aria-label="MRR by currency"]')
    for text in ("usd", "520", "eur", "90", "jpy", "1200"):
        expect(by_currency).to_contain_text(text)
    expect(page.locator('article[aria-label="MRR movements"] svg')).to_be_visible()
    expect(page.locator('article[aria-label="Refunds by month"] svg')).to_be_visible()

    # euros, picked from the currencies the account bills in: the filter drives every tile
    page.get_by_label("filter currency", exact=True).select_option("eur")
    expect(page.locator('article[aria-label="MRR"] svg')).to_contain_text("90.00")
    expect(page.locator('article[aria-label="Customers"] svg')).to_contain_text("1")
