"""Bearer-token authentication for ``/api``; ``/health``, ``/ready`` and the console stay open."""

from __future__ import annotations

from litestar import Request

from engine.errors import AuthUnavailable, ConfigError, Unauthorized
from engine.tokens import Token, TokenStore


def authenticate(request: Request) -> Token | None:
    """The request's token, or None when auth is off. Raises 401 when it is on and the
    request carries no valid ``Authorization: Bearer`` token."""
    store: TokenStore | None = request.app.state.tokens
    if store is None:
        return None
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("this server requires an Authorization: Bearer <token> header")
    try:
        token = store.verify(secret.strip())
    except ConfigError as exc:  # a damaged tokens file: refuse everyone, name nothing
        raise AuthUnavailable(exc.detail) from exc
    if token is None:
        raise Unauthorized("the bearer token is not valid")
    return token
