"""What can go wrong talking to Google, as exceptions whose messages are safe to log, store
and show: they name the service account and the property, quote Google's message, and never
carry the private key, a signed assertion or an access token."""

from __future__ import annotations


class GoogleError(Exception):
    """Base of the GA4 connector's errors."""


class GoogleAuthError(GoogleError):
    """The credentials cannot work: a malformed key, a token endpoint the outbound policy
    refuses, or Google refusing the key (`invalid_grant`: deleted/revoked key) or its token
    (401). Retrying will not help; stop syncing until the key is replaced."""


class GooglePermissionError(GoogleError):
    """403 PERMISSION_DENIED: the service account has no access to the property (or the
    token lacks the Analytics scope)."""

    def __init__(self, property_id: str, client_email: str, message: str) -> None:
        self.property_id = property_id
        self.client_email = client_email
        self.message = message
        super().__init__(
            f"the service account {client_email} has no access to GA4 property {property_id} "
            f"(add it as a Viewer under Admin > Property access management): {message}"
        )


class GoogleRequestError(GoogleError):
    """Any other 4xx (400 INVALID_ARGUMENT for an unknown dimension or metric, 404 …), with
    Google's message."""

    def __init__(self, status: int, reason: str | None, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"Google answered {status} ({reason or 'error'}): {message}")


class GoogleUnavailable(GoogleError):
    """Retries exhausted: 429 RESOURCE_EXHAUSTED (the property's quota), 5xx, timeouts or
    connection errors."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        self.status = status
        self.attempts = attempts
        super().__init__(message)
