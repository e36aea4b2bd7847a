"""Students (Zoho ``BTEC_Students``) → ``students``."""

from __future__ import annotations

from typing import Any

from event_router.messages import EventMessage
from event_router.process.rules import Change, Skip, integer, text, zoho_record_change


def plan(event: EventMessage) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    return zoho_record_change(event, "students", _columns)


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "student_id_number": text(record, "Student_ID_Number"),
        "academic_email": text(record, "Academic_Email"),
        "name": text(record, "Name"),
        "moodle_user_id": integer(record, "Moodle_User_ID"),
    }
