"""Who is using the console, whether they may act, and how they sign in (docs/operate.md, "The console").

Deployed, an operator signs in with the stack's Cognito user pool (its hosted sign-in page, the
authorisation-code flow with PKCE); the console keeps the access token in an ``HttpOnly``, ``Secure``,
``SameSite=Lax`` cookie scoped to ``/console``, and the HTTP API's Lambda authorizer
(``authorizer.py``) checks it with Cognito on every request before the console function runs: it
hands over the user's name and whether they are in the operators group. A user outside that group
reads and cannot act. On ``make dev`` (``CONSOLE_LOGIN=none``) there is no login: the stack listens
on 127.0.0.1 only, and every request is the local operator's.

Actions are POSTs carrying a token derived from the caller's session secret (the cookie's value,
which another site can neither read nor send with a request it forges), and only from a page of
the console's own origin (``Origin`` and ``Sec-Fetch-Site``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

from event_router.core.http import Unreachable, send
from event_router.settings import Settings

SESSION_COOKIE = "console_session"
LOGIN_COOKIE = "console_login"  # the sign-in in progress: its state and PKCE verifier
LOCAL_OPERATOR = "local-operator"
_LOCAL_SECRET = secrets.token_hex(32)  # make dev: the session secret of this process's one local operator


class NotAllowed(Exception):
    """The request may not do this (403): a reader acting, or a forged or cross-site POST."""


@dataclass(frozen=True)
class Caller:
    """Who asked, whether they may act, and the secret their actions' tokens derive from."""

    user: str
    operator: bool
    secret: str

    def csrf_token(self) -> str:
        return hmac.new(self.secret.encode(), b"console-action", hashlib.sha256).hexdigest()

    def check_action(self, token: str, headers: dict[str, str]) -> None:
        """Refuse an action from a reader, without its token, or sent from another site."""
        if not self.operator:
            raise NotAllowed("only members of the operators group may act; you may read")
        if not hmac.compare_digest(token, self.csrf_token()):
            raise NotAllowed("the form's token does not match your session: reload the page and try again")
        site = headers.get("sec-fetch-site")
        if site not in (None, "same-origin"):
            raise NotAllowed("actions are taken from the console's own pages only")
        origin, host = headers.get("origin"), headers.get("host")
        if origin not in (None, "null") and host and urlsplit(origin).netloc != host:
            raise NotAllowed("actions are taken from the console's own pages only")


def cookies(event: dict[str, Any]) -> dict[str, str]:
    """The request's cookies (an HTTP API event lists them apart from the headers)."""
    jar: SimpleCookie = SimpleCookie()
    for line in event.get("cookies") or [(event.get("headers") or {}).get("cookie", "")]:
        jar.load(line)
    return {name: morsel.value for name, morsel in jar.items()}


def caller_of(event: dict[str, Any], settings: Settings) -> Caller | None:
    """The caller: the local operator on ``make dev``, else whom the authorizer let through (None:
    nobody signed in, which API Gateway's authorizer does not let reach the pages)."""
    if settings.console_login == "none":
        return Caller(LOCAL_OPERATOR, True, _LOCAL_SECRET)
    context = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    session = cookies(event).get(SESSION_COOKIE)
    if not context.get("user") or not session:
        return None
    return Caller(str(context["user"]), bool(context.get("operator")), session)


# ------------------------------------------------------------------ signing in (Cognito's hosted pages)


def _cookie(name: str, value: str, path: str, max_age: int) -> str:
    return f"{name}={value}; Path={path}; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax"


def _redirect(location: str, set_cookies: list[str]) -> dict[str, Any]:
    return {"statusCode": 303, "headers": {"location": location, "cache-control": "no-store"}, "cookies": set_cookies}


class SignIn:
    """The three routes that are not behind the authorizer: ``/console/login``, ``/console/callback``
    and ``/console/logout``. The console's address is the one the request came to (API Gateway's
    domain name); the app client is the user pool's ``console`` client, looked up once."""

    def __init__(self, domain: str, client_id: Callable[[], str], timeout: float = 10.0) -> None:
        self._domain = domain.rstrip("/")
        self._client_id = client_id
        self._timeout = timeout

    def login(self, console: str) -> dict[str, Any]:
        """Off to Cognito's sign-in page, remembering the state and PKCE verifier in a cookie."""
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id(),
                "redirect_uri": f"{console}/callback",
                "scope": "openid email aws.cognito.signin.user.admin",
                "state": state,
                "code_challenge_method": "S256",
                "code_challenge": challenge,
            }
        )
        started = _cookie(LOGIN_COOKIE, f"{state}.{verifier}", "/console/callback", 600)
        return _redirect(f"{self._domain}/oauth2/authorize?{query}", [started])

    def callback(self, console: str, event: dict[str, Any], query: dict[str, str]) -> dict[str, Any] | str:
        """Cognito's answer: the code exchanged for tokens, the access token kept as the session
        cookie; a string says why the sign-in failed."""
        started = cookies(event).get(LOGIN_COOKIE, "")
        state, _, verifier = started.partition(".")
        if not state or not hmac.compare_digest(state, query.get("state", "")) or not query.get("code"):
            return "the sign-in did not start here or took too long: sign in again"
        body = urlencode(
            {
                "grant_type": "authorization_code",
                "client_id": self._client_id(),
                "code": query["code"],
                "redirect_uri": f"{console}/callback",
                "code_verifier": verifier,
            }
        ).encode()
        try:
            answer = send(
                "POST",
                f"{self._domain}/oauth2/token",
                body,
                {"content-type": "application/x-www-form-urlencoded"},
                self._timeout,
            )
        except Unreachable:
            return "Cognito did not answer: sign in again"
        tokens = answer.json() if answer.status == 200 else None
        if not isinstance(tokens, dict) or not tokens.get("access_token"):
            return "Cognito refused the sign-in: sign in again"
        lifetime = int(tokens.get("expires_in") or 3600)
        return _redirect(
            console,
            [
                _cookie(SESSION_COOKIE, str(tokens["access_token"]), "/console", lifetime),
                _cookie(LOGIN_COOKIE, "", "/console/callback", 0),
            ],
        )

    def logout(self, console: str) -> dict[str, Any]:
        """Forget the session here and at Cognito (which revokes nothing it need not: the token's
        cookie is gone, and it expires within the hour)."""
        query = urlencode({"client_id": self._client_id(), "logout_uri": f"{console}/login"})
        return _redirect(f"{self._domain}/logout?{query}", [_cookie(SESSION_COOKIE, "", "/console", 0)])


def console_url(event: dict[str, Any]) -> str:
    """The console's address, as the request reached it."""
    context = event.get("requestContext") or {}
    host = context.get("domainName") or (event.get("headers") or {}).get("host", "localhost")
    return f"https://{host}/console"


def claims(token: str) -> dict[str, Any]:
    """The claims of a JWT whose signature someone else (Cognito) has checked."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
