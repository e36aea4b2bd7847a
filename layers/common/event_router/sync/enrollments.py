"""Enrolments: Zoho ``BTEC_Enrollments`` → ``enrollments``; Moodle user enrolments → ``moodle_enrolments``."""

from __future__ import annotations

from typing import Any

from event_router.payloads import MoodleEventData, WebhookEvent
from event_router.sync import Change, MirrorWrite, Skip, lookup, required, text, zoho_record_change

MOODLE_ENROLMENT_EVENTS = (
    "core\\event\\user_enrolment_created",
    "core\\event\\user_enrolment_updated",
    "core\\event\\user_enrolment_deleted",
)


def plan(event: WebhookEvent) -> Change:
    if event.source == "zoho":
        return zoho_record_change(event, "enrollments", _zoho_columns)
    return _moodle(event)


def _zoho_columns(record: dict[str, Any]) -> dict[str, Any]:
    columns = {
        "student_zoho_id": lookup(record, "Enrolled_Students", "Student"),
        "class_zoho_id": lookup(record, "Classes", "Class"),
        "status": text(record, "Enrollment_Status", "Status"),
    }
    return required(columns, {"student_zoho_id": "Enrolled_Students", "class_zoho_id": "Classes"})


def _moodle(event: WebhookEvent) -> Change:
    moodle = MoodleEventData.model_validate(event.payload)
    if moodle.canonical_name not in MOODLE_ENROLMENT_EVENTS:
        return Skip("unsupported_event")
    key = {"moodle_user_id": moodle.student, "moodle_course_id": moodle.courseid}
    status = "unenrolled" if event.event_type == "delete" else "enrolled"
    return MirrorWrite("moodle_enrolments", key, {"status": status})
