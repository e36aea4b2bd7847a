"""Students (Zoho ``BTEC_Students``) → ``students``."""

from __future__ import annotations

from typing import Any

from event_router.mapping import FieldMapping, default_mapping
from event_router.messages import EventMessage
from event_router.process.rules import Change, Skip, integer, text, zoho_record_change


def plan(event: EventMessage, mapping: FieldMapping | None = None) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    m = mapping or default_mapping()

    def columns(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "student_id_number": text(record, *m.names("student_number")),
            "academic_email": text(record, *m.names("email")),
            "name": text(record, *m.names("name")),
            "moodle_user_id": integer(record, m.moodle_user_id),
        }

    return zoho_record_change(event, "students", columns)
