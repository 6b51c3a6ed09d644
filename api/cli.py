"""The `sqlbook` command."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from api import bundle_cli, credentials
from connectors.settings import Settings

if TYPE_CHECKING:
    from connectors.metadata.store import TokenInfo


def cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    from api.stack import run_stack

    return run_stack(settings)


def cmd_credentials(settings: Settings, args: argparse.Namespace) -> int:
    known = credentials.load_all(settings)
    entry = known.get(args.workspace)
    if entry is None:
        where = credentials.credentials_path(settings)
        hint = "run `sqlbook up` first" if not known else f"known: {', '.join(sorted(known))}"
        print(
            f"sqlbook: no credentials for workspace {args.workspace!r} in {where}; {hint}",
            file=sys.stderr,
        )
        return 1
    view = credentials.public_view(settings, entry, database_password=args.database_password)
    # a new one-time code on every call; null when the API is not running
    view["ui_login_url"] = credentials.login_link(view)
    if view["ui_login_url"] is None:
        print(
            f"sqlbook: no ui_login_url: the API at {view['api_url']} did not answer "
            "(start it with `sqlbook up`)",
            file=sys.stderr,
        )
    print(json.dumps(view, indent=2))
    return 0


def cmd_build_ui(_settings: Settings, args: argparse.Namespace) -> int:
    from api.ui_build import BuildError, ensure_built

    try:
        report = ensure_built(force=args.force, say=lambda line: print(line, flush=True))
    except BuildError as err:
        print(f"sqlbook: {err}", file=sys.stderr)
        return 1
    print(report.line())
    return 0


def cmd_workspaces_create(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.metadata import MetadataStore, upgrade
    from connectors.metadata.store import WorkspaceExists
    from connectors.servers import start_servers

    with start_servers(settings, redis=False) as urls:
        upgrade(urls.database_url)
        with MetadataStore(urls.database_url) as store:
            try:
                created = store.create_workspace(args.name)
            except (WorkspaceExists, ValueError) as err:
                print(f"sqlbook: {err}", file=sys.stderr)
                return 1
        credentials.save(settings, created, urls.warehouse_url)
    # what the new workspace's admin is handed: no server URL with credentials
    entry = credentials.load_all(settings)[created.workspace]
    print(json.dumps(credentials.tenant_view(settings, entry), indent=2))
    return 0


def cmd_tokens(settings: Settings, args: argparse.Namespace) -> int:
    """`sqlbook tokens list|create|revoke|rotate`: the operator's hand on a workspace's API
    tokens, straight in the database (the API need not run)."""
    from connectors.metadata import MetadataStore, upgrade
    from connectors.metadata.store import LastAdminToken, TokenRevoked
    from connectors.servers import start_servers

    with start_servers(settings, redis=False) as urls:
        upgrade(urls.database_url)
        with MetadataStore(urls.database_url) as store:
            workspace_id = store.workspace_id(args.workspace)
            if workspace_id is None:
                return _fail(f"no workspace {args.workspace!r}")
            if args.action == "list":
                _print([_token_json(t) for t in store.tokens(workspace_id)])
                return 0
            if args.action == "create":
                name = args.name.strip()
                if not 1 <= len(name) <= 100:
                    return _fail("NAME must have 1 to 100 characters")
                made = store.create_token(workspace_id, name, args.role)
                _print({**_token_json(made.info), "token": made.token})
                return 0
            # the token credentials.json holds for this workspace, if that is the one
            saved = credentials.load_all(settings).get(args.workspace, {}).get("api_token")
            is_saved = saved is not None and store.token_id(saved) == args.id
            try:
                if args.action == "revoke":
                    info = store.revoke_token(workspace_id, args.id)
                    out = None if info is None else _token_json(info)
                    if info is not None and is_saved:
                        credentials.forget(settings, args.workspace)
                        print(
                            f"sqlbook: removed workspace {args.workspace!r} (its token is"
                            f" revoked) from {credentials.credentials_path(settings)}",
                            file=sys.stderr,
                        )
                else:
                    new = store.rotate_token(workspace_id, args.id)
                    out = None if new is None else {**_token_json(new.info), "token": new.token}
                    if new is not None and is_saved:
                        credentials.set_api_token(settings, args.workspace, new.token)
            except (LastAdminToken, TokenRevoked) as err:
                return _fail(str(err))
            if out is None:
                return _fail(f"no token {args.id} in workspace {args.workspace!r}")
            _print(out)
    return 0


def cmd_users_create(settings: Settings, args: argparse.Namespace) -> int:
    """`sqlbook users create EMAIL --role R [--workspace NAME] [--password-stdin]`: a person
    (made, or found by their address) and their membership of the workspace, straight in
    the database. A person already a member keeps the role they have (the JSON says it);
    `--password-stdin` sets their password from the first line of standard input."""
    from connectors.metadata import MetadataStore, upgrade
    from connectors.metadata.people import People
    from connectors.metadata.signin import EmailSignIn, check_password
    from connectors.secrets import load_secret_key
    from connectors.servers import start_servers

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            check_password(password)
        except ValueError as err:
            return _fail(str(err))
    with start_servers(settings, redis=False) as urls:
        upgrade(urls.database_url)
        with MetadataStore(urls.database_url) as store:
            workspace_id = store.workspace_id(args.workspace)
            if workspace_id is None:
                return _fail(f"no workspace {args.workspace!r}")
            people = People(store)
            try:
                user = people.ensure_user(args.email)
            except ValueError as err:
                return _fail(str(err))
            member = people.add_member(workspace_id, user.id, args.role)
            if password is not None:
                EmailSignIn(store, settings, load_secret_key(settings)).set_password(
                    user.id, password
                )
    _print({"id": user.id, "email": user.email, "workspace": args.workspace, "role": member.role})
    return 0


def _token_json(info: TokenInfo) -> dict[str, object]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(info).items()}


def _print(value: object) -> None:
    print(json.dumps(value, indent=2))


def _fail(message: str) -> int:
    print(f"sqlbook: {message}", file=sys.stderr)
    return 1


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from connectors.metadata import upgrade
    from connectors.servers import start_servers
    from connectors.warehouse.setup import install_warehouse

    with start_servers(settings, redis=False) as urls:
        upgrade(urls.database_url)
        install_warehouse(urls.warehouse_url)
    print("sqlbook: metadata and warehouse schemas are current")
    return 0


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    from api.query_cli import run_query_command

    return run_query_command(settings, args)


def cmd_alerts_run(settings: Settings, args: argparse.Namespace) -> int:
    """Alerts from one file: only connectors modules (no API, Dagster or metadata database)."""
    import logging
    from pathlib import Path

    from connectors.notify import standalone

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger(standalone.__name__)
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.once else logging.INFO)
    try:
        config = standalone.load_config(Path(args.config))
        state = Path(args.state) if args.state else standalone.default_state_path(settings)
        return standalone.run(config, settings=settings, state_path=state, once=args.once)
    except standalone.ConfigError as err:
        for line in err.problems:
            print(f"sqlbook: {line}", file=sys.stderr)
        return standalone.EXIT_CONFIG
    finally:
        log.removeHandler(handler)


def cmd_warehouse_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """`sqlbook warehouse migrate --to URL`: copy the event warehouse, verify, switch
    (connectors/warehouse/migrate.py)."""
    import os
    from pathlib import Path

    from connectors.servers import start_servers
    from connectors.warehouse import migrate as m
    from connectors.warehouse.warehouses import warehouse_kind

    for flag, url in (("--to", args.to), ("--from", args.source)):
        if url is not None:
            try:
                warehouse_kind(url)
            except ValueError as err:
                return _fail(f"{flag}: {err}")
    home = settings.ensure_home()
    with start_servers(settings, redis=False) as urls:
        source = args.source or urls.warehouse_url
        running = m.stack_running(home)
        print(f"sqlbook: copying {m.shown(source)} to {m.shown(args.to)}", flush=True)
        try:
            report = m.migrate(
                source,
                args.to,
                m.state_path(home, args.to),
                batch_days=args.batch_days,
                say=lambda line: print(f"  {line}", flush=True),
                policies=m.project_policies(urls.database_url),
            )
        except m.MigrateError as err:
            return _fail(str(err))
    summary = {k: v for k, v in report.as_json().items() if k != "days"}
    summary["mismatches"] = report.mismatches[:50]  # all of them in the state file
    _print(summary)
    if running or m.stack_running(home):
        done = (
            "copied and verified"
            if report.verified
            else f"copied ({len(report.mismatches)} (project, day)s got events meanwhile)"
        )
        print(
            f"sqlbook: {done}, NOT switched: `sqlbook up` is running with this home, so"
            " ingestion still writes to the source. Stop it and run this command again: it"
            " copies what arrived meanwhile (the capture stream keeps what is not ingested"
            " yet) and switches.",
            file=sys.stderr,
        )
        return 0
    if not report.verified:
        return _fail(
            f"counts differ on {len(report.mismatches)} (project, day)s (listed above);"
            " nothing was switched: run the command again"
        )
    if args.no_switch:
        print(f"sqlbook: verified; not switched (--no-switch). To switch, set {m.ENV_NAME}.")
        return 0
    env_file = Path(args.env_file)
    m.switch_env_file(env_file, args.to)
    credentials.set_database_url(settings, args.to)
    print(f"sqlbook: switched: {m.ENV_NAME} written to {env_file.resolve()}")
    if os.environ.get(m.ENV_NAME, args.to) != args.to:
        print(
            f"sqlbook: {m.ENV_NAME} is set in the environment and wins over {env_file}:"
            f" set it there too: {m.ENV_NAME}={m.shown(args.to)}",
            file=sys.stderr,
        )
    if warehouse_kind(args.to) == "clickhouse" and args.to.startswith("chdb:"):
        print(
            "sqlbook: note: a chdb:// warehouse opens in one process only; `sqlbook up` runs"
            " several (API, Dagster): use a ClickHouse server for a running install",
            file=sys.stderr,
        )
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """`sqlbook backup [--to DIR]`: a consistent copy of this install (connectors/backup.py)."""
    from pathlib import Path

    from connectors.backup import BackupError, backup

    try:
        done = backup(settings, Path(args.to) if args.to else None)
    except BackupError as err:
        return _fail(str(err))
    print(f"sqlbook: backup written to {done.path} (manifest.json lists it; keep it private)")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """`sqlbook restore DIR [--home HOME] [--force]`: a new home made from a backup."""
    from pathlib import Path

    from connectors.backup import BackupError, restore

    try:
        done = restore(
            Path(args.dir),
            settings,
            home=Path(args.home) if args.home else None,
            force=args.force,
        )
    except BackupError as err:
        return _fail(str(err))
    print(f"sqlbook: restored into {done.home}; `sqlbook up` ingests what the stream holds")
    if done.warehouse_url:
        print(f"sqlbook: set SQLBOOK_WAREHOUSE_URL={done.warehouse_url}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sqlbook", description="Self-hosted product analytics.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start everything (embedded servers, API, Dagster)").set_defaults(
        func=cmd_up
    )
    cred = sub.add_parser("credentials", help="print a workspace's keys and URLs as JSON")
    cred.add_argument("--workspace", default=credentials.DEFAULT_WORKSPACE)
    cred.add_argument(
        "--database-password",
        action="store_true",
        help="print database_url with its password (redacted by default)",
    )
    cred.set_defaults(func=cmd_credentials)
    ws = sub.add_parser("workspaces", help="manage workspaces").add_subparsers(
        dest="action", required=True
    )
    create = ws.add_parser("create", help="create a workspace with a project, key and token")
    create.add_argument("name")
    create.set_defaults(func=cmd_workspaces_create)
    tokens = sub.add_parser(
        "tokens", help="list, create, revoke or rotate a workspace's API tokens"
    ).add_subparsers(dest="action", required=True)
    t_list = tokens.add_parser("list", help="the workspace's tokens (never their secrets)")
    t_create = tokens.add_parser("create", help="a new token; its secret is printed once")
    t_create.add_argument("name")
    t_create.add_argument("--role", choices=("viewer", "editor", "admin"), default="editor")
    t_revoke = tokens.add_parser("revoke", help="revoke a token at once (not the last admin)")
    t_rotate = tokens.add_parser("rotate", help="a new secret, same name and role; old revoked")
    for cmd in (t_revoke, t_rotate):
        cmd.add_argument("id", type=int, help="the token's id (`sqlbook tokens list`)")
    for cmd in (t_list, t_create, t_revoke, t_rotate):
        cmd.add_argument("--workspace", default=credentials.DEFAULT_WORKSPACE)
        cmd.set_defaults(func=cmd_tokens)
    users = sub.add_parser(
        "users", help="people who sign in to the web UI (by email code or password)"
    ).add_subparsers(dest="action", required=True)
    u_create = users.add_parser(
        "create", help="a person and their role in a workspace; prints them as JSON"
    )
    u_create.add_argument("email")
    u_create.add_argument("--role", choices=("admin", "editor", "viewer"), required=True)
    u_create.add_argument("--workspace", default=credentials.DEFAULT_WORKSPACE)
    u_create.add_argument(
        "--password-stdin",
        action="store_true",
        help="also set their password, read from the first line of standard input",
    )
    u_create.set_defaults(func=cmd_users_create)
    build = sub.add_parser("build-ui", help="build ui/dist when its sources changed")
    build.add_argument("--force", action="store_true", help="build even if nothing changed")
    build.set_defaults(func=cmd_build_ui)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    q = sub.add_parser("query", help="run SQL through the API and print the result")
    q.add_argument("sql", help="the query; use $1, $2 … for parameters")
    q.add_argument("--param", action="append", default=[], help="a value for $1, $2 … (repeat)")
    q.add_argument("--datasource", default="warehouse", help="'warehouse', a name or an id")
    q.add_argument("--format", choices=("json", "csv", "table"), default="json")
    q.add_argument("--timeout", type=float, help="statement timeout in seconds")
    q.add_argument("--max-rows", type=int, help="row cap of the result")
    q.add_argument("--no-cache", action="store_true", help="do not answer from the cache")
    q.add_argument("--workspace", default=credentials.DEFAULT_WORKSPACE)
    q.add_argument("--api-url", help="default: SQLBOOK_PUBLIC_API_URL or the local API")
    q.set_defaults(func=cmd_query)
    wh = sub.add_parser("warehouse", help="the event warehouse").add_subparsers(
        dest="action", required=True
    )
    wm = wh.add_parser(
        "migrate",
        help="copy events, persons to another warehouse (e.g. ClickHouse), verify, switch",
    )
    wm.add_argument("--to", required=True, help="clickhouse://…, clickhouses://…, postgresql://…")
    wm.add_argument("--from", dest="source", help="default: the current warehouse")
    wm.add_argument("--batch-days", type=int, default=1, help="days per source read")
    wm.add_argument("--env-file", default=".env", help="where SQLBOOK_WAREHOUSE_URL is written")
    wm.add_argument("--no-switch", action="store_true", help="copy and verify only")
    wm.set_defaults(func=cmd_warehouse_migrate)
    bk = sub.add_parser("backup", help="a consistent copy of this install, with a manifest")
    bk.add_argument("--to", help="a new folder (default: $SQLBOOK_HOME/backups/<UTC time>)")
    bk.set_defaults(func=cmd_backup)
    rs = sub.add_parser("restore", help="make a new home from a backup folder")
    rs.add_argument("dir", help="the backup folder (the one holding manifest.json)")
    rs.add_argument("--home", help="the home to restore into (default: $SQLBOOK_HOME)")
    rs.add_argument(
        "--force",
        action="store_true",
        help="restore into a home that has data: it is moved aside into <home>/replaced-<time>",
    )
    rs.set_defaults(func=cmd_restore)
    alerts = sub.add_parser("alerts", help="alerts from a YAML/JSON file").add_subparsers(
        dest="action", required=True
    )
    ar = alerts.add_parser(
        "run", help="evaluate the file's alerts on their schedules (no API or Dagster needed)"
    )
    ar.add_argument("-c", "--config", required=True, help="the alerts file (.yaml, .yml, .json)")
    ar.add_argument(
        "--once",
        action="store_true",
        help="evaluate every alert once, print a line each, exit (3 if one is in error)",
    )
    ar.add_argument("--state", help="state file (default: $SQLBOOK_HOME/alerts-state.json)")
    ar.set_defaults(func=cmd_alerts_run)
    bundle_cli.add_parsers(sub)  # export / import (templates)
    return p


def main(argv: list[str] | None = None) -> int:
    import psycopg

    from connectors.servers import ServerUnavailable

    args = parser().parse_args(argv)
    try:
        return int(args.func(Settings(), args))
    except (ServerUnavailable, psycopg.OperationalError) as err:
        print(f"sqlbook: {str(err).strip()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
