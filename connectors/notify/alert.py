"""An alert as a user writes it (YAML file or API), and one evaluation of it:
run the query, check the condition, decide, deliver, remember."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.notify.channels import deliver
from connectors.notify.model import MAX_ROWS_SHOWN, TEST, Channel, Delivery, Notification
from connectors.notify.rules import RuleError, RuleSpec, check
from connectors.notify.schedule import Schedule
from connectors.notify.state import FAILING, FIRING, OK, Decision, Memory, Noise, decide, remember
from connectors.observability import metrics
from connectors.warehouse.errors import QueryError
from connectors.warehouse.results import QueryResult

MAX_ID = 2**63 - 1


class InsightRef(BaseModel):
    """What an alert on an insight runs: the insight's current SQL with these values."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[int, Field(ge=1, le=MAX_ID, description="The insight's id.")]
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values by name, as POST /api/insights/{id}/run takes them;"
        " a parameter left out takes its default.",
    )


class AlertSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    datasource: str | int = Field(
        default="warehouse", description="With sql: where it runs ('warehouse', a name or id)."
    )
    sql: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="The query (`$1`-style parameters in params); or `insight`."
    )
    params: list[Any] = Field(default_factory=list, description="With sql: bound to $1, $2, …")
    insight: InsightRef | None = Field(
        default=None,
        description="Instead of sql, params and datasource: an insight and parameter values.",
    )
    rule: RuleSpec
    schedule: Schedule
    channels: Annotated[list[str], Field(min_length=1)]
    owner_channel: str | None = Field(
        default=None, description="Where errors go; default: every channel of the alert."
    )
    notify_on_change_only: bool = True
    notify_resolved: bool = True
    rearm_seconds: Annotated[int, Field(ge=1)] | None = None
    muted_until: datetime | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _sql_or_insight(self) -> AlertSpec:
        if self.insight is None:
            if self.sql is None:
                raise ValueError("sql: required (or insight: an insight and its parameters)")
            return self
        if self.sql is not None:
            raise ValueError("insight: give either sql (with params, datasource) or insight")
        if self.params:
            raise ValueError("params: an alert on an insight takes its values in insight.params")
        if self.datasource != "warehouse":
            raise ValueError("datasource: an alert on an insight runs on the insight's")
        return self

    @model_validator(mode="after")
    def _owner_is_a_channel(self) -> AlertSpec:
        if self.owner_channel is not None and self.owner_channel not in self.channels:
            raise ValueError(f"owner_channel {self.owner_channel!r} is not one of channels")
        return self

    def noise(self) -> Noise:
        return Noise(
            notify_on_change_only=self.notify_on_change_only,
            notify_resolved=self.notify_resolved,
            rearm_seconds=self.rearm_seconds,
            muted_until=self.muted_until,
        )


@dataclass
class Evaluation:
    """What one evaluation found and did (stored as history, shown in Dagster)."""

    alert: str
    evaluated_at: datetime
    previous_state: str
    state: str
    reason: str | None  # the notification sent (or attempted), if any
    summary: str
    values: dict[str, Any] = field(default_factory=dict)
    matched_rows: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    row_count: int = 0
    error: str | None = None
    error_code: str | None = None  # "rule_error" or QueryError.code: free of values
    deliveries: list[Delivery] = field(default_factory=list)
    duration_ms: float = 0.0
    memory: Memory = field(default_factory=Memory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "evaluated_at": self.evaluated_at.isoformat(),
            "previous_state": self.previous_state,
            "state": self.state,
            "reason": self.reason,
            "summary": self.summary,
            "values": self.values,
            "matched_rows": self.matched_rows,
            "columns": self.columns,
            "rows": self.rows,
            "row_count": self.row_count,
            "error": self.error,
            "deliveries": [d.to_dict() for d in self.deliveries],
            "duration_ms": round(self.duration_ms, 1),
        }


def evaluate(
    spec: AlertSpec,
    *,
    run_query: Callable[[], QueryResult],
    channels: Mapping[str, Channel],
    memory: Memory,
    now: datetime,
    datasource_name: str,
    link: str | None = None,
    test: bool = False,
    attempts: int = 3,
    backoff_s: float = 0.5,
    illustrate: Callable[[Notification, QueryResult | None], Notification] | None = None,
) -> Evaluation:
    """One evaluation. Never raises for a failing query, rule or channel: each is part of
    the outcome. `test` sends to every channel whatever the state and leaves the memory
    as it was. `illustrate` may add to a notification about to be sent (an insight's
    chart); it must not raise."""
    started = time.perf_counter()
    result: QueryResult | None = None
    error: str | None = None
    error_code: str | None = None
    try:
        result = run_query()
        condition = check(spec.rule, result, memory.last_value)
        found = FIRING if condition.met else OK
        summary = condition.summary
    except (QueryError, RuleError) as err:
        error = err.message if isinstance(err, QueryError) else str(err)
        error_code = err.code if isinstance(err, QueryError) else "rule_error"
        found, summary, condition = FAILING, f"the alert's query failed: {error}", None
    digest = spec.rule.type == "always"
    decision = (
        Decision(found, TEST) if test else decide(memory, found, spec.noise(), now, digest=digest)
    )
    evaluation = Evaluation(
        alert=spec.name,
        evaluated_at=now,
        previous_state=memory.state,
        state=found,
        reason=decision.reason,
        summary=summary,
        values=condition.values if condition else {},
        matched_rows=condition.matched_rows if condition else [],
        columns=[c.name for c in result.columns] if result else [],
        rows=result.rows[:MAX_ROWS_SHOWN] if result else [],
        row_count=result.row_count if result else 0,
        error=error,
        error_code=error_code,
    )
    if decision.reason is not None:
        targets = _targets(spec, decision, channels)
        notification = _notification(spec, evaluation, datasource_name, link)
        if illustrate is not None:
            notification = illustrate(notification, result)
        evaluation.deliveries = deliver(
            targets, notification, attempts=attempts, backoff_s=backoff_s
        )
    delivered = any(d.ok for d in evaluation.deliveries)
    observed = condition.observed if condition else None
    evaluation.memory = (
        memory if test else remember(memory, decision, now, delivered=delivered, observed=observed)
    )
    evaluation.duration_ms = (time.perf_counter() - started) * 1000
    metrics.alert_evaluated(evaluation, test=test)
    return evaluation


def _targets(spec: AlertSpec, decision: Decision, channels: Mapping[str, Channel]) -> list[Channel]:
    names = spec.channels
    if decision.to_owner and spec.owner_channel:
        names = [spec.owner_channel]
    return [channels[n] for n in names if n in channels]


def _notification(
    spec: AlertSpec, evaluation: Evaluation, datasource: str, link: str | None
) -> Notification:
    assert evaluation.reason is not None
    return Notification(
        rule_name=spec.name,
        reason=evaluation.reason,
        state=evaluation.state,
        summary=evaluation.summary,
        evaluated_at=evaluation.evaluated_at,
        datasource=datasource,
        sql=spec.sql or "",
        values=evaluation.values,
        matched_rows=evaluation.matched_rows,
        columns=evaluation.columns,
        rows=evaluation.rows,
        row_count=evaluation.row_count,
        error=evaluation.error,
        link=link,
    )
