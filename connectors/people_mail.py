"""Mail to people: their sign-in code with its magic link, and invitations to a workspace.
Sent through the SMTP server alert mail uses (`SQLBOOK_SMTP_*`, `notify.channels.
send_email`). Every link is built on the configured public URL (`SQLBOOK_PUBLIC_API_URL`,
else where the API binds), never on a request's Host header, which the caller writes."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import quote

from connectors.notify.channels import send_email
from connectors.settings import Settings, api_url


def magic_link(settings: Settings, link_token: str) -> str:
    return f"{api_url(settings)}/auth/magic?token={quote(link_token, safe='')}"


def send_sign_in_code(
    settings: Settings, to: str, code: str, link: str, expires_at: datetime
) -> None:
    """The code to type and the link to click (either signs in, once). Raises
    notify.model.DeliveryError when the SMTP server cannot be reached or refuses."""
    minutes = _minutes_left(expires_at)
    text = (
        f"Your sqlbook sign-in code is\n\n    {code}\n\n"
        f"or open this link to sign in:\n\n    {link}\n\n"
        f"Both work once, for {minutes} minutes. If you did not ask to sign in, ignore this"
        " mail: nobody can sign in without the code."
    )
    body = (
        "<p>Your sqlbook sign-in code is</p>"
        f"<p style='font-size:28px;letter-spacing:4px;font-family:monospace'><b>{code}</b></p>"
        f"<p>or <a href='{html.escape(link, quote=True)}'>sign in with this link</a>.</p>"
        f"<p style='color:#555'>Both work once, for {minutes} minutes. If you did not ask to"
        " sign in, ignore this mail: nobody can sign in without the code.</p>"
    )
    send_email(settings, _message(settings, to, f"sqlbook sign-in code {code}", text, body))


def send_invitation(
    settings: Settings, to: str, workspace: str, inviter: str, url: str, expires_at: datetime
) -> None:
    """An invitation to join `workspace` (`url`: its accept link). Raises
    notify.model.DeliveryError when the mail cannot be sent."""
    until = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"{inviter} invited you to the sqlbook workspace {workspace}.\n\n"
        f"Accept the invitation:\n\n    {url}\n\nThe link works until {until}."
    )
    body = (
        f"<p>{html.escape(inviter)} invited you to the sqlbook workspace"
        f" <b>{html.escape(workspace)}</b>.</p>"
        f"<p><a href='{html.escape(url, quote=True)}'>Accept the invitation</a></p>"
        f"<p style='color:#555'>The link works until {html.escape(until)}.</p>"
    )
    subject = f"Join {workspace} on sqlbook"
    send_email(settings, _message(settings, to, subject, text, body))


def _message(settings: Settings, to: str, subject: str, text: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = " ".join(subject.split())[:200]
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(text)
    msg.add_alternative(f"<!doctype html><body style='font:15px system-ui'>{body}", "html")
    return msg


def _minutes_left(expires_at: datetime) -> int:
    return max(1, round((expires_at - datetime.now(UTC)).total_seconds() / 60))
