"""What Zoho CRM documents and the stand-in keeps to: its limits, OAuth scopes, credit costs and the shape
of its errors; and the stand-in's fake development credentials (published on purpose).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def scope_of(method: str, path: str) -> str | None:
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


def error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def cost_of(method: str, body: Any) -> int:
    """The credits a call costs: one; a write one per ten records; a COQL query one to three by its
    ``LIMIT`` (Zoho's API limits and COQL pages)."""
    if isinstance(body, dict) and isinstance(body.get("select_query"), str):
        found = re.search(r"\blimit\s+(\d+)", body["select_query"], flags=re.IGNORECASE)
        limit = int(found.group(1)) if found else 200
        return 1 if limit <= 200 else 2 if limit <= 1000 else 3
    records = body.get("data") if method in ("POST", "PUT") and isinstance(body, dict) else None
    return max(1, -(-len(records) // 10)) if isinstance(records, list) else 1
