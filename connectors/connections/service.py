"""What a connection's create and change requests need beyond their schema: the provider
accepts the credentials (checked before anything is saved), a Stripe connection keeps the
mode of its first key, the project is the workspace's, the schedule is a cron expression;
and what is kept where — `config` (shown) and the secrets (sealed by the store).

Messages name the field and never repeat a secret. The provider checks live in
`connectors.stripe.check` and `connectors.google_analytics.check`, imported when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from croniter import croniter

from connectors.connections.types import CredentialCheck
from connectors.metadata.connections import ConnectionRecord
from connectors.metadata.store import MetadataStore
from connectors.outbound import OutboundPolicy
from connectors.settings import Settings
from connectors.stripe.client import key_mode

# A credential check is one or a few small requests: it answers quickly or not at all.
CHECK_TIMEOUT_S = 15.0
# Rotating a webhook secret keeps the previous one, for deliveries Stripe signed with it.
WEBHOOK_SECRETS_KEPT = 2


class ConnectionInvalid(ValueError):
    """A request the schema allows but that cannot be saved; the message names the field."""


class CredentialsRefused(Exception):
    """The provider refused the credentials (status 400) or could not be reached (503)."""

    def __init__(self, check: CredentialCheck):
        super().__init__(check.message)
        self.check = check


@dataclass(frozen=True)
class StripeCredentials:
    api_key: str
    webhook_secret: str | None = None

    def __repr__(self) -> str:
        return "StripeCredentials(…)"


@dataclass(frozen=True)
class Ga4Credentials:
    property_id: str
    service_account: dict[str, Any]
    # user-defined reports, each asked for one row: what the property does not know is
    # refused before saving rather than at the first sync
    reports: Sequence[dict[str, Any]] = ()

    def __repr__(self) -> str:
        return f"Ga4Credentials(property_id={self.property_id!r}, …)"


Credentials = StripeCredentials | Ga4Credentials


@dataclass(frozen=True)
class NewConnection:
    """What `ConnectionStore.create` saves, checked."""

    kind: str
    project_id: int
    config: dict[str, Any]
    secrets: dict[str, Any]
    schedule: str
    check: CredentialCheck

    def __repr__(self) -> str:
        return f"NewConnection(kind={self.kind!r}, config={self.config!r})"


def check_credentials(settings: Settings, credentials: Credentials) -> CredentialCheck:
    """Ask the provider whether the credentials work (nothing is saved)."""
    timeout_s = min(settings.connector_timeout_seconds, CHECK_TIMEOUT_S)
    if isinstance(credentials, StripeCredentials):
        from connectors.stripe import check as stripe_check

        return stripe_check.check_credentials(
            credentials.api_key, base_url=settings.stripe_api_url, timeout_s=timeout_s
        )
    from connectors.google_analytics import check as ga4_check

    return ga4_check.check_credentials(
        credentials.property_id,
        credentials.service_account,
        base_url=settings.ga4_api_url,
        policy=OutboundPolicy.from_settings(settings),
        timeout_s=timeout_s,
        reports=credentials.reports,
    )


def accepted(settings: Settings, credentials: Credentials) -> CredentialCheck:
    """`check_credentials`, raising CredentialsRefused unless the provider accepts them."""
    check = check_credentials(settings, credentials)
    if not check.ok:
        raise CredentialsRefused(check)
    return check


def new_connection(
    settings: Settings,
    metadata: MetadataStore,
    workspace_id: int,
    credentials: Credentials,
    *,
    project_id: int | None = None,
    schedule: str | None = None,
    reports: Sequence[dict[str, Any]] | None = None,
    start_date: date | None = None,
) -> NewConnection:
    """A connection ready to save: its project (the workspace's first by default), its
    schedule (the kind's default), its configuration and secrets — once the provider
    accepted the credentials (else CredentialsRefused)."""
    project = project_of(metadata, workspace_id, project_id)
    if isinstance(credentials, StripeCredentials):
        _stripe_mode(credentials.api_key, "api_key")
        check = accepted(settings, credentials)
        secrets: dict[str, Any] = {
            "api_key": credentials.api_key,
            "webhook_secrets": [credentials.webhook_secret] if credentials.webhook_secret else [],
        }
        return NewConnection(
            kind="stripe",
            project_id=project,
            config=stripe_config(secrets),
            secrets=secrets,
            schedule=checked_schedule(schedule or settings.stripe_default_schedule),
            check=check,
        )
    checked_reports = check_reports(reports or [])
    check = accepted(
        settings,
        Ga4Credentials(credentials.property_id, credentials.service_account, checked_reports),
    )
    return NewConnection(
        kind="ga4",
        project_id=project,
        config={
            "property_id": credentials.property_id,
            "client_email": str(credentials.service_account.get("client_email", "")),
            "reports": checked_reports,
            "start_date": start_date.isoformat() if start_date else None,
        },
        secrets={"service_account": credentials.service_account},
        schedule=checked_schedule(schedule or settings.ga4_default_schedule),
        check=check,
    )


def changes_of(
    settings: Settings,
    metadata: MetadataStore,
    record: ConnectionRecord,
    secrets: dict[str, Any],
    patch: dict[str, Any],
) -> dict[str, Any]:
    """The `ConnectionStore.update` changes a PATCH makes. `patch` holds the fields given
    (secrets in clear: api_key, webhook_secret, service_account); new credentials are
    checked with the provider first (CredentialsRefused), a Stripe key must be of the
    connection's mode."""
    _only_of_kind(record.kind, patch)
    changes: dict[str, Any] = {}
    config = dict(record.config)
    new_secrets = dict(secrets)
    if "name" in patch:
        changes["name"] = patch["name"]
    if "schedule" in patch:
        changes["schedule"] = checked_schedule(patch["schedule"])
    if "paused" in patch:
        changes["paused"] = bool(patch["paused"])
    if "project_id" in patch:
        changes["project_id"] = project_of(metadata, record.workspace_id, patch["project_id"])
    if "api_key" in patch:
        api_key = patch["api_key"]
        mode = _stripe_mode(api_key, "api_key")
        if mode != config.get("mode"):
            raise ConnectionInvalid(
                f"api_key: a {mode}-mode key for a {config.get('mode')}-mode connection;"
                " test and live data never mix in one connection (add another connection)"
            )
        accepted(settings, StripeCredentials(api_key))
        new_secrets["api_key"] = api_key
    if "webhook_secret" in patch:
        secret = patch["webhook_secret"]
        kept = [s for s in new_secrets.get("webhook_secrets", []) if s != secret]
        new_secrets["webhook_secrets"] = (
            [secret, *kept][:WEBHOOK_SECRETS_KEPT] if secret is not None else []
        )
    if "service_account" in patch or "reports" in patch:
        account: dict[str, Any] = patch.get("service_account") or secrets["service_account"]
        reports = (
            check_reports(patch["reports"] or [])
            if "reports" in patch
            else list(config.get("reports") or [])
        )
        accepted(settings, Ga4Credentials(str(config["property_id"]), account, reports))
        new_secrets["service_account"] = account
        config["client_email"] = str(account.get("client_email", ""))
        config["reports"] = reports
    if new_secrets != secrets:
        changes["secrets"] = new_secrets
        if record.kind == "stripe":
            config.update(stripe_config(new_secrets))
    if config != record.config:
        changes["config"] = config
    return changes


def stripe_config(secrets: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a Stripe connection's secrets."""
    api_key = str(secrets["api_key"])
    return {
        "mode": key_mode(api_key),
        "key_kind": "restricted" if api_key.startswith("rk_") else "secret",
        "key_last4": api_key[-4:],
        "has_webhook_secret": bool(secrets.get("webhook_secrets")),
    }


def project_of(metadata: MetadataStore, workspace_id: int, project_id: int | None) -> int:
    """`project_id` if it is one of the workspace's projects; None: its first one."""
    projects = [p.id for p in metadata.projects(workspace_id)]
    if project_id is None:
        if not projects:
            raise ConnectionInvalid("project_id: the workspace has no project")
        return projects[0]
    if project_id not in projects:
        raise ConnectionInvalid(f"project_id: {project_id} is not a project of this workspace")
    return project_id


def checked_schedule(schedule: str) -> str:
    """A five-field cron expression (UTC), tidied."""
    text = " ".join(schedule.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ConnectionInvalid(
            "schedule: not a cron expression (minute hour day month weekday, UTC)"
        )
    return text


def next_run(
    schedule: str, *, paused: bool = False, now: datetime | None = None
) -> datetime | None:
    """When the schedule next starts a sync (UTC); None while paused."""
    if paused:
        return None
    try:
        following: datetime = croniter(schedule, now or datetime.now(UTC)).get_next(datetime)
    except (ValueError, KeyError):
        return None
    return following.astimezone(UTC)


def check_reports(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """User-defined GA4 reports, as `connectors.google_analytics.reports` validates them."""
    if not reports:
        return []
    from connectors.google_analytics import reports as ga4_reports

    try:
        return ga4_reports.check_reports(list(reports))
    except ga4_reports.ReportSpecError as err:
        raise ConnectionInvalid(str(err)) from None


def _stripe_mode(api_key: str, field: str) -> str:
    try:
        return key_mode(api_key)
    except ValueError as err:
        raise ConnectionInvalid(f"{field}: {err}") from None


_STRIPE_ONLY = ("api_key", "webhook_secret")
_GA4_ONLY = ("service_account", "reports")


def _only_of_kind(kind: str, patch: dict[str, Any]) -> None:
    other = _GA4_ONLY if kind == "stripe" else _STRIPE_ONLY
    for field in other:
        if field in patch:
            raise ConnectionInvalid(f"{field}: not a field of a {kind} connection")
