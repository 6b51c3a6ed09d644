"""The `analytics` phase's worker processes: the events, generated with numpy/Arrow, and
the chDB side (tables, loading the same files, queries).

A product's 90 days, reproducible from the seed:

- persons (events / 100 by default) arrive uniformly over the days, each active for an
  exponential lifetime (mean 20 days) with a log-normal activity weight;
- their web sessions (mean 6 events, 8 minutes) carry posthog-js properties: `$pageview`
  (about 60 %), `$autocapture`, `$pageleave`, `$web_vitals`, `search`, `feature_used`;
  40 pages (Zipf-like), 8 browser/OS/device set-ups with their user agents, 8 referrers
  (direct, search, social, a newsletter with UTM tags); 90 % of sessions send
  `$session_id`, the rest leave sessions to be derived;
- a server-side funnel: 30 % of persons `signup` about a day after arriving (with an
  `$identify` of `user-<n>` merging their anonymous `anon-<n>`; their later web events use
  `user-<n>`), 55 % of those `activate` (mean 3 days later), 45 % of those `purchase`
  (mean 5 days after activating), so some conversions fall outside a 14-day window;
- event ids are UUIDv7 (time-ordered, as posthog-js sends them), rows are written in
  time order.

Written per UTC day: `day-YYYYMMDD.tsv` (PostgreSQL COPY text format, TSV_COLUMNS;
ClickHouse reads it as TSV), renamed into place when complete so the
loaders take days while later ones are being written; `persons.csv` and `pdi.csv` (what
`update_persons` would have made of these events: a person per `anon-<n>`, its `user-<n>`
merged into it) and finally `summary.json` (or `error.txt`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# the columns of a day file, in order (COPY and ClickHouse name them)
TSV_COLUMNS = (
    "event_id",
    "timestamp",
    "received_at",
    "distinct_id",
    "session_id",
    "project_id",
    "event_name",
    "properties",
    "ip",
    "user_agent",
    "lib",
)

WEB_EVENTS = (
    ("$pageview", 0.60),
    ("$autocapture", 0.18),
    ("$pageleave", 0.12),
    ("$web_vitals", 0.04),
    ("search", 0.03),
    ("feature_used", 0.03),
)
FUNNEL = ("signup", "activate", "purchase")
NAMES = tuple(n for n, _ in WEB_EVENTS) + ("$identify", *FUNNEL)
IDENTIFY = NAMES.index("$identify")

PAGES = ["/", "/pricing", "/docs", "/blog", "/signup", "/login", "/app", "/app/dashboard"] + [
    f"/{section}/{n}" for section in ("docs", "blog", "app/projects", "changelog") for n in range(8)
]
ENVIRONMENTS = [  # $browser, $os, $device_type, user agent
    (
        "Chrome",
        "Windows",
        "Desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "Chrome",
        "Mac OS X",
        "Desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "Safari",
        "Mac OS X",
        "Desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like"
        " Gecko) Version/18.1 Safari/605.1.15",
    ),
    (
        "Firefox",
        "Windows",
        "Desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    (
        "Edge",
        "Windows",
        "Desktop",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ),
    (
        "Mobile Safari",
        "iOS",
        "Mobile",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
        " like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        "Chrome",
        "Android",
        "Mobile",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/131.0.0.0 Mobile Safari/537.36",
    ),
    (
        "Mobile Safari",
        "iOS",
        "Tablet",
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
        " Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ),
]
REFERRERS = [  # $referrer, extra properties (UTM)
    ("$direct", {}),
    ("$direct", {}),
    ("https://www.google.com/", {}),
    ("https://www.google.com/", {}),
    ("https://news.ycombinator.com/", {}),
    ("https://twitter.com/", {"utm_source": "twitter", "utm_medium": "social"}),
    (
        "https://mail.example.net/",
        {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "december"},
    ),
    ("https://www.bing.com/", {}),
]
SERVER_UA = "posthog-python/3.7.4"
DAY_S = 86400


def _uuid_text(
    rng: np.random.Generator, ms: np.ndarray | None, n: int, suffix: bytes = b""
) -> pa.Array:
    """UUID strings (+ `suffix`), vectorised: v7 (time-ordered by `ms`) or, without, v4."""
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    if ms is not None:
        ms = ms.astype(np.int64)
        for k in range(6):
            b[:, k] = (ms >> (8 * (5 - k))) & 0xFF
        b[:, 6] = 0x70 | (b[:, 6] & 0x0F)
    else:
        b[:, 6] = 0x40 | (b[:, 6] & 0x0F)
    b[:, 8] = 0x80 | (b[:, 8] & 0x3F)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    pos = [i for i in range(36) if i not in (8, 13, 18, 23)]
    width = 36 + len(suffix)
    out = np.empty((n, width), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    out[:, pos[0::2]] = digits[b >> 4]
    out[:, pos[1::2]] = digits[b & 0x0F]
    out[:, 36:] = np.frombuffer(suffix, dtype=np.uint8)
    return _flat(pa.array(out.view(f"S{width}").ravel()).cast(pa.string()))


def _web_props(page: str, env: int, ref: int) -> dict[str, Any]:
    browser, os_name, device, _ = ENVIRONMENTS[env]
    referrer, utm = REFERRERS[ref]
    return {
        "$current_url": f"https://app.example.com{page}",
        "$pathname": page,
        "$host": "app.example.com",
        "$browser": browser,
        "$os": os_name,
        "$device_type": device,
        "$referrer": referrer,
        "$lib": "web",
        **utm,
    }


class Vocab:
    """A line is the concatenation of 7 segments, each taken from a small vocabulary (one
    Arrow `take` per segment and one join per day, no per-row Python):

        event_id\t | timestamp\treceived_at\t | distinct_id\t | session_id\t |
        head | session id inside the JSON | tail

    With a session id, head = `project\tname\t{"$session_id": "` and tail = the rest of
    the properties and the columns after them; without, head is all of it (per name and
    web template, per funnel event, per person for `$identify`) and the other two empty.
    """

    def __init__(self, project_id: int, n_persons: int, session_ids: pa.Array):
        p = str(project_id)
        self.n_persons = n_persons
        self.distinct = pa.array(
            [f"anon-{i}\t" for i in range(n_persons)] + [f"user-{i}\t" for i in range(n_persons)]
        )
        self.n_sessions = len(session_ids)
        tabbed = _flat(pc.binary_join_element_wise(session_ids, "\t", ""))
        self.sid_col = pa.concat_arrays([tabbed, pa.array(["\\N\t"])])
        self.sid_json = pa.concat_arrays([session_ids, pa.array([""])])
        n_web = len(WEB_EVENTS)
        self.n_templates = len(PAGES) * len(ENVIRONMENTS) * len(REFERRERS)
        heads = [f'{p}\t{name}\t{{"$session_id": "' for name, _ in WEB_EVENTS]
        tails = []
        plain: list[str] = [""] * (n_web * self.n_templates)
        for t in range(self.n_templates):
            page, rest = divmod(t, len(ENVIRONMENTS) * len(REFERRERS))
            env, ref = divmod(rest, len(REFERRERS))
            props = json.dumps(_web_props(PAGES[page], env, ref))
            after = f"\t\\N\t{ENVIRONMENTS[env][3]}\tweb\n"
            tails.append(f'", {props[1:]}{after}')
            for k, (name, _) in enumerate(WEB_EVENTS):
                plain[k * self.n_templates + t] = f"{p}\t{name}\t{props}{after}"
        server = f"\t\\N\t{SERVER_UA}\tposthog-python\n"
        funnel = {
            "signup": '{"plan": "free", "$lib": "posthog-python"}',
            "activate": '{"feature": "first_query", "$lib": "posthog-python"}',
            "purchase": '{"plan": "pro", "revenue": 49, "currency": "USD",'
            ' "$lib": "posthog-python"}',
        }
        self.plain_at = n_web
        self.funnel_at = n_web + len(plain)
        self.identify_at = self.funnel_at + len(FUNNEL)
        identify = [
            f"{p}\t$identify\t"
            + json.dumps(
                {"$anon_distinct_id": f"anon-{i}", "$set": {"email": f"user-{i}@example.com"}}
            )
            + server
            for i in range(n_persons)
        ]
        self.head = pa.array(
            heads + plain + [f"{p}\t{e}\t{funnel[e]}{server}" for e in FUNNEL] + identify
        )
        self.tail = pa.array([*tails, ""])

    def lines(
        self,
        rng: np.random.Generator,
        ts_us: np.ndarray,
        person: np.ndarray,
        name: np.ndarray,
        sess: np.ndarray,
        template: np.ndarray,
        is_user: np.ndarray,
        has_id: np.ndarray,
    ) -> bytes:
        n = len(ts_us)
        if not n:
            return b""
        web = sess >= 0
        n_web = len(WEB_EVENTS)
        sid = np.where(has_id, sess, self.n_sessions)
        head = np.where(
            has_id,
            name,
            np.where(
                web,
                self.plain_at + np.minimum(name, n_web - 1) * self.n_templates + template,
                np.where(
                    name == IDENTIFY,
                    self.identify_at + person,
                    self.funnel_at + np.maximum(name - IDENTIFY - 1, 0),
                ),
            ),
        )
        tail = np.where(has_id, template, self.n_templates)
        line = pc.binary_join_element_wise(
            _uuid_text(rng, ts_us // 1000, n, b"\t"),
            _time_text(ts_us),
            pc.take(self.distinct, pa.array(person + self.n_persons * is_user)),
            pc.take(self.sid_col, pa.array(sid)),
            pc.take(self.head, pa.array(head)),
            pc.take(self.sid_json, pa.array(sid)),
            pc.take(self.tail, pa.array(tail)),
            "",
        )
        chunks = line.chunks if isinstance(line, pa.ChunkedArray) else [line]
        return b"".join(_string_bytes(c) for c in chunks)


def generate(
    out_dir: str,
    events: int,
    days: int,
    end_iso: str,
    project_id: int,
    persons: int | None = None,
    seed: int = 14,
) -> dict[str, Any]:
    """Write the files described above; `end_iso` is the (exclusive) UTC midnight the
    data stop at. Returns (and writes as summary.json) what was generated."""
    began = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    end = datetime.fromisoformat(end_iso).astimezone(UTC)
    start = end - timedelta(days=days)
    span = days * DAY_S
    n_persons = persons or max(20, events // 100)

    # persons: arrival, lifetime, activity
    first = rng.uniform(0, span * 0.97, n_persons)
    last = np.minimum(span - 1.0, first + 3600 + rng.exponential(20 * DAY_S, n_persons))
    weight = rng.lognormal(0.0, 1.0, n_persons) * (last - first)

    # the server-side funnel (+ $identify just before signup)
    t_sign = first + rng.exponential(DAY_S, n_persons)
    signed = (rng.random(n_persons) < 0.30) & (t_sign < span - 1)
    t_act = t_sign + rng.exponential(3 * DAY_S, n_persons)
    act = signed & (rng.random(n_persons) < 0.55) & (t_act < span)
    t_pur = t_act + rng.exponential(5 * DAY_S, n_persons)
    pur = act & (rng.random(n_persons) < 0.45) & (t_pur < span)
    f_person = np.concatenate(
        [np.flatnonzero(signed), np.flatnonzero(signed), np.flatnonzero(act), np.flatnonzero(pur)]
    )
    f_ts = np.concatenate([t_sign[signed] - 1.0, t_sign[signed], t_act[act], t_pur[pur]])
    f_name = np.concatenate(
        [
            np.full(int(signed.sum()), IDENTIFY),
            np.full(int(signed.sum()), NAMES.index("signup")),
            np.full(int(act.sum()), NAMES.index("activate")),
            np.full(int(pur.sum()), NAMES.index("purchase")),
        ]
    )

    # web sessions and their events
    n_web = max(0, events - len(f_ts))
    n_sessions = max(1, n_web // 6)
    s_person = rng.choice(n_persons, n_sessions, p=weight / weight.sum())
    s_start = first[s_person] + rng.random(n_sessions) * (last[s_person] - first[s_person])
    s_len = 5.0 + rng.exponential(480.0, n_sessions)
    s_env = rng.integers(0, len(ENVIRONMENTS), n_sessions)
    s_ref = rng.integers(0, len(REFERRERS), n_sessions)
    s_has_id = rng.random(n_sessions) < 0.9
    w_sess = rng.integers(0, n_sessions, n_web)
    w_ts = s_start[w_sess] + rng.random(n_web) * s_len[w_sess]
    late = w_ts >= span  # a session running past the end: its events before the end
    w_ts[late] = s_start[w_sess[late]] + rng.random(int(late.sum())) * (
        span - s_start[w_sess[late]]
    )
    w_name = rng.choice(len(WEB_EVENTS), n_web, p=[p for _, p in WEB_EVENTS])
    page_p = 1.0 / np.arange(1, len(PAGES) + 1) ** 0.9
    w_page = rng.choice(len(PAGES), n_web, p=page_p / page_p.sum())

    ts = np.concatenate([w_ts, f_ts])
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    person = np.concatenate([s_person[w_sess], f_person])[order]
    name = np.concatenate([w_name, f_name])[order]
    sess = np.concatenate([w_sess, np.full(len(f_ts), -1)])[order]
    page = np.concatenate([w_page, np.zeros(len(f_ts), dtype=w_page.dtype)])[order]
    del w_ts, w_name, w_sess, w_page, f_ts, f_name, f_person
    is_user = signed[person] & (ts >= t_sign[person] - 1.0)
    n = len(ts)
    ts_us = int(start.timestamp() * 1_000_000) + (ts * 1_000_000).astype(np.int64)

    session_ids = _uuid_text(rng, (int(start.timestamp()) + s_start) * 1000, n_sessions)
    vocab = Vocab(project_id, n_persons, session_ids)
    n_ref, n_env = len(REFERRERS), len(ENVIRONMENTS)
    bounds = np.searchsorted(ts, np.arange(days + 1) * DAY_S, side="left")
    per_day: dict[str, int] = {}
    for d in range(days):
        lo, hi = int(bounds[d]), int(bounds[d + 1])
        day = (start + timedelta(days=d)).date()
        day_sess = sess[lo:hi]
        safe = np.where(day_sess >= 0, day_sess, 0)
        template = (page[lo:hi] * n_env + s_env[safe]) * n_ref + s_ref[safe]
        data = vocab.lines(
            rng,
            ts_us[lo:hi],
            person[lo:hi],
            name[lo:hi],
            day_sess,
            template,
            is_user[lo:hi],
            (day_sess >= 0) & s_has_id[safe],
        )
        _write_day(out, day, data)
        per_day[day.isoformat()] = hi - lo

    # persons as update_persons leaves them: one per person seen, anon-<n> and user-<n>
    seen = np.zeros(n_persons, dtype=bool)
    seen[person] = True
    firsts = np.full(n_persons, np.inf)
    lasts = np.full(n_persons, -np.inf)
    np.minimum.at(firsts, person, ts)
    np.maximum.at(lasts, person, ts)
    ids = np.flatnonzero(seen)
    pids = _uuid_text(rng, None, n_persons).to_pylist()
    with (out / "persons.tmp").open("w") as f:
        for i in ids:
            props = f'{{"email": "user-{i}@example.com"}}' if signed[i] else "{}"
            f.write(
                f'{project_id},{pids[i]},"{props.replace(chr(34), chr(34) * 2)}",{{}},'
                f"{_iso(start, firsts[i])},{_iso(start, lasts[i])}\n"
            )
    (out / "persons.tmp").rename(out / "persons.csv")
    with (out / "pdi.tmp").open("w") as f:
        for i in ids:
            f.write(f"{project_id},anon-{i},{pids[i]}\n")
            if signed[i]:
                f.write(f"{project_id},user-{i},{pids[i]}\n")
    (out / "pdi.tmp").rename(out / "pdi.csv")

    counts = np.bincount(name, minlength=len(NAMES))
    summary = {
        "events": n,
        "days": days,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "persons": int(seen.sum()),
        "identified_persons": int(signed.sum()),
        "sessions": n_sessions,
        "sessions_with_id": int(s_has_id.sum()),
        "by_event": {NAMES[k]: int(c) for k, c in enumerate(counts)},
        "funnel_persons": {
            "signup": int(signed.sum()),
            "activate": int(act.sum()),
            "purchase": int(pur.sum()),
            "activate_within_14d": int((act & (t_act - t_sign <= 14 * DAY_S)).sum()),
            "purchase_within_14d": int((pur & (t_pur - t_sign <= 14 * DAY_S)).sum()),
        },
        "per_day": per_day,
        "seconds": round(time.perf_counter() - began, 2),
    }
    (out / "summary.tmp").write_text(json.dumps(summary))
    (out / "summary.tmp").rename(out / "summary.json")
    return summary


def _iso(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=float(seconds))).isoformat()


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _string_bytes(arr: pa.Array) -> bytes:
    """The concatenated values of a string array (its data buffer, no copy per value)."""
    if not len(arr):
        return b""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    return memoryview(arr.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _time_text(ts_us: np.ndarray) -> pa.Array:
    """`<ts>\t<ts>\t` (timestamp and received_at) per row, ISO 8601 UTC text
    (`2026-12-01T10:00:00.123456Z`) built as bytes (Arrow's strftime is ~10x slower)."""
    n = len(ts_us)
    out = np.empty((n, 56), dtype=np.uint8)
    days = ts_us // 86_400_000_000
    us = ts_us - days * 86_400_000_000
    dates = np.array(
        [
            np.frombuffer(str(np.datetime64(int(d), "D")).encode(), dtype=np.uint8)
            for d in range(int(days.min()), int(days.max()) + 1)
        ]
    )
    out[:, 0:10] = dates[days - days.min()]
    out[:, 10] = ord("T")
    fields = [
        (11, 2, us // 3_600_000_000),
        (14, 2, us // 60_000_000 % 60),
        (17, 2, us // 1_000_000 % 60),
        (20, 6, us % 1_000_000),
    ]
    for at, width, value in fields:
        for k in range(width):
            out[:, at + k] = 48 + value // 10 ** (width - 1 - k) % 10
    out[:, 13] = out[:, 16] = ord(":")
    out[:, 19] = ord(".")
    out[:, 26] = ord("Z")
    out[:, 27] = out[:, 55] = ord("\t")
    out[:, 28:55] = out[:, 0:27]
    return _flat(pa.array(out.view("S56").ravel()).cast(pa.string()))


def _write_day(out: Path, day: date, data: bytes) -> None:
    path = out / f"day-{day:%Y%m%d}.tsv"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)


def generate_or_mark(out_dir: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`generate`, leaving `error.txt` behind when it fails (the loaders wait for files)."""
    try:
        return generate(out_dir, *args, **kwargs)
    except BaseException as err:
        (Path(out_dir) / "error.txt").write_text(f"{type(err).__name__}: {err}")
        raise


def wait_for(path: Path, directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if (directory / "error.txt").exists():
            raise RuntimeError(f"generation failed: {(directory / 'error.txt').read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} not generated within {timeout:.0f} s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- chDB side
# Runs in a process whose initializer is chdb_worker.open_path(<data path>).

CH_TABLES = (
    """create table if not exists events (
  event_id UUID, project_id Int64, event_name LowCardinality(String), distinct_id String,
  properties String, timestamp DateTime64(6, 'UTC'), received_at DateTime64(6, 'UTC'),
  ip Nullable(String), user_agent Nullable(String), lib Nullable(String),
  session_id Nullable(String)
) engine = MergeTree partition by toYYYYMM(timestamp)
  order by (project_id, toDate(timestamp), event_name, distinct_id)""",
    """create table if not exists person_distinct_ids (
  project_id Int64, distinct_id String, person_id UUID
) engine = MergeTree order by (project_id, distinct_id)""",
)
TSV_STRUCTURE = (
    "event_id String, timestamp String, received_at String, distinct_id String,"
    " session_id Nullable(String), project_id Int64, event_name String, properties String,"
    " ip Nullable(String), user_agent Nullable(String), lib Nullable(String)"
)


def _ch() -> Any:
    from tests.bench import chdb_worker

    return chdb_worker._client


def ch_load(directory: str, stems: list[str], timeout: float = 1800.0) -> dict[str, Any]:
    """Create the tables and insert each day's file as it appears, then the persons'
    distinct ids; `optimize ... final` so the parts are merged as a settled table's."""
    client = _ch()
    d = Path(directory)
    began = time.perf_counter()
    for statement in CH_TABLES:
        client.command(statement)
    for stem in stems:
        path = d / f"{stem}.tsv"
        wait_for(path, d, timeout)
        client.command(
            "insert into events select toUUID(event_id), project_id, event_name, distinct_id,"
            " properties, parseDateTime64BestEffort(timestamp, 6, 'UTC'),"
            " parseDateTime64BestEffort(received_at, 6, 'UTC'), ip, user_agent, lib, session_id"
            f" from file('{path}', TSV, '{TSV_STRUCTURE}')"
        )
    pdi = d / "pdi.csv"
    wait_for(pdi, d, timeout)
    client.command(
        "insert into person_distinct_ids select project_id, distinct_id, toUUID(person_id)"
        f" from file('{pdi}', CSV, 'project_id Int64, distinct_id String, person_id String')"
    )
    loaded = time.perf_counter() - began
    client.command("optimize table events final")
    rows = int(client.command("select count() from events"))
    return {
        "rows": rows,
        "load_seconds": round(loaded, 2),
        "optimize_seconds": round(time.perf_counter() - began - loaded, 2),
    }


def ch_query(sql: str, settings: dict[str, Any] | None = None) -> tuple[float, list[list[Any]]]:
    began = time.perf_counter()
    result = _ch().query(sql, settings=settings or {})
    took = time.perf_counter() - began
    return took, [list(r) for r in result.result_rows]
