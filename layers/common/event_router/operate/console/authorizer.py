"""The console's Lambda authorizer (HTTP API, simple responses): is this cookie a signed-in user's?

The session cookie holds a Cognito access token. Cognito's ``GetUser`` accepts only a token it
issued, unexpired and not revoked (a sign-out at Cognito revokes it), so the authorizer asks
Cognito rather than checking signatures itself; then it reads the token's claims (now known to be
Cognito's) for the user pool that issued it (the stack's own) and the user's groups. API Gateway caches the
answer per cookie for five minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from event_router.core.aws import client
from event_router.observability import logger
from event_router.operate.console.session import SESSION_COOKIE, claims, cookies
from event_router.settings import Settings, load_settings

DENIED = {"isAuthorized": False}


class Authorizer:
    def __init__(self, get_user: Callable[[str], dict[str, Any]], issuer: str, operators_group: str) -> None:
        self._get_user = get_user
        self._issuer = issuer
        self._operators = operators_group

    def decide(self, event: dict[str, Any]) -> dict[str, Any]:
        token = cookies(event).get(SESSION_COOKIE)
        if not token:
            return DENIED
        try:
            user = self._get_user(token)
            found = claims(token)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, this request is not let through
            logger.info("console session refused", reason=type(error).__name__)
            return DENIED
        if found.get("iss") != self._issuer or found.get("token_use") != "access":
            logger.info("console session refused", reason="token of another user pool")
            return DENIED
        groups = found.get("cognito:groups") or []
        return {
            "isAuthorized": True,
            "context": {"user": str(user["Username"]), "operator": self._operators in groups},
        }


def build_authorizer(settings: Settings | None = None) -> Authorizer:
    settings = settings or load_settings()
    if not settings.cognito_user_pool_id:
        raise ValueError("COGNITO_USER_POOL_ID is not set")
    cognito: Any = None

    def get_user(token: str) -> dict[str, Any]:
        nonlocal cognito
        cognito = cognito or client("cognito-idp")
        return dict(cognito.get_user(AccessToken=token))

    return Authorizer(get_user, user_pool_issuer(settings.cognito_user_pool_id), settings.console_operators_group)


def user_pool_issuer(pool_id: str) -> str:
    """The ``iss`` of the pool's tokens (the pool id starts with its region)."""
    return f"https://cognito-idp.{pool_id.split('_', 1)[0]}.amazonaws.com/{pool_id}"
