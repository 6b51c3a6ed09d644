"""The one settings object. Every field is read from ``SQLBOOK_<NAME>`` (or a ``.env`` file).

Nothing here runs at import time: build ``Settings()`` where it is needed and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SQLBOOK_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".sqlbook"),
        description="Where embedded servers keep their data, and where credentials are written.",
    )

    # External servers. Unset means "start the embedded one under `home`".
    database_url: str | None = Field(
        default=None, description="PostgreSQL for app metadata (and the warehouse by default)."
    )
    warehouse_url: str | None = Field(
        default=None,
        description="The event warehouse: postgresql://… (default: database_url), "
        "clickhouse://user:pw@host:8123/db, clickhouses://… (TLS, 8443) or chdb:///abs/path "
        "(in-process ClickHouse, one process only: tests, bench, CLI).",
    )
    dagster_database_url: str | None = Field(
        default=None,
        description="PostgreSQL for Dagster's run and event storage. Defaults to a database "
        "named `<database>_dagster` on database_url's server (created if missing).",
    )
    redis_url: str | None = Field(default=None, description="Redis holding the capture stream.")
    cache_redis_url: str | None = Field(
        default=None,
        description="Redis holding query results (cache, async results). Unset: a second "
        "embedded Redis with its own memory budget that evicts old entries, so results never "
        "take memory from the capture stream.",
    )
    cache_redis_max_memory: str = Field(
        default="512mb",
        description="maxmemory of the embedded result Redis (allkeys-lru: old results go first).",
    )

    api_host: str = Field(default="127.0.0.1", description="Interface the API binds.")
    api_port: int = Field(default=8000, description="Port of the API (capture, query, UI).")
    dagster_port: int = Field(default=3000, description="Port of the Dagster webserver.")
    dagster_host: str = Field(
        default="127.0.0.1",
        description="Interface the Dagster webserver binds. It has no login: an operator "
        "console, to put behind an authenticating proxy.",
    )
    outbound_allow_private: bool = Field(
        default=False,
        description="Let what a workspace member aims (webhooks, Slack/Teams URLs, data "
        "sources, connectors) reach loopback, private ranges and unix sockets. Link-local and "
        "cloud-metadata addresses stay refused.",
    )
    public_api_url: str | None = Field(
        default=None, description="URL clients use to reach the API (printed in credentials)."
    )

    # Capture limits (documented in README).
    capture_max_body_bytes: int = Field(
        default=20 * 1024 * 1024, description="Largest request body, after gzip is undone."
    )
    capture_max_event_bytes: int = Field(default=1024 * 1024, description="Largest single event.")
    capture_max_batch_events: int = Field(default=10_000, description="Most events per request.")
    capture_rate_limit_per_minute: int = Field(
        default=600_000, description="Events per project key per minute; 0 turns it off."
    )
    capture_key_cache_seconds: float = Field(
        default=30.0, description="How long the API caches a capture key lookup."
    )
    capture_rate_limit_bytes_per_minute: int = Field(
        default=1024 * 1024 * 1024,
        ge=0,
        description="Bytes of events (as stored in the stream) per project per minute; 0 = off.",
    )
    capture_rate_limit_ip_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of a project's events per minute one client IP (IPv6: one /64) "
        "may use; 0 = no per-IP limit.",
    )
    capture_rate_limit_ip_received_bytes_per_minute: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Bytes of capture request bodies, as received (before decompression and "
        "parsing), one client IP (IPv6: one /64) may send per minute, whatever the project; "
        "0 = off.",
    )
    capture_project_backlog_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Bytes of events one project may have waiting in the stream for "
        "ingestion before its capture answers 503; 0 = no limit.",
    )
    capture_max_compression_ratio: float = Field(
        default=100.0,
        ge=0,
        description="How many times its compressed size a request body may expand to "
        "(bodies under 1 MiB decompressed are exempt); more is 413. 0 = off.",
    )
    capture_decode_concurrency: int = Field(
        default=4,
        ge=1,
        description="Capture bodies decompressed and parsed at once (in worker threads, "
        "off the event loop); more wait their turn.",
    )

    capture_max_backlog_entries: int = Field(
        default=500_000,
        description="Capture requests waiting in the stream for ingestion before capture "
        "answers 503 (load shedding); 0 = no limit.",
    )
    redis_max_memory: str = Field(
        default="2gb",
        description="maxmemory of the embedded Redis (noeviction: writes beyond it get 503).",
    )
    api_limit_concurrency: int = Field(
        default=1000, description="Connections the API serves at once; more get 503."
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes (uvicorn workers) `sqlbook up` starts on the API port; "
        "about one per CPU core. Each has its own connections and caches; "
        "api_limit_concurrency applies to each.",
    )

    ingest_follow_seconds: float = Field(
        default=120.0,
        description="How long an ingestion run goes on ingesting what arrives after its "
        "range (about 1 s from capture to queryable under a steady stream); 0 = one range "
        "per run (each waits for a sensor tick and a run launch).",
    )
    ingest_follow_idle_seconds: float = Field(
        default=10.0, description="A run following the stream ends after this long idle."
    )
    rollup_refresh_cron: str = Field(
        default="*/2 * * * *",
        description="How often the sessions and rollups of days that got events are refreshed "
        "(cron, UTC; Dagster's automation sensor checks every 30 s).",
    )

    stream_key: str = Field(
        default="sqlbook:events", description="Redis stream of captured events."
    )
    stream_shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Capture streams: a request's events go to shard crc32(distinct_id) % N "
        "(key `<stream_key>:<k>`; N = 1 keeps the plain `stream_key`), and one ingestion run "
        "follows each shard. Change it only with the streams empty.",
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts data-source secrets at rest and derives the warehouse reader's "
        "password. Unset: generated once into `<home>/secret.key` (mode 0600).",
    )
    # Query execution (README "Running SQL").
    query_timeout_seconds: float = Field(default=30.0, description="Default statement timeout.")
    query_max_timeout_seconds: float = Field(
        default=300.0, description="Largest timeout a request or data source may ask for."
    )
    query_max_rows: int = Field(default=10_000, description="Default row cap of a result.")
    query_max_rows_limit: int = Field(
        default=100_000, description="Largest row cap a request or data source may ask for."
    )
    query_concurrency: int = Field(
        default=4, description="Queries running at once per data source (per API process)."
    )
    query_queue_limit: int = Field(
        default=200,
        description="Queries one workspace may have waiting per data source before 503 "
        "queue_full (other workspaces still queue).",
    )
    query_workspace_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Queries one workspace may run at once on the shared warehouse. Unset: "
        "query_concurrency - 1 (at least 1), so one slot is always left for other workspaces.",
    )
    query_cache_ttl_seconds: int = Field(
        default=60, description="Default result-cache lifetime; 0 turns caching off."
    )
    query_cache_max_ttl_seconds: int = Field(
        default=86_400,
        ge=0,
        description="Largest cache_ttl_s a request or data source may ask for (400 beyond).",
    )
    query_result_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Largest result (as JSON) kept in the result Redis: bigger ones are not "
        "cached, and an async query's is not stored (status failed, result_too_large).",
    )
    query_result_ttl_seconds: int = Field(
        default=3600, description="How long an async query's status and result are kept."
    )
    datasource_allow_chdb: bool = Field(
        default=False,
        description="Allow `chdb://` data sources (ClickHouse inside the API process, reading "
        "server files). For tests and single-user installs only.",
    )

    # Alert delivery by email (README "Alerts").
    ui_login_code_ttl_seconds: float = Field(
        default=900.0, description="How long a web UI login link works (it works once)."
    )
    ui_session_ttl_seconds: float = Field(
        default=7 * 86_400.0, description="How long a web UI sign-in lasts."
    )
    # Signing in by email (README "Users and sharing").
    sign_in_code_digits: int = Field(
        default=6, ge=6, le=8, description="Digits of an email sign-in code (6 to 8)."
    )
    sign_in_code_ttl_seconds: float = Field(
        default=600.0, gt=0, description="How long an email code and its magic link work."
    )
    sign_in_code_max_attempts: int = Field(
        default=5, ge=1, description="Wrong codes typed before a code stops working."
    )
    sign_in_window_seconds: float = Field(
        default=900.0, gt=0, description="The window the sign-in rate limits count in."
    )
    sign_in_codes_per_address: int = Field(
        default=5, ge=1, description="Codes one email address may be sent per window."
    )
    sign_in_codes_per_ip: int = Field(
        default=20, ge=1, description="Codes one client IP may ask for per window."
    )
    sign_in_failures_per_address: int = Field(
        default=10,
        ge=1,
        description="Failed sign-ins (wrong codes, wrong passwords) of one address per "
        "window before its sign-ins are refused until the window passes.",
    )
    sign_in_failures_per_ip: int = Field(
        default=30,
        ge=1,
        description="Failed sign-ins from one client IP per window before its sign-ins are "
        "refused until the window passes.",
    )
    public_link_password_tries: int = Field(
        default=10,
        ge=1,
        description="Passwords tried for one public link from one client IP per 15 minutes"
        " before its unlocks are refused (429) until the window passes.",
    )
    public_link_unlock_seconds: int = Field(
        default=3600,
        ge=60,
        description="How long a public link's password, once typed, opens it (a cookie for"
        " that link's pages only).",
    )
    admin_email: str | None = Field(
        default=None,
        description="`sqlbook up` on an install without users makes this address the "
        "default workspace's first admin and prints a one-time sign-in link for them.",
    )
    invitation_ttl_hours: float = Field(
        default=168.0,
        gt=0,
        le=24 * 90,
        description="How long an invitation link to a workspace works (default 7 days).",
    )
    ui_dist: Path | None = Field(
        default=None, description="Built web UI served at `/`. Default: `ui/dist` of this checkout."
    )

    plugins_dir: Path | None = Field(
        default=None,
        description="A folder of visualization plugins (one sub-folder each: manifest.json and"
        " template.json), offered to every workspace beside the bundled ones in deploy/plugins.",
    )
    insight_trash_days: int = Field(
        default=30, ge=1, description="Days a deleted insight stays restorable in the trash."
    )

    # Assistive AI (README "AI assistance"): off until ai_url is set.
    ai_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible API base URL (`https://api.openai.com/v1`, an Azure"
        " OpenAI deployment, or a self-hosted Ollama/vLLM/llama.cpp server's `/v1`). Unset: no"
        " AI, and nothing leaves the installation.",
    )
    ai_model: str | None = Field(default=None, description="The chat model's name at ai_url.")
    ai_api_key: SecretStr | None = Field(
        default=None, description="Bearer key for ai_url (not needed by most self-hosted servers)."
    )

    smtp_host: str | None = Field(default=None, description="SMTP server for email alerts.")
    smtp_port: int = Field(default=587, description="SMTP port.")
    smtp_security: str = Field(
        default="starttls", description="`starttls`, `ssl` (implicit TLS) or `none`."
    )
    smtp_user: str | None = Field(default=None, description="SMTP login, if the server wants one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="sqlbook <alerts@localhost>", description="From: address of alert emails."
    )
    smtp_timeout_seconds: float = Field(default=15.0, description="SMTP connect/send timeout.")
    subscription_allowed_domains: str = Field(
        default="",
        description="Email domains dashboard subscriptions may send to, a comma list "
        "(`example.com,example.org`: those domains exactly, not their subdomains). Empty: any.",
    )

    # Connector syncs (README "Connectors").
    stripe_api_url: str = Field(
        default="https://api.stripe.com",
        description="Stripe's API (an outbound proxy, or a test server, can stand in).",
    )
    ga4_api_url: str = Field(
        default="https://analyticsdata.googleapis.com",
        description="The Google Analytics Data API. The token URL comes from each service "
        "account key's `token_uri`.",
    )
    connector_max_retries: int = Field(
        default=6,
        ge=0,
        description="Retries of one provider request on 429/5xx/timeouts (honouring "
        "Retry-After and Stripe-Should-Retry) before a sync fails.",
    )
    connector_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one provider request."
    )
    stripe_default_schedule: str = Field(
        default="0 * * * *",
        description="Cron (UTC) of a new Stripe connection's incremental sync; webhooks "
        "merge changes in between.",
    )
    ga4_default_schedule: str = Field(
        default="0 5 * * *", description="Cron (UTC) of a new GA4 connection's sync."
    )
    ga4_default_history_days: int = Field(
        default=365,
        ge=1,
        description="How many days a new GA4 connection's first sync fetches.",
    )
    # Observability (README "Operating sqlbook").
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="Log lines as JSON objects (one a line, with the request id) or as "
        "human-readable console lines.",
    )
    log_level: str = Field(default="INFO", description="Lowest level logged (DEBUG, INFO, …).")
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics on GET /metrics (no login)."
    )

    def allowed_subscription_domains(self) -> list[str]:
        """SQLBOOK_SUBSCRIPTION_ALLOWED_DOMAINS as lower-case domains ([]: any)."""
        parts = (
            d.strip().lower().lstrip("@") for d in self.subscription_allowed_domains.split(",")
        )
        return [d for d in parts if d]

    def ui_dist_dir(self) -> Path:
        if self.ui_dist is not None:
            return self.ui_dist
        return Path(__file__).resolve().parents[1] / "ui" / "dist"

    def plugin_dirs(self) -> list[Path]:
        """The bundled plugins first, then SQLBOOK_PLUGINS_DIR's (which may replace one)."""
        bundled = Path(__file__).resolve().parents[1] / "deploy" / "plugins"
        return [bundled] + ([self.plugins_dir] if self.plugins_dir is not None else [])

    def dlt_dir(self) -> Path:
        """dlt's local working folders (one pipeline per connection); its state of record
        is in the warehouse, restored from there before each run."""
        return self.ensure_home() / "dlt"

    def metrics_dir(self) -> Path:
        """prometheus-client's multiprocess folder: PROMETHEUS_MULTIPROC_DIR when set,
        else `<home>/metrics` (see connectors/observability/metrics.py)."""
        explicit = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        return Path(explicit) if explicit else self.home.expanduser().resolve() / "metrics"

    def ensure_home(self) -> Path:
        home = self.home.expanduser().resolve()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)  # when made here: its owner's only
        return home


def local_url(host: str, port: int) -> str:
    """Where this machine reaches a server bound to `host` (a wildcard: over loopback)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def api_url(settings: Settings) -> str:
    """The API's address for clients and links (credentials, login links, alert links):
    `SQLBOOK_PUBLIC_API_URL`, else where it binds. Never taken from a request's `Host`."""
    if settings.public_api_url:
        return settings.public_api_url.rstrip("/")
    return local_url(settings.api_host, settings.api_port)
