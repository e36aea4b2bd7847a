"""The Zoho CRM connector: OAuth 2 with one shared access token, the CRM REST API (v7), and Zoho's
error model and limits.

- **Tokens.** A refresh token (with the client id and secret, from Secrets Manager) buys access
  tokens that live an hour, at most 10 per 10 minutes per refresh token. So every container shares
  one access token, kept in Postgres (``TokenStore``) and refreshed under a lock shortly before it
  expires. An ``INVALID_TOKEN`` answer refreshes once and retries. The API's host is the
  ``api_domain`` the token answer names; the accounts server is the data centre's.
- **Limits.** Zoho allows 5 to 25 concurrent calls per organisation (by edition) and answers 429
  ``TOO_MANY_REQUESTS`` past it, or past the day's API credits, with no ``Retry-After``. Every
  call takes one of ``ZOHO_MAX_CONCURRENT_CALLS`` slots shared by all containers (``CallSlots``),
  and a 429 is transient: the delivery backs off. ``X-API-CREDITS-REMAINING`` is kept for a
  metric.
- **Errors** sort three ways, as for Moodle: the router's set-up (a revoked refresh token, a
  wrong client, a missing scope or module) pauses the destination; bad data fails one record;
  anything else may pass and is retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from event_router.deliver import transport
from event_router.deliver.transport import Answer
from event_router.errors import DeliveryError

# The accounts server of each data centre (the ``ZohoDataCentre`` parameter).
ACCOUNTS_SERVERS = {
    "com": "https://accounts.zoho.com",
    "eu": "https://accounts.zoho.eu",
    "in": "https://accounts.zoho.in",
    "com.au": "https://accounts.zoho.com.au",
    "jp": "https://accounts.zoho.jp",
    "com.cn": "https://accounts.zoho.com.cn",
    "ca": "https://accounts.zohocloud.ca",
    "sa": "https://accounts.zoho.sa",
}
API = "/crm/v7"
MAX_RECORDS = 100  # per upsert, update or get by ids
REFRESH_MARGIN_SECONDS = 300  # refresh this long before the access token expires
# The OAuth scopes the router needs, and no more (docs/connect-zoho.md).
SCOPES = (
    "ZohoCRM.modules.custom.READ",  # fetch the records an ids-only notification names
    "ZohoCRM.modules.custom.CREATE",  # upsert BTEC_Grades
    "ZohoCRM.modules.custom.UPDATE",  # upsert, and write Moodle ids to BTEC_Students
    "ZohoCRM.users.READ",  # who the router is (users?type=CurrentUser), to recognise its own changes
    "ZohoCRM.notifications.ALL",  # register and renew the watch channel
)

Kind = Literal["configuration", "data", "transient"]

# The API's error codes → what they mean for a delivery. A code not listed is about the data when
# Zoho answers 4xx, transient otherwise.
_ERRORS: dict[str, Kind] = {
    "OAUTH_SCOPE_MISMATCH": "configuration",
    "NO_PERMISSION": "configuration",
    "INVALID_MODULE": "configuration",
    "INVALID_URL_PATTERN": "configuration",
    "AUTHENTICATION_FAILURE": "configuration",
    "INVALID_TOKEN": "configuration",  # after a refresh and a retry
    "FEATURE_NOT_SUPPORTED": "configuration",
    "TOO_MANY_REQUESTS": "transient",
    "INTERNAL_ERROR": "transient",
}
# The accounts server's errors on a refresh.
_OAUTH_ERRORS: dict[str, Kind] = {
    "invalid_code": "configuration",  # the refresh token was revoked or never valid
    "invalid_client": "configuration",
    "invalid_client_secret": "configuration",
    "unauthorized_client": "configuration",
    "Access Denied": "transient",  # more than 10 access tokens in 10 minutes
}


class ZohoError(DeliveryError):
    """Zoho (or the way to it) refused a call; ``kind`` says what a delivery should do."""

    def __init__(self, kind: Kind, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.kind: Kind = kind
        self.code = code


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


@dataclass(frozen=True)
class AccessToken:
    token: str
    api_domain: str
    expires_at: float  # epoch seconds

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_MARGIN_SECONDS


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
        return transport.send(method, url, body, headers, timeout)
    except transport.Unreachable as error:
        raise ZohoError("transient", "unreachable", str(error)) from None


class ZohoClient:
    """Calls one Zoho CRM organisation; counts its calls and remembers the credits left."""

    def __init__(
        self,
        accounts_url: str,
        credentials: Callable[[], Credentials],
        tokens: TokenStore,
        slots: CallSlots,
        *,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._accounts_url = accounts_url.rstrip("/")
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

    def watch(self, method: Literal["POST", "PATCH"], channel: dict[str, Any]) -> list[Any]:
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
        with self._slots.slot():
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

    def _token(self, rejected: AccessToken | None = None) -> AccessToken:
        """The shared access token; refreshed (by one container at a time) when it is about to
        expire or Zoho has just refused it."""
        current = self._tokens.current()
        if current is not None and current.fresh(self._clock()) and current != rejected:
            return current
        with self._tokens.refreshing():
            current = self._tokens.current()  # another container may have refreshed it meanwhile
            if current is not None and current.fresh(self._clock()) and current != rejected:
                return current
            token = self._refresh()
            self._tokens.save(token)
            return token

    def _refresh(self) -> AccessToken:
        credentials = self._credentials()
        query = urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "refresh_token": credentials.refresh_token,
            }
        )
        self.refreshes += 1
        answer = send("POST", f"{self._accounts_url}/oauth/v2/token?{query}", b"", {}, self._timeout)
        if answer.status >= 500:
            raise ZohoError("transient", f"accounts{answer.status}", "Zoho's accounts server is unwell")
        try:
            document = answer.json() or {}
        except ValueError:
            raise ZohoError("transient", "notjson", "the accounts server's answer is not JSON") from None
        if "access_token" in document:
            lifetime = float(document.get("expires_in", 3600))
            return AccessToken(str(document["access_token"]), str(document["api_domain"]), self._clock() + lifetime)
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
    kind = _ERRORS.get(code, "data")
    try:
        message = str((answer.json() or {}).get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    return ZohoError(kind, code, message)


def record_problem(result: Mapping[str, Any]) -> str | None:
    """None for a record Zoho took; otherwise what it said about it (code, message, field)."""
    if str(result.get("status", "")).lower() == "success" or result.get("code") == "SUCCESS":
        return None
    details = result.get("details") or {}
    field = details.get("api_name") if isinstance(details, Mapping) else None
    return f"{result.get('code', 'ERROR')}: {result.get('message', '')}" + (f" ({field})" if field else "")


def batches(items: list[Any], size: int = MAX_RECORDS) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
