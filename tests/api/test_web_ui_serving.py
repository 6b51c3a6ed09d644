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
