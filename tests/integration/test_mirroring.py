"""Each module's events land in its mirror tables, mapped as docs/decisions.md says (real Postgres and moto's SQS).

Webhooks go in through the verifiers, so every test exercises the real path:
verifier → event log → module queue → Lambda-style poller → processor → mirror.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from devstack.poller import QueuePoller
from devstack.samples import Sample
from tests.integration.conftest import PROCESSORS, Invoke, load_event
from tests.integration.flow import (
    CLASS,
    STUDENT,
    T1,
    T2,
    T3,
    log_status,
    moodle,
    rows,
    zoho,
)


def test_zoho_student_create_update_delete_land_in_students_with_mapped_columns(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    students = pollers("students")
    fields = {"Name": "Ada Example", "Student_ID_Number": "BTEC-1", "Academic_Email": "ada@students.example.ac.uk"}

    send(zoho("student", STUDENT, "insert", T1, **fields, Moodle_User_ID="348"))
    students.drain()
    [created] = rows(db, "SELECT * FROM students")
    send(zoho("student", STUDENT, "update", T2, **{**fields, "Name": "Ada Lovelace"}))
    students.drain()
    [updated] = rows(db, "SELECT * FROM students")
    send(zoho("student", STUDENT, "delete", T3))
    students.drain()
    [deleted] = rows(db, "SELECT * FROM students")

    assert (created["student_id_number"], created["academic_email"], created["name"], created["moodle_user_id"]) == (
        "BTEC-1",
        "ada@students.example.ac.uk",
        "Ada Example",
        348,
    )
    assert created["data"]["Name"] == "Ada Example"
    assert created["deleted_at"] is None
    assert updated["name"] == "Ada Lovelace"
    assert updated["source_modified_at"].isoformat() == T2
    assert deleted["deleted_at"].isoformat() == T3
    assert deleted["name"] == "Ada Lovelace"
    assert set(log_status(db).values()) == {"completed"}


def test_zoho_enrollment_lookups_map_to_student_and_class(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    send(
        zoho(
            "enrollment",
            "E1",
            "insert",
            T1,
            Enrolled_Students={"id": STUDENT, "name": "Ada"},
            Classes=CLASS,
            Enrollment_Status="Active",
        )
    )
    send(zoho("enrollment", "E2", "insert", T1, Enrolled_Students=[{"id": 42}], Classes={"id": CLASS}))

    pollers("enrollments").drain()

    found = {r["zoho_record_id"]: r for r in rows(db, "SELECT * FROM enrollments")}
    assert (found["E1"]["student_zoho_id"], found["E1"]["class_zoho_id"], found["E1"]["status"]) == (
        STUDENT,
        CLASS,
        "Active",
    )
    assert (found["E2"]["student_zoho_id"], found["E2"]["class_zoho_id"]) == ("42", CLASS)


def test_moodle_enrolment_created_then_deleted_ends_unenrolled(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    send(moodle("enrollment", "user_enrolment_created", 1795598100, crud="c", objectid=9001))
    send(moodle("enrollment", "user_enrolment_deleted", 1795598200, crud="d", objectid=9001))

    pollers("enrollments").drain()

    [row] = rows(db, "SELECT * FROM moodle_enrolments")
    assert (row["moodle_user_id"], row["moodle_course_id"], row["status"]) == (348, 12, "unenrolled")


def test_zoho_grade_and_moodle_user_graded_land_in_their_tables(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    send(zoho("grade", "G1", "insert", T1, Student={"id": STUDENT, "name": "Ada"}, Grade="M"))
    send(
        moodle("grade", "user_graded", 1795598400, crud="u", objectid=77001, other={"itemid": 431, "finalgrade": 86.5})
    )

    pollers("grades").drain()

    [grade] = rows(db, "SELECT * FROM grades")
    [moodle_grade] = rows(db, "SELECT * FROM moodle_grades")
    assert (grade["student_zoho_id"], grade["grade"]) == (STUDENT, "M")
    assert (moodle_grade["moodle_user_id"], moodle_grade["grade_item_id"], moodle_grade["moodle_course_id"]) == (
        348,
        431,
        12,
    )
    assert float(moodle_grade["final_grade"]) == 86.5


def test_payment_is_logged_only_with_a_summary(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    accepted = send(
        zoho(
            "payment", "P1", "insert", T1, Amount=1250.0, Currency="GBP", Payment_Status="Paid", Student={"id": STUDENT}
        )
    )

    pollers("payments").drain()

    [row] = rows(db, "SELECT * FROM integration_events_log WHERE event_id = :e", e=accepted["event_id"])
    assert row["status"] == "completed"
    assert row["result"] == {
        "action": "logged",
        "record_id": "P1",
        "operation": "create",
        "student_zoho_id": STUDENT,
        "amount": "1250.0",
        "currency": "GBP",
        "payment_status": "Paid",
    }
    assert row["processed_at"] is not None
    assert row["processing_ms"] >= 0


@pytest.mark.parametrize(
    "name",
    [
        "zoho-student-full",
        "zoho-enrollment-form",
        "zoho-grade-full",
        "moodle-grade-raw",
        "moodle-enrollment-plugin",
        "zoho-payment-form",
    ],
)
def test_committed_sample_events_are_processed_to_completed(
    name: str, load_verifier: Callable[..., Invoke], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    event = load_event(name)
    source = "zoho" if name.startswith("zoho") else "moodle"
    accepted = json.loads(load_verifier(source)(event)["body"])
    module = rows(db, "SELECT module FROM integration_events_log")[0]["module"]

    pollers(module).drain()

    assert log_status(db) == {accepted["event_id"]: "completed"}


def test_minimal_zoho_event_without_record_data_is_skipped(
    load_verifier: Callable[..., Invoke], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    load_verifier("zoho")(load_event("zoho-student-minimal"))

    pollers("students").drain()

    [row] = rows(db, "SELECT status, result FROM integration_events_log")
    assert (row["status"], row["result"]) == ("skipped", {"reason": "no_record_data"})
    assert rows(db, "SELECT * FROM students") == []


@pytest.mark.parametrize("module", ["students", "enrollments", "grades", "payments"])
def test_committed_sqs_batch_is_processed_without_failures(
    module: str, load: Callable[..., Invoke], db: Engine
) -> None:
    event = load_event(f"sqs-{module}-batch")

    response = load(PROCESSORS[module], MODULE=module)(event)

    assert response == {"batchItemFailures": []}
    statuses = log_status(db)
    assert len(statuses) == len(event["Records"])
    assert set(statuses.values()) <= {"completed", "skipped"}
