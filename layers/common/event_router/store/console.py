"""The console's statements (docs/operate.md, "The console"): pages of the event log, one event and
what it caused, one student's history across both systems, and the record of operators' actions.

A page of events is found by keyset, newest first: ``(received_at, id)`` below the last row of the
page before, through the ``received_at`` or ``(status, received_at)`` index, so the thousandth page
costs what the first does however long the log. Each combination of filters is its own prepared
statement (a generic plan for ``:status IS NULL OR status = :status`` could not use the index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from event_router.store.connection import PreparedConnection
from event_router.store.privacy import DELIVERIES as STUDENT_DELIVERIES
from event_router.store.privacy import MENTIONS, MIRRORS, Student, only_named
from event_router.store.tables import DELIVERIES, EVENT_LOG

PAGE = 50
_LISTED = "id, event_id, source, module, event_type, status, attempts, received_at, processed_at, error_message"
_FILTERS = {  # filter → its condition (the value travels as a parameter of the same name)
    "status": "status = :status",
    "source": "source = :source",
    "module": "module = :module",
    "received_from": "received_at >= :received_from",
    "received_to": "received_at < :received_to",
}
_EVENT = (
    "id, event_id, source, module, event_type, record_id, status, attempts, replay_count, error_message,"
    " result, occurred_at, received_at, queued_at, processed_at, processing_ms, auth_method, payload"
)
EVENT_SQL = f"SELECT {_EVENT}, payload->>'redacted' IS NOT NULL AS redacted FROM {EVENT_LOG} WHERE id = :id"
_DELIVERY = "id, destination, action, target_key, status, attempts, last_error, result, created_at, updated_at"
CAUSED_SQL = f"SELECT {_DELIVERY} FROM {DELIVERIES} WHERE event_log_id = :id ORDER BY id"
DELIVERY_SQL = f"SELECT {_DELIVERY}, event_log_id FROM {DELIVERIES} WHERE id = :id"
STUDENT_EVENTS_SQL = f"""
SELECT {_LISTED} FROM {EVENT_LOG} WHERE {MENTIONS} ORDER BY received_at DESC, id DESC LIMIT :limit"""
STUDENT_DELIVERIES_SQL = f"""
SELECT {_DELIVERY}, event_log_id FROM {DELIVERIES} WHERE {STUDENT_DELIVERIES} ORDER BY id DESC LIMIT :limit"""
ENROLMENT_IDS_SQL = "SELECT zoho_record_id FROM enrollments WHERE student_zoho_id = ANY(CAST(:zoho AS text[]))"
RECORD_ACTION_SQL = """
INSERT INTO console_actions (actor, action, target, outcome, detail)
VALUES (:actor, :action, :target, :outcome, CAST(:detail AS jsonb)) RETURNING id"""
_ACTION = "id, at, actor, action, target, outcome, detail"
ACTIONS_SQL = f"SELECT {_ACTION} FROM console_actions ORDER BY id DESC LIMIT :limit"
ACTION_SQL = f"SELECT {_ACTION} FROM console_actions WHERE id = :id"


def _rows(columns: str, rows: list[list[Any]]) -> list[dict[str, Any]]:
    names = [c.strip() for c in columns.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class EventFilter:
    """Which events a page lists (every field optional)."""

    status: str | None = None
    source: str | None = None
    module: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}


class ConsoleStore:
    """What the console reads, and the record of what operators did through it."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection

    def events(self, where: EventFilter, before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
        """A page of events matching ``where``, newest first, older than event ``before`` (its id)."""
        given = where.given()
        conditions = [_FILTERS[name] for name in sorted(given)]
        if before is not None:
            # The first condition is the index's range; the second breaks ties between rows of one instant.
            cursor = f"FROM {EVENT_LOG} WHERE id = CAST(:before AS bigint)"
            conditions.append(f"received_at <= (SELECT received_at {cursor})")
            conditions.append(f"(received_at, id) < (SELECT received_at, id {cursor})")
            given["before"] = before
        sql = (
            f"SELECT {_LISTED} FROM {EVENT_LOG}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + " ORDER BY received_at DESC, id DESC LIMIT :limit"
        )
        return _rows(_LISTED, self.connection.run(sql, **given, limit=limit))

    def event(self, log_id: int) -> dict[str, Any] | None:
        """One event with its payload (or that retention or an erasure redacted it), and the
        deliveries it caused."""
        rows = self.connection.run(EVENT_SQL, id=log_id)
        if not rows:
            return None
        event = _rows(f"{_EVENT}, redacted", rows)[0]
        event["deliveries"] = _rows(_DELIVERY, self.connection.run(CAUSED_SQL, id=log_id))
        return event

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        rows = self.connection.run(DELIVERY_SQL, id=delivery_id)
        return _rows(f"{_DELIVERY}, event_log_id", rows)[0] if rows else None

    def student(self, student: Student, limit: int = 200) -> dict[str, Any]:
        """One student's history: the events that mention them, their deliveries, their mirror rows."""
        params = student.params()
        enrolments = [str(i) for (i,) in self.connection.run(ENROLMENT_IDS_SQL, zoho=params["zoho"])]
        mirror = {
            table: [
                row
                for (row,) in self.connection.run(
                    f"SELECT row_to_json(t) FROM {table} AS t WHERE {where}", **only_named(where, params)
                )
            ]
            for table, where in MIRRORS.items()
        }
        events = self.connection.run(STUDENT_EVENTS_SQL, **only_named(MENTIONS, params), limit=limit)
        deliveries = self.connection.run(
            STUDENT_DELIVERIES_SQL,
            **only_named(STUDENT_DELIVERIES, {**params, "enrolments": enrolments}),
            limit=limit,
        )
        return {
            "events": _rows(_LISTED, events),
            "deliveries": _rows(f"{_DELIVERY}, event_log_id", deliveries),
            "mirror": mirror,
        }

    def record_action(self, actor: str, action: str, target: str, outcome: str, detail: dict[str, Any]) -> int:
        rows = self.connection.run(
            RECORD_ACTION_SQL, actor=actor, action=action, target=target, outcome=outcome, detail=json.dumps(detail)
        )
        return int(rows[0][0])

    def actions(self, limit: int = 20) -> list[dict[str, Any]]:
        return _rows(_ACTION, self.connection.run(ACTIONS_SQL, limit=limit))

    def action(self, action_id: int) -> dict[str, Any] | None:
        rows = _rows(_ACTION, self.connection.run(ACTION_SQL, id=action_id))
        return rows[0] if rows else None
