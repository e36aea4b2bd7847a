"""Grades: Zoho ``BTEC_Grades`` → ``grades``; Moodle ``user_graded`` → ``moodle_grades``."""

from __future__ import annotations

from typing import Any

from event_router.contract import USER_GRADED
from event_router.mapping import FieldMapping, default_mapping
from event_router.messages import EventMessage, MoodleFacts
from event_router.process.rules import (
    CannotApply,
    Change,
    MirrorWrite,
    Skip,
    lookup,
    required,
    text,
    zoho_record_change,
)


def plan(event: EventMessage, mapping: FieldMapping | None = None) -> Change:
    if isinstance(event.facts, MoodleFacts):
        return _moodle(event.facts)
    m = mapping or default_mapping()

    def columns(record: dict[str, Any]) -> dict[str, Any]:
        values = {
            "student_zoho_id": lookup(record, *m.names("grade_student")),
            "grade": text(record, *m.names("grade_letter")),
        }
        return required(values, {"student_zoho_id": m.grade_student, "grade": m.grade_letter})

    return zoho_record_change(event, "grades", columns)


def _moodle(moodle: MoodleFacts) -> Change:
    if moodle.event_name != USER_GRADED:
        return Skip("unsupported_event")
    if moodle.grade is None:  # the verifier refuses such a webhook; a message may still carry one
        raise CannotApply([{"field": "other.itemid", "problem": "is required"}])
    key = {"moodle_user_id": moodle.student, "grade_item_id": moodle.grade.itemid}
    return MirrorWrite(
        "moodle_grades",
        key,
        {
            "moodle_course_id": moodle.course,
            "final_grade": moodle.grade.finalgrade,
            "grade_letter": moodle.grade.grade_letter,
            "scale_id": moodle.grade.scaleid,
        },
    )
