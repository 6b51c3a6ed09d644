"""`sqlbook alerts run`: alerts from one YAML/JSON file against real pieces: an embedded
PostgreSQL (and chDB) as the data source, the Recorder as Slack and as a signed webhook,
aiosmtpd for email. No API, no Dagster, no metadata database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from api.cli import main
from connectors.notify import standalone
from connectors.notify.standalone import ConfigError, load_config, load_state, run
from connectors.settings import Settings
from tests.notify_receivers import (  # noqa: F401  (fixtures)
    Recorder,
    SMTPReceiver,
    recorder_fixture,
    smtp_fixture,
    verify_signature,
)
from tests.waiting import wait_until

SLACK_PATH = "/slack/T000/B000/abcdefghijklmnop"
HOOK_PATH = "/hook"
HOOK_SECRET = "hook-signing-secret-0123"

EXAMPLE = """\
datasources:
  main: {url: "${WAREHOUSE_URL}"}
channels:
  ops-slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
  oncall-mail: {type: email, to: ["ops@example.com"]}
  hook: {type: webhook, url: "${HOOK_URL}", secret: "${HOOK_SECRET}"}
alerts:
  - name: signups-dropped
    datasource: main
    sql: "select count(*) as n from events where event_name = $1 and timestamp > now() - interval '1 hour'"
    params: ["signup"]
    rule: {type: threshold, column: n, op: "<", value: 10, rows: first}
    schedule: "*/5 * * * *"
    channels: [ops-slack, oncall-mail]
  - name: any-refund
    sql: "select event_name, timestamp from events where event_name = 'refund'"
    rule: {type: any_rows}
    schedule: {every: 10m}
    channels: [hook]
"""  # noqa: E501


def make_events(url: str, signups: int, refunds: int = 0) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table if not exists events (event_name text, timestamp timestamptz)")
        conn.execute("truncate events")
        for name, count in (("signup", signups), ("refund", refunds)):
            for _ in range(count):
                conn.execute(
                    "insert into events values (%s, now() - interval '5 minutes')", (name,)
                )


def add_signups(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            conn.execute("insert into events values ('signup', now())")


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recorder: Recorder, smtp: SMTPReceiver
) -> dict[str, str]:
    """The environment the CLI reads: receivers' URLs, SMTP settings, SQLBOOK_HOME."""
    values = {
        "SLACK_WEBHOOK_URL": recorder.url + SLACK_PATH,
        "HOOK_URL": recorder.url + HOOK_PATH,
        "HOOK_SECRET": HOOK_SECRET,
        "SQLBOOK_HOME": str(tmp_path / "home"),
        "SQLBOOK_SMTP_HOST": smtp.host,
        "SQLBOOK_SMTP_PORT": str(smtp.port),
        "SQLBOOK_SMTP_SECURITY": "none",
        # the receivers are on 127.0.0.1 (also the runner's default: see below)
        "SQLBOOK_OUTBOUND_ALLOW_PRIVATE": "true",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def settings_for(env: dict[str, str]) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=Path(env["SQLBOOK_HOME"]),
        smtp_host=env["SQLBOOK_SMTP_HOST"],
        smtp_port=int(env["SQLBOOK_SMTP_PORT"]),
        smtp_security="none",
        outbound_allow_private=env["SQLBOOK_OUTBOUND_ALLOW_PRIVATE"] == "true",
    )


def cli(path: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["alerts", "run", "-c", str(path), "--once", "--state", str(state)])
    out, err = capsys.readouterr()
    return code, out, err


# --- the example, end to end -----------------------------------------------------------------


def test_example_notifies_once_then_resolves(
    own_postgres: tuple[Any, str],
    env: dict[str, str],
    recorder: Recorder,
    smtp: SMTPReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = own_postgres
    monkeypatch.setenv("WAREHOUSE_URL", url)
    make_events(url, signups=3, refunds=1)
    config = tmp_path / "alerts.yaml"
    config.write_text(EXAMPLE)
    state = tmp_path / "state.json"

    code, out, _ = cli(config, state, capsys)
    assert code == 0
    assert out.splitlines() == [
        "signups-dropped: triggered (n < 10 (first row): 3) → ops-slack ok, oncall-mail ok",
        "any-refund: triggered (1 row returned) → hook ok",
    ]
    slack = recorder.wait_for(1, path=SLACK_PATH)
    assert "signups-dropped" in slack[0].json["text"]
    mail = smtp.wait_for(1)
    assert mail[0].rcpt_tos == ["ops@example.com"]
    assert "signups-dropped" in mail[0].message["Subject"]
    hook = recorder.wait_for(1, path=HOOK_PATH)[0]
    assert verify_signature(HOOK_SECRET, hook.body, hook.header("X-Sqlbook-Signature"))
    assert not verify_signature("another-secret", hook.body, hook.header("X-Sqlbook-Signature"))
    assert hook.json["rule"] == "any-refund" and hook.json["reason"] == "triggered"

    saved = json.loads(state.read_text())
    assert saved["signups-dropped"]["memory"]["announced"] == "triggered"
    assert saved["signups-dropped"]["last"]["state"] == "triggered"
    assert datetime.fromisoformat(saved["signups-dropped"]["next_due"]).minute % 5 == 0

    # The same, again: the state file remembers it was announced, so nothing is sent.
    code, out, _ = cli(config, state, capsys)
    assert code == 0
    assert out.splitlines()[0] == "signups-dropped: triggered (n < 10 (first row): 3)"
    # the run delivers before it returns: the counts are final
    assert len(recorder.to(SLACK_PATH)) == 1
    assert len(recorder.to(HOOK_PATH)) == 1
    assert len(smtp.messages) == 1

    # Enough signups now: the next run resolves, once.
    add_signups(url, 10)
    code, out, _ = cli(config, state, capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("signups-dropped: ok (n = 13 (first row)")
    assert out.splitlines()[0].endswith("→ resolved: ops-slack ok, oncall-mail ok")
    resolved = recorder.wait_for(2, path=SLACK_PATH)[1]
    assert "Resolved" in resolved.json["text"]
    assert "Resolved" in smtp.wait_for(2)[1].message["Subject"]
    assert json.loads(state.read_text())["signups-dropped"]["memory"]["announced"] == "ok"


@pytest.mark.parametrize("setting", [None, "false"])
def test_the_operators_runner_allows_private_receivers_unless_told_not_to(
    own_postgres: tuple[Any, str],
    env: dict[str, str],
    recorder: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting: str | None,
) -> None:
    """`sqlbook alerts run` reads the operator's own file: its receivers on private
    addresses are allowed by default; SQLBOOK_OUTBOUND_ALLOW_PRIVATE=false refuses them."""
    _, url = own_postgres
    monkeypatch.setenv("WAREHOUSE_URL", url)
    if setting is None:
        monkeypatch.delenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE")
    else:
        monkeypatch.setenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE", setting)
    make_events(url, signups=3, refunds=1)
    config = tmp_path / "alerts.yaml"
    config.write_text(EXAMPLE)

    code, out, _ = cli(config, tmp_path / "state.json", capsys)

    hook_line = out.splitlines()[1]
    if setting is None:
        assert hook_line == "any-refund: triggered (1 row returned) → hook ok"
        assert len(recorder.to(HOOK_PATH)) == 1
    else:
        assert "hook failed" in hook_line and "loopback address" in hook_line
        assert recorder.requests == []


def test_failing_query_is_an_error_sent_to_the_owner(
    own_postgres: tuple[Any, str],
    env: dict[str, str],
    recorder: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = own_postgres  # a fresh database: no events table
    monkeypatch.setenv("WAREHOUSE_URL", url)
    config = tmp_path / "alerts.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "datasources": {"main": {"url": "${WAREHOUSE_URL}", "timeout_s": 5}},
                "channels": {
                    "ops-slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
                    "hook": {"type": "webhook", "url": "${HOOK_URL}", "secret": "${HOOK_SECRET}"},
                },
                "alerts": [
                    {
                        "name": "broken",
                        "sql": "select count(*) as n from events",
                        "rule": {"type": "threshold", "column": "n", "op": ">", "value": 0},
                        "schedule": "0 * * * *",
                        "channels": ["ops-slack", "hook"],
                        "owner_channel": "hook",
                    }
                ],
            }
        )
    )
    state = tmp_path / "state.json"
    code, out, _ = cli(config, state, capsys)
    assert code == standalone.EXIT_ALERT_ERROR == 3
    line = out.strip()
    assert line.startswith("broken: error (the alert's query failed: ")
    assert "events" in line and line.endswith("→ hook ok")
    notice = recorder.wait_for(1, path=HOOK_PATH)[0]
    assert notice.json["reason"] == "error" and notice.json["state"] == "error"
    assert 'relation "events" does not exist' in notice.json["error"]
    assert verify_signature(HOOK_SECRET, notice.body, notice.header("X-Sqlbook-Signature"))
    assert recorder.to(SLACK_PATH) == []  # errors go to the owner channel only
    assert json.loads(state.read_text())["broken"]["memory"]["state"] == "error"

    # Still failing: still exit 3, but the owner is not told twice. The state file keeps
    # the evaluation that decided so: the error state, no notification, nothing sent.
    code, out, _ = cli(config, state, capsys)
    assert code == 3
    assert out.strip() == line.split(" → ")[0]  # no "→": no channel was sent to
    last = json.loads(state.read_text())["broken"]["last"]
    assert (last["state"], last["reason"], last["deliveries"]) == ("error", None, [])

    # A later notice to the same receiver: the table exists now, the owner is told of the
    # recovery. Once it has arrived, the owner's notices are exactly error, resolved.
    make_events(url, signups=0)
    code, out, _ = cli(config, state, capsys)
    assert code == 0
    assert out.startswith("broken: ok (n = 0") and out.rstrip().endswith("→ resolved: hook ok")
    notices = recorder.wait_for(2, path=HOOK_PATH)
    assert [n.json["reason"] for n in notices] == ["error", "resolved"]
    assert recorder.to(SLACK_PATH) == []


# --- config errors ---------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "datasources": {"main": {"url": "postgresql://sqlbook:pw@127.0.0.1:1/sqlbook"}},
    "channels": {
        "ops-slack": {"type": "slack", "webhook_url": "https://hooks.example.com/T/B/x"},
        "oncall-mail": {"type": "email", "to": ["ops@example.com"]},
    },
    "alerts": [
        {
            "name": "signups-dropped",
            "datasource": "main",
            "sql": "select count(*) as n from events where event_name = $1",
            "params": ["signup"],
            "rule": {"type": "threshold", "column": "n", "op": "<", "value": 10},
            "schedule": "*/5 * * * *",
            "channels": ["ops-slack", "oncall-mail"],
        }
    ],
}


def variant(change: Callable[[dict[str, Any]], object]) -> str:
    data = json.loads(json.dumps(BASE))
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _alert(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["alerts"][0].update(fields)

    return change


def _second_alert(data: dict[str, Any]) -> None:
    data["alerts"].append(dict(data["alerts"][0], sql="select 1 as n", params=[]))


def _env_url(data: dict[str, Any]) -> None:
    data["channels"]["ops-slack"]["webhook_url"] = "${SLACK_URL_NOT_SET_ANYWHERE}"


YAML_SYNTAX = """\
datasources:
  main: {url: "postgresql://x@127.0.0.1:1/db"}
channels:
  ops-slack: {type: slack, webhook_url: "https://hooks.example.com/x"
alerts: []
"""

JSON_SYNTAX = '{\n  "datasources": {"main": {"url": "postgresql://x@h/db"}},\n  "channels": {,\n}\n'


@pytest.mark.parametrize(
    "name, text, expected",
    [
        (
            "alerts.yaml",
            variant(_env_url),
            "alerts.yaml: channels.ops-slack.webhook_url: "
            "environment variable SLACK_URL_NOT_SET_ANYWHERE is not set",
        ),
        (
            "alerts.yaml",
            variant(_alert(datasource="nope")),
            "alerts.yaml: alerts[0] (signups-dropped): datasource 'nope' is not defined "
            "(defined: main)",
        ),
        (
            "alerts.yaml",
            variant(_alert(channels=["ops-slack", "pager"])),
            "alerts.yaml: alerts[0] (signups-dropped): channels[1]: channel 'pager' is not "
            "defined (defined: oncall-mail, ops-slack)",
        ),
        (
            "alerts.yaml",
            variant(_alert(rule={"type": "threshold", "column": "n", "op": "=<", "value": 1})),
            "alerts.yaml: alerts[0] (signups-dropped): rule.op: Input should be '>', '>=', '<'",
        ),
        (
            "alerts.yaml",
            variant(_alert(schedule="*/5 * * *")),
            "alerts.yaml: alerts[0] (signups-dropped): schedule.cron: '*/5 * * *' is not a cron",
        ),
        (
            "alerts.yaml",
            variant(_alert(sql="delete from events", params=[])),
            "alerts.yaml: alerts[0] (signups-dropped): sql: ",
        ),
        (
            "alerts.yaml",
            variant(_alert(params=[])),
            "alerts.yaml: alerts[0] (signups-dropped): params: ",
        ),
        (
            "alerts.yaml",
            variant(_second_alert),
            "alerts.yaml: alerts[1] (signups-dropped): name: duplicate alert name (also alerts[0])",
        ),
        (
            "alerts.yaml",
            variant(_alert(rule={"type": "threshold", "op": "<", "value": 1})),
            "alerts.yaml: alerts[0] (signups-dropped): rule.column: required",
        ),
        (
            "alerts.yaml",
            variant(lambda d: d["channels"]["ops-slack"].update(webhook_url="not a url")),
            "alerts.yaml: channels.ops-slack: webhook_url: must be an http(s) URL",
        ),
        (
            "alerts.yaml",
            variant(lambda d: d["datasources"]["main"].update(url="mysql://u:p@h/db")),
            "alerts.yaml: datasources.main: url: unsupported scheme 'mysql'",
        ),
        ("alerts.yaml", YAML_SYNTAX, "alerts.yaml: line 5: could not parse YAML: "),
        ("alerts.json", JSON_SYNTAX, "alerts.json: line 3: could not parse JSON: "),
        (
            "alerts.yaml",
            YAML_SYNTAX.replace('x"\n', 'x"}\n  ops-slack: {type: email, to: a@b.co}\n'),
            "alerts.yaml: line 5: could not parse YAML: duplicate key 'ops-slack'",
        ),
    ],
    ids=[
        "missing-env",
        "unknown-datasource",
        "unknown-channel",
        "bad-op",
        "bad-cron",
        "write-sql",
        "missing-param",
        "duplicate-names",
        "missing-field",
        "bad-channel",
        "bad-scheme",
        "yaml-syntax",
        "json-syntax",
        "duplicate-key",
    ],
)
def test_config_errors_name_file_alert_and_field(
    name: str,
    text: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SQLBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SLACK_URL_NOT_SET_ANYWHERE", raising=False)
    config = tmp_path / name
    config.write_text(text)
    state = tmp_path / "state.json"
    code, out, err = cli(config, state, capsys)
    assert code == 2
    assert out == ""
    assert f"sqlbook: {tmp_path}/{expected}" in err, err
    assert not state.exists()


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["channels"]["ops-slack"]["type"] = "pager"
        data["alerts"].append(dict(data["alerts"][0], name="second", datasource="nope"))
        data["alerts"][0]["schedule"] = "every day"

    path = tmp_path / "alerts.yaml"
    path.write_text(variant(change))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = caught.value.problems
    assert problems == [
        f"{path}: channels.ops-slack: type: unknown channel type 'pager' "
        "(expected one of slack, email, webhook, teams, sms, whatsapp)",
        f"{path}: alerts[0] (signups-dropped): schedule.cron: 'every day' is not a cron "
        "expression (minute hour day month weekday)",
        f"{path}: alerts[1] (second): datasource 'nope' is not defined (defined: main)",
    ]
    assert str(caught.value) == "\n".join(problems)


def test_secrets_from_the_environment_never_appear_in_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hunter2-Sup3rSecret"
    monkeypatch.setenv("SECRET", secret)
    monkeypatch.setenv("SQLBOOK_HOME", str(tmp_path / "home"))

    def change(data: dict[str, Any]) -> None:
        data["datasources"]["main"]["url"] = "mysql://admin:${SECRET}@db.internal/x"
        data["datasources"]["ch"] = {"url": "clickhouse://u:${SECRET}@h:notaport/db"}
        data["channels"]["ops-slack"]["webhook_url"] = "hooks.slack.com/${SECRET}"
        data["channels"]["hook"] = {"type": "webhook", "url": "ftp://x/${SECRET}"}
        data["alerts"][0]["schedule"] = "${SECRET}"
        data["alerts"][0]["rule"]["value"] = ["${SECRET}"]

    path = tmp_path / "alerts.yaml"
    path.write_text(variant(change))
    code, _, err = cli(path, tmp_path / "state.json", capsys)
    assert code == 2
    assert secret not in err
    assert "hunter2" not in err
    assert "datasources.main: url: unsupported scheme 'mysql'" in err
    assert "datasources.ch: url: " in err
    assert "channels.ops-slack: webhook_url: must be an http(s) URL" in err
    assert "channels.hook: url: must be an http(s) URL" in err
    assert "alerts[0] (signups-dropped): schedule.cron: '***' is not a cron expression" in err


def test_runtime_errors_keep_the_datasource_password_out(
    env: dict[str, str], recorder: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreachable data source: an error state, exit 3, and the URL's password nowhere."""
    password = "pg-Passw0rd-xyz"
    config = tmp_path / "alerts.yaml"
    config.write_text(
        variant(
            lambda d: (
                d["datasources"]["main"].update(url=f"postgresql://u:{password}@127.0.0.1:1/db"),
                d["channels"]["ops-slack"].update(webhook_url="${SLACK_WEBHOOK_URL}"),
                d["alerts"][0].update(channels=["ops-slack"]),
            )
        )
    )
    state = tmp_path / "state.json"
    code, out, err = cli(config, state, capsys)
    assert code == 3
    assert out.startswith("signups-dropped: error (the alert's query failed: cannot connect")
    assert out.rstrip().endswith("→ ops-slack ok")
    sent = recorder.wait_for(1, path=SLACK_PATH)[0]
    for text in (out, err, state.read_text(), sent.body.decode()):
        assert password not in text


def test_a_corrupt_state_file_is_a_config_error(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(variant(lambda d: None))
    state = tmp_path / "state.json"
    state.write_text("{not json")
    code, out, err = cli(config, state, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"sqlbook: {state}: the state file is corrupt")
    assert state.read_text() == "{not json"  # left for the user to look at


def test_state_file_round_trip_and_default_location(env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_for(env)
    path = standalone.default_state_path(settings)
    assert path == Path(env["SQLBOOK_HOME"]).resolve() / "alerts-state.json"
    assert load_state(path) == {}  # missing: empty
    due = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    standalone.save_state(path, {"a": standalone.AlertState(next_due=due, last={"x": 1})})
    loaded = load_state(path)
    assert loaded["a"].next_due == due and loaded["a"].last == {"x": 1}
    assert loaded["a"].memory.state == "unknown"
    assert [p.name for p in path.parent.iterdir()] == ["alerts-state.json"]  # no temp files


# --- JSON, chDB ------------------------------------------------------------------------------


def test_json_config_with_a_chdb_source(
    env: dict[str, str],
    recorder: Recorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "alerts.json"
    config.write_text(
        json.dumps(
            {
                "datasources": {"ch": {"url": "chdb://memory", "max_rows": 5}},
                "channels": {"ops-slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}},
                "alerts": [
                    {
                        "name": "big-numbers",
                        "sql": "select number as n from system.numbers limit 20",
                        "rule": {
                            "type": "threshold",
                            "column": "n",
                            "op": ">=",
                            "value": 3,
                            "rows": "any",
                        },
                        "schedule": {"every": "1h"},
                        "channels": ["ops-slack"],
                    }
                ],
            }
        )
    )
    loaded = load_config(config)
    assert loaded.datasources["ch"].kind == "clickhouse"
    assert loaded.alerts[0].datasource == "ch"  # the only data source
    code, out, _ = cli(config, tmp_path / "state.json", capsys)
    assert code == 0
    # max_rows 5 from the data source: rows 0..4 seen, 3 and 4 match
    assert out.strip() == "big-numbers: triggered (n >= 3 (any row): 3, 4) → ops-slack ok"
    assert "big-numbers" in recorder.wait_for(1, path=SLACK_PATH)[0].json["text"]


# --- the loop --------------------------------------------------------------------------------


class Clock:
    """A fake clock the loop's `sleep` advances, never past `limit` (the test moves it)."""

    def __init__(self, start: datetime):
        self.moment = start
        self.limit = start
        self.sleeps: list[float] = []
        self._held: set[tuple[datetime, float]] = set()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.moment

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.moment + timedelta(seconds=seconds) <= self.limit:
                self.moment += timedelta(seconds=seconds)
                return
            self._held.add((self.moment, seconds))
        time.sleep(0.005)  # held back: let the test thread run

    def held(self, at: datetime, seconds: float) -> bool:
        """The loop asked, at `at`, to sleep `seconds`, and the limit held it there: it had
        looked at the clock at `at` and found nothing due."""
        with self._lock:
            return (at, seconds) in self._held

    def allow(self, until: datetime) -> None:
        with self._lock:
            self.limit = until


def test_loop_evaluates_on_schedule_and_stops_cleanly(
    own_postgres: tuple[Any, str],
    env: dict[str, str],
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    _, url = own_postgres
    make_events(url, signups=3)
    config_path = tmp_path / "alerts.yaml"
    config_path.write_text(
        EXAMPLE.replace('schedule: "*/5 * * * *"', 'schedule: "10s"').replace(
            "channels: [ops-slack, oncall-mail]", "channels: [ops-slack]"
        )
    )
    config = load_config(config_path, environ={**env, "WAREHOUSE_URL": url})
    state_path = tmp_path / "state.json"
    start = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    clock = Clock(start)
    stop = threading.Event()
    result: list[int] = []

    def target() -> None:
        result.append(
            run(
                config,
                settings=settings_for(env),
                state_path=state_path,
                once=False,
                now=clock.now,
                sleep=clock.sleep,
                stop=stop,
            )
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def evaluated_at(name: str) -> str | None:
        if not state_path.exists():
            return None
        entry = json.loads(state_path.read_text()).get(name) or {}
        return (entry.get("last") or {}).get("evaluated_at")

    # At start: both alerts evaluated; the triggered one sent to Slack.
    wait_until(
        "the first evaluation of signups-dropped in the state file",
        lambda: evaluated_at("signups-dropped") == start.isoformat(),
    )
    wait_until(
        "the first evaluation of any-refund in the state file",
        lambda: evaluated_at("any-refund") == start.isoformat(),
    )
    assert len(recorder.wait_for(1, path=SLACK_PATH)) == 1
    saved = json.loads(state_path.read_text())
    assert saved["signups-dropped"]["next_due"] == (start + timedelta(seconds=10)).isoformat()
    assert saved["any-refund"]["next_due"] == (start + timedelta(minutes=10)).isoformat()

    # Not due yet: time stands still half a second before the next evaluation. Once the
    # loop has asked, at 9.5 s, to sleep the half second left, it has looked at the clock
    # there and decided: nothing was evaluated.
    clock.allow(start + timedelta(seconds=9.5))
    wait_until(
        "the loop to wait at 9.5 s for the evaluation due at 10 s",
        lambda: clock.held(start + timedelta(seconds=9.5), 0.5),
    )
    assert evaluated_at("signups-dropped") == start.isoformat()

    # Ten seconds on, with the condition cleared: evaluated again, resolved sent.
    add_signups(url, 10)
    clock.allow(start + timedelta(seconds=10))
    wait_until(
        "the evaluation of signups-dropped at 10 s in the state file",
        lambda: evaluated_at("signups-dropped") == (start + timedelta(seconds=10)).isoformat(),
    )
    assert "Resolved" in recorder.wait_for(2, path=SLACK_PATH)[1].json["text"]
    assert evaluated_at("any-refund") == start.isoformat()  # its interval is 10 minutes

    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the loop did not end within 30 s of the stop"
    assert result == [0]
    assert clock.sleeps and max(clock.sleeps) <= standalone.SLEEP_STEP_S
    assert len(recorder.to(SLACK_PATH)) == 2
    memory = json.loads(state_path.read_text())["signups-dropped"]["memory"]
    assert memory["state"] == "ok" and memory["announced"] == "ok"


def test_loop_stops_with_a_real_sleep(
    env: dict[str, str], recorder: Recorder, tmp_path: Path
) -> None:
    """Default `now`/`sleep`: a stop set after the first evaluation ends the loop long
    before the next evaluation (in an hour) is due: the loop sleeps in short steps and
    looks at the stop between them."""
    config_path = tmp_path / "alerts.yaml"
    config_path.write_text(
        variant(
            lambda d: (
                d["datasources"].update(main={"url": "chdb://memory"}),
                d["channels"].pop("oncall-mail"),
                d["channels"]["ops-slack"].update(webhook_url=env["SLACK_WEBHOOK_URL"]),
                d["alerts"][0].update(
                    sql="select 1 as n", params=[], schedule="1h", channels=["ops-slack"]
                ),
            )
        )
    )
    config = load_config(config_path)
    stop = threading.Event()
    state_path = tmp_path / "state.json"
    thread = threading.Thread(
        target=run,
        kwargs={
            "config": config,
            "settings": settings_for(env),
            "state_path": state_path,
            "once": False,
            "stop": stop,
        },
        daemon=True,
    )
    thread.start()
    recorder.wait_for(1, path=SLACK_PATH)
    wait_until("the state file after the first evaluation", state_path.exists)
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), (
        "the loop did not end within 30 s of the stop: it sleeps until the next evaluation "
        "(in an hour) instead of in steps of SLEEP_STEP_S"
    )
    (entry,) = json.loads(state_path.read_text()).values()
    assert entry["last"]["state"] == "triggered"  # evaluated once, at start
