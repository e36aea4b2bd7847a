"""The Zoho CRM connector: OAuth 2 with one shared access token, the CRM REST API (v8), and Zoho's
error model and limits.

- **Tokens.** A refresh token (with the client id and secret, from Secrets Manager) buys access
  tokens that live an hour, at most 10 per 10 minutes per refresh token. So every container shares
  one access token, kept in Postgres (``TokenStore``) and refreshed under a lock shortly before it
  expires. An ``INVALID_TOKEN`` answer refreshes once and retries. The refresh sends the client
  secret and refresh token in the form body, never in the URL. The API's host is the
  ``api_domain`` the token answer names, and a token is only ever sent to one of Zoho's documented
  API domains (``DATA_CENTRES``); the accounts server is the data centre's. A token is kept with
  the accounts server that issued it, so pointing the router at another one refreshes it.
- **Limits.** Zoho allows 5 to 25 concurrent calls per organisation (by edition) and answers 429
  ``TOO_MANY_REQUESTS`` past it, or past the day's API credits, with no ``Retry-After``. Every
  call takes one of ``ZOHO_MAX_CONCURRENT_CALLS`` slots shared by all containers (``CallSlots``),
  and a 429 is transient: the delivery backs off. ``X-API-CREDITS-REMAINING`` is kept for a
  metric.
- **Credits.** A read or a call costs one credit; a write costs one credit per ten records (an
  upsert of 100 grades: ten); a COQL query one to three by its ``LIMIT``.
- **Errors** sort three ways, as for Moodle: the router's set-up (a revoked refresh token, a
  wrong client, a missing scope, permission or module) pauses the destination; bad data fails one
  record, with the field Zoho names; a locked record, a 429 or anything that may pass is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from event_router.core import http
from event_router.core.http import Answer
from event_router.core.secrets import connector_secret
from event_router.errors import DeliveryError, Refusal
from event_router.settings import Settings
from event_router.store.connection import PreparedConnection
from event_router.store.zoho import AccessToken, CallsBusy, PgZohoState


@dataclass(frozen=True)
class DataCentre:
    """Where one of Zoho's data centres issues tokens, and where its API answers."""

    accounts: str
    api: str


# Zoho's data centres (the ``ZohoDataCentre`` parameter), as Zoho's multi-DC pages list them
# (zoho.com/accounts/protocol/oauth/multi-dc.html, zoho.com/crm/developer/docs/api/v8/multi-dc.html).
DATA_CENTRES: dict[str, DataCentre] = {
    "com": DataCentre("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": DataCentre("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": DataCentre("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "com.au": DataCentre("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": DataCentre("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "com.cn": DataCentre("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "ca": DataCentre("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": DataCentre("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "uk": DataCentre("https://accounts.zoho.uk", "https://www.zohoapis.uk"),
}
API_DOMAINS = frozenset(dc.api for dc in DATA_CENTRES.values())
API = "/crm/v8"
# The Zoho delivery function refreshes the shared access token this long before it expires; its
# check runs every 5 minutes, so the token always has over 5 minutes left when anyone reads it.
REFRESH_MARGIN_SECONDS = 600
READ_MARGIN_SECONDS = 60  # a function that cannot refresh uses the token until this close to its expiry
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# The OAuth scopes the router needs, and no more (docs/connect-zoho.md).
SCOPES = (
    "ZohoCRM.modules.custom.READ",  # fetch the records an ids-only notification names
    "ZohoCRM.modules.custom.CREATE",  # upsert BTEC_Grades
    "ZohoCRM.modules.custom.UPDATE",  # upsert, and write Moodle ids to BTEC_Students
    "ZohoCRM.users.READ",  # who the router is (users?type=CurrentUser), to recognise its own changes
    "ZohoCRM.notifications.ALL",  # register and renew the watch channel
    "ZohoCRM.coql.READ",  # reconciliation: read what changed, 2,000 records a call
    "ZohoCRM.settings.automation_actions.READ",  # reconciliation: the webhooks Zoho failed to deliver
)
COQL_LIMIT = 2000  # rows a COQL call returns at most


# The API's error codes → what they mean for a delivery. A code not listed is about the data when
# Zoho answers 4xx, transient otherwise.
_REFUSALS: dict[str, Refusal] = {
    "OAUTH_SCOPE_MISMATCH": "configuration",
    "NO_PERMISSION": "configuration",
    "AUTHORIZATION_FAILED": "configuration",  # the router's user may not do this (its profile)
    "INVALID_MODULE": "configuration",
    "INVALID_URL_PATTERN": "configuration",
    "AUTHENTICATION_FAILURE": "configuration",
    "INVALID_TOKEN": "configuration",  # after a refresh and a retry
    "FEATURE_NOT_SUPPORTED": "configuration",
    "TOO_MANY_REQUESTS": "transient",
    "RECORD_LOCKED": "transient",  # in an approval or a blueprint transition: it unlocks by itself
    "INTERNAL_ERROR": "transient",
}
# The accounts server's errors on a refresh.
_OAUTH_ERRORS: dict[str, Refusal] = {
    "invalid_code": "configuration",  # the refresh token was revoked or never valid
    "invalid_client": "configuration",
    "invalid_client_secret": "configuration",
    "unauthorized_client": "configuration",
    "Access Denied": "transient",  # more than 10 access tokens in 10 minutes
}


class ZohoError(DeliveryError):
    """Zoho (or the way to it) refused a call; ``kind`` says what a delivery should do."""


@dataclass(frozen=True)
class Credentials:
    """A Zoho OAuth client and the refresh token it was granted."""

    client_id: str
    client_secret: str
    refresh_token: str

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        try:
            document = json.loads(text)
            return cls(str(document["client_id"]), str(document["client_secret"]), str(document["refresh_token"]))
        except (ValueError, KeyError, TypeError):
            raise ZohoError(
                "configuration", "nocredentials", "the Zoho secret needs client_id, client_secret, refresh_token"
            ) from None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, in lower case, without a path."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


class TokenStore(Protocol):
    """Where the one shared access token lives (Postgres), and the lock its refresh holds."""

    def current(self) -> AccessToken | None: ...
    def refreshing(self) -> AbstractContextManager[None]: ...
    def save(self, token: AccessToken) -> None: ...


class CallSlots(Protocol):
    """The organisation's concurrent calls, shared by every container: hold one per call."""

    def slot(self) -> AbstractContextManager[None]: ...


def send(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
    """One exchange with Zoho; ``ZohoError`` (transient) when no answer came."""
    try:
        return http.send(method, url, body, headers, timeout)
    except http.Unreachable as error:
        raise ZohoError("transient", "unreachable", str(error)) from None


class ZohoClient:
    """Calls one Zoho CRM organisation; counts its calls and remembers the credits left."""

    def __init__(
        self,
        accounts_url: str,
        credentials: Callable[[], Credentials] | None,
        tokens: TokenStore,
        slots: CallSlots,
        *,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
        api_domains: frozenset[str] | None = None,
    ) -> None:
        self._accounts_url = accounts_url.rstrip("/")
        # Where an access token may be sent: Zoho's documented API domains, unless told otherwise
        # (a stand-in on loopback, for development).
        self._api_domains = frozenset(origin(d) for d in (api_domains if api_domains is not None else API_DOMAINS))
        self._credentials = credentials
        self._tokens = tokens
        self._slots = slots
        self._timeout = timeout
        self._clock = clock
        self.calls = 0
        self.refreshes = 0
        self.credits_remaining: int | None = None

    # ------------------------------------------------------------ the API

    def upsert(self, module: str, records: list[dict[str, Any]], duplicate_check_fields: list[str]) -> list[Any]:
        """Insert or update up to 100 records, found by ``duplicate_check_fields``, starting no
        workflow, approval or blueprint (``trigger: []``); one result per record, in order."""
        body = {"data": records, "duplicate_check_fields": duplicate_check_fields, "trigger": []}
        return self._results(self.request("POST", f"/{module}/upsert", body=body), len(records))

    def update(self, module: str, records: list[dict[str, Any]]) -> list[Any]:
        """Update up to 100 records by id, starting nothing (``trigger: []``); one result per record."""
        answer = self.request("PUT", f"/{module}", body={"data": records, "trigger": []})
        return self._results(answer, len(records))

    def records(self, module: str, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        """The records of ``ids`` (at most 100) that still exist, with ``fields``."""
        answer = self.request("GET", f"/{module}", params={"ids": ",".join(ids), "fields": ",".join(fields)})
        return list((answer or {}).get("data") or [])

    def current_user(self) -> dict[str, Any]:
        """The Zoho user the router acts as."""
        users = (self.request("GET", "/users", params={"type": "CurrentUser"}) or {}).get("users") or []
        if not users:
            raise ZohoError("configuration", "nouser", "Zoho did not say which user the router is")
        return dict(users[0])

    def coql(self, query: str) -> list[dict[str, Any]]:
        """The rows of a COQL ``select`` (at most ``COQL_LIMIT``; none when Zoho answers 204)."""
        answer = self.request("POST", "/coql", body={"select_query": query})
        return list((answer or {}).get("data") or [])

    def webhook_failures(self, module: str, page: int) -> tuple[list[dict[str, Any]], bool]:
        """One page (200) of the workflow webhooks of ``module`` Zoho failed to deliver in the last 30
        days: (failures, whether more pages follow)."""
        answer = self.request(
            "GET",
            "/settings/automation/webhook_failures",
            params={"module": module, "page": str(page), "per_page": "200"},
        )
        info = (answer or {}).get("info") or {}
        return list((answer or {}).get("webhook_failures") or []), bool(info.get("more_records"))

    @property
    def accounts_url(self) -> str:
        """The accounts server the client's tokens come from."""
        return self._accounts_url

    def check_token(self) -> None:
        """Make sure there is a usable access token: refreshed now if it is about to expire."""
        self._token()

    def watch(self, method: str, channel: dict[str, Any]) -> list[Any]:
        """Register (POST) or renew (PATCH) a notification channel; one result per module."""
        answer = self.request(method, "/actions/watch", body={"watch": [channel]})
        return list((answer or {}).get("watch") or [])

    # ------------------------------------------------------------ one call

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        """The decoded answer of one API call; ``ZohoError`` when it failed."""
        token = self._token()
        answer = self._call(method, path, params, body, token)
        if answer.status == 401 and _code(answer) in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE"):
            token = self._token(rejected=token)  # expired or revoked early: refresh once, and retry
            answer = self._call(method, path, params, body, token)
        if answer.status >= 400 and not _per_record(answer):
            raise _error(answer)
        try:
            return answer.json()
        except ValueError:
            raise ZohoError("transient", "notjson", "Zoho's answer is not JSON") from None

    def _call(self, method: str, path: str, params: Mapping[str, str] | None, body: Any, token: AccessToken) -> Answer:
        url = token.api_domain.rstrip("/") + API + path + (f"?{urlencode(params)}" if params else "")
        headers = {"Authorization": f"Zoho-oauthtoken {token.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        with self._slot():
            self.calls += 1
            answer = send(method, url, data, headers, self._timeout)
        remaining = answer.headers.get("x-api-credits-remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            self.credits_remaining = int(remaining)
        return answer

    @staticmethod
    def _results(answer: Any, expected: int) -> list[Any]:
        results = list((answer or {}).get("data") or [])
        if len(results) != expected:
            raise ZohoError("transient", "partialanswer", f"{len(results)} results for {expected} records")
        return results

    # ------------------------------------------------------------ the access token

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the organisation's concurrent calls; none free for a while is a passing trouble."""
        try:
            with self._slots.slot():
                yield
        except CallsBusy as busy:
            raise ZohoError("transient", "busy", str(busy)) from None

    def _token(self, rejected: AccessToken | None = None) -> AccessToken:
        """The shared access token; refreshed (by one container at a time) when it is about to
        expire or Zoho has just refused it.

        A client without credentials (the processors, the Moodle delivery, the reconciliation: they
        never hold Zoho's client secret) only reads the token the Zoho delivery function keeps
        fresh; when there is none it can use, the call fails as transient and is tried again later."""
        current = self._tokens.current()
        if self._credentials is None:
            if self._usable(current, rejected, READ_MARGIN_SECONDS):
                return current  # type: ignore[return-value]
            raise ZohoError(
                "transient", "token_not_ready", "no fresh Zoho token yet: the Zoho delivery function makes it"
            )
        if self._usable(current, rejected):
            return current  # type: ignore[return-value]
        with self._tokens.refreshing():
            current = self._tokens.current()  # another container may have refreshed it meanwhile
            if self._usable(current, rejected):
                return current  # type: ignore[return-value]
            token = self._refresh()
            self._tokens.save(token)
            return token

    def _usable(
        self, token: AccessToken | None, rejected: AccessToken | None, margin: float = REFRESH_MARGIN_SECONDS
    ) -> bool:
        """A token fresh enough, issued by this accounts server, for an API domain of Zoho's."""
        return (
            token is not None
            and token != rejected
            and token.fresh(self._clock(), margin)
            and token.accounts_url == self._accounts_url
            and origin(token.api_domain) in self._api_domains
        )

    def _refresh(self) -> AccessToken:
        assert self._credentials is not None  # _token never refreshes without them
        credentials = self._credentials()
        # In the form body, as OAuth 2 has it: a URL is written to proxies' and servers' logs.
        form = urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "refresh_token": credentials.refresh_token,
            }
        ).encode()
        self.refreshes += 1
        answer = send("POST", f"{self._accounts_url}/oauth/v2/token", form, FORM, self._timeout)
        if answer.status >= 500:
            raise ZohoError("transient", f"accounts{answer.status}", "Zoho's accounts server is unwell")
        try:
            document = answer.json() or {}
        except ValueError:
            raise ZohoError("transient", "notjson", "the accounts server's answer is not JSON") from None
        if "access_token" in document:
            api_domain = str(document.get("api_domain", ""))
            if origin(api_domain) not in self._api_domains:
                # Never send the token where Zoho's documentation does not say its API is.
                raise ZohoError("configuration", "untrusted_api_domain", "the token names an API domain not Zoho's")
            lifetime = float(document.get("expires_in", 3600))
            return AccessToken(str(document["access_token"]), api_domain, self._clock() + lifetime, self._accounts_url)
        code = str(document.get("error", f"http{answer.status}"))
        kind = _OAUTH_ERRORS.get(code, "configuration" if answer.status < 500 else "transient")
        # Never the answer's text: an OAuth error may echo what was sent.
        raise ZohoError(kind, code, "Zoho refused to refresh the access token")


def _per_record(answer: Answer) -> bool:
    """An answer that reports record by record (Zoho's 207, or a 400 where every record failed)."""
    if answer.status not in (207, 400):
        return False
    try:
        document = answer.json()
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("data"), list) and bool(document["data"])


def _code(answer: Answer) -> str:
    try:
        document = answer.json()
    except ValueError:
        return ""
    if isinstance(document, dict):
        return str(document.get("code", ""))
    return ""


def _error(answer: Answer) -> ZohoError:
    code = _code(answer) or f"http{answer.status}"
    if answer.status == 429 or answer.status >= 500:
        return ZohoError("transient", code, f"Zoho answered HTTP {answer.status}")
    try:
        document = answer.json()
    except ValueError:
        document = None
    return record_error(document if isinstance(document, dict) else {"code": code}) or ZohoError("data", code)


def record_error(result: Mapping[str, Any]) -> ZohoError | None:
    """None for a record (or call) Zoho took; otherwise its error, sorted by ``_REFUSALS`` (a code not
    listed is about the data), with Zoho's message and the field it names."""
    if str(result.get("status", "")).lower() == "success" or result.get("code") == "SUCCESS":
        return None
    code = str(result.get("code") or "ERROR")
    details = result.get("details") or {}
    field = details.get("api_name") or details.get("param_name") if isinstance(details, Mapping) else None
    message = str(result.get("message", "")) + (f" ({field})" if field else "")
    return ZohoError(_REFUSALS.get(code, "data"), code, message)


def zoho_client(settings: Settings, connection: PreparedConnection) -> Callable[[], ZohoClient]:
    """The Zoho client of this container, made on first use: the data centre's accounts server (or
    ``ZOHO_ACCOUNTS_URL``), the credentials of ``ZOHO_CREDENTIALS`` or the Secrets Manager secret
    (read again every ``SECRETS_MAX_AGE``), the token and call slots shared through Postgres. A
    function given no credentials (``ZOHO_API=true`` alone) calls with the shared token only."""
    made: list[ZohoClient] = []

    def client() -> ZohoClient:
        if not made:
            centre = DATA_CENTRES.get(settings.zoho_data_centre)
            if settings.zoho_accounts_url:  # a Zoho stand-in (development): its API is on its own host
                accounts, api_domains = settings.zoho_accounts_url, API_DOMAINS | {settings.zoho_accounts_url}
            elif centre is not None:
                accounts, api_domains = centre.accounts, frozenset({centre.api})
            else:
                raise ZohoError("configuration", "datacentre", f"unknown data centre {settings.zoho_data_centre!r}")
            state = PgZohoState(connection, settings.zoho_max_concurrent_calls)
            made.append(
                ZohoClient(
                    accounts,
                    (lambda: credentials(settings)) if settings.zoho_refreshes() else None,
                    state,
                    state,
                    timeout=settings.zoho_timeout_seconds,
                    api_domains=api_domains,
                )
            )
        return made[0]

    return client


def credentials(settings: Settings) -> Credentials:
    """The OAuth client and refresh token: ``ZOHO_CREDENTIALS`` (development) or the Secrets Manager secret."""
    if settings.zoho_credentials:
        return Credentials.from_json(settings.zoho_credentials)
    arn, max_age = settings.zoho_credentials_secret_arn, settings.secrets_max_age
    text = connector_secret(arn, max_age, ZohoError, ("nocredentials", "no Zoho credentials are configured"))
    return Credentials.from_json(text if text.strip().startswith("{") else json.dumps({}))
