"""The sync rules (docs/decisions.md): what one event means for its module's mirror, as pure functions of the
message. No database: the integration tests check the same rules end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.samples import SAMPLES, Sample, zoho_webhook
from event_router.contract import WEBHOOK_ROUTES
from event_router.mapping import FieldMapping
from event_router.messages import EventMessage
from event_router.process.rules import CannotApply, LogOnly, MirrorWrite, Skip, enrollments, grades, payments, students
from event_router.verify.bodies import decode_body
from event_router.verify.payloads import parse_event

STUDENT = "5725767000000412001"


def message(sample: Sample) -> EventMessage:
    route = WEBHOOK_ROUTES[sample.route]
    fields = decode_body(sample.body)
    fields.pop("token", None)
    return parse_event(route.source, route.module, fields)


def test_a_zoho_student_maps_to_its_columns_and_keeps_its_fields() -> None:
    event = message(
        zoho_webhook(
            "students",
            STUDENT,
            Name="Ada Example",
            Student_ID_Number="BTEC-1",
            Academic_Email="ada@students.example.ac.uk",
            Moodle_User_ID="348",
        )
    )

    change = students.plan(event)

    assert isinstance(change, MirrorWrite)
    assert (change.table, change.key, change.tombstone) == ("students", {"zoho_record_id": STUDENT}, False)
    assert change.values["student_id_number"] == "BTEC-1"
    assert change.values["academic_email"] == "ada@students.example.ac.uk"
    assert (change.values["name"], change.values["moodle_user_id"]) == ("Ada Example", 348)
    assert change.values["data"]["Name"] == "Ada Example"


def test_a_zoho_delete_is_a_tombstone() -> None:
    change = students.plan(message(zoho_webhook("students", STUDENT, operation="delete")))

    assert isinstance(change, MirrorWrite)
    assert (change.tombstone, change.values, change.action) == (True, {}, "deleted")


def test_a_zoho_event_without_the_records_fields_changes_nothing() -> None:
    assert students.plan(message(SAMPLES["zoho-student-minimal"])) == Skip("no_record_data")


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [({"id": STUDENT, "name": "Ada"}, STUDENT), (STUDENT, STUDENT), ([{"id": 42}], "42")],
)
def test_zoho_lookups_may_be_an_object_a_plain_id_or_a_list_of_one(lookup: Any, expected: str) -> None:
    change = enrollments.plan(message(zoho_webhook("enrollments", "E1", Enrolled_Students=lookup, Classes="C1")))

    assert isinstance(change, MirrorWrite)
    assert (change.values["student_zoho_id"], change.values["class_zoho_id"]) == (expected, "C1")


def test_an_enrolment_without_its_student_can_never_apply() -> None:
    with pytest.raises(CannotApply) as refused:
        enrollments.plan(message(zoho_webhook("enrollments", "E1", Classes="C1")))

    assert refused.value.problems == [{"field": "Enrolled_Students", "problem": "is required"}]


def test_a_lookup_to_two_records_can_never_apply() -> None:
    with pytest.raises(CannotApply):
        enrollments.plan(message(zoho_webhook("enrollments", "E1", Enrolled_Students=[{"id": 1}, {"id": 2}])))


def test_a_moodle_id_in_zoho_beyond_64_bits_can_never_apply() -> None:
    with pytest.raises(CannotApply):
        students.plan(message(zoho_webhook("students", STUDENT, Moodle_User_ID=str(2**63))))


def test_moodle_enrolment_events_map_to_the_student_and_course() -> None:
    created = enrollments.plan(message(SAMPLES["moodle-enrollment-raw"]))
    deleted = enrollments.plan(message(SAMPLES["moodle-enrollment-form"]))

    assert created == MirrorWrite(
        "moodle_enrolments", {"moodle_user_id": 348, "moodle_course_id": 12}, {"status": "enrolled"}
    )
    assert isinstance(deleted, MirrorWrite)
    assert (deleted.key["moodle_user_id"], deleted.values) == (349, {"status": "unenrolled"})


def test_a_moodle_grade_maps_to_its_item_and_final_grade() -> None:
    change = grades.plan(message(SAMPLES["moodle-grade-raw"]))

    assert change == MirrorWrite(
        "moodle_grades",
        {"moodle_user_id": 348, "grade_item_id": 431},
        {"moodle_course_id": 12, "final_grade": 86.5, "grade_letter": None, "scale_id": None},
    )


def test_a_moodle_grade_keeps_the_letter_and_scale_the_plugin_sends() -> None:
    document = {
        "eventname": "\\core\\event\\user_graded",
        "userid": 2,
        "relateduserid": 348,
        "courseid": 12,
        "timecreated": 1_764_000_000,
        "other": {"itemid": 431, "finalgrade": 3, "grade_letter": "Merit", "scaleid": 7},
    }
    sample = Sample("graded-on-a-scale", "POST /api/v1/events/moodle/grade", json.dumps(document).encode(), 202)

    change = grades.plan(message(sample))

    assert isinstance(change, MirrorWrite)
    assert change.values == {"moodle_course_id": 12, "final_grade": 3.0, "grade_letter": "Merit", "scale_id": 7}


def test_a_zoho_grade_needs_its_student_and_grade() -> None:
    with pytest.raises(CannotApply) as refused:
        grades.plan(message(zoho_webhook("grades", "G1", Name="Unit 1")))

    assert {p["field"] for p in refused.value.problems} == {"Student", "Grade"}


def test_a_payment_is_logged_with_a_summary() -> None:
    change = payments.plan(message(SAMPLES["zoho-payment-full"]))

    assert change == LogOnly(
        {
            "record_id": "5725767000000850041",
            "operation": "update",
            "student_zoho_id": STUDENT,
            "amount": "1250.0",
            "currency": "GBP",
            "payment_status": "Paid",
        }
    )


# ---------------------------------------------------------------- one field mapping for every reader of Zoho

RENAMED = FieldMapping(
    student_number="Learner_Number", email="College_Email", enrolment_student="Learner", grade_letter="Outcome"
)


def test_the_rules_read_the_zoho_fields_the_college_renamed() -> None:
    student = message(zoho_webhook("students", STUDENT, Name="Ada", Learner_Number="L-1", College_Email="a@c.ac.uk"))
    enrolment = message(zoho_webhook("enrollments", "E1", Learner={"id": STUDENT}, Classes="C1"))
    grade = message(zoho_webhook("grades", "G1", Student={"id": STUDENT}, Outcome="Merit"))

    assert isinstance(change := students.plan(student, RENAMED), MirrorWrite)
    assert (change.values["student_id_number"], change.values["academic_email"]) == ("L-1", "a@c.ac.uk")
    assert isinstance(change := enrollments.plan(enrolment, RENAMED), MirrorWrite)
    assert change.values["student_zoho_id"] == STUDENT
    assert isinstance(change := grades.plan(grade, RENAMED), MirrorWrite)
    assert change.values["grade"] == "Merit"


def test_a_renamed_required_field_is_named_as_the_college_calls_it_when_missing() -> None:
    with pytest.raises(CannotApply, match="Learner is required"):
        enrollments.plan(message(zoho_webhook("enrollments", "E1", Classes="C1")), RENAMED)


def test_the_records_read_back_and_the_reconciliation_ask_zoho_for_the_renamed_fields() -> None:
    read_back, reconciled = RENAMED.zoho_fields("students"), RENAMED.zoho_fields("students", also=False)

    assert {"Learner_Number", "College_Email"} <= set(read_back) & set(reconciled)
    assert "Student_ID_Number" not in read_back
    assert RENAMED.zoho_fields("enrollments")[:4] == ["Name", "Modified_Time", "Modified_By", "Learner"]
    assert "Student" in RENAMED.zoho_fields("enrollments")  # an older layout's name, after the mapped one
    assert "Student" not in RENAMED.zoho_fields("enrollments", also=False)  # COQL refuses a field a module lacks
