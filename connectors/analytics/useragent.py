"""Browser, OS and device type from a user agent string, with ua-parser (uap-core's
regexes; the Rust matcher of `ua-parser-rs` when installed, else the pure-Python one).

`device_type` follows PostHog's values: Desktop, Mobile, Tablet, Bot, or None when the
agent says nothing (curl, an empty string)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import ua_parser

_TABLET_DEVICE = re.compile(
    r"ipad|tablet|kindle|playbook|nexus (7|9|10)|sm-t|sm-x|gt-p|xoom|tab", re.IGNORECASE
)
_BOT_FAMILY = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse|preview", re.IGNORECASE)
_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS"}
_DESKTOP_OS = {
    "Windows",
    "Mac OS X",
    "Linux",
    "Ubuntu",
    "Fedora",
    "Debian",
    "Chrome OS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
}


@dataclass(frozen=True)
class Agent:
    browser: str | None
    os: str | None
    device_type: str | None


def _known(value: str | None) -> str | None:
    return None if value in (None, "", "Other") else value


@lru_cache(maxsize=65_536)
def parse(user_agent: str) -> Agent:
    if not user_agent:
        return Agent(None, None, None)
    result = ua_parser.parse(user_agent)
    browser = _known(result.user_agent.family if result.user_agent else None)
    os = _known(result.os.family if result.os else None)
    device = _known(result.device.family if result.device else None)
    brand = _known(result.device.brand if result.device else None)
    return Agent(browser, os, _device_type(user_agent, browser, os, device, brand))


def _device_type(
    user_agent: str, browser: str | None, os: str | None, device: str | None, brand: str | None
) -> str | None:
    if device == "Spider" or brand == "Spider" or (browser and _BOT_FAMILY.search(browser)):
        return "Bot"
    if (device and _TABLET_DEVICE.search(device)) or (brand and "tablet" in brand.lower()):
        return "Tablet"
    if os == "Android":
        # Android tablets leave "Mobile" out of their agent
        return "Mobile" if "Mobile" in user_agent else "Tablet"
    if os in _MOBILE_OS:
        return "Mobile"
    if os in _DESKTOP_OS:
        return "Desktop"
    return None
