"""Enrolments: Zoho ``BTEC_Enrollments`` → ``enrollments``; Moodle user enrolments → ``moodle_enrolments``."""

from __future__ import annotations

from event_router.payloads import MoodleEventData, WebhookEvent, zoho_record_fields
from event_router.schema import enrollments, moodle_enrolments
from event_router.sync import Change, MirrorWrite, Skip, lookup, required, text

MOODLE_ENROLMENT_EVENTS = (
    "core\\event\\user_enrolment_created",
    "core\\event\\user_enrolment_updated",
    "core\\event\\user_enrolment_deleted",
)


def plan(event: WebhookEvent) -> Change:
    return _zoho(event) if event.source == "zoho" else _moodle(event)


def _zoho(event: WebhookEvent) -> Change:
    key = {"zoho_record_id": event.record_id}
    if event.event_type == "delete":
        return MirrorWrite(enrollments, key, tombstone=True)
    record = zoho_record_fields(event.payload)
    if record is None:
        return Skip("no_record_data")
    values = {
        "student_zoho_id": lookup(record, "Enrolled_Students", "Student"),
        "class_zoho_id": lookup(record, "Classes", "Class"),
        "status": text(record, "Enrollment_Status", "Status"),
        "data": record,
    }
    required(values, {"student_zoho_id": "Enrolled_Students", "class_zoho_id": "Classes"})
    return MirrorWrite(enrollments, key, values)


def _moodle(event: WebhookEvent) -> Change:
    moodle = MoodleEventData.model_validate(event.payload)
    if moodle.canonical_name not in MOODLE_ENROLMENT_EVENTS:
        return Skip("unsupported_event")
    key = {"moodle_user_id": moodle.student, "moodle_course_id": moodle.courseid}
    status = "unenrolled" if event.event_type == "delete" else "enrolled"
    return MirrorWrite(moodle_enrolments, key, {"status": status})
