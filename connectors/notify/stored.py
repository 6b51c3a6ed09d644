"""Alerts kept in the metadata database: validate what the API stores, and evaluate one
(what the Dagster run and `POST /api/alerts/{id}/test` do).

An alert runs with its owner's rights as they are at evaluation time: the person who last
saved it must still be a member of the workspace who may open the insight's folder (an
alert on an insight) or write SQL against the data sources (an alert with its own SQL).
When they may not, the evaluation is recorded as an error ("the alert's owner can no
longer run its query") and nothing is sent — no data, and no notice either: the alert's
history and state (`error`) say why, and it runs again as soon as its owner may. An alert
saved by a service-account token, or before people existed, has no owner person and runs
with the workspace's rights, as before."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from connectors.events.emit import deliver_now, emit_now
from connectors.insights.plugins import PluginRegistry
from connectors.insights.service import prepare_run
from connectors.metadata.access import FolderAccess
from connectors.metadata.alerts import AlertRecord, AlertStore
from connectors.metadata.insights import InsightRecord, InsightStore
from connectors.metadata.store import MetadataStore, TokenOwner
from connectors.notify.alert import AlertSpec, Evaluation, InsightRef, evaluate
from connectors.notify.channels import build_channel, parse_channel_config
from connectors.notify.insight_links import chart_url, insight_page_url, public_base
from connectors.notify.model import Notification
from connectors.notify.pictures import chart_png
from connectors.notify.state import FAILING, Memory
from connectors.secrets import load_secret_key
from connectors.settings import Settings
from connectors.sharing.owners import sharing_owner
from connectors.warehouse.errors import QueryFailed
from connectors.warehouse.guard import check_sql
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService

log = logging.getLogger(__name__)


def public_channels(channels: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Channel configurations as the API shows them: secrets masked."""
    return {
        name: parse_channel_config(name, config).model_dump(mode="json", exclude_none=True)
        for name, config in channels.items()
    }


def check_channels(spec: AlertSpec, channels: Mapping[str, Mapping[str, Any]]) -> None:
    """Raises ValueError (ChannelConfigError …) naming what is wrong."""
    missing = [c for c in spec.channels if c not in channels]
    if missing:
        raise ValueError(
            f"channels: {', '.join(missing)} not configured (configured: "
            f"{', '.join(channels) or 'none'})"
        )
    for name, config in channels.items():
        parse_channel_config(name, config)


def check_alert(spec: AlertSpec, channels: Mapping[str, Mapping[str, Any]], dialect: str) -> None:
    """An alert with its own SQL. Raises ValueError (ChannelConfigError, QueryRejected …)
    naming what is wrong."""
    check_channels(spec, channels)
    assert spec.sql is not None
    check_sql(spec.sql, dialect, spec.params)


OWNER_REFUSED = "the alert's owner can no longer run its query"


def may_query(owner: TokenOwner) -> bool:
    """The `sql` permission (api.deps): editors and admins, viewers where the workspace
    lets them."""
    return owner.role in ("editor", "admin") or (owner.role == "viewer" and owner.viewers_can_query)


def owner_may_run(metadata: MetadataStore, alert: AlertRecord, spec: AlertSpec) -> bool:
    """Whether the alert's owner may still run what it runs (an owner-less alert: yes)."""
    if alert.owner_user_id is None:
        return True
    owner = sharing_owner(metadata, alert.workspace_id, user_id=alert.owner_user_id, token_id=None)
    if owner is None:  # left the workspace, or disabled
        return False
    if spec.insight is None:
        return may_query(owner)
    insight = InsightStore(metadata).get(alert.workspace_id, spec.insight.id)
    if insight is None:  # gone: the evaluation says so, as before
        return True
    return FolderAccess(metadata).for_owner(owner).can_view(insight.folder_id)


def _refused(spec: AlertSpec, memory: Memory, now: datetime, test: bool) -> Evaluation:
    """An evaluation that ran nothing and sends nothing: its owner may not run it."""
    evaluation = Evaluation(
        alert=spec.name,
        evaluated_at=now,
        previous_state=memory.state,
        state=FAILING,
        reason=None,
        summary=OWNER_REFUSED,
        error=OWNER_REFUSED,
        error_code="owner_refused",
    )
    if not test:
        since = memory.since if memory.state == FAILING else now
        evaluation.memory = replace(memory, state=FAILING, since=since)
    else:
        evaluation.memory = memory
    return evaluation


def link_to(settings: Settings, alert_id: int) -> str:
    return f"{public_base(settings)}/api/alerts/{alert_id}"


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
    """Evaluate, deliver, and record the history row (and the new state unless a test).
    An alert whose owner may no longer run it is recorded as an error, sending nothing."""
    now = now or datetime.now(UTC)
    spec = AlertSpec.model_validate(alert.spec)
    if not owner_may_run(queries.metadata, alert, spec):
        refused = _refused(spec, Memory.from_dict(alert.memory), now, test)
        store.record(
            alert.id,
            refused.to_dict(),
            memory=None if test else refused.memory.to_dict(),
            next_due_at=None if test else spec.schedule.next_after(now),
            test=test,
            run_id=run_id,
        )
        if not test:
            _emit_state_change(alert, refused, queries.metadata, settings)
        return refused
    channels = {name: build_channel(name, cfg, settings) for name, cfg in alert.channels.items()}
    actor = Actor(alert.workspace_id, None, f"alert {spec.name} (#{alert.id})")

    def run_query() -> QueryResult:
        assert spec.sql is not None
        try:
            request = queries.request(
                alert.workspace_id,
                spec.datasource,
                spec.sql,
                spec.params,
                actor,
                timeout_s=spec.timeout_s,
                use_cache=False,
                cache_ttl_s=0,
            )
        except DatasourceNotFound as err:  # deleted since the alert was saved
            raise QueryFailed(str(err)) from err
        return queries.runner.execute(request)

    on_insight = (
        None
        if spec.insight is None
        else _OnInsight(alert, spec, spec.insight, queries, settings, actor, now)
    )
    evaluation = evaluate(
        spec,
        run_query=run_query if on_insight is None else on_insight.run_query,
        channels=channels,
        memory=Memory.from_dict(alert.memory),
        now=now,
        datasource_name=str(spec.datasource),
        link=link_to(settings, alert.id),
        test=test,
        illustrate=None if on_insight is None else on_insight.illustrate,
    )
    store.record(
        alert.id,
        evaluation.to_dict(),
        memory=None if test else evaluation.memory.to_dict(),
        next_due_at=None if test else spec.schedule.next_after(now),
        test=test,
        run_id=run_id,
    )
    if not test:
        _emit_state_change(alert, evaluation, queries.metadata, settings)
    return evaluation


# state reached (from another) → the outbound event it makes (connectors/events)
_STATE_EVENTS = {"triggered": "alert.triggered", "error": "alert.error"}


def _emit_state_change(
    alert: AlertRecord, evaluation: Evaluation, metadata: MetadataStore, settings: Settings
) -> None:
    """alert.triggered / alert.error when the alert enters that state, alert.resolved
    when it goes from triggered back to ok; delivered at once from this process."""
    before, after = evaluation.previous_state, evaluation.state
    if before == after:
        return
    event_type = _STATE_EVENTS.get(after)
    if after == "ok" and before == "triggered":
        event_type = "alert.resolved"
    if event_type is None:
        return
    data = {
        "alert": {"id": alert.id, "name": alert.name, "url": link_to(settings, alert.id)},
        "state": after,
        "previous_state": before,
        "evaluated_at": evaluation.evaluated_at.isoformat(),
        "summary": evaluation.summary,
        "values": evaluation.values,
        "row_count": evaluation.row_count,
    }
    if evaluation.error:
        data.update(error=evaluation.error, error_code=evaluation.error_code)
    queued = emit_now(
        metadata,
        settings,
        alert.workspace_id,
        event_type,
        data,
        occurred_at=evaluation.evaluated_at,
        deliver=False,
    )
    if queued is not None:
        deliver_now(metadata, settings, alert.workspace_id)


@dataclass
class _OnInsight:
    """An alert on an insight: runs the insight's current SQL with the alert's values
    (through `prepare_run`, as the API's run does), and sends the insight's page with
    those values and its chart."""

    alert: AlertRecord
    spec: AlertSpec
    ref: InsightRef
    queries: QueryService
    settings: Settings
    actor: Actor
    now: datetime
    insight: InsightRecord | None = None

    def run_query(self) -> QueryResult:
        insight = InsightStore(self.queries.metadata).get(self.alert.workspace_id, self.ref.id)
        if insight is None:
            raise QueryFailed(f"insight {self.ref.id} was deleted (or is in the trash)")
        self.insight = insight
        try:
            prepared = prepare_run(
                self.queries, insight, self.ref.params, self.actor, None, use_cache=False
            )
        except DatasourceNotFound as err:
            raise QueryFailed(f"the insight's data source: {err}") from err
        request = replace(prepared.request, timeout_s=self.spec.timeout_s, cache_ttl_s=0)
        return self.queries.runner.execute(request)

    def illustrate(self, notification: Notification, result: QueryResult | None) -> Notification:
        notification = replace(
            notification,
            link=insight_page_url(self.settings, self.ref.id, self.ref.params),
            datasource=self.insight.datasource if self.insight else notification.datasource,
            sql=self.insight.sql if self.insight else notification.sql,
        )
        if self.insight is None or result is None:
            return notification
        try:
            plugins = PluginRegistry(self.queries.metadata, self.settings.plugin_dirs())
            png = chart_png(self.insight, result, plugins)
            if png is None:
                return notification
            # Slack fetches the picture from this URL: only an address the operator says
            # clients reach will do (where the API binds is usually loopback).
            url = (
                chart_url(
                    self.settings,
                    load_secret_key(self.settings),
                    self.alert.workspace_id,
                    self.ref.id,
                    self.ref.params,
                    self.now,
                )
                if self.settings.public_api_url
                else None
            )
        except Exception as err:  # the text still goes out
            log.warning(
                "alert %s: the chart of insight %s could not be drawn (%s); sent without it",
                self.alert.id,
                self.ref.id,
                type(err).__name__,
            )
            return notification
        return replace(notification, chart_png=png, chart_url=url)
