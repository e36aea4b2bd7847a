"""A stand-in for Zoho CRM (its accounts server and REST API v8), for the local stack and the tests.
It keeps to what Zoho's developer documentation says, limits included:

- **OAuth**: ``POST /oauth/v2/token`` with ``grant_type=refresh_token``, ``client_id``,
  ``client_secret`` and ``refresh_token`` (in the form body, or in the query as Zoho's examples
  show; ``secrets_in_url`` counts the latter) gives an access token that expires
  (``token_lifetime``, an hour by default) and names the ``api_domain``; at most 10 access
  tokens per refresh token in 10 minutes, then
  ``{"error": "Access Denied"}``; a revoked refresh token answers ``{"error": "invalid_code"}``, a
  wrong client ``{"error": "invalid_client"}``. An expired or unknown access token is a 401
  ``INVALID_TOKEN``.
- **Limits**: more than ``max_concurrent`` calls at once, or past the day's ``credits``, answer 429
  ``TOO_MANY_REQUESTS`` with no ``Retry-After``; every answer carries ``X-API-CREDITS-REMAINING``.
  A call costs one credit, a write one credit per ten records.
- **Records**: get by ``ids`` (``fields`` required; 204 when none exist), search by
  ``criteria=(Field:equals:value)``, update by id, and upsert up to 100 records found by
  ``duplicate_check_fields`` (unique fields only), with per-record results (``SUCCESS``,
  ``DUPLICATE_DATA``, ``INVALID_DATA``, ``MANDATORY_NOT_FOUND``, ``RECORD_LOCKED`` for a record in
  ``locked``, ``AUTHORIZATION_FAILED``), each naming its field in ``details.api_name``: HTTP 200
  when all succeed, 207 when some do, 400 when none do. A profile without the module's permission
  (``denied``) is refused the whole call, 403 ``NO_PERMISSION``. A write without ``trigger: []``
  runs the module's workflow rules (counted in ``workflow_runs``); every write sets
  ``Modified_By`` and ``Modified_Time``.
- **Reading in bulk**: ``POST /coql`` answers a ``select`` of at most 2,000 rows and 50 fields, with
  ``WHERE`` (required) and ``ORDER BY id``, as much of COQL as the router uses; a call costs one
  to three credits by its ``LIMIT``. ``GET /settings/automation/webhook_failures`` lists, 200 a
  page, the workflow webhooks Zoho failed to deliver in the last 30 days (``change_silently``
  makes one).
- **Notifications**: ``/actions/watch`` registers (POST), renews (PATCH) and removes (DELETE)
  channels; a ``token`` over 50 characters is ``INVALID_DATA`` (``maximum_length: 50``); an expiry
  beyond a week, or none, silently becomes an hour; the expiry given is in the answer. On every
  change of a watched module the channel's ``notify_url`` is called, after the change, with the
  ids only.

Tests and the local stack reach its state directly (``org``), as a Zoho administrator would
through Zoho's own pages: change a record as a person, revoke a token, set the limits.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "dev-zoho-client-id-NOT-FOR-PRODUCTION"  # fake, published on purpose
CLIENT_SECRET = "dev-zoho-client-secret-NOT-FOR-PRODUCTION"  # fake, published on purpose
REFRESH_TOKEN = "dev-zoho-refresh-token-NOT-FOR-PRODUCTION"  # fake, published on purpose
API_USER = "5725767000000099001"  # the user the router's client acts as
PERSON = "5725767000000099002"  # a college administrator, changing records by hand
MODULES = ("BTEC_Students", "BTEC_Enrollments", "BTEC_Grades", "BTEC_Payments", "BTEC_Classes")
MANDATORY = {module: ("Name",) for module in MODULES}
UNIQUE = {"BTEC_Grades": ("Moodle_Grade_Key",), "BTEC_Students": ("Student_ID_Number",)}
MAX_CHANNEL = timedelta(days=7)
DEFAULT_CHANNEL = timedelta(hours=1)  # what Zoho gives a channel asked for longer than a week, or for no expiry
MAX_CHANNEL_TOKEN = 50
API_PREFIX = "/crm/v8/"
TOKEN_CAP = 10  # access tokens per refresh token ...
TOKEN_WINDOW = 600.0  # ... in this many seconds


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scope(method: str, path: str) -> str | None:
    """The OAuth scope a call needs (Zoho's ``ZohoCRM.<group>.<operation>``)."""
    parts = path.removeprefix(API_PREFIX).split("/")
    if parts[0] == "users":
        return "ZohoCRM.users.READ"
    if parts[0] == "coql":
        return "ZohoCRM.coql.READ"
    if parts[:2] == ["settings", "automation"]:
        return "ZohoCRM.settings.automation_actions.READ"
    if parts[0] == "actions":
        return "ZohoCRM.notifications." + {"GET": "READ", "POST": "CREATE", "PATCH": "UPDATE"}.get(method, "DELETE")
    if parts[-1] == "upsert":
        return "ZohoCRM.modules.custom.CREATE"  # and UPDATE, checked as the write happens
    return "ZohoCRM.modules.custom." + {"GET": "READ", "PUT": "UPDATE", "POST": "CREATE"}.get(method, "DELETE")


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def _cost(method: str, body: Any) -> int:
    """The credits a call costs: one; a write one per ten records; a COQL query one to three by its
    ``LIMIT`` (Zoho's API limits and COQL pages)."""
    if isinstance(body, dict) and isinstance(body.get("select_query"), str):
        found = re.search(r"\blimit\s+(\d+)", body["select_query"], flags=re.IGNORECASE)
        limit = int(found.group(1)) if found else 200
        return 1 if limit <= 200 else 2 if limit <= 1000 else 3
    records = body.get("data") if method in ("POST", "PUT") and isinstance(body, dict) else None
    return max(1, -(-len(records) // 10)) if isinstance(records, list) else 1


# The COQL the stand-in understands: what the router sends (Zoho's grammar is wider).
_COQL = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<module>\w+)\s+where\s+(?P<where>.+?)"
    r"\s+order\s+by\s+id(?:\s+asc)?\s+limit\s+(?P<limit>\d+)\s*$",
    flags=re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(r"^\(?\s*(\w+)\s*(>=|>|=|is not null)\s*(?:'([^']*)'|(\d+))?\s*\)?$", flags=re.IGNORECASE)


@dataclass
class Org:
    """One Zoho CRM organisation: its records, OAuth client, limits and watch channels."""

    max_concurrent: int = 5
    credits: int = 5000
    token_lifetime: float = 3600.0
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {m: {} for m in MODULES})
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # "METHOD /path" → calls answered
    credits_used: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # 429s and 401s given
    peak_concurrent: int = 0
    workflow_runs: int = 0
    notifications: list[dict[str, Any]] = field(default_factory=list)  # callbacks sent, with their answer
    revoked: bool = False
    api_url: str = ""
    secrets_in_url: int = 0  # token requests that carried the client secret or refresh token in the URL
    locked: set[str] = field(default_factory=set)  # record ids in an approval or blueprint: RECORD_LOCKED
    webhook_failures: list[dict[str, Any]] = field(default_factory=list)  # Zoho's report of webhooks it failed
    denied: set[str] = field(default_factory=set)  # modules the router's profile may not write: NO_PERMISSION
    # What the client was granted when its refresh token was made; a call outside them is refused.
    scopes: frozenset[str] = frozenset(
        {
            "ZohoCRM.modules.custom.READ",
            "ZohoCRM.modules.custom.CREATE",
            "ZohoCRM.modules.custom.UPDATE",
            "ZohoCRM.users.READ",
            "ZohoCRM.notifications.ALL",
            "ZohoCRM.coql.READ",
            "ZohoCRM.settings.automation_actions.READ",
        }
    )

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(5725767000001000001)
        self._tokens: dict[str, float] = {}  # access token → expiry (epoch)
        self._issued: deque[float] = deque()  # when each recent access token was issued
        self._active = 0

    # ------------------------------------------------------------ what an administrator does

    def create(self, module: str, fields: dict[str, Any], by: str = PERSON) -> str:
        """A record made by hand (or by Zoho itself): notifies, as any change does."""
        with self.lock:
            record_id = str(next(self._ids))
            self.records[module][record_id] = {**fields, "id": record_id, **self._stamp(by)}
        self._notify(module, "insert", [record_id], list(fields))
        return record_id

    def change(self, module: str, record_id: str, fields: dict[str, Any], by: str = PERSON) -> None:
        with self.lock:
            self.records[module][record_id].update({**fields, **self._stamp(by)})
        self._notify(module, "update", [record_id], list(fields))

    def delete(self, module: str, record_id: str) -> None:
        with self.lock:
            del self.records[module][record_id]
        self._notify(module, "delete", [record_id], [])

    def revoke(self) -> None:
        """The refresh token is revoked (an administrator removed the client's connection)."""
        with self.lock:
            self.revoked = True
            self._tokens.clear()

    def restore(self) -> None:
        with self.lock:
            self.revoked = False

    def expire_tokens(self) -> None:
        with self.lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def change_silently(
        self, module: str, record_id: str, fields: dict[str, Any], webhook: str = "To the router"
    ) -> None:
        """A change whose workflow webhook Zoho failed to deliver: no callback, one entry in Zoho's
        webhook-failures report (Zoho does not send it again)."""
        with self.lock:
            self.records[module][record_id].update({**fields, **self._stamp(PERSON)})
            self.webhook_failures.append(
                {
                    "id": str(next(self._ids)),
                    "webhook": {"name": webhook, "id": "5725767000000999001"},
                    "entity_details": {
                        "name": str(self.records[module][record_id].get("Name", "")),
                        "id": record_id,
                        "module": {"api_name": module},
                    },
                    "failure_reason": "The server did not answer in time",
                    "failed_time": _now(),
                }
            )

    def find(self, module: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.records[module].values() if r.get(field_name) == value]

    # ------------------------------------------------------------ OAuth

    def token(self, query: dict[str, str], form: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if {"client_secret", "refresh_token"} & set(query):
                self.secrets_in_url += 1
            query = {**query, **(form or {})}
            if query.get("grant_type") != "refresh_token":
                return 200, {"error": "unsupported_grant_type"}
            if query.get("client_id") != CLIENT_ID or query.get("client_secret") != CLIENT_SECRET:
                return 200, {"error": "invalid_client"}
            if query.get("refresh_token") != REFRESH_TOKEN or self.revoked:
                return 200, {"error": "invalid_code"}
            now = time.time()
            while self._issued and self._issued[0] < now - TOKEN_WINDOW:
                self._issued.popleft()
            if len(self._issued) >= TOKEN_CAP:
                self.refused["token_cap"] += 1
                return 400, {
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                }
            self._issued.append(now)
            access = f"1000.{next(self._ids):x}.standin"
            self._tokens[access] = now + self.token_lifetime
            return 200, {
                "access_token": access,
                "api_domain": self.api_url,
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime),
            }

    @property
    def tokens_issued(self) -> int:
        return len(self._issued)

    # ------------------------------------------------------------ the API

    def api(self, method: str, path: str, query: dict[str, str], body: Any, auth: str) -> tuple[int, Any]:
        """One API call: authenticated, within the limits, then answered."""
        with self.lock:
            token = auth.removeprefix("Zoho-oauthtoken ").strip()
            if self._tokens.get(token, 0.0) <= time.time():
                self.refused["INVALID_TOKEN"] += 1
                return 401, _error("INVALID_TOKEN", "invalid oauth token")
            needed = _scope(method, path)
            if needed and not ({needed, needed.rsplit(".", 1)[0] + ".ALL"} & self.scopes):
                self.refused["OAUTH_SCOPE_MISMATCH"] += 1
                return 401, _error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")
            if self._active >= self.max_concurrent or self.credits_used >= self.credits:
                self.refused["TOO_MANY_REQUESTS"] += 1
                return 429, _error("TOO_MANY_REQUESTS", "The API limit or the concurrency limit has been exceeded")
            self._active += 1
            self.peak_concurrent = max(self.peak_concurrent, self._active)
            self.credits_used += _cost(method, body)
        try:
            time.sleep(0.005)  # an API call takes a while: concurrency is real
            with self.lock:
                self.calls[f"{method} {path}"] += 1
                return self._answer(method, path, query, body)
        finally:
            with self.lock:
                self._active -= 1

    @property
    def credits_remaining(self) -> int:
        return max(0, self.credits - self.credits_used)

    def _answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.removeprefix(API_PREFIX).split("/")
        if parts == ["users"] and method == "GET":
            if query.get("type") != "CurrentUser":
                return 400, _error("INVALID_DATA", "invalid data", param_name="type")
            return 200, {"users": [{"id": API_USER, "full_name": "Event Router", "email": "router@example.invalid"}]}
        if parts[:2] == ["actions", "watch"]:
            return self._watch(method, query, body)
        if parts == ["coql"] and method == "POST":
            return self._coql(body)
        if parts == ["settings", "automation", "webhook_failures"] and method == "GET":
            return self._webhook_failures(query)
        module = parts[0]
        if module not in self.records:
            return 400, _error("INVALID_MODULE", "the module name given seems to be invalid")
        if len(parts) == 1 and method == "GET":
            return self._get(module, query)
        if parts[1:] == ["search"] and method == "GET":
            return self._search(module, query)
        if method in ("POST", "PUT") and module in self.denied:
            return 403, _error("NO_PERMISSION", "permission denied", permissions=[f"Crm_Implied_Edit_{module}"])
        if parts[1:] == ["upsert"] and method == "POST":
            return self._write(module, body, upsert=True)
        if len(parts) == 1 and method == "PUT":
            return self._write(module, body, upsert=False)
        return 400, _error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    def _get(self, module: str, query: dict[str, str]) -> tuple[int, Any]:
        if not query.get("fields"):
            return 400, _error(
                "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param_name="fields"
            )
        ids = [i for i in query.get("ids", "").split(",") if i]
        if len(ids) > 100:
            return 400, _error("LIMIT_EXCEEDED", "the number of ids exceeds 100", param_name="ids")
        wanted = query["fields"].split(",")
        found = [self._with(self.records[module][i], wanted) for i in ids if i in self.records[module]]
        if not found:
            return 204, None
        return 200, {"data": found, "info": {"count": len(found), "more_records": False}}

    def _coql(self, body: Any) -> tuple[int, Any]:
        text = body.get("select_query") if isinstance(body, dict) else None
        found = _COQL.match(text or "")
        if found is None:
            return 400, _error("SYNTAX_ERROR", "error in the query", clause="select_query")
        module, limit = found.group("module"), int(found.group("limit"))
        if module not in self.records:
            return 400, _error("INVALID_QUERY", "invalid query formed", reason="the module does not exist")
        if limit > 2000:
            return 400, _error("LIMIT_EXCEEDED", "limit exceeded", limit=2000)
        fields = [f.strip() for f in found.group("fields").split(",")]
        if len(fields) > 50:
            return 400, _error("LIMIT_EXCEEDED", "more than 50 fields in the select column", limit=50)
        conditions = []
        for part in re.split(r"\s+and\s+", found.group("where").strip().strip("()"), flags=re.IGNORECASE):
            condition = _CONDITION.match(part.strip())
            if condition is None:
                return 400, _error("SYNTAX_ERROR", "error in the where clause", clause=part)
            conditions.append(condition.groups())

        def matches(record: dict[str, Any]) -> bool:
            for name, operator, text_value, number in conditions:
                value = record.get(name)
                if operator.lower() == "is not null":
                    if value in (None, ""):
                        return False
                    continue
                wanted = number if number is not None else text_value
                # Zoho compares ids as numbers, times as times, anything else as text
                as_value: Callable[[Any], Any] = (
                    (lambda v: int(str(v)))
                    if name == "id"
                    else (lambda v: datetime.fromisoformat(str(v)))
                    if name.endswith("_Time")
                    else str
                )
                current, bound = as_value(value), as_value(wanted)
                ok = current > bound if operator == ">" else current >= bound if operator == ">=" else current == bound
                if not ok:
                    return False
            return True

        rows = sorted((r for r in self.records[module].values() if matches(r)), key=lambda r: int(r["id"]))
        page = [{k: r.get(k) for k in fields if k in r} | {"id": r["id"]} for r in rows[:limit]]
        if not page:
            return 204, None
        return 200, {"data": page, "info": {"count": len(page), "more_records": len(rows) > limit}}

    def _webhook_failures(self, query: dict[str, str]) -> tuple[int, Any]:
        per_page, page = int(query.get("per_page", "200")), int(query.get("page", "1"))
        if per_page > 200 or per_page < 1 or page < 1:
            return 400, _error("INVALID_DATA", "invalid data", param_name="per_page")
        since = datetime.now(UTC) - timedelta(days=30)
        found = [
            f
            for f in self.webhook_failures
            if datetime.fromisoformat(f["failed_time"]) >= since
            and (not query.get("module") or f["entity_details"]["module"]["api_name"] == query["module"])
        ]
        chunk = found[(page - 1) * per_page : page * per_page]
        if not chunk:
            return 204, None
        info = {"page": page, "per_page": per_page, "count": len(chunk), "more_records": len(found) > page * per_page}
        return 200, {"webhook_failures": chunk, "info": info}

    def _search(self, module: str, query: dict[str, str]) -> tuple[int, Any]:
        criteria = query.get("criteria", "").strip()
        parts = criteria[1:-1].split(":", 2) if criteria.startswith("(") and criteria.endswith(")") else []
        if len(parts) != 3 or parts[1] != "equals" or not parts[0]:
            return 400, _error("INVALID_QUERY", "invalid query formed", param_name="criteria")
        name, _, value = parts
        found = [dict(r) for r in self.records[module].values() if str(r.get(name)) == value]
        return (200, {"data": found, "info": {"count": len(found)}}) if found else (204, None)

    def _write(self, module: str, body: Any, *, upsert: bool) -> tuple[int, Any]:
        records = body.get("data") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return 400, _error("INVALID_DATA", "invalid data", api_name="data")
        if len(records) > 100:
            return 400, _error("LIMIT_EXCEEDED", "the number of records exceeds 100", api_name="data")
        check = list(body.get("duplicate_check_fields") or UNIQUE.get(module, ()))
        if upsert and any(f not in UNIQUE.get(module, ()) for f in check):
            return 400, _error(
                "INVALID_DATA", "the duplicate check field is not unique", api_name="duplicate_check_fields"
            )
        results, changed = [], []
        for record in records:
            result, change = self._write_one(module, record, check, upsert)
            results.append(result)
            if change:
                changed.append(change)
        if body.get("trigger") != []:
            self.workflow_runs += len(changed)  # without trigger: [], Zoho runs the module's workflows
        for operation in ("insert", "update"):
            ids = [i for o, i, _ in changed if o == operation]
            if ids:
                fields = sorted({f for o, _, fs in changed if o == operation for f in fs})
                threading.Thread(target=self._notify, args=(module, operation, ids, fields), daemon=True).start()
        succeeded = sum(r["status"] == "success" for r in results)
        status = 200 if succeeded == len(results) else 207 if succeeded else 400
        return status, {"data": results}

    def _write_one(
        self, module: str, record: Any, check: list[str], upsert: bool
    ) -> tuple[dict[str, Any], tuple[str, str, list[str]] | None]:
        if not isinstance(record, dict):
            return _error("INVALID_DATA", "invalid data"), None
        stored = self.records[module]
        existing = None
        if upsert:
            for name in check:
                if record.get(name) not in (None, ""):
                    existing = next((r for r in stored.values() if r.get(name) == record[name]), None)
                    if existing:
                        break
        elif "id" not in record or str(record["id"]) not in stored:
            return _error("INVALID_DATA", "the id given seems to be invalid", api_name="id"), None
        else:
            existing = stored[str(record["id"])]
        if existing is not None and existing["id"] in self.locked:
            return _error("RECORD_LOCKED", "cannot update a record that is locked", id=existing["id"]), None
        fields = {k: v for k, v in record.items() if k != "id"}
        for name, value in fields.items():
            if isinstance(value, dict) and "id" in value and not self._exists(str(value["id"])):
                return _error("INVALID_DATA", "invalid data", api_name=name, expected_data_type="lookup"), None
        for name in UNIQUE.get(module, ()):
            clash = next(
                (r for r in stored.values() if fields.get(name) not in (None, "") and r.get(name) == fields.get(name)),
                None,
            )
            if clash is not None and clash is not existing:
                return _error("DUPLICATE_DATA", "duplicate data", api_name=name, id=clash["id"]), None
        if existing is None:
            missing = [m for m in MANDATORY.get(module, ()) if fields.get(m) in (None, "")]
            if missing:
                return _error("MANDATORY_NOT_FOUND", "required field not found", api_name=missing[0]), None
            record_id = str(next(self._ids))
            stored[record_id] = {**fields, "id": record_id, **self._stamp(API_USER)}
            action, message = "insert", "record added"
        else:
            existing.update({**fields, **self._stamp(API_USER)})
            record_id, action, message = existing["id"], "update", "record updated"
        details = {
            "id": record_id,
            "Modified_Time": stored[record_id]["Modified_Time"],
            "Modified_By": {"id": API_USER, "name": "Event Router"},
        }
        result: dict[str, Any] = {"code": "SUCCESS", "details": details, "message": message, "status": "success"}
        if upsert:
            result["action"] = action
            result["duplicate_field"] = next((n for n in check if existing is not None and fields.get(n)), None)
        return result, (action, record_id, list(fields))

    def _exists(self, record_id: str) -> bool:
        return any(record_id in records for records in self.records.values())

    @staticmethod
    def _stamp(by: str) -> dict[str, Any]:
        return {
            "Modified_Time": _now(),
            "Modified_By": {"id": by, "name": "Event Router" if by == API_USER else "A person"},
        }

    @staticmethod
    def _with(record: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k in wanted or k == "id"}

    # ------------------------------------------------------------ notifications

    def _watch(self, method: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "DELETE":
            for channel_id in query.get("channel_ids", "").split(","):
                self.channels.pop(channel_id, None)
            return 200, {"watch": [{"code": "SUCCESS", "status": "success", "message": "unsubscribed"}]}
        if method not in ("POST", "PATCH") or not isinstance(body, dict) or not isinstance(body.get("watch"), list):
            return 400, _error("INVALID_DATA", "invalid data", api_name="watch")
        answers = []
        for channel in body["watch"]:
            answers.append(self._subscribe(method, channel))
        return 200, {"watch": answers}

    def _subscribe(self, method: str, channel: Any) -> dict[str, Any]:
        try:
            channel_id = str(int(channel["channel_id"]))
            events = [str(e) for e in channel["events"]]
            notify_url = str(channel["notify_url"])
            asked = channel.get("channel_expiry")
            expiry = datetime.fromisoformat(str(asked)) if asked else None
        except (KeyError, TypeError, ValueError):
            return _error("INVALID_DATA", "invalid data", api_name="watch")
        token = channel.get("token")
        if token is not None and len(str(token)) > MAX_CHANNEL_TOKEN:
            return _error("INVALID_DATA", "invalid data", api_name="token", maximum_length=MAX_CHANNEL_TOKEN)
        now = datetime.now(UTC)
        if expiry is not None and expiry <= now:
            return _error("INVALID_DATA", "the channel expiry is in the past", api_name="channel_expiry")
        if expiry is None or expiry > now + MAX_CHANNEL:
            expiry = (now + DEFAULT_CHANNEL).replace(microsecond=0)  # Zoho's silent fallback
        if method == "PATCH" and channel_id not in self.channels:
            return _error("INVALID_DATA", "the channel is not subscribed", api_name="channel_id")
        unknown = [e for e in events if e.split(".")[0] not in self.records]
        if unknown:
            return _error("INVALID_MODULE", "the module name given seems to be invalid", api_name="events")
        self.channels[channel_id] = {
            "events": events,
            "expiry": expiry,
            "notify_url": notify_url,
            "token": token,
            "notify_on_related_action": channel.get("notify_on_related_action", True),
        }
        details = {
            "events": [
                {"channel_expiry": expiry.isoformat(), "resource_name": e.split(".")[0], "channel_id": channel_id}
                for e in events
            ]
        }
        message = "Successfully subscribed for actions-watch of the given module"
        return {"code": "SUCCESS", "details": details, "message": message, "status": "success"}

    def _notify(self, module: str, operation: str, ids: list[str], fields: list[str]) -> None:
        """Call every live channel watching this module (Zoho calls back after the change)."""
        with self.lock:
            now = datetime.now(UTC)
            targets = [
                (channel_id, c)
                for channel_id, c in self.channels.items()
                if c["expiry"] > now and ({f"{module}.all", f"{module}.{operation}"} & set(c["events"]))
            ]
        for channel_id, channel in targets:
            callback = {
                "server_time": int(time.time() * 1000),
                "query_params": {},
                "module": module,
                "resource_uri": f"{self.api_url}{API_PREFIX}{module}",
                "ids": ids,
                "affected_fields": fields if operation == "update" else [],
                "operation": operation,
                "channel_id": channel_id,
                "token": channel["token"],
            }
            request = urllib.request.Request(  # noqa: S310 - the router's notify URL, on loopback
                channel["notify_url"],
                data=json.dumps(callback).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0
            with self.lock:
                self.notifications.append({"module": module, "operation": operation, "ids": ids, "status": status})


class _Handler(BaseHTTPRequestHandler):
    server: ZohoStandIn
    protocol_version = "HTTP/1.1"  # Zoho keeps connections alive; every answer carries its length

    def setup(self) -> None:
        super().setup()
        with self.server.org.lock:
            self.server.connections += 1

    def _respond(self, status: int, document: Any) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-API-CREDITS-REMAINING", str(self.server.org.credits_remaining))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path == "/oauth/v2/token" and self.command == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode(errors="replace")).items()}
            self._respond(*self.server.org.token(query, form))
            return
        if url.path.startswith("/standin/"):  # a person's change in Zoho's web pages, for the local stack
            self._respond(*self._person(url.path.removeprefix("/standin/").split("/"), raw))
            return
        if not url.path.startswith(API_PREFIX):
            self._respond(
                404, _error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
            )
            return
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self._respond(400, _error("INVALID_DATA", "body is not valid JSON"))
            return
        auth = self.headers.get("Authorization", "")
        self._respond(*self.server.org.api(self.command, url.path, query, body, auth))

    def _person(self, parts: list[str], raw: bytes) -> tuple[int, Any]:
        """``POST /standin/<module>`` creates a record, ``PATCH /standin/<module>/<id>`` changes one,
        as a person would in Zoho's pages: not part of Zoho's API, and Zoho notifies as for any change."""
        org = self.server.org
        try:
            fields = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return 400, _error("INVALID_DATA", "body is not valid JSON")
        if not parts or parts[0] not in org.records or not isinstance(fields, dict):
            return 400, _error("INVALID_MODULE", "the module name given seems to be invalid")
        if self.command == "POST" and len(parts) == 1:
            return 201, {"id": org.create(parts[0], fields)}
        if self.command == "PATCH" and len(parts) == 2 and parts[1] in org.records[parts[0]]:
            org.change(parts[0], parts[1], fields)
            return 200, {"id": parts[1]}
        return 404, _error("INVALID_URL_PATTERN", "no such record")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return None


class ZohoStandIn(ThreadingHTTPServer):
    """The stand-in on a loopback port: one URL for the accounts server and the API."""

    daemon_threads = True

    def __init__(self, org: Org | None = None, port: int = 0) -> None:
        self.org = org or Org()
        self.connections = 0  # TCP connections accepted: a client that keeps them alive opens few
        super().__init__(("127.0.0.1", port), _Handler)
        self.org.api_url = self.url
        self._thread = threading.Thread(target=self.serve_forever, name="zoho-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}

    def start(self) -> ZohoStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
