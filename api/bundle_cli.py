"""`sqlbook export` and `sqlbook import`: insights, dashboards, alerts and plugins as one
versioned JSON bundle (README "Templates").

Both talk to the running API as `sqlbook query` does (the token from SQLBOOK_API_TOKEN,
else this install's credentials for `--workspace`), so the caller's role, folder access
and the audit apply exactly as in the browser:

  sqlbook export dashboard 7 > board.json           GET /api/export/dashboard/7
  sqlbook import board.json --folder "Sales / EMEA" --datasource shop=warehouse
                                                    POST /api/import

`import` prints what it created and, on stderr, what it could not map; exit status 0
when it imported, 1 when it did not (the reason on stderr: a data source to map, a
bundle that does not validate, a folder not found, the API unreachable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from api import credentials
from api.query_cli import NoToken, api_target
from connectors.settings import Settings

KINDS = ("insight", "dashboard", "alert", "plugin")


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Adds `export` and `import` to the CLI's subcommands."""
    ex = sub.add_parser(
        "export", help="print an insight, dashboard, alert or plugin as a JSON bundle"
    )
    ex.add_argument("kind", choices=KINDS)
    ex.add_argument("id", help="the object's id (a plugin's: its name)")
    _common(ex)
    ex.add_argument("-o", "--output", help="write to this file instead of stdout")
    ex.set_defaults(func=cmd_export)
    im = sub.add_parser("import", help="create the objects of a JSON bundle in a workspace")
    im.add_argument("file", help="the bundle (.json; - for stdin)")
    im.add_argument("--folder", help='the folder to create them in, by path ("Sales / EMEA") or id')
    im.add_argument(
        "--datasource",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="use this workspace's data source NEW where the bundle names OLD (repeatable)",
    )
    im.add_argument("--dry-run", action="store_true", help="check and report; create nothing")
    _common(im)
    im.set_defaults(func=cmd_import)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=credentials.DEFAULT_WORKSPACE)
    parser.add_argument("--api-url", help="default: this install's API")


class _Failed(Exception):
    pass


class _Api:
    def __init__(self, settings: Settings, args: argparse.Namespace):
        try:
            self.url, token = api_target(settings, args)
        except NoToken as err:
            raise _Failed(str(err)) from None
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            response = httpx.request(
                method, f"{self.url}{path}", headers=self.headers, timeout=120, **kwargs
            )
        except httpx.HTTPError as err:
            raise _Failed(
                f"cannot reach the API at {self.url} ({err}); is `sqlbook up` running?"
            ) from None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise _Failed(
                f"the API answered {response.status_code}: {response.text[:200]}"
            ) from None


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    try:
        api = _Api(settings, args)
        status, payload = api.call("GET", f"/api/export/{args.kind}/{args.id}")
        if status != 200:
            raise _Failed(_problem(status, payload))
    except _Failed as err:
        return _fail(str(err))
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        bundle = _read(args.file)
        mapping = _mapping(args.datasource)
        api = _Api(settings, args)
        body: dict[str, Any] = {"bundle": bundle, "datasources": mapping, "dry_run": args.dry_run}
        if args.folder:
            body["folder_id"] = _folder_id(api, args.folder)
        status, payload = api.call("POST", "/api/import", json=body)
        if status not in (200, 201):
            if isinstance(payload, dict):
                for item in payload.get("unmapped") or []:
                    print(
                        f"unmapped {item['what']} {item['name']}: {item['reason']}", file=sys.stderr
                    )
            raise _Failed(_problem(status, payload))
    except _Failed as err:
        return _fail(str(err))
    verb = "would create" if payload.get("dry_run") else "created"
    for made in payload["created"]:
        where = f" {made['url']}" if made.get("url") else ""
        ident = "" if made["id"] is None else f" {made['id']}"
        print(f"{verb} {made['kind']}{ident} {made['name']!r}{where}")
    for item in payload["unmapped"]:
        print(f"unmapped {item['what']} {item['name']}: {item['reason']}", file=sys.stderr)
    return 0


def _read(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as err:
        raise _Failed(f"cannot read {name}: {err.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise _Failed(f"{name} is not JSON: {err}") from None


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise _Failed(f"--datasource {pair!r}: write OLD=NEW")
        mapping[old.strip()] = new.strip()
    return mapping


def _folder_id(api: _Api, folder: str) -> int:
    if folder.isdigit():
        return int(folder)
    status, payload = api.call("GET", "/api/folders")
    if status != 200:
        raise _Failed(_problem(status, payload))
    wanted = " / ".join(part.strip() for part in folder.split("/"))
    found = [f for f in payload if f["path"].lower() == wanted.lower()]
    if not found:
        raise _Failed(f"--folder: no folder {folder!r} in the workspace (that you may open)")
    return int(found[0]["id"])


def _problem(status: int, payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):  # FastAPI's request validation
        detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    return f"{detail or 'failed'} [HTTP {status}]"


def _fail(message: str) -> int:
    print(f"sqlbook: {message}", file=sys.stderr)
    return 1
