"""The channel registry: one config model per channel type, the Channel that sends it, and
`deliver`, which sends one notification to many channels at once with retries.

Config keys, by `type`:

- ``slack``: ``webhook_url`` (incoming webhook), or ``token`` + ``channel`` (bot, through
  ``chat.postMessage``; a notification with files — a dashboard subscription's pictures and
  CSVs — is shared through Slack's files upload v2 with the message as its comment, which
  needs a channel ID); ``base_url`` (Web API root, default Slack's) for the bot form. An
  incoming webhook cannot carry files: it gets the text, the link and the picture's signed
  URL as an image block.
- ``email``: ``to`` (list of addresses), ``subject_prefix``. SMTP comes from Settings.
  Pictures go inline (multipart/related, by Content-ID), other files as attachments.
- ``webhook``: ``url``, ``secret`` (signs the body: ``X-Sqlbook-Signature: sha256=<hex>``,
  HMAC-SHA256 of the raw body bytes, plus ``X-Sqlbook-Timestamp``), ``headers``.
- ``teams``: ``webhook_url`` (Office 365 connector; gets a MessageCard; an alert on an
  insight adds its chart as a section image when the chart has a public URL, and sends the
  card again without it if Teams refuses the payload).
- ``sms`` / ``whatsapp``: Twilio's Messages API — ``account_sid``, ``auth_token``, ``from``
  (a number of the account) or ``messaging_service_sid``, ``to`` (E.164 numbers), ``base_url``
  (another API root: a Twilio region, a test server; a member's passes the outbound policy);
  ``sms``: ``max_segments`` (the text is cut to fit, the link kept); ``whatsapp``:
  ``content_sid`` (an approved template, for messages outside WhatsApp's 24-hour window).
  One message per number; a retry goes only to the numbers that have not got it.

Webhook URLs, tokens, secrets and header values are secrets: they are held as SecretStr and
never appear in a config error or a Delivery's error.

Every HTTP request goes through one client (`_post`) that applies the outbound policy
(connectors/outbound.py) to the target: the host is resolved, every address checked, and
the connection made to a checked address (TLS still verifies the name). Redirects are not
followed: a receiver that redirects is refused with its status (a redirect would carry the
body, its signature and the bot token to a place nobody configured). A failed delivery is
named by its HTTP status (and for Slack by one of its documented error codes), never by
the response body, which may hold anything the target chose to show; details go to the
server log at most.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from functools import partial
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.notify import render
from connectors.notify.model import Channel, Delivery, DeliveryError, Notification
from connectors.outbound import (
    OutboundPolicy,
    OutboundRefused,
    OutboundUnreachable,
    PolicyTransport,
)
from connectors.settings import Settings

HTTP_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 30.0
SLACK_API_URL = "https://slack.com/api/"
USER_AGENT = "sqlbook-alerts"

log = logging.getLogger(__name__)


class ChannelConfigError(ValueError):
    """A channel's config is invalid. The message names the channel and the field."""


class RateLimited(DeliveryError):
    """HTTP 429 (or Slack `ratelimited`): retry after `retry_after` seconds when known."""

    def __init__(self, message: str, retry_after: float | None):
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


# --- config models ---------------------------------------------------------------------------


class _FieldProblem(ValueError):
    """Raised by a model validator to name the field a problem is reported under."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _http_url(raw: str) -> str:
    """`raw`, stripped, if it is an http(s) URL; the error never repeats it (it may be secret)."""
    raw = raw.strip()
    try:
        parts = urlsplit(raw)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in raw):
        raise ValueError("must be an http(s) URL")
    return raw


def _secret_url(value: SecretStr | None) -> SecretStr | None:
    return None if value is None else SecretStr(_http_url(value.get_secret_value()))


_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "x-sqlbook-signature",
    "x-sqlbook-timestamp",
}


def check_address(value: str) -> str:
    """An email address, `a@example.com` or `Name <a@example.com>`; raises ValueError."""
    value = value.strip()
    if not value or "\r" in value or "\n" in value:
        raise ValueError(f"{value!r} is not an email address")
    name, addr = parseaddr(value)
    if not _ADDR_SPEC.fullmatch(addr) or ".." in addr or addr.startswith("."):
        raise ValueError(f"{value!r} is not an email address")
    return str(Address(display_name=name, addr_spec=addr)) if name else addr


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SlackConfig(_Config):
    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = Field(default=None, min_length=1)
    base_url: str | None = None

    _urls = field_validator("webhook_url")(_secret_url)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @model_validator(mode="after")
    def _one_way(self) -> SlackConfig:
        if self.webhook_url is not None and self.token is not None:
            raise _FieldProblem("webhook_url", "set webhook_url or token, not both")
        if self.webhook_url is None and self.token is None:
            raise _FieldProblem(
                "webhook_url", "required: webhook_url (incoming webhook) or token and channel (bot)"
            )
        if self.token is not None and not self.token.get_secret_value().strip():
            raise _FieldProblem("token", "must not be empty")
        if self.token is not None and not self.channel:
            raise _FieldProblem("channel", "required with token")
        return self


class EmailConfig(_Config):
    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    subject_prefix: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _one_address(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        out = []
        for i, addr in enumerate(value):
            try:
                out.append(check_address(addr))
            except ValueError as exc:
                raise _FieldProblem(f"to[{i}]", str(exc)) from None
        return out

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("must be one line")
        return value


class WebhookConfig(_Config):
    type: Literal["webhook"]
    url: SecretStr
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    _urls = field_validator("url")(_secret_url)

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        if self.secret is not None and not self.secret.get_secret_value():
            raise _FieldProblem("secret", "must not be empty")
        for name, value in self.headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise _FieldProblem(f"headers.{name}", "is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise _FieldProblem(f"headers.{name}", "is set by sqlbook")
            raw = value.get_secret_value()
            if "\r" in raw or "\n" in raw or "\0" in raw:
                raise _FieldProblem(f"headers.{name}", "must be one line")
        return self


class TeamsConfig(_Config):
    type: Literal["teams"]
    webhook_url: SecretStr

    _urls = field_validator("webhook_url")(_secret_url)


# E.164: "+", the country code and the number, 15 digits at most. Spaces, dashes, dots and
# brackets people type between the digits are dropped first.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
TWILIO_API_URL = "https://api.twilio.com"
MAX_RECIPIENTS = 20


def e164(value: str) -> str:
    """`value` as an E.164 number ("+14155550100"); raises ValueError saying what it wants."""
    number = _PHONE_PUNCTUATION.sub("", value)
    if not _E164.fullmatch(number):
        shown = render.one_line(value, 40)
        raise ValueError(
            f"{shown!r} is not an E.164 phone number (+, country code and number, "
            "e.g. +14155550100)"
        )
    return number


def _twilio_sid(prefix: str, value: str | None) -> str | None:
    """A Twilio SID: its two-letter prefix and 32 hex digits, as Twilio's console shows it."""
    if value is not None and not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value):
        raise ValueError(f"must be {prefix} followed by 32 hexadecimal digits")
    return value


class _TwilioConfig(_Config):
    """Twilio's Messages API: the account, who sends (a number or a messaging service) and
    who receives. `api_key_sid`: sign in with an API key (SK…, its secret as `auth_token`)
    instead of the account's own auth token, as Twilio recommends for production.
    `base_url`: another API root (a Twilio region such as https://api.dublin.ie1.twilio.com,
    or a test server); a member's URL passes the outbound policy."""

    model_config = ConfigDict(serialize_by_alias=True)

    account_sid: str
    auth_token: SecretStr
    api_key_sid: str | None = None
    from_: str | None = Field(default=None, alias="from")
    messaging_service_sid: str | None = None
    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    base_url: str | None = None

    _prefix: ClassVar[str] = ""

    _account_sid = field_validator("account_sid")(lambda v: _twilio_sid("AC", v))
    _service_sid = field_validator("messaging_service_sid")(lambda v: _twilio_sid("MG", v))
    _api_key_sid = field_validator("api_key_sid")(lambda v: _twilio_sid("SK", v))

    @field_validator("to", mode="before")
    @classmethod
    def _one_number(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value).rstrip("/")

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        numbers = []
        for i, raw in enumerate(value):
            try:
                numbers.append(cls._number(raw))
            except ValueError as exc:
                raise _FieldProblem(f"to[{i}]", str(exc)) from None
        if len(set(numbers)) != len(numbers):
            raise _FieldProblem("to", "a number is listed twice")
        return numbers

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        try:
            return None if value is None else cls._number(value)
        except ValueError as exc:
            raise _FieldProblem("from", str(exc)) from None

    @model_validator(mode="after")
    def _check(self) -> _TwilioConfig:
        if not self.auth_token.get_secret_value().strip():
            raise _FieldProblem("auth_token", "must not be empty")
        if self.from_ is not None and self.messaging_service_sid is not None:
            raise _FieldProblem("from", "set from or messaging_service_sid, not both")
        if self.from_ is None and self.messaging_service_sid is None:
            raise _FieldProblem(
                "from", "required: from (a number of the account) or messaging_service_sid"
            )
        return self

    @classmethod
    def _number(cls, raw: str) -> str:
        raw = raw.strip()
        if raw.lower().startswith("whatsapp:"):
            if not cls._prefix:
                raise ValueError("is a WhatsApp address: use a channel of type whatsapp")
            raw = raw[len("whatsapp:") :]
        return e164(raw)


class SmsConfig(_TwilioConfig):
    type: Literal["sms"]
    max_segments: int = Field(default=1, ge=1, le=10)


class WhatsAppConfig(_TwilioConfig):
    """`content_sid`: an approved template (HX…) sent with the title, summary and link as
    its variables 1, 2 and 3 — WhatsApp takes a free-form message only within 24 hours of
    the person's last message to the sender."""

    type: Literal["whatsapp"]
    content_sid: str | None = None

    _content_sid = field_validator("content_sid")(lambda v: _twilio_sid("HX", v))

    _prefix: ClassVar[str] = "whatsapp:"


ChannelConfig = Annotated[
    SlackConfig | EmailConfig | WebhookConfig | TeamsConfig | SmsConfig | WhatsAppConfig,
    Field(discriminator="type"),
]
CHANNEL_TYPES = ("slack", "email", "webhook", "teams", "sms", "whatsapp")
_config_adapter: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)

_PROBLEMS = {
    "missing": "required",
    "extra_forbidden": "unknown key",
}


def _describe(err: Any) -> tuple[str, str]:
    """(field, problem) of one pydantic error, without its input (it may be a secret)."""
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _FieldProblem):
        return cause.field, cause.problem
    kind = err["type"]
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", ""))[:40]
        return "type", f"unknown channel type {tag!r} (expected one of {', '.join(CHANNEL_TYPES)})"
    if kind == "union_tag_not_found":
        return "type", f"required: one of {', '.join(CHANNEL_TYPES)}"
    loc = list(err.get("loc", ()))
    if loc and loc[0] in CHANNEL_TYPES:
        loc = loc[1:]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    problem = _PROBLEMS.get(kind) or str(err.get("msg", "invalid"))
    if problem.startswith("Value error, "):
        problem = problem[len("Value error, ") :]
    return field or "config", problem


def parse_channel_config(name: str, config: Mapping[str, Any]) -> ChannelConfig:
    if not isinstance(config, Mapping):
        raise ChannelConfigError(f"channel {name!r}: config: must be a mapping")
    try:
        return _config_adapter.validate_python(dict(config))
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors(include_input=False, include_url=False)]
        text = "; ".join(dict.fromkeys(f"{f}: {p}" for f, p in problems))
        raise ChannelConfigError(f"channel {name!r}: {text}") from None


def build_channel(name: str, config: Mapping[str, Any], settings: Settings) -> Channel:
    """The Channel for one config mapping; raises ChannelConfigError naming channel and field."""
    cfg = parse_channel_config(name, config)
    policy = OutboundPolicy.from_settings(settings)
    if isinstance(cfg, SlackConfig):
        return SlackChannel(name, cfg, policy)
    if isinstance(cfg, EmailConfig):
        return EmailChannel(name, cfg, settings)  # SMTP is the operator's server
    if isinstance(cfg, WebhookConfig):
        return WebhookChannel(name, cfg, policy)
    if isinstance(cfg, SmsConfig | WhatsAppConfig):
        # Twilio's own API is not a member's target; a base_url a member set is
        kind = SmsChannel if isinstance(cfg, SmsConfig) else WhatsAppChannel
        return kind(name, cfg, policy if cfg.base_url is not None else None)
    return TeamsChannel(name, cfg, policy)


# --- secrets out of messages -----------------------------------------------------------------

_TOKEN_PATTERNS = [
    re.compile(r"https?://hooks\.slack\.com/\S*", re.I),
    re.compile(r"https?://[^\s/]*(?:webhook\.office\.com|outlook\.office\.com)/\S*", re.I),
    re.compile(r"xox[a-z]-[A-Za-z0-9-]+"),
]


def scrub(message: str, secrets: Sequence[str] = ()) -> str:
    """`message` without any of `secrets` (and of the paths and queries of secret URLs),
    nor anything that looks like a Slack/Teams webhook URL or a Slack token."""
    needles: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        needles.add(secret)
        parts = urlsplit(secret) if "://" in secret else None
        if parts is not None and parts.hostname:
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail) > 1:
                needles.add(tail)
            if parts.query:
                needles.add(parts.query)
            if parts.password:
                needles.add(parts.password)
    for needle in sorted(needles, key=len, reverse=True):
        if len(needle) >= 4:
            message = message.replace(needle, "***")
    for pattern in _TOKEN_PATTERNS:
        message = pattern.sub("***", message)
    return message


class _SecretChannel(Channel):
    """A Channel that knows which strings must never appear in its errors."""

    def secrets(self) -> list[str]:
        return []


def _secrets_of(channel: Channel) -> list[str]:
    return channel.secrets() if isinstance(channel, _SecretChannel) else []


def retry_after(headers: Mapping[str, Any] | httpx.Headers) -> float | None:
    """Seconds of a Retry-After header (None when absent, negative or an HTTP date)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        seconds = float(str(value))
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _status_error(
    prefix: str, status: int, code: str | None, retry_after: float | None
) -> DeliveryError:
    """`code`: a documented error code of the service (Slack's), never a response body."""
    message = f"{prefix}: HTTP {status}" + (f": {code}" if code else "")
    if status == 429:
        return RateLimited(message, retry_after)
    return DeliveryError(message, retryable=status >= 500 or status == 408)


# --- HTTP through the outbound policy ---------------------------------------------------


def _post(
    prefix: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: OutboundPolicy | None,
    *,
    accept: Callable[[httpx.Response], None] | None = None,
    refuse: Callable[[httpx.Response], None] | None = None,
) -> httpx.Response:
    """POST through the policy (None: a target the operator chose, e.g. Twilio's own API); a
    non-2xx answer is a DeliveryError naming the status (`accept` may look at a 2xx answer
    and raise its own, `refuse` at a non-2xx one)."""
    host = urlsplit(url).hostname or "?"
    transport = PolicyTransport(policy) if policy is not None else None
    try:
        with httpx.Client(transport=transport, timeout=HTTP_TIMEOUT_S) as client:
            resp = client.post(url, content=body, headers=headers, follow_redirects=False)
    except OutboundRefused as exc:
        raise DeliveryError(f"{prefix}: {exc}", retryable=False) from None
    except (OutboundUnreachable, httpx.HTTPError) as exc:  # worth a retry
        log.warning("%s to %s failed: %s", prefix, host, _network_error(exc))
        raise DeliveryError(f"{prefix}: connection failed", retryable=True) from None
    if 200 <= resp.status_code < 300:
        if accept is not None:
            accept(resp)
        return resp
    if refuse is not None:
        refuse(resp)
    code = _slack_code(resp.text.strip()) if prefix.startswith("slack") else None
    raise _status_error(prefix, resp.status_code, code, retry_after(resp.headers))


# --- Slack -----------------------------------------------------------------------------------

# Web API errors that a retry may fix; any other `ok: false` is final.
_SLACK_RETRYABLE = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# Slack's documented error codes (chat.postMessage and incoming webhooks): the only text of
# an answer a Delivery repeats.
_SLACK_CODES = _SLACK_RETRYABLE | {
    "access_denied",
    "account_inactive",
    "action_prohibited",
    "as_user_not_supported",
    "channel_is_archived",
    "channel_not_found",
    "ekm_access_denied",
    "file_not_found",
    "file_upload_disabled",
    "file_uploads_disabled",
    "invalid_channel",
    "invalid_arguments",
    "invalid_auth",
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_charset",
    "invalid_form_data",
    "invalid_payload",
    "invalid_token",
    "is_archived",
    "missing_scope",
    "msg_too_long",
    "no_active_hooks",
    "no_permission",
    "no_service",
    "no_service_id",
    "no_team",
    "no_text",
    "not_allowed_token_type",
    "not_authed",
    "not_in_channel",
    "posting_to_general_channel_denied",
    "rate_limited",
    "ratelimited",
    "restricted_action",
    "team_access_not_granted",
    "team_disabled",
    "token_expired",
    "token_revoked",
    "too_many_attachments",
    "user_not_found",
}


def _slack_code(text: str) -> str | None:
    return text if text in _SLACK_CODES else None


class SlackChannel(_SecretChannel):
    type: ClassVar[str] = "slack"

    def __init__(self, name: str, config: SlackConfig, policy: OutboundPolicy | None = None):
        super().__init__(name)
        self.config = config
        self.policy = policy or OutboundPolicy()

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.config.webhook_url, self.config.token) if s]

    def send(self, notification: Notification) -> None:
        try:
            self._send(notification)
        except DeliveryError as err:
            # Slack fetches an image block's picture before it accepts the message and
            # refuses the whole message when it cannot: send the text without it.
            if notification.chart_url is None or "invalid_blocks" not in str(err):
                raise
            log.warning("slack refused the chart's image block; sending without it")
            self._send(replace(notification, chart_url=None))

    def _send(self, notification: Notification) -> None:
        text = render.slack_text(notification)
        blocks = render.slack_blocks(notification)
        if self.config.webhook_url is not None:
            body = json.dumps({"text": text, "blocks": blocks}, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
            _post(
                "slack webhook",
                self.config.webhook_url.get_secret_value(),
                body,
                headers,
                self.policy,
            )
        elif notification.attachments:
            self._share_files(notification)
        else:
            self._post_message(text, blocks)

    def _web_api(self, method: str, args: Mapping[str, str]) -> dict[str, Any]:
        """One Web API call, form-encoded as Slack documents it; its `{"ok": true, …}`."""
        assert self.config.token is not None
        base = (self.config.base_url or SLACK_API_URL).rstrip("/")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Bearer {self.config.token.get_secret_value()}",
            "User-Agent": USER_AGENT,
        }
        body = urlencode(args).encode()
        resp = _post("slack", f"{base}/{method}", body, headers, self.policy, accept=_slack_ok)
        data: dict[str, Any] = resp.json()
        return data

    def _share_files(self, notification: Notification) -> None:
        """Slack's files upload v2 (https://api.slack.com/messaging/files#uploading_files):
        per file `files.getUploadURLExternal` (name, length) → POST the bytes to the
        `upload_url` it answers → one `files.completeUploadExternal` sharing them all in the
        channel with the message as `initial_comment`. The channel must be an ID there."""
        assert self.config.channel is not None
        shared: list[dict[str, str]] = []
        for file in notification.attachments:
            args = {"filename": file.filename, "length": str(len(file.data))}
            if file.is_picture and file.title:
                args["alt_txt"] = render.one_line(file.title, 1000)
            ticket = self._web_api("files.getUploadURLExternal", args)
            upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
            if not isinstance(upload_url, str) or not isinstance(file_id, str):
                raise DeliveryError("slack: files.getUploadURLExternal answered no upload_url")
            try:
                upload_url = _http_url(upload_url)
            except ValueError:
                raise DeliveryError("slack: the upload_url is not an http(s) URL") from None
            headers = {"Content-Type": "application/octet-stream", "User-Agent": USER_AGENT}
            _post("slack upload", upload_url, file.data, headers, self.policy)
            shared.append({"id": file_id, "title": file.title or file.filename})
        self._web_api(
            "files.completeUploadExternal",
            {
                "files": json.dumps(shared, ensure_ascii=False),
                "channel_id": self.config.channel,
                "initial_comment": render.slack_comment(notification),
            },
        )

    def _post_message(self, text: str, blocks: list[dict[str, Any]]) -> None:
        """chat.postMessage of the Web API (https://api.slack.com/methods/chat.postMessage)."""
        assert self.config.token is not None and self.config.channel is not None
        base = (self.config.base_url or SLACK_API_URL).rstrip("/")
        body = json.dumps(
            {"channel": self.config.channel, "text": text, "blocks": blocks}, ensure_ascii=False
        ).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.config.token.get_secret_value()}",
            "User-Agent": USER_AGENT,
        }
        _post("slack", f"{base}/chat.postMessage", body, headers, self.policy, accept=_slack_ok)


def _slack_ok(resp: httpx.Response) -> None:
    """A 2xx Web API answer is `{"ok": true, …}` or `{"ok": false, "error": code}`."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("ok") is True:
        return
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    if code in ("ratelimited", "rate_limited"):
        raise RateLimited(
            f"slack: rate limited (HTTP {resp.status_code})", retry_after(resp.headers)
        )
    shown = _slack_code(code) or "the Web API refused the message"
    raise DeliveryError(
        f"slack: {shown} (HTTP {resp.status_code})", retryable=code in _SLACK_RETRYABLE
    )


def _network_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    detail = str(reason if reason is not None else exc) or type(exc).__name__
    return render.one_line(f"{type(exc).__name__}: {detail}", 300)


# --- plain HTTP (webhook, Teams) -------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """The X-Sqlbook-Signature of `body`: `sha256=<hex HMAC-SHA256(secret, body)>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel(_SecretChannel):
    type: ClassVar[str] = "webhook"

    def __init__(self, name: str, config: WebhookConfig, policy: OutboundPolicy | None = None):
        super().__init__(name)
        self.config = config
        self.policy = policy or OutboundPolicy()

    def secrets(self) -> list[str]:
        out = [self.config.url.get_secret_value()]
        if self.config.secret is not None:
            out.append(self.config.secret.get_secret_value())
        out += [v.get_secret_value() for v in self.config.headers.values()]
        return out

    def body(self, notification: Notification) -> bytes:
        return json.dumps(
            notification.payload(), default=render.json_default, ensure_ascii=False
        ).encode()

    def send(self, notification: Notification) -> None:
        body = self.body(notification)
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        headers["Content-Type"] = "application/json"
        headers.setdefault("User-Agent", USER_AGENT)
        if self.config.secret is not None:
            headers["X-Sqlbook-Timestamp"] = str(int(time.time()))
            headers["X-Sqlbook-Signature"] = sign(self.config.secret.get_secret_value(), body)
        _post("webhook", self.config.url.get_secret_value(), body, headers, self.policy)


class _CardRefused(DeliveryError):
    """Teams answered that the card itself is wrong (its "Bad payload received …" 400)."""


def _teams_refusal(resp: httpx.Response) -> None:
    """A 4xx (not 408/429) whose text names the payload: the card was refused. The text
    is not repeated (the URL may point anywhere)."""
    if resp.status_code in (408, 429) or not 400 <= resp.status_code < 500:
        return
    if "payload" in resp.text.lower():
        raise _CardRefused(
            f"teams: the connector refused the card (HTTP {resp.status_code})", retryable=False
        )


class TeamsChannel(_SecretChannel):
    type: ClassVar[str] = "teams"

    def __init__(self, name: str, config: TeamsConfig, policy: OutboundPolicy | None = None):
        super().__init__(name)
        self.config = config
        self.policy = policy or OutboundPolicy()

    def secrets(self) -> list[str]:
        return [self.config.webhook_url.get_secret_value()]

    def send(self, notification: Notification) -> None:
        try:
            self._send(notification)
        except _CardRefused:
            # As for Slack: a card Teams will not take with the chart's image goes again
            # without it, so the text always arrives.
            if notification.chart_url is None:
                raise
            log.warning("teams refused the card with the chart's image; sending without it")
            self._send(replace(notification, chart_url=None))

    def _send(self, notification: Notification) -> None:
        body = json.dumps(render.teams_card(notification), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        resp = _post(
            "teams",
            self.config.webhook_url.get_secret_value(),
            body,
            headers,
            self.policy,
            refuse=_teams_refusal,
        )
        # The legacy connector answers 200 with an error text when Teams refused the card;
        # the text is not repeated (the URL may point anywhere).
        answer = resp.text.strip()
        if answer not in ("", "1") and "error" in answer.lower():
            raise DeliveryError(
                f"teams: the connector refused the card (HTTP {resp.status_code})",
                retryable="429" in answer,
            )


# --- SMS and WhatsApp (Twilio's Messages API) -------------------------------------------------

# Twilio's error codes (https://www.twilio.com/docs/api/errors) said in our words: a
# failed delivery names the code and what to fix, never the answer's own text.
_TWILIO_ERRORS = {
    20003: "authentication failed: check account_sid (or api_key_sid) and auth_token",
    20404: "not found: check account_sid, messaging_service_sid or content_sid",
    20429: "too many requests",
    21211: "invalid 'To' number",
    21212: "invalid 'From' number",
    21408: "sending to this region is not enabled on the account",
    21602: "the message body is empty",
    21603: "a 'From' number or messaging service is required",
    21604: "a 'To' number is required",
    21606: "the 'From' number is not an SMS-capable number of this account",
    21608: "the 'To' number is not verified (a trial account sends to verified numbers only)",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "Twilio cannot route a message from the 'From' to the 'To' number",
    21614: "the 'To' number is not a mobile number",
    21617: "the body exceeds 1600 characters",
    21656: "the template's ContentVariables are invalid",
    21910: "'From' and 'To' are not on the same channel",
    63007: "no WhatsApp sender for the 'From' number on this account",
    63016: "outside WhatsApp's 24-hour window: set content_sid (an approved template)",
}
# failures a retry can fix although they are 4xx (the message was not sent)
_TWILIO_RETRYABLE = {20429}


def _twilio_refusal(prefix: str, resp: httpx.Response) -> DeliveryError:
    """A DeliveryError of Twilio's error body `{"code", "message", "more_info", "status"}`:
    the code, what it means and its page; 429 (and 20429) and 5xx are worth a retry."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    code = data.get("code") if isinstance(data, dict) else None
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    status = resp.status_code
    if code is None:
        return _status_error(prefix, status, None, retry_after(resp.headers))
    meaning = _TWILIO_ERRORS.get(code, "see the error's page")
    message = (
        f"{prefix}: Twilio error {code}: {meaning} (HTTP {status}; "
        f"https://www.twilio.com/docs/errors/{code})"
    )
    if status == 429 or code in _TWILIO_RETRYABLE:
        return RateLimited(message, retry_after(resp.headers))
    return DeliveryError(message, retryable=status >= 500 or status == 408)


class TwilioChannel(_SecretChannel):
    """`sms` and `whatsapp`: one `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` per
    recipient (form-encoded To, From or MessagingServiceSid, Body; HTTP Basic auth with the
    account SID and auth token). A retry of the notification sends only to the recipients
    that have not got it yet: nobody gets a message twice because another number failed."""

    def __init__(
        self,
        name: str,
        config: SmsConfig | WhatsAppConfig,
        policy: OutboundPolicy | None = None,
    ):
        super().__init__(name)
        self.config = config
        self.policy = policy
        # the notification being sent, and each recipient's outcome so far: None sent, or
        # the DeliveryError no retry can fix
        self._progress: tuple[Notification, dict[str, DeliveryError | None]] | None = None

    def secrets(self) -> list[str]:
        return [self.config.auth_token.get_secret_value()]

    def url(self) -> str:
        base = self.config.base_url or TWILIO_API_URL
        return f"{base}/2010-04-01/Accounts/{self.config.account_sid}/Messages.json"

    def form(self, notification: Notification, number: str) -> dict[str, str]:
        cfg = self.config
        prefix = "whatsapp:" if isinstance(cfg, WhatsAppConfig) else ""
        form = {"To": prefix + number}
        if cfg.from_ is not None:
            form["From"] = prefix + cfg.from_
        else:
            assert cfg.messaging_service_sid is not None
            form["MessagingServiceSid"] = cfg.messaging_service_sid
        if isinstance(cfg, SmsConfig):
            form["Body"] = render.sms_text(notification, cfg.max_segments)
        elif cfg.content_sid is not None:
            form["ContentSid"] = cfg.content_sid
            variables = {
                "1": render.one_line(notification.title, 200),
                "2": render.one_line(notification.summary, 500),
                "3": notification.link or "",
            }
            form["ContentVariables"] = json.dumps(variables, ensure_ascii=False)
        else:
            form["Body"] = render.whatsapp_text(notification)
        return form

    def send(self, notification: Notification) -> None:
        if self._progress is None or self._progress[0] is not notification:
            self._progress = (notification, {})
        outcome = self._progress[1]
        token = self.config.auth_token.get_secret_value()
        user = self.config.api_key_sid or self.config.account_sid
        basic = base64.b64encode(f"{user}:{token}".encode()).decode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {basic}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        failed: list[DeliveryError] = []
        for i, number in enumerate(self.config.to):
            if number in outcome:
                if (final := outcome[number]) is not None:
                    failed.append(final)
                continue
            where = f"{self.config.type} to[{i}] {number}"
            body = urlencode(self.form(notification, number)).encode()
            try:
                _post(
                    where,
                    self.url(),
                    body,
                    headers,
                    self.policy,
                    refuse=partial(_twilio_refused, where),
                    accept=partial(_twilio_accepted, where),
                )
                outcome[number] = None
            except DeliveryError as err:
                if not err.retryable:
                    outcome[number] = err
                failed.append(err)
                if isinstance(err, RateLimited):
                    break  # the account's limit: the others wait for the retry
        if not failed:
            return
        if len(failed) == 1 and len(self.config.to) == 1:
            raise failed[0]
        # not reached: refused for good, failed now, or not tried after a rate limit
        missed = sum(1 for n in self.config.to if n not in outcome or outcome[n] is not None)
        shown = "; ".join(str(e) for e in failed[:3]) + (" …" if len(failed) > 3 else "")
        message = f"{missed} of {len(self.config.to)} recipients not reached: {shown}"
        limited = [e.retry_after for e in failed if isinstance(e, RateLimited)]
        if limited:
            raise RateLimited(message, max((r for r in limited if r is not None), default=None))
        raise DeliveryError(message, retryable=any(e.retryable for e in failed))


class SmsChannel(TwilioChannel):
    type: ClassVar[str] = "sms"


class WhatsAppChannel(TwilioChannel):
    type: ClassVar[str] = "whatsapp"


def _twilio_refused(where: str, resp: httpx.Response) -> None:
    raise _twilio_refusal(where, resp)


def _twilio_accepted(where: str, resp: httpx.Response) -> None:
    """A 2xx answer is the Message resource; one that failed at once says so."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or not str(data.get("sid", "")).startswith(("SM", "MM")):
        raise DeliveryError(f"{where}: Twilio answered no message (HTTP {resp.status_code})")
    if data.get("status") in ("failed", "undelivered"):
        code = data.get("error_code")
        meaning = _TWILIO_ERRORS.get(code, "see the error's page") if isinstance(code, int) else ""
        raise DeliveryError(
            f"{where}: Twilio failed the message: {code} {meaning}".rstrip(), retryable=False
        )


# --- email -----------------------------------------------------------------------------------


class EmailChannel(_SecretChannel):
    type: ClassVar[str] = "email"

    def __init__(self, name: str, config: EmailConfig, settings: Settings):
        super().__init__(name)
        self.config = config
        self.settings = settings

    def secrets(self) -> list[str]:
        pw = self.settings.smtp_password
        return [pw.get_secret_value()] if pw is not None else []

    def message(self, notification: Notification) -> EmailMessage:
        subject = render.one_line(notification.title, 200)
        if self.config.subject_prefix:
            subject = f"{self.config.subject_prefix} {subject}"
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.settings.smtp_from
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(localtime=True)
        domain = parseaddr(self.settings.smtp_from)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(render.text(notification))
        pictures = notification.pictures
        if notification.chart_png is None and not pictures:
            msg.add_alternative(render.html(notification), subtype="html")
        else:
            # Pictures go inline beside the HTML (multipart/related), which names each by
            # its Content-ID; text-only readers see the text part.
            chart_cid = make_msgid(domain=domain) if notification.chart_png is not None else None
            cids = [make_msgid(domain=domain) for _ in pictures]
            msg.add_alternative(
                render.html(
                    notification,
                    chart_cid=chart_cid[1:-1] if chart_cid else None,
                    pictures=[(cid[1:-1], p) for cid, p in zip(cids, pictures, strict=True)],
                ),
                subtype="html",
            )
            html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
            if notification.chart_png is not None:
                html_part.add_related(
                    notification.chart_png,
                    "image",
                    "png",
                    cid=chart_cid,
                    disposition="inline",
                    filename="chart.png",
                )
            for cid, picture in zip(cids, pictures, strict=True):
                maintype, subtype = _mime(picture.content_type)
                html_part.add_related(
                    picture.data,
                    maintype,
                    subtype,
                    cid=cid,
                    disposition="inline",
                    filename=picture.filename,
                )
        # Files (CSV …) make the message multipart/mixed: the text/HTML first, then them.
        for file in notification.files:
            maintype, subtype = _mime(file.content_type)
            msg.add_attachment(file.data, maintype, subtype, filename=file.filename)
        return msg

    def send(self, notification: Notification) -> None:
        send_email(self.settings, self.message(notification))


def send_email(settings: Settings, msg: EmailMessage) -> None:
    """Sends one message through the SMTP server of the settings (SQLBOOK_SMTP_*): alert
    and subscription mail, and the people layer's sign-in and invitation mail. Raises
    DeliveryError naming what went wrong (never the SMTP password)."""
    if not settings.smtp_host:
        raise DeliveryError("email channel needs SQLBOOK_SMTP_HOST", retryable=False)
    security = (settings.smtp_security or "").strip().lower()
    if security not in ("starttls", "ssl", "none"):
        raise DeliveryError("SQLBOOK_SMTP_SECURITY must be starttls, ssl or none", retryable=False)
    try:
        _smtp_send(settings, msg, security)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        raise DeliveryError(f"email: recipients refused: {refused}", retryable=False) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"email: login failed: {_smtp_reply(exc)}", retryable=False) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"email: {exc}", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"email: server said {_smtp_reply(exc)}", retryable=400 <= exc.smtp_code < 500
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"email: TLS: {exc.verify_message}", retryable=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"email: {_network_error(exc)}") from None


def _smtp_send(s: Settings, msg: EmailMessage, security: str) -> None:
    host, port, timeout = s.smtp_host or "", s.smtp_port, s.smtp_timeout_seconds
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if security == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if security == "starttls":
            smtp.starttls(context=context)
        if s.smtp_user:
            password = s.smtp_password.get_secret_value() if s.smtp_password else ""
            smtp.login(s.smtp_user, password)
        refused = smtp.send_message(msg)
    if refused:
        raise DeliveryError(
            f"email: recipients refused: {', '.join(sorted(refused))} (the others got it)",
            retryable=False,
        )


def _mime(content_type: str) -> tuple[str, str]:
    """("text", "csv") of "text/csv; charset=utf-8" (parameters are set by the part)."""
    maintype, _, subtype = content_type.partition(";")[0].strip().partition("/")
    return maintype or "application", subtype or "octet-stream"


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    reply = exc.smtp_error
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return render.one_line(f"{exc.smtp_code} {text}", 300)


# --- delivery --------------------------------------------------------------------------------


def _delay(error: DeliveryError, attempt: int, backoff_s: float) -> float:
    delay = backoff_s * (2 ** (attempt - 1))
    if isinstance(error, RateLimited) and error.retry_after is not None:
        delay = error.retry_after
    return max(0.0, min(delay, MAX_BACKOFF_S))


def deliver_one(
    channel: Channel,
    notification: Notification,
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Send to one channel, retrying retryable failures; never raises."""
    attempts = max(1, attempts)
    error: str | None = None
    attempt = 0
    for attempt in range(1, attempts + 1):
        try:
            channel.send(notification)
            return Delivery(channel.name, channel.type, ok=True, attempts=attempt)
        except DeliveryError as exc:
            error = str(exc)
            if not exc.retryable or attempt == attempts:
                break
            sleep(_delay(exc, attempt, backoff_s))
        except Exception as exc:  # a bug in a channel must not lose the other deliveries
            error = f"unexpected {type(exc).__name__}: {exc}"
            break
    message = scrub(error or "failed", _secrets_of(channel))
    return Delivery(channel.name, channel.type, ok=False, attempts=attempt, error=message)


def deliver(
    channels: Sequence[Channel],
    notification: Notification,
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
) -> list[Delivery]:
    """Send `notification` to every channel at once (a thread each, so a slow or failing one
    never holds up the others). One Delivery per channel, in input order; never raises."""
    if not channels:
        return []
    if len(channels) == 1:
        return [deliver_one(channels[0], notification, attempts=attempts, backoff_s=backoff_s)]
    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="sqlbook-notify") as pool:
        futures = [
            pool.submit(deliver_one, ch, notification, attempts=attempts, backoff_s=backoff_s)
            for ch in channels
        ]
        return [f.result() for f in futures]


__all__ = [
    "CHANNEL_TYPES",
    "ChannelConfig",
    "ChannelConfigError",
    "EmailChannel",
    "EmailConfig",
    "RateLimited",
    "SlackChannel",
    "SlackConfig",
    "SmsChannel",
    "SmsConfig",
    "TeamsChannel",
    "TeamsConfig",
    "TwilioChannel",
    "WebhookChannel",
    "WebhookConfig",
    "WhatsAppChannel",
    "WhatsAppConfig",
    "build_channel",
    "check_address",
    "deliver",
    "deliver_one",
    "e164",
    "parse_channel_config",
    "scrub",
    "sign",
]
