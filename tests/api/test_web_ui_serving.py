"""`/` serves the built UI's index.html (revalidated), `/assets/` its hashed files (cached
for a year); without a build, `/` says how to make one."""

from __future__ import annotations

from pathlib import Path


def test_index_and_assets(client_with, tmp_path: Path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>sqlbook</title>")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
    with client_with(ui_dist=dist) as client:
        index = client.get("/")
        assert index.status_code == 200 and "<title>sqlbook</title>" in index.text
        assert index.headers["cache-control"] == "no-cache"
        asset = client.get("/assets/index-abc123.js")
        assert asset.status_code == 200 and asset.text == "console.log(1)"
        assert "immutable" in asset.headers["cache-control"]
        assert client.get("/assets/missing.js").status_code == 404
        # the API's own routes are still the API's
        assert client.get("/health").status_code == 200


def test_missing_build_is_explained(client_with, tmp_path: Path):
    with client_with(ui_dist=tmp_path / "nothing") as client:
        r = client.get("/")
        assert r.status_code == 503 and "sqlbook build-ui" in r.text


def test_app_paths_serve_the_index_and_the_api_keeps_its_404s(client_with, tmp_path: Path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>sqlbook</title>")
    with client_with(ui_dist=dist) as client:
        # a link to a page of the routed UI (or a reload on it) gets the app, revalidated
        for path in (
            "/editor",
            "/tokens",
            "/insights",
            "/insights/",
            "/insights/42",
            "/insights/42?p.region=EU&p.region=US&p.range=last_30_days&view=chart",
            "/connections",
            "/connections?status=3",
            "/web",
            "/analytics/funnel",
            "/dashboards",
            "/dashboards/7",
            "/dashboards/7?f.country=DE&f.country=FR&f.range=last_30_days&tv=1",
            "/templates",
            "/search?q=where+do+we+track+refunds%3F&kinds=table,insight",
        ):
            r = client.get(path)
            assert r.status_code == 200 and "<title>sqlbook</title>" in r.text, path
            assert r.headers["cache-control"] == "no-cache", path
            assert r.headers["x-content-type-options"] == "nosniff", path
        # only those: an unknown API path stays the API's JSON 404, assets stay files
        api = client.get("/api/no-such-thing")
        assert api.status_code == 404
        assert api.headers["content-type"].startswith("application/json")
        assert "detail" in api.json()
        assert client.get("/assets/insights/42.js").status_code == 404
        assert client.get("/no-such-page").status_code == 404
        assert client.post("/insights/42").status_code == 405
