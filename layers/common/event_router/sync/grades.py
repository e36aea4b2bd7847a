"""Grades: Zoho ``BTEC_Grades`` → ``grades``; Moodle ``user_graded`` → ``moodle_grades``."""

from __future__ import annotations

from typing import Any

from event_router.errors import InvalidPayload
from event_router.payloads import MOODLE_GRADED, MoodleEventData, MoodleGrade, WebhookEvent
from event_router.sync import CannotApply, Change, MirrorWrite, Skip, lookup, required, text, zoho_record_change


def plan(event: WebhookEvent) -> Change:
    if event.source == "zoho":
        return zoho_record_change(event, "grades", _zoho_columns)
    return _moodle(event)


def _zoho_columns(record: dict[str, Any]) -> dict[str, Any]:
    columns = {
        "student_zoho_id": lookup(record, "Student", "Students", "Enrolled_Students"),
        "grade": text(record, "Grade"),
    }
    return required(columns, {"student_zoho_id": "Student", "grade": "Grade"})


def _moodle(event: WebhookEvent) -> Change:
    moodle = MoodleEventData.model_validate(event.payload)
    if moodle.canonical_name != MOODLE_GRADED:
        return Skip("unsupported_event")
    try:
        grade = MoodleGrade.of(moodle, event.payload)
    except InvalidPayload as invalid:
        raise CannotApply(invalid.details) from None
    key = {"moodle_user_id": moodle.student, "grade_item_id": grade.itemid}
    return MirrorWrite("moodle_grades", key, {"moodle_course_id": moodle.courseid, "final_grade": grade.finalgrade})
