"""What a project's settings say about browser traffic: which web origins may send events
(CORS), whether Do-Not-Track is honoured, whether IPs are truncated, and which user agents
are robots whose events are dropped."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProjectPolicy:
    cors_origins: tuple[str, ...] = ("*",)  # "*" or origins like "https://shop.example"
    respect_dnt: bool = False  # drop events from browsers that send DNT: 1 / Sec-GPC: 1
    persist_anonymous_id: bool = False  # t.js may keep an anonymous id in localStorage
    anonymize_ip: bool = False  # store 203.0.113.0 instead of 203.0.113.7


def normalize_origin(value: str) -> str:
    """`https://Shop.Example:443/` → `https://shop.example`; raises ValueError if not an
    origin (scheme://host[:port]) or `*`."""
    value = value.strip()
    if value == "*":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{value!r} is not an origin like https://example.com")
    if parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an origin like https://example.com")
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def allowed_origin(policy: ProjectPolicy, origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for a request from `origin`, or None when the
    project does not accept that origin. No Origin header (a server SDK) is always fine."""
    if origin is None:
        return "*"
    if "*" in policy.cors_origins:
        return "*"
    try:
        wanted = normalize_origin(origin)
    except ValueError:
        return None
    return origin if wanted in policy.cors_origins else None


def anonymize_ip(ip: str | None) -> str | None:
    """The network, not the host: IPv4 /24, IPv6 /48 (what Google Analytics does)."""
    if ip is None:
        return None
    address = ipaddress.ip_address(ip)
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address)


def wants_no_tracking(headers: dict[str, str]) -> bool:
    return headers.get("dnt") == "1" or headers.get("sec-gpc") == "1"


# Crawlers, link previewers and uptime checkers that announce themselves. Not HTTP
# libraries (curl, python-requests …): server-side capture legitimately uses them. Not
# headless browsers: tests and synthetic monitoring use them on purpose.
_BOTS = re.compile(
    r"bot\b|bot/|crawler|spider|slurp|bingpreview|facebookexternalhit|embedly|quora link"
    r"|pinterest|vkshare|w3c_validator|whatsapp|telegrambot|discordbot|skypeuripreview"
    r"|lighthouse|pingdom|uptimerobot|statuscake|site24x7|gtmetrix|chrome-lighthouse"
    r"|ahrefs|semrush|mj12|dotbot|petalbot|yandex|baiduspider|bytespider|gptbot|ccbot"
    r"|claudebot|anthropic-ai|perplexitybot|applebot|duckduckbot|archive\.org_bot",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    return bool(user_agent) and bool(_BOTS.search(user_agent or ""))
