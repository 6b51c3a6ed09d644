"""Checking a Stripe key before a connection is saved: its shape and mode, then one small
read (`limit=1`) of each resource the sync reads, so a restricted key's missing permissions
are named up front rather than found by the first sync."""

from __future__ import annotations

from connectors.connections.types import CredentialCheck
from connectors.stripe.client import (
    StripeAuthError,
    StripeClient,
    StripeError,
    StripePermissionError,
    StripeUnavailable,
    key_mode,
)

# what the sync lists, and the tables each one fills
PROBED: dict[str, tuple[str, ...]] = {
    "charges": ("charges",),
    "customers": ("customers",),
    "subscriptions": ("subscriptions", "subscription_items"),
    "invoices": ("invoices", "invoice_lines"),
    "refunds": ("refunds",),
    "balance_transactions": ("balance_transactions",),
    "products": ("products",),
    "prices": ("prices",),
    "events": (),  # updates and deletions between full syncs
}


def check_credentials(
    api_key: str, *, base_url: str, timeout_s: float = 10, max_retries: int = 1
) -> CredentialCheck:
    """200 with `details` {"mode", "key_kind", "readable", "unreadable": [{"resource",
    "reason"}]} when the key reads at least one resource; 400 for a malformed, refused or
    useless key (Stripe's message, never the key); 503 when Stripe cannot be reached."""
    try:
        mode = key_mode(api_key)
    except ValueError as err:
        return CredentialCheck(False, 400, str(err))
    key_kind = "restricted" if api_key.startswith("rk_") else "secret"
    readable: list[str] = []
    unreadable: list[dict[str, str]] = []
    try:
        with StripeClient(
            api_key, base_url, timeout_s=timeout_s, max_retries=max_retries
        ) as client:
            for resource in PROBED:
                try:
                    if resource == "events":
                        next(client.events(limit=1), None)
                    else:
                        next(client.list(resource, limit=1), None)
                except StripePermissionError as err:
                    unreadable.append({"resource": resource, "reason": str(err)})
                else:
                    readable.append(resource)
    except StripeAuthError as err:
        return CredentialCheck(False, 400, str(err), {"mode": mode, "key_kind": key_kind})
    except StripeUnavailable as err:
        return CredentialCheck(False, 503, f"Stripe could not be reached: {err}")
    except StripeError as err:
        return CredentialCheck(False, 400, str(err), {"mode": mode, "key_kind": key_kind})
    details = {
        "mode": mode,
        "key_kind": key_kind,
        "readable": readable,
        "unreadable": unreadable,
    }
    if not readable:
        return CredentialCheck(
            False, 400, "the key can read none of the Stripe resources the sync needs", details
        )
    message = f"Stripe {mode}-mode {key_kind} key: reads {len(readable)} of {len(PROBED)}"
    if unreadable:
        missing = ", ".join(u["resource"] for u in unreadable)
        message += f" (no permission for {missing}: those are skipped at each sync)"
    return CredentialCheck(True, 200, message, details)
