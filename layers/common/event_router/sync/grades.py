"""Grades: Zoho ``BTEC_Grades`` → ``grades``; Moodle ``user_graded`` → ``moodle_grades``."""

from __future__ import annotations

from typing import Any

from event_router.payloads import MoodleEventData, WebhookEvent
from event_router.sync import (
    CannotApply,
    Change,
    MirrorWrite,
    Skip,
    integer,
    lookup,
    required,
    text,
    zoho_record_change,
)

MOODLE_GRADED = "core\\event\\user_graded"


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
    # user_graded carries the grade item and the final grade in "other"; plugins may put them at the top.
    facts: dict[str, Any] = {**event.payload, **moodle.other}
    item = integer(facts, "itemid")
    if item is None:
        raise CannotApply([{"field": "other.itemid", "problem": "is required"}])
    key = {"moodle_user_id": moodle.student, "grade_item_id": item}
    return MirrorWrite("moodle_grades", key, {"moodle_course_id": moodle.courseid, "final_grade": _grade(facts)})


def _grade(facts: dict[str, Any]) -> float | None:
    value = facts.get("finalgrade")
    if value is None or value == "":
        return None  # the grade was cleared
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CannotApply([{"field": "other.finalgrade", "problem": "must be a number"}]) from None
