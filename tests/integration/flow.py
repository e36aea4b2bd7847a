"""What the processor tests share: webhooks built for one record, and reading what Postgres holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from devstack.samples import Sample, moodle_event, zoho_webhook
from event_router.contract import WEBHOOK_ROUTES

T1, T2, T3 = "2026-11-25T09:00:00+00:00", "2026-11-25T10:00:00+00:00", "2026-11-25T11:00:00+00:00"
STUDENT = "5725767000000412001"
FORM = "application/x-www-form-urlencoded"
CLASS = "5725767000000520011"
moodle = moodle_event  # a signed Moodle webhook: moodle("grade", "user_graded", timecreated, ...)


def zoho(segment: str, record_id: str, operation: str, modified: str, notification: str = "", **fields: Any) -> Sample:
    """A signed Zoho full-record webhook for one record."""
    module = WEBHOOK_ROUTES[f"POST /api/v1/events/zoho/{segment}"].module
    return zoho_webhook(
        module, record_id, operation=operation, modified=modified, notification_id=notification or None, **fields
    )


def rows(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def log_status(db: Engine) -> dict[str, str]:
    return {r["event_id"]: r["status"] for r in rows(db, "SELECT event_id, status FROM integration_events_log")}


def insert_log_row(db: Engine, event_id: str, status: str, payload: str, age: str = "10 minutes") -> None:
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload, "
                "status, received_at, updated_at) VALUES (:e, 'zoho', 'students', 'update', :e, CAST(:p AS jsonb), "
                ":s, now() - CAST(:age AS interval), now() - CAST(:age AS interval))"
            ),
            {"e": event_id, "p": payload, "s": status, "age": age},
        )
