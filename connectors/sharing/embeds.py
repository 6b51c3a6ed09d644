"""Signed embeds: a customer's server signs a short-lived JWT naming one dashboard or
insight and the parameter values it is locked to; sqlbook shows that object, in an
iframe of the origins the embedding secret allows, to whoever holds the token.

An embedding secret (`sqb_es_` + 256 random bits) is shown once, when an admin makes it;
the database keeps it sealed with the installation's key (it must be read back to check
signatures). A token is accepted when, in this order:
- its header says HS256 (`none` and every other algorithm are refused) and its `kid`,
  when given, names an active secret of the object's workspace;
- its signature matches one of the workspace's active secrets (revoking a secret stops
  every embed signed with it at once);
- `exp` is there, not past (30 s of clock skew), and at most 10 minutes after `iat` (or
  after now, without `iat`);
- `resource` is exactly {"dashboard": id} or {"insight": id} of the URL's object;
- `params`, when given, is {name: value}: values the viewer cannot change.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jwt

from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox

SECRET_PREFIX = "sqb_es_"
MAX_LIFETIME_S = 600
CLOCK_SKEW_S = 30
MAX_ORIGINS = 20
# an origin as CSP's frame-ancestors takes it: scheme, host (or *.host), optional port;
# nothing that could end the directive or add another (spaces, quotes, ;)
_ORIGIN = re.compile(
    r"^https?://(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(:[0-9]{1,5})?$"
)

ObjectType = Literal["insight", "dashboard"]


class EmbedRefused(Exception):
    """The token does not open this object; the message says why (never the secret)."""


class SecretInvalid(ValueError):
    """An embedding secret that cannot be made as asked; the message names the field."""


@dataclass(frozen=True)
class EmbeddingSecret:
    id: int
    workspace_id: int
    name: str
    secret_prefix: str
    frame_ancestors: list[str]
    owner_user_id: int | None
    owner_token_id: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewEmbeddingSecret:
    secret: EmbeddingSecret
    value: str  # shown once


@dataclass(frozen=True)
class EmbedGrant:
    """What a verified token opens: the object, with `params` locked, framed by the
    secret's origins, acting as the secret's owner."""

    secret: EmbeddingSecret
    object_type: ObjectType
    object_id: int
    params: dict[str, Any]


def frame_ancestors(origins: list[str]) -> list[str]:
    """The origins checked and normalised (lower case, no trailing slash, no
    duplicates). Raises SecretInvalid naming `frame_ancestors[i]`."""
    if len(origins) > MAX_ORIGINS:
        raise SecretInvalid(f"frame_ancestors: at most {MAX_ORIGINS} origins")
    checked: list[str] = []
    for i, origin in enumerate(origins):
        value = origin.strip().lower().removesuffix("/")
        if len(value) > 300 or not _ORIGIN.match(value):
            raise SecretInvalid(
                f"frame_ancestors[{i}]: not an origin: give scheme://host[:port], e.g."
                " https://app.example.com (no path)"
            )
        port = value.rpartition(":")[2]
        if value.count(":") == 2 and not 1 <= int(port) <= 65535:
            raise SecretInvalid(f"frame_ancestors[{i}]: port must be 1-65535")
        if value not in checked:
            checked.append(value)
    return checked


def csp_frame_ancestors(origins: list[str]) -> str:
    """The Content-Security-Policy value for these origins ('none' without any)."""
    return "frame-ancestors " + (" ".join(origins) if origins else "'none'")


class EmbeddingSecrets:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self._store = store
        self._box = box

    def create(
        self,
        workspace_id: int,
        name: str,
        origins: list[str],
        *,
        created_by: str,
        owner_user_id: int | None,
        owner_token_id: int | None,
    ) -> NewEmbeddingSecret:
        allowed = frame_ancestors(origins)
        value = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self._store.connection() as conn:
            row = conn.execute(
                "insert into meta.embedding_secrets (workspace_id, name, secret_sealed,"
                " secret_prefix, frame_ancestors, owner_user_id, owner_token_id, created_by)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (
                    workspace_id,
                    name,
                    self._box.seal({"secret": value}),
                    value[: len(SECRET_PREFIX) + 6],
                    allowed,
                    owner_user_id,
                    owner_token_id,
                    created_by,
                ),
            ).fetchone()
        assert row is not None
        return NewEmbeddingSecret(_secret(row), value)

    def of_workspace(self, workspace_id: int) -> list[EmbeddingSecret]:
        """The workspace's secrets, revoked ones too, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.embedding_secrets where workspace_id = %s order by id desc",
                (workspace_id,),
            ).fetchall()
        return [_secret(r) for r in rows]

    def revoke(self, workspace_id: int, secret_id: int) -> EmbeddingSecret | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.embedding_secrets set revoked_at = coalesce(revoked_at, now())"
                " where workspace_id = %s and id = %s returning *",
                (workspace_id, secret_id),
            ).fetchone()
        return None if row is None else _secret(row)

    def _active(self, workspace_id: int) -> list[tuple[EmbeddingSecret, str]]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.embedding_secrets where workspace_id = %s"
                " and revoked_at is null order by id",
                (workspace_id,),
            ).fetchall()
        return [(_secret(r), self._box.open(r["secret_sealed"])["secret"]) for r in rows]

    def object_workspace(self, object_type: ObjectType, object_id: int) -> int | None:
        """The workspace of the insight or dashboard (not in the trash), whichever it is."""
        table = "meta.insights" if object_type == "insight" else "meta.dashboards"
        with self._store.connection() as conn:
            row = conn.execute(
                f"select workspace_id from {table} where id = %s and deleted_at is null",
                (object_id,),
            ).fetchone()
        return None if row is None else int(row["workspace_id"])

    def verify(
        self, token: str, object_type: ObjectType, object_id: int, *, now: datetime | None = None
    ) -> EmbedGrant:
        """The grant `token` gives for this object, or EmbedRefused saying why."""
        now = now or datetime.now(UTC)
        header = _header(token)
        workspace_id = self.object_workspace(object_type, object_id)
        if workspace_id is None:
            raise EmbedRefused(f"the token does not open {object_type} {object_id}")
        candidates = _by_kid(self._active(workspace_id), header)
        claims: dict[str, Any] | None = None
        used: EmbeddingSecret | None = None
        for secret, value in candidates:
            try:
                claims = jwt.decode(
                    token,
                    value,
                    algorithms=["HS256"],
                    options={"require": ["exp"], "verify_aud": False, "verify_iss": False},
                    leeway=CLOCK_SKEW_S,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise EmbedRefused("the token has expired (exp is past)") from None
            except jwt.MissingRequiredClaimError:
                raise EmbedRefused("the token has no exp: an embed token must expire") from None
            except jwt.ImmatureSignatureError:
                raise EmbedRefused("the token's iat or nbf is in the future") from None
            except jwt.InvalidTokenError as err:
                raise EmbedRefused(f"the token's claims are not valid: {err}") from None
            used = secret
            break
        if claims is None or used is None:
            raise EmbedRefused(
                "the token's signature matches no active embedding secret of the workspace"
                " (wrong or revoked secret, or a changed token)"
            )
        _check_lifetime(claims, now)
        _check_resource(claims.get("resource"), object_type, object_id)
        return EmbedGrant(used, object_type, object_id, _params(claims.get("params")))

    def origins_for(self, token: str, object_type: ObjectType, object_id: int) -> list[str]:
        """The origins that may frame this embed's page: the verified token's secret's;
        for a token that is refused (its page says why, with no data), those of the
        secret its `kid` names, else every active secret's of the object's workspace."""
        try:
            return self.verify(token, object_type, object_id).secret.frame_ancestors
        except EmbedRefused:
            pass
        workspace_id = self.object_workspace(object_type, object_id)
        if workspace_id is None:
            return []
        try:
            candidates = _by_kid(self._active(workspace_id), _header(token))
        except EmbedRefused:
            candidates = self._active(workspace_id)
        origins: list[str] = []
        for secret, _value in candidates:
            origins += [o for o in secret.frame_ancestors if o not in origins]
        return origins


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise EmbedRefused("not a JWT (header.payload.signature)") from None
    if header.get("alg") != "HS256":
        raise EmbedRefused(f"the token's alg is {header.get('alg')!r}: only HS256 is accepted")
    return header


def _by_kid(
    active: list[tuple[EmbeddingSecret, str]], header: dict[str, Any]
) -> list[tuple[EmbeddingSecret, str]]:
    kid = header.get("kid")
    if kid is None:
        return active
    chosen = [(s, v) for s, v in active if str(s.id) == str(kid)]
    if not chosen:
        raise EmbedRefused("the token's kid names no active embedding secret of the workspace")
    return chosen


def _check_lifetime(claims: dict[str, Any], now: datetime) -> None:
    exp = claims["exp"]
    iat = claims.get("iat")
    start = iat if isinstance(iat, int | float) else now.timestamp()
    if exp - start > MAX_LIFETIME_S:
        raise EmbedRefused(
            f"the token's exp is more than {MAX_LIFETIME_S // 60} minutes after its"
            f" {'iat' if isinstance(iat, int | float) else 'signing'}: embed tokens are short-lived"
        )
    if exp - now.timestamp() > MAX_LIFETIME_S + CLOCK_SKEW_S:
        raise EmbedRefused(
            f"the token's exp is more than {MAX_LIFETIME_S // 60} minutes from now:"
            " embed tokens are short-lived"
        )


def _check_resource(resource: Any, object_type: ObjectType, object_id: int) -> None:
    if (
        not isinstance(resource, dict)
        or len(resource) != 1
        or next(iter(resource)) not in ("dashboard", "insight")
    ):
        raise EmbedRefused('resource: expected {"dashboard": id} or {"insight": id}')
    kind, value = next(iter(resource.items()))
    if kind != object_type or isinstance(value, bool) or str(value) != str(object_id):
        raise EmbedRefused(f"the token opens {kind} {value}, not {object_type} {object_id}")


def _params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise EmbedRefused("params: expected an object {name: value}")
    for name, value in params.items():
        items = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, str | int | float | bool) for v in items):
            raise EmbedRefused(f"params.{name}: expected a text, number, boolean or a list")
    return dict(params)


def _secret(row: dict[str, Any]) -> EmbeddingSecret:
    return EmbeddingSecret(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        secret_prefix=row["secret_prefix"],
        frame_ancestors=list(row["frame_ancestors"]),
        owner_user_id=row["owner_user_id"],
        owner_token_id=row["owner_token_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
