"""Alerts kept in the metadata database: validate what the API stores, and evaluate one
(what the Dagster run and `POST /api/alerts/{id}/test` do)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.metadata.alerts import AlertRecord, AlertStore
from connectors.notify.alert import AlertSpec, Evaluation, evaluate
from connectors.notify.channels import build_channel, parse_channel_config
from connectors.notify.state import Memory
from connectors.settings import Settings
from connectors.warehouse.errors import QueryFailed
from connectors.warehouse.guard import check_sql
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService


def public_channels(channels: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Channel configurations as the API shows them: secrets masked."""
    return {
        name: parse_channel_config(name, config).model_dump(mode="json", exclude_none=True)
        for name, config in channels.items()
    }


def check_alert(spec: AlertSpec, channels: Mapping[str, Mapping[str, Any]], dialect: str) -> None:
    """Raises ValueError (ChannelConfigError, QueryRejected …) naming what is wrong."""
    missing = [c for c in spec.channels if c not in channels]
    if missing:
        raise ValueError(
            f"channels: {', '.join(missing)} not configured (configured: "
            f"{', '.join(channels) or 'none'})"
        )
    for name, config in channels.items():
        parse_channel_config(name, config)
    check_sql(spec.sql, dialect, spec.params)


def link_to(settings: Settings, alert_id: int) -> str:
    base = settings.public_api_url or f"http://{settings.api_host}:{settings.api_port}"
    return f"{base.rstrip('/')}/api/alerts/{alert_id}"


def evaluate_stored(
    alert: AlertRecord,
    *,
    store: AlertStore,
    queries: QueryService,
    settings: Settings,
    now: datetime | None = None,
    test: bool = False,
    run_id: str | None = None,
) -> Evaluation:
    """Evaluate, deliver, and record the history row (and the new state unless a test)."""
    now = now or datetime.now(UTC)
    spec = AlertSpec.model_validate(alert.spec)
    channels = {name: build_channel(name, cfg, settings) for name, cfg in alert.channels.items()}

    def run_query() -> QueryResult:
        try:
            request = queries.request(
                alert.workspace_id,
                spec.datasource,
                spec.sql,
                spec.params,
                Actor(alert.workspace_id, None, f"alert {spec.name} (#{alert.id})"),
                timeout_s=spec.timeout_s,
                use_cache=False,
                cache_ttl_s=0,
            )
        except DatasourceNotFound as err:  # deleted since the alert was saved
            raise QueryFailed(str(err)) from err
        return queries.runner.execute(request)

    evaluation = evaluate(
        spec,
        run_query=run_query,
        channels=channels,
        memory=Memory.from_dict(alert.memory),
        now=now,
        datasource_name=str(spec.datasource),
        link=link_to(settings, alert.id),
        test=test,
    )
    store.record(
        alert.id,
        evaluation.to_dict(),
        memory=None if test else evaluation.memory.to_dict(),
        next_due_at=None if test else spec.schedule.next_after(now),
        test=test,
        run_id=run_id,
    )
    return evaluation
