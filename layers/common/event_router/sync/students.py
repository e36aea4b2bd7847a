"""Students (Zoho ``BTEC_Students``) → ``students``."""

from __future__ import annotations

from event_router.payloads import WebhookEvent, zoho_record_fields
from event_router.schema import students
from event_router.sync import Change, MirrorWrite, Skip, integer, text


def plan(event: WebhookEvent) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    key = {"zoho_record_id": event.record_id}
    if event.event_type == "delete":
        return MirrorWrite(students, key, tombstone=True)
    record = zoho_record_fields(event.payload)
    if record is None:
        return Skip("no_record_data")
    values = {
        "student_id_number": text(record, "Student_ID_Number"),
        "academic_email": text(record, "Academic_Email"),
        "name": text(record, "Name"),
        "moodle_user_id": integer(record, "Moodle_User_ID"),
        "data": record,
    }
    return MirrorWrite(students, key, values)
