"""API keys: hashing, bearer authentication and role guards."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp, Guard

from chargeledger.core.api import Caller
from chargeledger.core.http.keys import hash_key
from chargeledger.core.settings import ApiKey, ApiRole

__all__ = ["LOCAL", "BearerAuth", "Caller", "requires"]

LOCAL = "local"
"""The caller's name when no keys are configured (the API then listens on loopback only)."""


class BearerAuth(AbstractAuthenticationMiddleware):
    """Authenticates ``Authorization: Bearer <key>`` against the configured key hashes.

    With no keys configured every request is the ``local`` caller with role ``admin`` (the
    settings refuse that on a non-loopback address). A missing, malformed or unknown key gets
    401 with ``WWW-Authenticate: Bearer``. Routes with ``opt={"public": True}`` skip this."""

    def __init__(self, app: ASGIApp, keys: list[ApiKey], exclude: list[str]) -> None:
        super().__init__(app, exclude=exclude, exclude_from_auth_key="public")
        self._keys = keys

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        if not self._keys:
            return AuthenticationResult(user=Caller(LOCAL, "admin"), auth=None)
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("send the API key as `Authorization: Bearer <key>`")
        digest = hash_key(token.strip())
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256):
                return AuthenticationResult(user=Caller(key.name, key.role), auth=None)
        raise _unauthorized("unknown API key")


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": "Bearer"})


def requires(role: ApiRole) -> Guard:
    """A guard letting through callers whose role is ``role`` or above (403 otherwise)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        caller: Caller = connection.user
        if not caller.may(role):
            raise PermissionDeniedException(
                detail=f"this needs the {role!r} role; key {caller.name!r} has {caller.role!r}"
            )

    return guard
