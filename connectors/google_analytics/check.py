"""Whether a GA4 service-account key can read a property, before a connection is saved.

    check_credentials("123456", key_json, base_url=settings.ga4_api_url, policy=policy)

The key is parsed, exchanged for a token at its `token_uri` (through the outbound policy) and
a one-row report of today is asked of the property (which also tells its time zone);
user-defined reports, when given, are each asked for one row too, so a dimension or metric
the property does not know is refused now rather than at the first sync.

Answers (CredentialCheck.status): 200 with details {"time_zone", "client_email"}; 400 when
the key, the property id or a report is refused (Google's message, naming the property and
the account); 503 when Google or the token endpoint cannot be reached or keeps answering
429/5xx. Never the private key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connectors.connections.types import CredentialCheck
from connectors.google_analytics.auth import ServiceAccountCredentials, parse_service_account
from connectors.google_analytics.client import GA4Client, property_id_of
from connectors.google_analytics.errors import GoogleError, GoogleUnavailable
from connectors.google_analytics.reports import ReportSpec, parse_reports, request_body
from connectors.outbound import OutboundPolicy

log = logging.getLogger(__name__)

CHECK_RETRIES = 1


def check_credentials(
    property_id: str,
    service_account: Mapping[str, Any] | str,
    *,
    base_url: str,
    policy: OutboundPolicy,
    timeout_s: float = 10,
    reports: Sequence[ReportSpec | Mapping[str, Any]] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> CredentialCheck:
    try:
        prop = property_id_of(str(property_id))
    except ValueError as exc:
        return CredentialCheck(False, 400, f"property_id: {exc}")
    try:
        key = parse_service_account(service_account)
        specs = [r if isinstance(r, ReportSpec) else parse_reports([r])[0] for r in reports]
    except (GoogleError, ValueError) as exc:
        return CredentialCheck(False, 400, str(exc))
    credentials = ServiceAccountCredentials(
        key, policy=policy, timeout_s=timeout_s, max_retries=CHECK_RETRIES, sleep=sleep
    )
    asking = "the property"
    with GA4Client(
        prop,
        credentials,
        base_url=base_url,
        timeout_s=timeout_s,
        max_retries=CHECK_RETRIES,
        sleep=sleep,
    ) as client:
        try:
            zone = client.time_zone()
            for spec in specs:
                asking = f"report {spec.name}"
                body = request_body(spec.dimensions, spec.metrics, "yesterday", "today")
                client.run_report(body | {"limit": 1})
        except GoogleUnavailable as exc:
            log.info("ga4 check of property %s: %s", prop, exc)
            return CredentialCheck(False, 503, f"Google Analytics is unavailable: {exc}")
        except GoogleError as exc:
            prefix = "" if asking == "the property" else f"{asking}: "
            return CredentialCheck(False, 400, f"{prefix}{exc}")
    return CredentialCheck(
        True,
        200,
        f"{key.client_email} can read GA4 property {prop} (time zone {zone})",
        {"time_zone": zone, "client_email": key.client_email},
    )
