"""An alert's state between evaluations, and when to notify.

The state follows the last evaluation: `triggered` (condition met), `ok`, or `error`
(the query or the rule failed). What was last *announced* is kept apart from that
(Redash's split of "what state is it in" from "should we notify"): a notification goes
out when the state differs from the announced one, so a change that happened while
muted, or whose every delivery failed, is announced at the next evaluation instead of
being lost. On top of that:

- `notify_on_change_only` false: every evaluation that finds the condition met notifies;
- `rearm_seconds`: a still-triggered (or still-failing) alert notifies again once that
  long has passed since its last notification;
- `notify_resolved`: back to ok after triggered sends a "resolved" notice (after an
  error, the owner channel is told the query works again);
- `muted_until`: nothing is sent before that time; the state is still tracked;
- `always` rules send a digest every evaluation (unless muted), and errors like others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.notify.model import DIGEST, ERROR, REMINDER, RESOLVED, TRIGGERED

OK, FIRING, FAILING, UNKNOWN = "ok", "triggered", "error", "unknown"


class Noise(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notify_on_change_only: bool = True
    notify_resolved: bool = True
    rearm_seconds: int | None = Field(default=None, ge=1)
    muted_until: datetime | None = None


@dataclass(frozen=True)
class Memory:
    """What an alert remembers between evaluations."""

    state: str = UNKNOWN
    announced: str = UNKNOWN  # the state the last successful notification told about
    last_notified_at: datetime | None = None
    last_value: float | None = None  # for `change` rules
    since: datetime | None = None  # when the current state began

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "announced": self.announced,
            "last_notified_at": _iso(self.last_notified_at),
            "last_value": self.last_value,
            "since": _iso(self.since),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Memory:
        return cls(
            state=data.get("state", UNKNOWN),
            announced=data.get("announced", UNKNOWN),
            last_notified_at=_parse(data.get("last_notified_at")),
            last_value=data.get("last_value"),
            since=_parse(data.get("since")),
        )


@dataclass(frozen=True)
class Decision:
    state: str
    reason: str | None  # a notification to send (model.TRIGGERED …), or None
    to_owner: bool = False  # error notices go to the owner channel only


def decide(
    memory: Memory, state: str, noise: Noise, now: datetime, *, digest: bool = False
) -> Decision:
    """What to do after an evaluation that found `state` (OK, FIRING or FAILING)."""
    if noise.muted_until is not None and now < noise.muted_until:
        return Decision(state, None)
    rearmed = (
        noise.rearm_seconds is not None
        and memory.last_notified_at is not None
        and now - memory.last_notified_at >= timedelta(seconds=noise.rearm_seconds)
    )
    if state == FAILING:
        if memory.announced != FAILING or rearmed:
            return Decision(state, ERROR, to_owner=True)
        return Decision(state, None)
    if digest:
        return Decision(state, DIGEST)
    if state == FIRING:
        if memory.announced != FIRING:
            return Decision(state, TRIGGERED)
        if not noise.notify_on_change_only:
            return Decision(state, TRIGGERED)
        return Decision(state, REMINDER if rearmed else None)
    # OK
    if memory.announced == FIRING and noise.notify_resolved:
        return Decision(state, RESOLVED)
    if memory.announced == FAILING:
        return Decision(state, RESOLVED, to_owner=True)
    return Decision(state, None)


def remember(
    memory: Memory,
    decision: Decision,
    now: datetime,
    *,
    delivered: bool,
    observed: float | None = None,
) -> Memory:
    """The memory after acting on `decision`. `delivered`: at least one channel took
    the notification. With nothing delivered the announced state stays, so the next
    evaluation tries again; a quiet ok (first evaluation, resolved notices off, or
    muted) needs no announcement and is recorded as announced."""
    new = replace(
        memory,
        state=decision.state,
        since=memory.since if memory.state == decision.state else now,
        last_value=observed if observed is not None else memory.last_value,
    )
    if decision.reason is not None:
        if delivered:
            return replace(new, announced=decision.state, last_notified_at=now)
        return new
    if decision.state == OK:
        return replace(new, announced=OK)
    return new


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
