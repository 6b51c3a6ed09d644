"""`sqlbook backup` / `sqlbook restore` on a real embedded install (its own PostgreSQL and
Redis under a temp home, not the session's): a restored fresh home has every insight,
every ingested event and every entry still waiting in the stream, and ingesting those
entries afterwards counts no event twice, including one whose rows were committed before
the backup while its entry was still in the stream."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from api.cli import main
from connectors.backup import BackupError, backup, read_manifest, restore
from connectors.ingest import ingest_range
from connectors.metadata import MetadataStore, upgrade
from connectors.metadata.insights import InsightStore
from connectors.servers import start_servers
from connectors.settings import Settings
from connectors.stream import CaptureStreamReader, shard_keys
from connectors.warehouse.setup import install_warehouse
from connectors.warehouse.warehouses import open_warehouse
from tests.streams import append, event_batch

STREAM_KEY = "sqlbook:events"
SHARDS = shard_keys(STREAM_KEY, 2)


def _settings(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, stream_key=STREAM_KEY, _env_file=None, **overrides)  # type: ignore[call-arg]


def _event_ids(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(r[0]) for r in conn.execute("select event_id from events").fetchall()]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An install with a workspace, an insight, a reader role, events in the warehouse,
    entries waiting in two shards, one entry both ingested and still in its shard (a crash
    between commit and delete, or an ingestion between the stream copy and the database
    snapshot), and a dead letter. Its servers are stopped when this returns: backup starts
    them itself, as the CLI does on an install that is not running."""
    home = tmp_path_factory.mktemp("source")
    settings = _settings(home)
    facts: dict[str, Any] = {"home": home}
    with start_servers(settings) as urls:
        upgrade(urls.database_url)
        install_warehouse(urls.warehouse_url)
        with MetadataStore(urls.database_url) as store:
            ws = store.create_workspace(f"backup-{uuid.uuid4().hex[:8]}")
            insight = InsightStore(store).create(
                ws.workspace_id, {"name": "Kept", "sql": "select count(*) from events"}, "test"
            )
        project = ws.project.id
        facts |= {"workspace": ws.workspace, "insight_id": insight.id, "project": project}
        client = redis.Redis.from_url(urls.redis_url)
        warehouse = open_warehouse(urls.warehouse_url)
        # shard 0: ingested (its entries deleted), then more waiting
        batches = {SHARDS[0]: [event_batch(40, "ingested"), event_batch(25, "waiting")]}
        batches[SHARDS[1]] = [event_batch(30, "both"), event_batch(5, "waiting")]
        all_ids = set()
        for key, parts in batches.items():
            for part in parts:
                append(urls.redis_url, key, project, part)
                all_ids |= {e["uuid"] for e in part}
        reader0 = CaptureStreamReader(client, SHARDS[0])
        first = reader0.head()
        assert first is not None
        done = ingest_range(reader0, warehouse, first, first)  # the first entry only
        assert done.inserted == 40
        # shard 1's first entry: rows committed, entry left in the stream
        reader1 = CaptureStreamReader(client, SHARDS[1])
        (both,) = list(reader1.read("-", "+", page_size=1))[:1]
        warehouse.insert_events(both.rows)
        dead = list(reader1.read("-", "+"))[1]
        reader1.dead_letter(dead, "a test's refusal")
        reader1.delete([dead])
        client.close()
        # a reader role the dump grants to: restore must recreate it first
        with psycopg.connect(urls.warehouse_url, autocommit=True) as conn:
            conn.execute("create role sqlbook_backup_reader nologin")
            conn.execute("grant select on events to sqlbook_backup_reader")
            facts["ingested"] = sorted(_event_ids(conn))
        assert len(facts["ingested"]) == 70
    facts["all_ids"] = all_ids
    facts["secret_key"] = (home / "secret.key").read_text()
    return facts


@pytest.fixture(scope="module")
def backup_dir(source: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("backups") / "b1"
    lines: list[str] = []
    done = backup(_settings(source["home"]), folder, say=lines.append)
    assert done.path == folder
    return folder


def test_the_manifest_lists_counts_checksums_and_order(
    backup_dir: Path, source: dict[str, Any]
) -> None:
    manifest = read_manifest(backup_dir)
    assert manifest["order"] == ["streams", "metadata", "warehouse", "dagster"]
    streams = {s["key"]: s for s in manifest["streams"]}
    assert set(streams) == {*SHARDS, f"{SHARDS[1]}:dead"}
    assert streams[SHARDS[0]]["entries"] == 1 and streams[SHARDS[0]]["events"] == 25
    assert streams[SHARDS[1]]["entries"] == 1 and streams[SHARDS[1]]["events"] == 30
    assert streams[f"{SHARDS[1]}:dead"]["dead"] is True
    # data streams before dead letters (an entry is dead-lettered before it is deleted)
    order = [s["key"] for s in manifest["streams"]]
    assert order.index(f"{SHARDS[1]}:dead") > max(order.index(k) for k in SHARDS)
    tables = manifest["databases"]["metadata"]["tables"]
    assert tables["public.events"] == 70
    assert tables["meta.insights"] >= 1
    assert manifest["warehouse"] == {"kind": "postgres", "in": "metadata"}
    assert manifest["roles"] is True
    assert {"metadata.dump", "dagster.dump", "roles.sql", "secret.key"} <= set(manifest["files"])
    for meta in manifest["files"].values():
        assert len(meta["sha256"]) == 64
    # secrets stay private; the key itself is in the folder, never in the manifest
    assert (backup_dir.stat().st_mode & 0o077) == 0
    for path in backup_dir.rglob("*"):
        if path.is_file():
            assert (path.stat().st_mode & 0o077) == 0, path
    assert source["secret_key"].strip() not in (backup_dir / "manifest.json").read_text()


def test_restore_into_a_fresh_home_finds_every_event_and_insight(
    backup_dir: Path, source: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "restored"
    done = restore(backup_dir, _settings(home), say=lambda _line: None)
    assert done.moved_aside is None
    assert (home / "secret.key").read_text() == source["secret_key"]
    settings = _settings(home)
    with start_servers(settings) as urls:
        with MetadataStore(urls.database_url) as store:
            ws_id = store.workspace_id(source["workspace"])
            assert ws_id is not None
            insight = InsightStore(store).get(ws_id, source["insight_id"])
            assert insight is not None and insight.sql == "select count(*) from events"
        with psycopg.connect(urls.warehouse_url) as conn:
            assert sorted(_event_ids(conn)) == source["ingested"]
            grants = conn.execute(
                "select count(*) from information_schema.role_table_grants"
                " where grantee = 'sqlbook_backup_reader' and table_name = 'events'"
            ).fetchone()
            assert grants is not None and grants[0] == 1
        client = redis.Redis.from_url(urls.redis_url)
        try:
            assert client.xlen(SHARDS[0]) == 1 and client.xlen(SHARDS[1]) == 1
            assert client.xlen(f"{SHARDS[1]}:dead") == 1
            waiting = {
                str(r["event_id"])
                for key in SHARDS
                for e in CaptureStreamReader(client, key).read("-", "+")
                for r in e.rows
            }
            assert len(waiting) == 55
            # the backlog accounting is back: bytes per project waiting in the shards
            held = client.hget(f"{STREAM_KEY}:backlog", str(source["project"]))
            assert held is not None and int(held) > 0
            # what a fresh `sqlbook up` does next: ingest what the shards hold
            warehouse = open_warehouse(urls.warehouse_url)
            inserted = duplicates = 0
            for key in SHARDS:
                reader = CaptureStreamReader(client, key)
                head, tail = reader.head(), reader.tail()
                assert head is not None and tail is not None
                report = ingest_range(reader, warehouse, head, tail)
                inserted, duplicates = inserted + report.inserted, duplicates + report.duplicates
            assert (inserted, duplicates) == (25, 30)
            # new captures get ids after every id the stream handed out before the backup
            assert client.xinfo_stream(SHARDS[0])["last-generated-id"] is not None
        finally:
            client.close()
        with psycopg.connect(urls.warehouse_url) as conn:
            ids = _event_ids(conn)
        dead_ids = {e["uuid"] for e in _dead_events(backup_dir)}
        assert len(ids) == len(set(ids)), "an event counted twice"
        assert set(ids) == source["all_ids"] - dead_ids
        assert len(dead_ids) == 5


def _dead_events(folder: Path) -> list[dict[str, Any]]:
    manifest = read_manifest(folder)
    (dead,) = [s for s in manifest["streams"] if s["dead"]]
    with gzip.open(folder / dead["file"]) as f:
        fields = json.loads(f.readline())["fields"]
    return [{"uuid": r["event_id"]} for r in json.loads(fields["e"])]


def test_restore_refuses_a_home_with_data_unless_forced(backup_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "busy"
    home.mkdir()
    (home / "credentials.json").write_text("{}")
    with pytest.raises(BackupError, match="not empty"):
        restore(backup_dir, _settings(home), say=lambda _line: None)
    assert (home / "credentials.json").read_text() == "{}"
    done = restore(backup_dir, _settings(home), force=True, say=lambda _line: None)
    assert done.moved_aside is not None
    assert (done.moved_aside / "credentials.json").read_text() == "{}"


def test_restore_refuses_a_changed_file_or_another_key(backup_dir: Path, tmp_path: Path) -> None:
    other = _settings(tmp_path / "other-key", secret_key="x" * 40)
    with pytest.raises(BackupError, match="secret key differs"):
        restore(backup_dir, other, say=lambda _line: None)
    assert not (tmp_path / "other-key").exists(), "refused before anything is written"
    tampered = tmp_path / "tampered"
    tampered.mkdir(mode=0o700)
    for path in backup_dir.rglob("*"):
        target = tampered / path.relative_to(backup_dir)
        if path.is_dir():
            target.mkdir(mode=0o700)
        else:
            target.write_bytes(path.read_bytes())
    with (tampered / "roles.sql").open("a") as f:
        f.write("CREATE ROLE intruder SUPERUSER;\n")
    with pytest.raises(BackupError, match="roles.sql does not match its checksum"):
        restore(tampered, _settings(tmp_path / "t-home"), say=lambda _line: None)
    assert not (tmp_path / "t-home").exists()


def test_the_cli_backs_up_and_restores(
    source: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in [n for n in os.environ if n.startswith("SQLBOOK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SQLBOOK_HOME", str(source["home"]))
    monkeypatch.setenv("SQLBOOK_STREAM_KEY", STREAM_KEY)
    assert main(["backup", "--to", str(tmp_path / "cli-backup")]) == 0
    assert "backup written to" in capsys.readouterr().out
    assert main(["backup", "--to", str(tmp_path / "cli-backup")]) == 1
    assert "not empty" in capsys.readouterr().err
    home = tmp_path / "cli-home"
    assert main(["restore", str(tmp_path / "cli-backup"), "--home", str(home)]) == 0
    assert "restored into" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "cli-backup"), "--home", str(home)]) == 1
    assert "--force" in capsys.readouterr().err


@pytest.fixture
def chdb_source(tmp_path: Path) -> Iterator[tuple[Settings, set[str]]]:
    """An embedded install whose warehouse is chDB under its home."""
    home = tmp_path / "ch-source"
    settings = _settings(home, warehouse_url=f"chdb://{home / 'warehouse'}")
    with start_servers(settings) as urls:
        upgrade(urls.database_url)
        with MetadataStore(urls.database_url) as store:
            ws = store.create_workspace(f"ch-{uuid.uuid4().hex[:8]}")
        warehouse = open_warehouse(urls.warehouse_url)
        warehouse.install()
        append(urls.redis_url, STREAM_KEY, ws.project.id, event_batch(12, "ch"))
        client = redis.Redis.from_url(urls.redis_url)
        reader = CaptureStreamReader(client, STREAM_KEY)
        head, tail = reader.head(), reader.tail()
        assert head and tail
        assert ingest_range(reader, warehouse, head, tail).inserted == 12
        ids = {r[0] for r in warehouse.query_rows("SELECT toString(event_id) FROM events")}  # type: ignore[attr-defined]
        warehouse.close()  # type: ignore[attr-defined]
        client.close()
    yield settings, ids


def test_a_chdb_warehouse_is_backed_up_and_restored(
    chdb_source: tuple[Settings, set[str]], tmp_path: Path
) -> None:
    settings, ids = chdb_source
    done = backup(settings, tmp_path / "ch-backup", say=lambda _line: None)
    assert done.manifest["warehouse"]["tables"]["events"] == 12
    home = tmp_path / "ch-restored"
    restored = restore(done.path, _settings(home), say=lambda _line: None)
    assert restored.warehouse_url == f"chdb://{home / 'warehouse'}"
    warehouse = open_warehouse(restored.warehouse_url)
    try:
        found = {r[0] for r in warehouse.query_rows("SELECT toString(event_id) FROM events")}  # type: ignore[attr-defined]
        rollup = warehouse.query_rows("SELECT sum(events) FROM rollup_events_hourly")  # type: ignore[attr-defined]
    finally:
        warehouse.close()  # type: ignore[attr-defined]
    assert found == ids
    assert rollup == [(12,)], "the materialized view refilled the hourly rollup"


def test_ingestion_running_during_the_backup_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The worst window: after the stream copy and before the database snapshot, a running
    install ingests every waiting entry (deleting it) and captures and ingests more. The
    copied entries are then in the stream copy AND the snapshot; nothing is in neither."""
    home = tmp_path / "live"
    settings = _settings(home)
    with start_servers(settings) as urls:
        upgrade(urls.database_url)
        install_warehouse(urls.warehouse_url)
        with MetadataStore(urls.database_url) as store:
            project = store.create_workspace(f"live-{uuid.uuid4().hex[:8]}").project.id
        before = event_batch(20, "before") + event_batch(15, "also-before")
        append(urls.redis_url, SHARDS[0], project, before[:20])
        append(urls.redis_url, SHARDS[1], project, before[20:])
    during = event_batch(7, "during")

    def ingest_everything(urls: Any, redis_url: str) -> None:
        append(redis_url, SHARDS[0], project, during)
        client = redis.Redis.from_url(redis_url)
        warehouse = open_warehouse(urls.warehouse_url)
        for key in SHARDS:
            reader = CaptureStreamReader(client, key)
            head, tail = reader.head(), reader.tail()
            assert head and tail
            ingest_range(reader, warehouse, head, tail)
            assert reader.head() is None
        client.close()

    done = backup(
        settings, tmp_path / "live-backup", say=lambda _l: None, between=ingest_everything
    )
    assert sum(s["events"] for s in done.manifest["streams"]) == 35
    assert done.manifest["databases"]["metadata"]["tables"]["public.events"] == 42
    restored = _settings(tmp_path / "live-restored")
    restore(done.path, restored, say=lambda _l: None)
    with start_servers(restored) as urls:
        client = redis.Redis.from_url(urls.redis_url)
        warehouse = open_warehouse(urls.warehouse_url)
        replayed = [
            ingest_range(reader, warehouse, reader.head() or "-", reader.tail() or "+")
            for reader in (CaptureStreamReader(client, key) for key in SHARDS)
        ]
        client.close()
        with psycopg.connect(urls.warehouse_url) as conn:
            ids = _event_ids(conn)
    assert sum(r.inserted for r in replayed) == 0
    assert sum(r.duplicates for r in replayed) == 35
    assert sorted(ids) == sorted(e["uuid"] for e in before + during)
