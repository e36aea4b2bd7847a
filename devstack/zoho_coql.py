"""Zoho's bulk reads as the stand-in answers them: a COQL ``select`` (as much of COQL as the router
sends) and the report of failed workflow webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.zoho_limits import error

# The COQL the stand-in understands: what the router sends (Zoho's grammar is wider).
COQL = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<module>\w+)\s+where\s+(?P<where>.+?)"
    r"\s+order\s+by\s+id(?:\s+asc)?\s+limit\s+(?P<limit>\d+)\s*$",
    flags=re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(r"^\(?\s*(\w+)\s*(>=|>|=|is not null)\s*(?:'([^']*)'|(\d+))?\s*\)?$", flags=re.IGNORECASE)


def coql(records: dict[str, dict[str, dict[str, Any]]], body: Any) -> tuple[int, Any]:
    """A COQL query's answer: at most 2,000 rows and 50 fields, ``WHERE`` required, ``ORDER BY id``."""
    text = body.get("select_query") if isinstance(body, dict) else None
    found = COQL.match(text or "")
    if found is None:
        return 400, error("SYNTAX_ERROR", "error in the query", clause="select_query")
    module, limit = found.group("module"), int(found.group("limit"))
    if module not in records:
        return 400, error("INVALID_QUERY", "invalid query formed", reason="the module does not exist")
    if limit > 2000:
        return 400, error("LIMIT_EXCEEDED", "limit exceeded", limit=2000)
    fields = [f.strip() for f in found.group("fields").split(",")]
    if len(fields) > 50:
        return 400, error("LIMIT_EXCEEDED", "more than 50 fields in the select column", limit=50)
    conditions = []
    for part in re.split(r"\s+and\s+", found.group("where").strip().strip("()"), flags=re.IGNORECASE):
        condition = CONDITION.match(part.strip())
        if condition is None:
            return 400, error("SYNTAX_ERROR", "error in the where clause", clause=part)
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

    rows = sorted((r for r in records[module].values() if matches(r)), key=lambda r: int(r["id"]))
    page = [{k: r.get(k) for k in fields if k in r} | {"id": r["id"]} for r in rows[:limit]]
    if not page:
        return 204, None
    return 200, {"data": page, "info": {"count": len(page), "more_records": len(rows) > limit}}


def webhook_failures_page(failures: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any]:
    """A page (at most 200) of the workflow webhooks Zoho failed to deliver in the last 30 days."""
    per_page, page = int(query.get("per_page", "200")), int(query.get("page", "1"))
    if per_page > 200 or per_page < 1 or page < 1:
        return 400, error("INVALID_DATA", "invalid data", param_name="per_page")
    since = datetime.now(UTC) - timedelta(days=30)
    found = [
        f
        for f in failures
        if datetime.fromisoformat(f["failed_time"]) >= since
        and (not query.get("module") or f["entity_details"]["module"]["api_name"] == query["module"])
    ]
    chunk = found[(page - 1) * per_page : page * per_page]
    if not chunk:
        return 204, None
    info = {"page": page, "per_page": per_page, "count": len(chunk), "more_records": len(found) > page * per_page}
    return 200, {"webhook_failures": chunk, "info": info}
