"""`sqlbook alerts run`: alerts from one YAML or JSON file, with no API, no Dagster and
no metadata database. The file names data sources (by URL), channels and alerts; what
each alert remembers between evaluations is kept in a small JSON state file.

The file::

    datasources:
      main: {url: "${WAREHOUSE_URL}"}       # or just  main: "${WAREHOUSE_URL}"
      # optional: kind (postgres | clickhouse; default from the URL's scheme),
      #           timeout_s (statement timeout), max_rows (row cap of a result)
    channels:                               # as in connectors/notify/channels.py
      ops-slack: {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
      oncall-mail: {type: email, to: ["ops@example.com"]}   # SMTP: SQLBOOK_SMTP_*
      hook: {type: webhook, url: "https://example.com/hook", secret: "${HOOK_SECRET}"}
    alerts:                                 # each one an AlertSpec (connectors/notify/alert.py)
      - name: signups-dropped
        datasource: main                    # may be left out when one data source is defined
        sql: "select count(*) as n from events where event_name = $1"
        params: ["signup"]
        rule: {type: threshold, column: n, op: "<", value: 10}
        schedule: "*/5 * * * *"
        channels: [ops-slack, oncall-mail]

`${NAME}` in any string value is replaced by that environment variable (an error when it
is not set), `${NAME:-default}` by the default when it is unset or empty, `${NAME-default}`
when it is unset; `$${` is a literal `${`. Substituted text stays a string. Values taken
from the environment are never repeated in an error message, and neither are data source
URLs or channel secrets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from connectors.notify.alert import AlertSpec, Evaluation, evaluate
from connectors.notify.channels import (
    ChannelConfigError,
    build_channel,
    parse_channel_config,
    scrub,
)
from connectors.notify.model import Channel
from connectors.notify.render import one_line
from connectors.notify.state import FAILING, Memory
from connectors.settings import Settings
from connectors.warehouse.errors import QueryError, QueryFailed
from connectors.warehouse.guard import check_sql
from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import DataSource, QueryLimits, Scope

log = logging.getLogger(__name__)

STATE_FILE = "alerts-state.json"
EXIT_OK = 0
EXIT_CONFIG = 2  # used by the CLI for a ConfigError
EXIT_ALERT_ERROR = 3  # --once: at least one alert is in the error state
SLEEP_STEP_S = 0.5  # the loop sleeps in steps this long, so a stop is noticed quickly

_KINDS = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "clickhouse": "clickhouse",
    "clickhouses": "clickhouse",
    "http": "clickhouse",
    "https": "clickhouse",
    "chdb": "clickhouse",
}
_TOP_KEYS = ("datasources", "channels", "alerts")
_DATASOURCE_KEYS = ("url", "kind", "timeout_s", "max_rows")


class ConfigError(Exception):
    """The alerts file (or the state file) cannot be used. Each line of the message names
    the file, then the alert (index and name), channel or data source, then the field."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DatasourceConfig:
    name: str
    url: str = field(repr=False)  # may hold a password: never printed
    kind: str  # "postgres" or "clickhouse"
    timeout_s: float | None = None
    max_rows: int | None = None


@dataclass(frozen=True)
class AlertsFile:
    path: Path
    datasources: dict[str, DatasourceConfig]
    channels: dict[str, dict[str, Any]] = field(repr=False)  # validated channel configs
    alerts: list[AlertSpec]


# --- reading the file ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """safe_load, but a repeated key is an error and timestamps stay strings (pydantic
    reads them where a time is expected; a date-like parameter is passed as written)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                ) from None
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {str(key)[:60]!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: line {err.lineno}: could not parse JSON: {err.msg}"
            ) from None
        except ValueError as err:
            raise ConfigError(f"{path}: could not parse JSON: {err}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err)}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    """`line N: could not parse YAML: <problem>`, without the snippet of the file (which
    may hold a secret) that str(err) includes."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        what = "; ".join(p for p in (err.context, err.problem) if p) or "invalid YAML"
        where = f"line {mark.line + 1}: " if mark is not None else ""
        return f"{where}could not parse YAML: {what}"
    return f"could not parse YAML: {type(err).__name__}"


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?$", re.S)


class _Substitution:
    """Replaces `${…}` in every string of the document; collects the problems (with the
    key path) and every value taken from the environment (to scrub from messages)."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[tuple[tuple[str | int, ...], str]] = []
        self.used: set[str] = set()

    def walk(self, value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def text(self, value: str, path: tuple[str | int, ...]) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            inner = match.group(1)
            ref = _ENV_REF.match(inner)
            if ref is None:
                self.problems.append((path, f"invalid reference ${{{inner[:40]}}}"))
                return ""
            name, how, default = ref.groups()
            found = self.environ.get(name)
            if how == ":-" and not found:
                return default
            if how == "-" and found is None:
                return default
            if found is None:
                self.problems.append((path, f"environment variable {name} is not set"))
                return ""
            self.used.add(found)
            return found

        return _REFERENCE.sub(replace, value)


def _field(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> AlertsFile:
    """Read, substitute and validate an alerts file; raises ConfigError listing every
    problem found (one per line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"{path}: cannot read the alerts file: {reason}") from None
    raw = _parse(path, text)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty: it needs datasources, channels and alerts")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file must be a mapping with {', '.join(_TOP_KEYS)}")
    return _Validator(path, raw, environ).run()


class _Validator:
    def __init__(self, path: Path, raw: dict[str, Any], environ: Mapping[str, str]):
        self.path = path
        self.raw = raw
        self.sub = _Substitution(environ)
        self.problems: list[str] = []
        self.reported_env: set[tuple[str | int, ...]] = set()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path}: {where}: {message}")

    def env_problems(self, prefix: tuple[str | int, ...], where: str | None = None) -> bool:
        """Report substitution problems under `prefix`: `where: field: problem`, or with
        `where` None `full.key.path: problem`."""
        found = False
        for path, message in self.sub.problems:
            if path[: len(prefix)] == prefix and path not in self.reported_env:
                self.reported_env.add(path)
                if where is None:
                    self.problem(_field(path), message)
                else:
                    rest = _field(path[len(prefix) :])
                    self.problem(where, f"{rest}: {message}" if rest else message)
                found = True
        return found

    def run(self) -> AlertsFile:
        for key in self.raw:
            if key not in _TOP_KEYS:
                self.problems.append(
                    f"{self.path}: {str(key)[:60]}: unknown key (expected {', '.join(_TOP_KEYS)})"
                )
        datasources = self.datasources()
        channels = self.channels()
        alerts = self.alerts(datasources)
        if self.problems:
            secrets = [v for v in self.sub.used if len(v) >= 4]
            raise ConfigError([scrub(p, secrets) for p in self.problems])
        return AlertsFile(self.path, datasources, channels, alerts)

    # datasources

    def datasources(self) -> dict[str, DatasourceConfig]:
        section = self.raw.get("datasources")
        if section is None:
            self.problems.append(f"{self.path}: datasources: required: at least one data source")
            return {}
        if not isinstance(section, dict) or not section:
            self.problems.append(
                f"{self.path}: datasources: must be a mapping of names to {{url: …}}"
            )
            return {}
        out = {}
        for name, entry in section.items():
            name = str(name)
            where = f"datasources.{name}"
            value = self.sub.walk(entry, ("datasources", name))
            if self.env_problems(("datasources", name)):
                continue
            parsed = self.datasource(name, value, where)
            if parsed is not None:
                out[name] = parsed
        return out

    def datasource(self, name: str, value: Any, where: str) -> DatasourceConfig | None:
        if isinstance(value, str):
            value = {"url": value}
        if not isinstance(value, dict):
            self.problem(where, "must be a URL or a mapping with url")
            return None
        ok = True
        for key in value:
            if key not in _DATASOURCE_KEYS:
                self.problem(
                    where, f"{str(key)[:60]}: unknown key (expected {', '.join(_DATASOURCE_KEYS)})"
                )
                ok = False
        url = value.get("url")
        if not isinstance(url, str) or not url.strip():
            self.problem(where, "url: required: the data source's connection URL")
            return None
        url = url.strip()
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            scheme = ""
        kind = value.get("kind")
        if kind is None:
            kind = _KINDS.get(scheme)
            if kind is None:
                shown = f"{scheme[:20]!r}" if scheme else "no scheme"
                self.problem(
                    where,
                    f"url: unsupported scheme {shown} (postgresql://, postgres://, "
                    "clickhouse(s)://, http(s):// or chdb://)",
                )
                return None
        elif kind not in ("postgres", "clickhouse"):
            self.problem(where, "kind: must be postgres or clickhouse")
            return None
        if kind == "clickhouse":
            from connectors.warehouse.clickhouse_source import parse_url

            try:
                parse_url(url)  # its errors never repeat the URL
            except ValueError as err:
                self.problem(where, f"url: {err}")
                ok = False
        elif scheme not in ("postgresql", "postgres"):
            self.problem(where, "url: a PostgreSQL URL starts with postgresql:// or postgres://")
            ok = False
        timeout_s = _number(value.get("timeout_s"), float)
        if value.get("timeout_s") is not None and (timeout_s is None or timeout_s <= 0):
            self.problem(where, "timeout_s: must be a number of seconds greater than 0")
            ok = False
        max_rows = _number(value.get("max_rows"), int)
        if value.get("max_rows") is not None and (max_rows is None or max_rows < 1):
            self.problem(where, "max_rows: must be a whole number of at least 1")
            ok = False
        if not ok:
            return None
        return DatasourceConfig(name, url, kind, timeout_s, max_rows)

    # channels

    def channels(self) -> dict[str, dict[str, Any]]:
        section = self.raw.get("channels")
        if section is None:
            self.problems.append(f"{self.path}: channels: required: at least one channel")
            return {}
        if not isinstance(section, dict) or not section:
            self.problems.append(
                f"{self.path}: channels: must be a mapping of names to {{type: …, …}}"
            )
            return {}
        out = {}
        for name, entry in section.items():
            name = str(name)
            value = self.sub.walk(entry, ("channels", name))
            if self.env_problems(("channels", name)):
                continue
            if not isinstance(value, dict):
                self.problem(f"channels.{name}", "must be a mapping with type")
                continue
            try:
                parse_channel_config(name, value)
            except ChannelConfigError as err:
                # "channel 'x': field: problem" → "channels.x: field: problem"
                self.problem(f"channels.{name}", str(err).removeprefix(f"channel {name!r}: "))
                continue
            out[name] = value
        return out

    # alerts

    def alerts(self, datasources: Mapping[str, DatasourceConfig]) -> list[AlertSpec]:
        section = self.raw.get("alerts")
        if not isinstance(section, list) or not section:
            self.problems.append(f"{self.path}: alerts: required: a list of at least one alert")
            return []
        defined_ds = set(_section_keys(self.raw.get("datasources")))
        defined_ch = set(_section_keys(self.raw.get("channels")))
        out: list[AlertSpec] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(section):
            value = self.sub.walk(entry, ("alerts", i))
            name = value.get("name") if isinstance(value, dict) else None
            where = f"alerts[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
            if self.env_problems(("alerts", i), where):
                continue
            if not isinstance(value, dict):
                self.problem(where, "must be a mapping with name, sql, rule, schedule, channels")
                continue
            if "datasource" not in value and len(defined_ds) == 1:
                value["datasource"] = next(iter(defined_ds))
            try:
                spec = AlertSpec.model_validate(value)
            except ValidationError as err:
                for line in _pydantic_problems(err):
                    self.problem(where, line)
                continue
            if spec.sql is None:
                self.problem(where, "insight: alerts on insights live in sqlbook; give sql")
                continue
            ok = True
            if spec.name in seen:
                self.problem(where, f"name: duplicate alert name (also alerts[{seen[spec.name]}])")
                ok = False
            else:
                seen[spec.name] = i
            ds_name = str(spec.datasource)
            if ds_name not in defined_ds:
                known = ", ".join(sorted(defined_ds)) or "none"
                self.problem(where, f"datasource {ds_name!r} is not defined (defined: {known})")
                ok = False
            for j, ch in enumerate(spec.channels):
                if ch not in defined_ch:
                    known = ", ".join(sorted(defined_ch)) or "none"
                    self.problem(
                        where, f"channels[{j}]: channel {ch!r} is not defined (defined: {known})"
                    )
                    ok = False
            source = datasources.get(ds_name)
            if source is not None:
                try:
                    check_sql(spec.sql, _dialect(source), spec.params)
                except QueryError as qe:
                    at = f" (line {qe.line}, column {qe.column})" if qe.line else ""
                    field_name = "params" if qe.code == "bad_parameter" else "sql"
                    self.problem(where, f"{field_name}: {qe.message}{at}")
                    ok = False
            if ok:
                out.append(_aware(spec.model_copy(update={"datasource": ds_name})))
        return out


def _section_keys(section: Any) -> list[str]:
    return [str(k) for k in section] if isinstance(section, dict) else []


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if value is None or isinstance(value, bool):
        return None
    if kind is int and isinstance(value, float) and not value.is_integer():
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _aware(spec: AlertSpec) -> AlertSpec:
    """A `muted_until` without a zone is UTC (it is compared with aware times)."""
    if spec.muted_until is not None and spec.muted_until.tzinfo is None:
        return spec.model_copy(update={"muted_until": spec.muted_until.replace(tzinfo=UTC)})
    return spec


_UNION_MEMBERS = {"str", "int", "float", "bool", "none", "list", "dict"}
_RULE_TYPES = {"any_rows", "no_rows", "threshold", "change", "always"}


def _pydantic_problems(err: ValidationError) -> list[str]:
    """`field: problem` per error, without the input (it may have come from a secret)."""
    by_field: dict[str, list[str]] = {}
    for e in err.errors(include_input=False, include_url=False):
        loc = list(e.get("loc", ()))
        if len(loc) >= 2 and loc[0] == "rule" and loc[1] in _RULE_TYPES:
            del loc[1]
        loc = [
            p
            for p in loc
            if not (isinstance(p, str) and (p in _UNION_MEMBERS or p.startswith("function-")))
        ]
        message = str(e.get("msg", "invalid"))
        if e["type"] == "missing":
            message = "required"
        elif e["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        by_field.setdefault(_field(loc), [])
        if message not in by_field[_field(loc)]:
            by_field[_field(loc)].append(message)
    return [f"{f}: {' or '.join(m)}" if f else " or ".join(m) for f, m in by_field.items()]


def _dialect(source: DatasourceConfig) -> str:
    return "postgres" if source.kind == "postgres" else "clickhouse"


# --- the state file --------------------------------------------------------------------------


@dataclass
class AlertState:
    memory: Memory = field(default_factory=Memory)
    next_due: datetime | None = None
    last: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory.to_dict(),
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "last": self.last,
        }


def default_state_path(settings: Settings) -> Path:
    return settings.ensure_home() / STATE_FILE


def load_state(path: Path) -> dict[str, AlertState]:
    """The state file's entries; a missing file is empty, an unreadable one an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"{path}: cannot read the state file: {reason}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        out = {}
        for name, entry in data.items():
            if not isinstance(entry, dict):
                raise ValueError(f"entry {name!r} is not an object")
            memory = entry.get("memory") or {}
            if not isinstance(memory, dict):
                raise ValueError(f"entry {name!r}: memory is not an object")
            due = entry.get("next_due")
            last = entry.get("last")
            out[str(name)] = AlertState(
                memory=Memory.from_dict(memory),
                next_due=_utc(datetime.fromisoformat(due)) if due else None,
                last=last if isinstance(last, dict) else None,
            )
        return out
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"{path}: the state file is corrupt ({one_line(str(err), 200)}); "
            "fix or delete it (alerts then start from scratch)"
        ) from None


def save_state(path: Path, states: Mapping[str, AlertState]) -> None:
    """Write atomically: a temporary file next to it, then os.replace."""
    data = {name: s.to_dict() for name, s in states.items()}
    text = json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot write the state file: {err.strerror or type(err).__name__}"
        ) from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- running ---------------------------------------------------------------------------------


def _build_source(ds: DatasourceConfig) -> DataSource:
    if ds.kind == "postgres":
        from connectors.warehouse.postgres_source import PostgresSource

        return PostgresSource(ds.url, max_connections=2)
    from connectors.warehouse.clickhouse_source import ClickHouseSource

    # chdb:// is allowed here: the runner is a single-user tool reading its own config.
    return ClickHouseSource(ds.url)


def _query_runner(
    spec: AlertSpec, ds: DatasourceConfig, source: DataSource, settings: Settings
) -> Callable[[], QueryResult]:
    limits = QueryLimits(
        timeout_s=spec.timeout_s or ds.timeout_s or settings.query_timeout_seconds,
        max_rows=ds.max_rows or settings.query_max_rows,
    )

    def run_query() -> QueryResult:
        assert spec.sql is not None  # the config refuses alerts on insights
        checked = check_sql(spec.sql, _dialect(ds), spec.params)
        try:
            return source.run(
                checked.sql,
                spec.params,
                query_id=str(uuid.uuid4()),
                limits=limits,
                scope=Scope(0),
                kind=checked.kind,
            )
        except QueryError:
            raise
        except Exception as err:  # an unexpected driver error: the alert's error state
            text = scrub(f"{type(err).__name__}: {err}", [ds.url])
            raise QueryFailed(one_line(text, 500)) from err

    return run_query


def describe(evaluation: Evaluation) -> str:
    """One line: `signups-dropped: triggered (n < 10 (first row): 3) → ops-slack ok`."""
    line = f"{evaluation.alert}: {evaluation.state} ({one_line(evaluation.summary, 300)})"
    if evaluation.deliveries:
        sent = ", ".join(
            f"{d.channel} ok" if d.ok else f"{d.channel} failed ({one_line(d.error or '', 200)})"
            for d in evaluation.deliveries
        )
        note = f"{evaluation.reason}: " if evaluation.reason != evaluation.state else ""
        return f"{line} → {note}{sent}"
    if evaluation.reason is not None:
        return f"{line} → {evaluation.reason}: no channel to send to"
    return line


def _summary(evaluation: Evaluation) -> dict[str, Any]:
    out = evaluation.to_dict()
    for bulky in ("rows", "columns", "matched_rows"):
        out.pop(bulky, None)
    return out


class _Runner:
    def __init__(
        self,
        config: AlertsFile,
        settings: Settings,
        state_path: Path,
        now: Callable[[], datetime],
    ):
        self.config = config
        self.state_path = state_path
        self.now = lambda: _utc(now())
        self.states = load_state(state_path)
        used = {str(spec.datasource) for spec in config.alerts}
        self.sources = {
            name: _build_source(ds) for name, ds in config.datasources.items() if name in used
        }
        # The file is the operator's own (operators are trusted): its receivers may be on
        # private addresses unless SQLBOOK_OUTBOUND_ALLOW_PRIVATE says otherwise. Link-local
        # and metadata addresses stay refused.
        if "outbound_allow_private" not in settings.model_fields_set:
            settings = settings.model_copy(update={"outbound_allow_private": True})
        try:
            self.channels: dict[str, Channel] = {
                name: build_channel(name, cfg, settings) for name, cfg in config.channels.items()
            }
        except ChannelConfigError as err:  # validated at load: not expected
            self.close()
            raise ConfigError(f"{config.path}: channels: {err}") from None
        self.runners = {
            spec.name: _query_runner(
                spec,
                config.datasources[str(spec.datasource)],
                self.sources[str(spec.datasource)],
                settings,
            )
            for spec in config.alerts
        }
        mail = [n for n, c in config.channels.items() if c.get("type") == "email"]
        if mail and not settings.smtp_host:
            log.warning(
                "email channel %s: SQLBOOK_SMTP_HOST is not set, so its sends will fail",
                ", ".join(mail),
            )

    def evaluate(self, spec: AlertSpec) -> tuple[Evaluation, AlertState]:
        state = self.states.get(spec.name) or AlertState()
        evaluation = evaluate(
            spec,
            run_query=self.runners[spec.name],
            channels=self.channels,
            memory=state.memory,
            now=self.now(),
            datasource_name=str(spec.datasource),
        )
        state.memory = evaluation.memory
        state.last = _summary(evaluation)
        self.states[spec.name] = state
        return evaluation, state

    def save(self) -> None:
        save_state(self.state_path, self.states)

    def close(self) -> None:
        for source in self.sources.values():
            with contextlib.suppress(Exception):
                source.close()


def run(
    config: AlertsFile,
    *,
    settings: Settings,
    state_path: Path,
    once: bool,
    now: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> int:
    """Evaluate the file's alerts. `once`: each alert one time, whatever its schedule; one
    line per alert on stdout; 0, or 3 when an alert is in the error state. Otherwise run
    until `stop` is set (or SIGINT/SIGTERM arrives, when called from the main thread):
    every alert at start, then each at its schedule's next time; returns 0.
    The state file is written after every evaluation."""
    runner = _Runner(config, settings, state_path, now)
    try:
        if once:
            return _once(runner)
        return _loop(runner, sleep, stop or threading.Event())
    finally:
        runner.close()


def _once(runner: _Runner) -> int:
    code = EXIT_OK
    for spec in runner.config.alerts:
        evaluation, state = runner.evaluate(spec)
        state.next_due = spec.schedule.next_after(evaluation.evaluated_at)
        runner.save()
        print(describe(evaluation), flush=True)
        if evaluation.state == FAILING:
            code = EXIT_ALERT_ERROR
    return code


def _loop(runner: _Runner, sleep: Callable[[float], None], stop: threading.Event) -> int:
    alerts = runner.config.alerts
    start = runner.now()
    due = {spec.name: start for spec in alerts}
    log.info(
        "watching %d alert%s from %s; state in %s",
        len(alerts),
        "" if len(alerts) == 1 else "s",
        runner.config.path,
        runner.state_path,
    )
    with _stop_on_signals(stop):
        while not stop.is_set():
            current = runner.now()
            ready = sorted((s for s in alerts if due[s.name] <= current), key=lambda s: due[s.name])
            for spec in ready:
                if stop.is_set():
                    break
                evaluation, state = runner.evaluate(spec)
                following = spec.schedule.next_after(due[spec.name])
                after = runner.now()
                if following <= after:  # missed times (a slow query, a suspended host)
                    following = spec.schedule.next_after(after)
                due[spec.name] = state.next_due = following
                runner.save()
                failed = evaluation.state == FAILING or any(not d.ok for d in evaluation.deliveries)
                level = logging.WARNING if failed else logging.INFO
                log.log(level, "%s; next at %s", describe(evaluation), following.isoformat())
            if ready:
                continue
            wait = (min(due.values()) - current).total_seconds()
            sleep(max(0.0, min(wait, SLEEP_STEP_S)))
    log.info("stopped")
    return EXIT_OK


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (main thread only: elsewhere signals cannot be set).
    The loop only reads the event, so setting it from a handler cannot deadlock."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
