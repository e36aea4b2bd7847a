"""Enrolments: Zoho ``BTEC_Enrollments`` → ``enrollments``; Moodle user enrolments → ``moodle_enrolments``."""

from __future__ import annotations

from typing import Any

from event_router.contract import CONNECTION_TEST, USER_ENROLMENT_EVENTS
from event_router.mapping import FieldMapping, default_mapping
from event_router.messages import EventMessage, MoodleFacts
from event_router.process.rules import Change, MirrorWrite, Skip, lookup, required, text, zoho_record_change


def plan(event: EventMessage, mapping: FieldMapping | None = None) -> Change:
    if isinstance(event.facts, MoodleFacts):
        return _moodle(event, event.facts)
    m = mapping or default_mapping()

    def columns(record: dict[str, Any]) -> dict[str, Any]:
        values = {
            "student_zoho_id": lookup(record, *m.names("enrolment_student")),
            "class_zoho_id": lookup(record, *m.names("enrolment_class")),
            "status": text(record, *m.names("enrolment_status")),
        }
        return required(values, {"student_zoho_id": m.enrolment_student, "class_zoho_id": m.enrolment_class})

    return zoho_record_change(event, "enrollments", columns)


def _moodle(event: EventMessage, moodle: MoodleFacts) -> Change:
    if moodle.event_name == CONNECTION_TEST:
        return Skip("connection_test")  # the plugin's test reached the processor: nothing to mirror
    if moodle.event_name not in USER_ENROLMENT_EVENTS:
        return Skip("unsupported_event")
    key = {"moodle_user_id": moodle.student, "moodle_course_id": moodle.course}
    status = "unenrolled" if event.event_type == "delete" else "enrolled"
    return MirrorWrite("moodle_enrolments", key, {"status": status})
