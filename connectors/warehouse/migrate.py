"""`sqlbook warehouse migrate --to URL`: copy the event warehouse to another one (PostgreSQL
→ ClickHouse is the point; any pair of kinds works), resumable, verified, then switch.

What is copied: `events` (day by day), then `persons` and `person_distinct_ids` (whole,
they are small). Sessions and rollups are not copied: they are derived, and the target
derives its own (ClickHouse's `rollup_events_hourly` is fed by a materialized view on
`events` as rows arrive; PostgreSQL's rollup days are marked stale by the insert).

How a run goes:
1. copy persons and their distinct ids (upserts; on ClickHouse a persons batch of its
   own, at a version newer than any before, so it overrides what the target made);
2. count the events per (project, UTC day) on both sides;
3. copy every day whose counts differ, `batch_days` days per source read, in chunks of
   `batch_rows` through the target's own `insert_prepared` (with a deterministic
   deduplication token per chunk). A day the target already holds some rows of (a run
   that was killed half way, or events that arrived in the source since) is copied by
   difference: the event ids the target has are skipped, so nothing lands twice and no
   delete is needed (ClickHouse's hourly rollup only ever adds). After each batch of
   days the target's persons step applies what its inserts staged (on top of the copied
   persons: nothing changes but what the source had not applied yet);
4. repeat 2-3 (a catch-up pass) until no day differs: events ingested into the source
   during the copy are copied too (`max_passes`);
5. drop persons no distinct id points to any more (a person the target made during an
   earlier run for an id the source maps to another person), compute ClickHouse's
   sessions of the copied days;
6. verify: the counts per (project, day) are equal on both sides.

Progress is written after each batch of days to `<home>/migrate/<target>.json` (which
days are done with which counts, passes, timings); a killed run is simply run again and
continues (the counts are the truth: a day already equal on both sides is skipped).

Switching is the caller's (api/cli.py): while `sqlbook up` runs, ingestion keeps writing
to the source, so it copies and verifies but does not switch; run it again with sqlbook
stopped (the capture stream keeps what is not ingested yet: nothing is lost) for the last
catch-up and the switch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg

from connectors.servers import redact
from connectors.warehouse.postgres import Stamped
from connectors.warehouse.warehouses import warehouse_kind

DAY = timedelta(days=1)
BATCH_ROWS = 50_000
PERSON_BATCH = 20_000
MAX_PASSES = 5

Key = tuple[int, date]  # (project id, UTC day)
Say = Callable[[str], None]


class MigrateError(Exception):
    """A migration that cannot go on; the message names what and never holds a password."""


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------- the two sides


class Side:
    """What migration needs of a warehouse beyond the `Warehouse` interface: counts per
    (project, day), the event ids of a day, reading a day range in insertion form, and
    persons read and written in bulk."""

    kind: str
    url: str

    def counts(self) -> dict[Key, int]:
        raise NotImplementedError

    def event_ids(self, lo: date, hi: date) -> set[tuple[int, str]]:
        raise NotImplementedError

    def read(self, lo: date, hi: date, batch_rows: int) -> Iterator[list[Stamped]]:
        """Rows of [lo, hi) in time order, as `prepare_rows` makes them."""
        raise NotImplementedError

    def persons(self) -> Iterator[list[dict[str, Any]]]:
        raise NotImplementedError

    def distinct_ids(self) -> Iterator[list[dict[str, Any]]]:
        raise NotImplementedError

    def write_persons(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def write_distinct_ids(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def persons_begin(self) -> None:
        """Before persons are written (ClickHouse: their version)."""

    def persons_end(self) -> None:
        """After persons are written."""

    def drop_orphan_persons(self) -> int:
        """Delete the persons no distinct id points to; how many."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class PostgresSide(Side):
    kind = "postgres"

    def __init__(self, url: str):
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.conn.execute("set timezone = 'UTC'")

    def counts(self) -> dict[Key, int]:
        rows = self.conn.execute(
            "select project_id, (timestamp at time zone 'UTC')::date, count(*) from events"
            " group by 1, 2"
        ).fetchall()
        return {(int(p), d): int(n) for p, d, n in rows}

    def event_ids(self, lo: date, hi: date) -> set[tuple[int, str]]:
        rows = self.conn.execute(
            "select project_id, event_id::text from events where timestamp >= %s"
            " and timestamp < %s",
            (_midnight(lo), _midnight(hi)),
        ).fetchall()
        return {(int(p), str(e)) for p, e in rows}

    def read(self, lo: date, hi: date, batch_rows: int) -> Iterator[list[Stamped]]:
        # a named (server-side) cursor needs a transaction: its own connection
        with (
            psycopg.connect(self.url, connect_timeout=10) as conn,
            conn.cursor(name="sqlbook_migrate") as cur,
        ):
            conn.execute("set timezone = 'UTC'")
            cur.itersize = batch_rows
            cur.execute(
                "select event_id::text, project_id, event_name, distinct_id, properties::text,"
                " timestamp, received_at, host(ip), user_agent, lib, session_id from events"
                " where timestamp >= %s and timestamp < %s order by timestamp, event_id",
                (_midnight(lo), _midnight(hi)),
            )
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    return
                out: list[Stamped] = []
                for r in rows:
                    values = list(r)
                    ts = values[5]
                    values[5], values[6] = _iso(ts), _iso(values[6])
                    out.append((ts, values))
                yield out

    def persons(self) -> Iterator[list[dict[str, Any]]]:
        yield from self._batches(
            "select project_id, person_id::text as person_id, properties::text as properties,"
            " properties_at::text as properties_at, first_seen, last_seen, updated_at"
            " from persons order by project_id, person_id"
        )

    def distinct_ids(self) -> Iterator[list[dict[str, Any]]]:
        yield from self._batches(
            "select project_id, distinct_id, person_id::text as person_id"
            " from person_distinct_ids order by project_id, distinct_id"
        )

    def _batches(self, query: str) -> Iterator[list[dict[str, Any]]]:
        from psycopg.rows import dict_row

        with (
            psycopg.connect(self.url, connect_timeout=10, row_factory=dict_row) as conn,
            conn.cursor(name="sqlbook_migrate_persons") as cur,
        ):
            cur.execute(query)  # type: ignore[arg-type]
            while rows := cur.fetchmany(PERSON_BATCH):
                yield rows

    def write_persons(self, rows: list[dict[str, Any]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "insert into persons (project_id, person_id, properties, properties_at,"
                " first_seen, last_seen, updated_at) values (%(project_id)s, %(person_id)s,"
                " %(properties)s::jsonb, %(properties_at)s::jsonb, %(first_seen)s,"
                " %(last_seen)s, %(updated_at)s) on conflict (project_id, person_id) do update"
                " set properties = excluded.properties, properties_at = excluded.properties_at,"
                " first_seen = excluded.first_seen, last_seen = excluded.last_seen,"
                " updated_at = excluded.updated_at",
                rows,
            )

    def write_distinct_ids(self, rows: list[dict[str, Any]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "insert into person_distinct_ids (project_id, distinct_id, person_id)"
                " values (%(project_id)s, %(distinct_id)s, %(person_id)s)"
                " on conflict (project_id, distinct_id) do update"
                " set person_id = excluded.person_id",
                rows,
            )

    def drop_orphan_persons(self) -> int:
        cur = self.conn.execute(
            "delete from persons p where not exists (select 1 from person_distinct_ids d"
            " where d.project_id = p.project_id and d.person_id = p.person_id)"
        )
        return cur.rowcount

    def close(self) -> None:
        self.conn.close()


def clickhouse_client(url: str) -> Any:
    """A clickhouse-connect client for a warehouse URL (chDB: this process' engine)."""
    import clickhouse_connect

    from connectors.warehouse.clickhouse_source import parse_url

    t = parse_url(url)
    if t.chdb:
        return clickhouse_connect.get_client(
            dsn=f"chdb://{t.path}" if t.path else "chdb://memory", database=t.database
        )
    return clickhouse_connect.get_client(
        host=t.host,
        port=t.port,
        username=t.username,
        password=t.password,
        database=t.database or "default",
        interface=t.interface,
        autogenerate_session_id=False,
        send_receive_timeout=600,
    )


class ClickHouseSide(Side):
    kind = "clickhouse"

    def __init__(self, url: str):
        self.url = url
        self.client = clickhouse_client(url)
        self.version = 1

    def counts(self) -> dict[Key, int]:
        rows = self.client.query(
            "select project_id, toDate(timestamp, 'UTC') as day, count() from events"
            " group by project_id, day"
        ).result_rows
        return {(int(p), d): int(n) for p, d, n in rows}

    def event_ids(self, lo: date, hi: date) -> set[tuple[int, str]]:
        rows = self.client.query(
            "select project_id, toString(event_id) from events"
            " where timestamp >= {lo:DateTime64(6, 'UTC')}"
            " and timestamp < {hi:DateTime64(6, 'UTC')}",
            parameters={"lo": _midnight(lo), "hi": _midnight(hi)},
        ).result_rows
        return {(int(p), str(e)) for p, e in rows}

    def read(self, lo: date, hi: date, batch_rows: int) -> Iterator[list[Stamped]]:
        with self.client.query_row_block_stream(
            "select toString(event_id), project_id, toString(event_name), distinct_id,"
            " properties, timestamp, received_at, ip, user_agent, lib, session_id"
            " from events where timestamp >= {lo:DateTime64(6, 'UTC')}"
            " and timestamp < {hi:DateTime64(6, 'UTC')} order by timestamp, event_id",
            parameters={"lo": _midnight(lo), "hi": _midnight(hi)},
        ) as stream:
            out: list[Stamped] = []
            for block in stream:
                for r in block:
                    values = list(r)
                    ts = _utc(values[5])
                    values[5], values[6] = _iso(ts), _iso(_utc(values[6]))
                    out.append((ts, values))
                    if len(out) >= batch_rows:
                        yield out
                        out = []
            if out:
                yield out

    def persons(self) -> Iterator[list[dict[str, Any]]]:
        yield from self._batches(
            "select project_id, toString(person_id) as person_id, properties, properties_at,"
            " first_seen, last_seen, updated_at from persons final where is_deleted = 0"
            " order by project_id, person_id"
        )

    def distinct_ids(self) -> Iterator[list[dict[str, Any]]]:
        yield from self._batches(
            "select project_id, distinct_id, toString(person_id) as person_id"
            " from person_distinct_ids final where is_deleted = 0"
            " order by project_id, distinct_id"
        )

    def _batches(self, query: str) -> Iterator[list[dict[str, Any]]]:
        result = self.client.query(query)
        names = result.column_names
        rows = [dict(zip(names, r, strict=True)) for r in result.result_rows]
        for i in range(0, len(rows), PERSON_BATCH):
            yield rows[i : i + PERSON_BATCH]

    def _insert(self, table: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
        present = set(
            self.client.query(
                f"select name from system.columns where table = '{table}'"
                " and database = currentDatabase()"
            ).result_columns[0]
        )
        cols = [c for c in columns if c in present]
        extra = {"version": self.version, "is_deleted": 0}
        cols += [c for c in extra if c in present]
        data = [[r.get(c, extra.get(c)) for c in cols] for r in rows]
        self.client.insert(table, data, column_names=cols)

    def persons_begin(self) -> None:
        # ch_persons writes batch N with version N and reads the state before it: the copy
        # is a batch of its own, recorded as such, so later batches build on it
        (last,) = self.client.query("select max(batch) from person_batches").result_rows[0]
        self.version = int(last or 0) + 1

    def persons_end(self) -> None:
        self.client.insert(
            "person_batches", [[self.version, 0, 0]], column_names=["batch", "tokens", "updates"]
        )

    def drop_orphan_persons(self) -> int:
        orphans = (
            " FROM persons FINAL WHERE (project_id, person_id) NOT IN"
            " (SELECT project_id, person_id FROM person_distinct_ids FINAL)"
        )
        count = int(self.client.command("SELECT count()" + orphans))
        if count:
            self.persons_begin()  # a batch of its own: a deletion at a newer version
            self.client.command(
                "INSERT INTO persons (project_id, person_id, properties, properties_at,"
                " first_seen, last_seen, version, is_deleted) SELECT project_id, person_id,"
                f" properties, properties_at, first_seen, last_seen, {int(self.version)}, 1"
                + orphans
            )
            self.persons_end()
        return count

    def write_persons(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            r["person_id"] = uuid.UUID(str(r["person_id"]))
            for k in ("first_seen", "last_seen", "updated_at"):
                r[k] = _utc(r[k])
        self._insert(
            "persons",
            rows,
            [
                "project_id",
                "person_id",
                "properties",
                "properties_at",
                "first_seen",
                "last_seen",
                "updated_at",
            ],
        )

    def write_distinct_ids(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            r["person_id"] = uuid.UUID(str(r["person_id"]))
        self._insert("person_distinct_ids", rows, ["project_id", "distinct_id", "person_id"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def open_side(url: str) -> Side:
    if warehouse_kind(url) == "clickhouse":
        return ClickHouseSide(url)
    return PostgresSide(url)


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    retention_days: int | None = None  # None: forever
    session_timeout_minutes: int = 60


def project_policies(database_url: str) -> dict[int, Policy]:
    """Each project's event retention and session timeout, from the app database
    (`meta.projects`; columns an older schema lacks take their defaults)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        present = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'meta' and table_name = 'projects'"
            )
        }
        if "id" not in present:
            return {}
        retention = "event_retention_days" if "event_retention_days" in present else "null"
        timeout = "session_timeout_minutes" if "session_timeout_minutes" in present else "60"
        rows = conn.execute(
            f"select id, {retention}, {timeout} from meta.projects"  # type: ignore[arg-type]
        ).fetchall()
    return {int(i): Policy(r, int(t or 60)) for i, r, t in rows}


# --------------------------------------------------------------------------- state


def state_path(home: Path, target_url: str) -> Path:
    """`<home>/migrate/<kind>-<digest of the target URL>.json` (no password in the name)."""
    digest = hashlib.sha256(target_url.encode()).hexdigest()[:16]
    return home / "migrate" / f"{warehouse_kind(target_url)}-{digest}.json"


@dataclass
class MigrateReport:
    source: str
    target: str
    passes: int = 0
    days_total: int = 0
    days_copied: int = 0
    events_copied: int = 0
    events_skipped: int = 0  # present on the target already (a resumed day)
    persons: int = 0
    distinct_ids: int = 0
    persons_update_seconds: float = 0.0  # the target's persons step after each batch
    sessions: int = 0  # ClickHouse: sessions of the copied days
    orphans_dropped: int = 0  # persons no distinct id points to any more
    sessions_seconds: float = 0.0
    source_events: int = 0
    target_events: int = 0
    verified: bool = False
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    days: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: str = ""
    finished: str | None = None
    switched: str | None = None  # when the caller switched settings over

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except ValueError:
        return {}


def save_state(path: Path, report: MigrateReport) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(report.as_json(), f, indent=1, default=str)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the copy


def _ranges(days: list[date], batch_days: int) -> Iterator[list[date]]:
    """Consecutive runs of at most `batch_days` days."""
    run: list[date] = []
    for day in days:
        if run and (len(run) >= batch_days or day - run[-1] != DAY):
            yield run
            run = []
        run.append(day)
    if run:
        yield run


def _token(day: date, chunk: list[Stamped]) -> str:
    ids = hashlib.sha256()
    for _, values in chunk:
        ids.update(str(values[0]).encode())
    return f"migrate:{day.isoformat()}:{len(chunk)}:{ids.hexdigest()[:24]}"


def migrate(
    source_url: str,
    target_url: str,
    state_file: Path,
    *,
    batch_days: int = 1,
    batch_rows: int = BATCH_ROWS,
    max_passes: int = MAX_PASSES,
    say: Say = lambda _line: None,
    open_target: Callable[..., Any] | None = None,
    policies: dict[int, Policy] | None = None,
) -> MigrateReport:
    """Copy, catch up, copy persons, verify. Raises MigrateError when it cannot go on.

    `policies`: each project's event retention and session timeout (`project_policies`):
    ClickHouse stamps the retention on every row it stores (its TTL reads it), and the
    target's `sessions` of the copied days are computed with the timeouts."""
    policies = policies or {}
    if batch_days < 1:
        raise MigrateError("--batch-days must be at least 1")
    if source_url == target_url:
        raise MigrateError("--to is the warehouse being copied (--from)")
    began = time.monotonic()
    report = MigrateReport(source=shown(source_url), target=shown(target_url), started=_now())
    previous = load_state(state_file)
    if previous.get("days"):
        report.days = dict(previous["days"])
        say(
            f"resuming: {sum(1 for d in report.days.values() if d.get('done'))} days done "
            f"before ({state_file})"
        )
    if open_target is None:
        from connectors.warehouse.warehouses import open_warehouse

        open_target = open_warehouse
    try:
        if warehouse_kind(target_url) == "clickhouse":
            warehouse = open_target(
                target_url,
                retention=lambda p: policies[p].retention_days if p in policies else None,
            )
        else:
            warehouse = open_target(target_url)
        warehouse.install()
    except Exception as err:
        raise MigrateError(f"cannot install the target warehouse: {_describe(err)}") from err
    source, target = _open(source_url, "source"), _open(target_url, "target")
    try:
        # Persons first, so that the person updates the target stages for the events it
        # gets (as its ingestion does) build on them: applied after each batch of days
        # (memory stays bounded), they change nothing already right and apply what the
        # source had staged but not applied yet, or what arrives during the copy.
        say("copying persons and their distinct ids")
        target.persons_begin()
        for rows in source.persons():
            target.write_persons(rows)
            report.persons += len(rows)
        for rows in source.distinct_ids():
            target.write_distinct_ids(rows)
            report.distinct_ids += len(rows)
        target.persons_end()
        src: dict[Key, int] = {}
        copied_days: set[date] = set()
        for pass_no in range(1, max_passes + 1):
            src, dst = source.counts(), target.counts()
            todo = sorted({d for key, n in src.items() if dst.get(key, 0) != n for d in [key[1]]})
            report.passes = pass_no
            report.days_total = len({d for _, d in src})
            if not todo:
                break
            what = "copying" if pass_no == 1 else "catch-up: copying"
            say(
                f"pass {pass_no}: {what} {len(todo)} of {report.days_total} days"
                f" ({sum(src.values()):,} events in the source)"
            )
            copied_days.update(todo)
            for days in _ranges(todo, batch_days):
                _copy_range(source, target, warehouse, days, src, dst, batch_rows, report, say)
                began_persons = time.monotonic()
                while warehouse.update_persons().updates:
                    pass
                report.persons_update_seconds += time.monotonic() - began_persons
                save_state(state_file, report)
        report.persons_update_seconds = round(report.persons_update_seconds, 3)
        # a person the target made for an id that the source's copy (of a later run) maps
        # to another person is left without distinct ids: gone, as a merge leaves none
        report.orphans_dropped = target.drop_orphan_persons()
        refresh = getattr(warehouse, "refresh_sessions_day", None)
        if refresh is not None and copied_days:
            # ClickHouse's sessions are a table filled per day (PostgreSQL marks the days
            # the copy inserted into as stale, and the rollups asset refreshes them)
            say(f"computing the sessions of {len(copied_days)} days")
            began_sessions = time.monotonic()
            timeouts = {p: v.session_timeout_minutes for p, v in policies.items()}
            for day in sorted(copied_days):
                report.sessions += int(refresh(day, session_timeouts=timeouts))
            report.sessions_seconds = round(time.monotonic() - began_sessions, 3)
        # verification: both sides counted afresh
        src, dst = source.counts(), target.counts()
        report.source_events, report.target_events = sum(src.values()), sum(dst.values())
        report.mismatches = [
            {
                "project_id": p,
                "day": d.isoformat(),
                "source": src.get((p, d), 0),
                "target": dst.get((p, d), 0),
            }
            for p, d in sorted(set(src) | set(dst))
            if src.get((p, d), 0) != dst.get((p, d), 0)
        ]
        report.verified = not report.mismatches
        report.seconds = round(time.monotonic() - began, 3)
        report.finished = _now()
        save_state(state_file, report)
        return report
    finally:
        source.close()
        target.close()
        close = getattr(warehouse, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def _copy_range(
    source: Side,
    target: Side,
    warehouse: Any,
    days: list[date],
    src: dict[Key, int],
    dst: dict[Key, int],
    batch_rows: int,
    report: MigrateReport,
    say: Say,
) -> None:
    """Copy [days[0], days[-1] + 1 day) by one source read. Days the target holds rows of
    already are copied by difference (their event ids skipped)."""
    began = time.monotonic()
    lo, hi = days[0], days[-1] + DAY
    present = {d for (_, d), n in dst.items() if n}
    partial = [d for d in days if d in present]
    have: set[tuple[int, str]] = set()
    for d in partial:
        have |= target.event_ids(d, d + DAY)
    copied = skipped = 0
    per_day: dict[date, int] = {}
    for chunk in source.read(lo, hi, batch_rows):
        if have:
            kept = [s for s in chunk if (int(s[1][1]), str(s[1][0]).lower()) not in have]
            skipped += len(chunk) - len(kept)
            chunk = kept
        if not chunk:
            continue
        day = chunk[0][0].astimezone(UTC).date()
        if getattr(warehouse, "kind", "postgres") == "clickhouse":
            result = warehouse.insert_prepared(chunk, token=_token(day, chunk))
        else:
            result = warehouse.insert_prepared(chunk)
        copied += int(result.inserted)
        for ts, _ in chunk:
            d = ts.astimezone(UTC).date()
            per_day[d] = per_day.get(d, 0) + 1
    report.events_copied += copied
    report.events_skipped += skipped
    report.days_copied += len(days)
    for d in days:
        report.days[d.isoformat()] = {
            "done": True,
            "source": sum(n for (p, dd), n in src.items() if dd == d),
            "rows_read": per_day.get(d, 0),
            "at": _now(),
        }
    took = time.monotonic() - began
    label = str(lo) if len(days) == 1 else f"{lo}..{days[-1]}"
    say(
        f"  {label}: {copied:,} events in {took:.1f} s"
        + (f" ({skipped:,} already there)" if skipped else "")
    )


def _open(url: str, which: str) -> Side:
    try:
        return open_side(url)
    except (psycopg.Error, OSError, ValueError) as err:
        raise MigrateError(f"cannot open the {which} warehouse: {_describe(err)}") from err
    except Exception as err:  # clickhouse-connect's errors
        raise MigrateError(f"cannot open the {which} warehouse: {_describe(err)}") from err


def shown(url: str) -> str:
    """A URL to print: its password redacted (`redact` also drops the empty host of
    `chdb:///path`, so a URL without credentials is shown as it is)."""
    parts = urlsplit(url)
    has_secret = parts.password or any(k.lower() == "password" for k, _ in parse_qsl(parts.query))
    return redact(url) if has_secret else url


def _describe(err: BaseException) -> str:
    """An error's message with anything URL-like redacted (drivers may repeat a DSN)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    words = [redact(w) if "://" in w else w for w in text.split()]
    return f"{type(err).__name__}: {' '.join(words)}"[:400]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- switching


def stack_running(home: Path) -> bool:
    """Whether a `sqlbook up` holds this home (its lock file, api/stack.py)."""
    import fcntl

    lock = home / "up.lock"
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


ENV_NAME = "SQLBOOK_WAREHOUSE_URL"


def env_line(url: str) -> str:
    """`SQLBOOK_WAREHOUSE_URL=…` as a .env line (single quotes: no interpolation)."""
    if "'" not in url:
        return f"{ENV_NAME}='{url}'"
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    return f'{ENV_NAME}="{escaped}"'


def switch_env_file(path: Path, url: str) -> None:
    """Set SQLBOOK_WAREHOUSE_URL in the .env file Settings reads (replacing the line that
    set it, or appending one), atomically, readable by its owner only (it may hold a
    password, as the line it replaces did)."""
    lines = path.read_text().splitlines() if path.exists() else []
    out, done = [], False
    for line in lines:
        name = line.strip().removeprefix("export ").split("=", 1)[0].strip()
        if name == ENV_NAME:
            if not done:
                out.append(env_line(url))
                done = True
            continue
        out.append(line)
    if not done:
        out.append(env_line(url))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)
