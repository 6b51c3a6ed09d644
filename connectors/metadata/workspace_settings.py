"""A workspace's people settings: whether viewers may write SQL against raw data sources,
whether public links may be made without an expiry, how long the audit log is kept for
it, and whether sample values may be sent to the AI model (`ai_send_samples`). Read by
any member; changed by admins (the API says so), each change audited with the value
before and after."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from connectors.metadata.store import MetadataStore

MAX_AUDIT_RETENTION_DAYS = 36_500  # the column's check


@dataclass(frozen=True)
class WorkspaceSettings:
    viewers_can_query: bool
    public_links_never_expire: bool
    audit_retention_days: int
    ai_send_samples: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SETTING_NAMES = tuple(WorkspaceSettings.__dataclass_fields__)
_COLUMNS = ", ".join(SETTING_NAMES)


def _settings(row: dict[str, Any]) -> WorkspaceSettings:
    return WorkspaceSettings(**{name: row[name] for name in SETTING_NAMES})


class WorkspaceSettingsStore:
    def __init__(self, store: MetadataStore):
        self._store = store

    def get(self, workspace_id: int) -> WorkspaceSettings | None:
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {_COLUMNS} from meta.workspaces where id = %s", (workspace_id,)
            ).fetchone()
        return None if row is None else _settings(row)

    def update(
        self, workspace_id: int, changes: dict[str, Any]
    ) -> tuple[WorkspaceSettings, WorkspaceSettings] | None:
        """Set the given settings (names of SETTING_NAMES); (before, after), or None when
        there is no such workspace. ValueError naming a field that is not a setting or a
        retention outside 1..36500 days."""
        unknown = set(changes) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a workspace setting")
        days = changes.get("audit_retention_days")
        if days is not None and not 1 <= days <= MAX_AUDIT_RETENTION_DAYS:
            raise ValueError(f"audit_retention_days: between 1 and {MAX_AUDIT_RETENTION_DAYS} days")
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                f"select {_COLUMNS} from meta.workspaces where id = %s for update",
                (workspace_id,),
            ).fetchone()
            if row is None:
                return None
            before = _settings(row)
            if changes:
                assignments = ", ".join(f"{name} = %s" for name in changes)  # checked names
                row = conn.execute(
                    f"update meta.workspaces set {assignments} where id = %s returning {_COLUMNS}",
                    (*changes.values(), workspace_id),
                ).fetchone()
                assert row is not None
        return before, _settings(row)


def changed_fields(
    before: WorkspaceSettings, after: WorkspaceSettings
) -> dict[str, dict[str, Any]]:
    """{field: {"before": …, "after": …}} for each setting whose value changed."""
    old, new = before.to_dict(), after.to_dict()
    return {
        name: {"before": old[name], "after": new[name]}
        for name in SETTING_NAMES
        if old[name] != new[name]
    }
