"""`sqlbook query` against a live API on a local port."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli import main
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.live import free_port, serve_api


@pytest.fixture
def live_api(servers: ServerUrls, sqlbook_home: Path) -> Iterator[str]:
    with serve_api(make_settings(servers, sqlbook_home, api_port=free_port())) as url:
        yield url


def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, token: str, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("SQLBOOK_API_TOKEN", token)
    code = main(["query", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_default(live_api, workspace: NewWorkspace, capsys, monkeypatch):
    code, out, _ = run_cli(
        capsys,
        monkeypatch,
        workspace.api_token,
        "select $1::int + 1 as answer, $2 as word",
        "--param",
        "41",
        "--param",
        "hello",
        "--api-url",
        live_api,
    )
    assert code == 0
    body = json.loads(out)
    assert body["rows"] == [[42, "hello"]]
    assert body["columns"] == [
        {"name": "answer", "type": "integer"},
        {"name": "word", "type": "text"},
    ]


def test_csv_and_table(live_api, workspace: NewWorkspace, capsys, monkeypatch):
    sql = "select g as n, 'x' || g as label from generate_series(1, 3) g"
    code, out, _ = run_cli(
        capsys, monkeypatch, workspace.api_token, sql, "--format", "csv", "--api-url", live_api
    )
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["n", "label"],
        ["1", "x1"],
        ["2", "x2"],
        ["3", "x3"],
    ]
    code, out, _ = run_cli(
        capsys, monkeypatch, workspace.api_token, sql, "--format", "table", "--api-url", live_api
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["n", "label"] and lines[2].split() == ["1", "x1"]
    assert lines[-1].startswith("(3 rows")


def test_errors_go_to_stderr_with_exit_1(live_api, workspace: NewWorkspace, capsys, monkeypatch):
    code, out, err = run_cli(
        capsys, monkeypatch, workspace.api_token, "delete from events", "--api-url", live_api
    )
    assert (code, out) == (1, "")
    assert "DELETE" in err and "HTTP 400" in err
    code, _, err = run_cli(
        capsys, monkeypatch, workspace.api_token, "select\n  1 +", "--api-url", live_api
    )
    assert code == 1 and "line" in err
    code, _, err = run_cli(capsys, monkeypatch, "sqb_at_wrong", "select 1", "--api-url", live_api)
    assert code == 1 and "HTTP 401" in err


def test_api_down_is_a_one_line_error(workspace: NewWorkspace, capsys, monkeypatch):
    port = free_port()
    code, _, err = run_cli(
        capsys,
        monkeypatch,
        workspace.api_token,
        "select 1",
        "--api-url",
        f"http://127.0.0.1:{port}",
    )
    assert code == 1 and "cannot reach the API" in err and len(err.strip().splitlines()) == 1
