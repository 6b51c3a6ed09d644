"""The installation's secret key: encrypts data-source secrets at rest (Fernet) and
derives passwords sqlbook sets itself (the warehouse reader's).

The key comes from `SQLBOOK_SECRET_KEY`, or is generated once into `<home>/secret.key`
(mode 0600) so a laptop install needs no setting. Losing it makes stored data-source
secrets unreadable (re-enter them); it is never logged or returned by the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from connectors.settings import Settings

KEY_FILE = "secret.key"


class SecretKeyError(Exception):
    pass


def load_secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value().strip()
        if len(value) < 32:
            raise SecretKeyError("SQLBOOK_SECRET_KEY must be at least 32 characters")
        return value.encode()
    path = settings.ensure_home() / KEY_FILE
    if not path.exists():
        _create_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _create_private(path: Path, content: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")


def derive(key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose; knowing one derived key reveals nothing of others."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def derived_password(key: bytes, purpose: str) -> str:
    return base64.urlsafe_b64encode(derive(key, purpose)).decode().rstrip("=")


class SecretBox:
    """Encrypts small JSON objects (data-source credentials) for storage."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(base64.urlsafe_b64encode(derive(key, "datasource-secrets")))

    def seal(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))  # type: ignore[no-any-return]
        except InvalidToken as err:
            raise SecretKeyError(
                "a stored data-source secret cannot be decrypted: the secret key changed; "
                "re-enter the data source's credentials"
            ) from err
