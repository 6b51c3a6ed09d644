"""`sqlbook query`: the same POST /api/query a browser makes, printed for a terminal.

The token comes from SQLBOOK_API_TOKEN, else from this install's credentials file
(`--workspace`). Exit status: 0 with a result, 1 when the query or the API failed
(the reason on stderr)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any

import httpx
from tabulate import tabulate

from api import credentials
from connectors.settings import Settings


class NoToken(Exception):
    """Neither SQLBOOK_API_TOKEN nor this install's credentials give a token."""


def api_target(settings: Settings, args: argparse.Namespace) -> tuple[str, str]:
    """(the API's base URL, the bearer token) a CLI command calls the running API with:
    `--api-url`, else the public URL, else this install's; SQLBOOK_API_TOKEN, else the
    token of `--workspace` in this install's credentials. Raises NoToken."""
    token = os.environ.get("SQLBOOK_API_TOKEN")
    if not token:
        entry = credentials.load_all(settings).get(args.workspace)
        if entry is None:
            raise NoToken(
                f"no API token: set SQLBOOK_API_TOKEN or run `sqlbook up` to create "
                f"credentials for workspace {args.workspace!r}"
            )
        token = entry["api_token"]
    api_url = (
        args.api_url or settings.public_api_url or f"http://{settings.api_host}:{settings.api_port}"
    ).rstrip("/")
    return api_url, token


def run_query_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        api_url, token = api_target(settings, args)
    except NoToken as err:
        return _fail(str(err))
    body: dict[str, Any] = {
        "sql": args.sql,
        "params": args.param,
        "datasource": args.datasource,
        "cache": not args.no_cache,
    }
    if args.timeout is not None:
        body["timeout_s"] = args.timeout
    if args.max_rows is not None:
        body["max_rows"] = args.max_rows
    wait = (args.timeout or settings.query_max_timeout_seconds) + 30
    try:
        response = httpx.post(
            f"{api_url}/api/query",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=wait,
        )
    except httpx.HTTPError as err:
        return _fail(f"cannot reach the API at {api_url} ({err}); is `sqlbook up` running?")
    try:
        payload = response.json()
    except ValueError:
        return _fail(f"the API answered {response.status_code}: {response.text[:200]}")
    if response.status_code != 200:
        return _fail(_describe_error(response.status_code, payload))
    _print(payload, args.format)
    return 0


def _describe_error(status: int, payload: Any) -> str:
    if not isinstance(payload, dict):
        return f"HTTP {status}"
    detail = payload.get("detail")
    if isinstance(detail, list):  # FastAPI's request validation
        detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    where = ""
    if payload.get("line"):
        where = f" (line {payload['line']}, column {payload['column']})"
    return f"{detail}{where} [HTTP {status}]"


def _print(payload: dict[str, Any], fmt: str) -> None:
    names = [c["name"] for c in payload["columns"]]
    if fmt == "json":
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        for row in payload["rows"]:
            writer.writerow([_text(v) for v in row])
    else:
        print(tabulate([[_text(v) for v in r] for r in payload["rows"]], headers=names))
        more = " (truncated)" if payload["truncated"] else ""
        print(f"({payload['row_count']} rows{more}, {payload['elapsed_ms']:.0f} ms)")


def _text(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _fail(message: str) -> int:
    print(f"sqlbook: {message}", file=sys.stderr)
    return 1
