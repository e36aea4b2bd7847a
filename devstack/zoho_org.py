"""One Zoho CRM organisation as the stand-in keeps it (``zoho_standin.py`` serves it): its records, its
OAuth client and tokens, its limits, and what an administrator does through Zoho's own pages.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from devstack.zoho_coql import coql, webhook_failures_page
from devstack.zoho_limits import (
    API_PREFIX,
    API_USER,
    CLIENT_ID,
    CLIENT_SECRET,
    MANDATORY,
    MODULES,
    PERSON,
    REFRESH_TOKEN,
    TOKEN_CAP,
    TOKEN_WINDOW,
    UNIQUE,
    cost_of,
    error,
    now,
    scope_of,
)
from devstack.zoho_watch import Watching


@dataclass
class Org(Watching):
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
                    "failed_time": now(),
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
                return 401, error("INVALID_TOKEN", "invalid oauth token")
            needed = scope_of(method, path)
            if needed and not ({needed, needed.rsplit(".", 1)[0] + ".ALL"} & self.scopes):
                self.refused["OAUTH_SCOPE_MISMATCH"] += 1
                return 401, error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")
            if self._active >= self.max_concurrent or self.credits_used >= self.credits:
                self.refused["TOO_MANY_REQUESTS"] += 1
                return 429, error("TOO_MANY_REQUESTS", "The API limit or the concurrency limit has been exceeded")
            self._active += 1
            self.peak_concurrent = max(self.peak_concurrent, self._active)
            self.credits_used += cost_of(method, body)
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
                return 400, error("INVALID_DATA", "invalid data", param_name="type")
            return 200, {"users": [{"id": API_USER, "full_name": "Event Router", "email": "router@example.invalid"}]}
        if parts[:2] == ["actions", "watch"]:
            return self._watch(method, query, body)
        if parts == ["coql"] and method == "POST":
            return self._coql(body)
        if parts == ["settings", "automation", "webhook_failures"] and method == "GET":
            return self._webhook_failures(query)
        module = parts[0]
        if module not in self.records:
            return 400, error("INVALID_MODULE", "the module name given seems to be invalid")
        if len(parts) == 1 and method == "GET":
            return self._get(module, query)
        if parts[1:] == ["search"] and method == "GET":
            return self._search(module, query)
        if method in ("POST", "PUT") and module in self.denied:
            return 403, error("NO_PERMISSION", "permission denied", permissions=[f"Crm_Implied_Edit_{module}"])
        if parts[1:] == ["upsert"] and method == "POST":
            return self._write(module, body, upsert=True)
        if len(parts) == 1 and method == "PUT":
            return self._write(module, body, upsert=False)
        return 400, error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    def _get(self, module: str, query: dict[str, str]) -> tuple[int, Any]:
        if not query.get("fields"):
            return 400, error("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param_name="fields")
        ids = [i for i in query.get("ids", "").split(",") if i]
        if len(ids) > 100:
            return 400, error("LIMIT_EXCEEDED", "the number of ids exceeds 100", param_name="ids")
        wanted = query["fields"].split(",")
        found = [self._with(self.records[module][i], wanted) for i in ids if i in self.records[module]]
        if not found:
            return 204, None
        return 200, {"data": found, "info": {"count": len(found), "more_records": False}}

    def _coql(self, body: Any) -> tuple[int, Any]:
        return coql(self.records, body)

    def _webhook_failures(self, query: dict[str, str]) -> tuple[int, Any]:
        return webhook_failures_page(self.webhook_failures, query)

    def _search(self, module: str, query: dict[str, str]) -> tuple[int, Any]:
        criteria = query.get("criteria", "").strip()
        parts = criteria[1:-1].split(":", 2) if criteria.startswith("(") and criteria.endswith(")") else []
        if len(parts) != 3 or parts[1] != "equals" or not parts[0]:
            return 400, error("INVALID_QUERY", "invalid query formed", param_name="criteria")
        name, _, value = parts
        found = [dict(r) for r in self.records[module].values() if str(r.get(name)) == value]
        return (200, {"data": found, "info": {"count": len(found)}}) if found else (204, None)

    def _write(self, module: str, body: Any, *, upsert: bool) -> tuple[int, Any]:
        records = body.get("data") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return 400, error("INVALID_DATA", "invalid data", api_name="data")
        if len(records) > 100:
            return 400, error("LIMIT_EXCEEDED", "the number of records exceeds 100", api_name="data")
        check = list(body.get("duplicate_check_fields") or UNIQUE.get(module, ()))
        if upsert and any(f not in UNIQUE.get(module, ()) for f in check):
            return 400, error(
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
            return error("INVALID_DATA", "invalid data"), None
        stored = self.records[module]
        existing = None
        if upsert:
            for name in check:
                if record.get(name) not in (None, ""):
                    existing = next((r for r in stored.values() if r.get(name) == record[name]), None)
                    if existing:
                        break
        elif "id" not in record or str(record["id"]) not in stored:
            return error("INVALID_DATA", "the id given seems to be invalid", api_name="id"), None
        else:
            existing = stored[str(record["id"])]
        if existing is not None and existing["id"] in self.locked:
            return error("RECORD_LOCKED", "cannot update a record that is locked", id=existing["id"]), None
        fields = {k: v for k, v in record.items() if k != "id"}
        for name, value in fields.items():
            if isinstance(value, dict) and "id" in value and not self._exists(str(value["id"])):
                return error("INVALID_DATA", "invalid data", api_name=name, expected_data_type="lookup"), None
        for name in UNIQUE.get(module, ()):
            clash = next(
                (r for r in stored.values() if fields.get(name) not in (None, "") and r.get(name) == fields.get(name)),
                None,
            )
            if clash is not None and clash is not existing:
                return error("DUPLICATE_DATA", "duplicate data", api_name=name, id=clash["id"]), None
        if existing is None:
            missing = [m for m in MANDATORY.get(module, ()) if fields.get(m) in (None, "")]
            if missing:
                return error("MANDATORY_NOT_FOUND", "required field not found", api_name=missing[0]), None
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
            "Modified_Time": now(),
            "Modified_By": {"id": by, "name": "Event Router" if by == API_USER else "A person"},
        }

    @staticmethod
    def _with(record: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k in wanted or k == "id"}
