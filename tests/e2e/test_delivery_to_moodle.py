"""Zoho students and enrolments reach Moodle through the running local stack (docs/connect-moodle.md): signed
webhooks in over HTTP, and Moodle's web services asked what they hold. Each test runs against the
stand-in, and against the real Moodle when ``MOODLE_URL``/``MOODLE_TOKEN`` are set (``.ci/run``
starts the one of ``../shared/moodle`` for this).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import Sample, zoho_webhook
from tests.e2e.conftest import FAST_RETRIES, wait_for
from tests.moodle_sites import MoodleSite, user_by_idnumber

T1, T2, T3 = "2026-11-25T09:00:00+00:00", "2026-11-25T10:00:00+00:00", "2026-11-25T11:00:00+00:00"
CLASS = {"id": "5725767000000520011", "name": "Level 3 Extended Diploma in IT"}
# Moodle answers within a second here; a real one may be slower to create a user.
MOODLE_WAIT = 60


def zoho_id() -> str:
    return f"57257670{random.randrange(10**11):011d}"


class College:
    """One run's students and courses, named so that a real Moodle's earlier runs never collide."""

    def __init__(self, unique: str) -> None:
        self.unique = unique
        self.course = f"L3-IT-{unique}"

    def student(self, record_id: str, who: str, operation: str, modified: str, **changes: Any) -> Sample:
        fields = {
            "First_Name": who.capitalize(),
            "Last_Name": "Example",
            "Student_ID_Number": f"BTEC-{who}-{self.unique}",
            "Academic_Email": f"{who}.{self.unique}@Students.Example.ac.uk",
            **changes,
        }
        return zoho_webhook("students", record_id, operation=operation, modified=modified, **fields)

    def enrolment(self, record_id: str, student: str, status: str, modified: str, operation: str = "update") -> Sample:
        fields = {
            "Name": "Level 3 IT",
            "Enrolled_Students": {"id": student, "name": "a student"},
            "Classes": CLASS,
            "Enrollment_Status": status,
            "Moodle_Course_ID": self.course,
        }
        return zoho_webhook("enrollments", record_id, operation=operation, modified=modified, **fields)


@pytest.fixture
def college(unique: str) -> College:
    return College(unique)


@pytest.fixture
def stack_for(tmp_path: Path, e2e_database: tuple[str, Engine]) -> Iterator[Any]:
    started: list[RunningStack] = []

    def start(site: MoodleSite, token: str | None = None, **environment: str) -> RunningStack:
        stack = RunningStack(
            tmp_path / "local",
            e2e_database[0],
            FAST_RETRIES,
            moodle=(site.url, token or site.token),
            environment=environment,
        )
        stack.start()
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def send(stack: RunningStack, *samples: Sample) -> None:
    for sample in samples:
        status, answer = stack.send(sample)
        assert status in (200, 202), answer


def deliveries(db: Engine) -> list[tuple[str, str, str]]:
    """The deliveries to Moodle (the stack also writes each new Moodle user id back to its Zoho stand-in)."""
    sql = "SELECT action, target_key, status FROM deliveries WHERE destination = 'moodle' ORDER BY id"
    with db.connect() as connection:
        return [(r.action, r.target_key, r.status) for r in connection.execute(text(sql))]


def settled(db: Engine) -> bool:
    return all(status not in ("pending",) for _, _, status in deliveries(db))


def test_students_and_enrolments_from_zoho_become_moodle_users_and_enrolments(
    moodle_site: MoodleSite, college: College, stack_for: Any, e2e_database: tuple[str, Engine]
) -> None:
    db = e2e_database[1]
    course = moodle_site.create_course(college.course)
    stack = stack_for(moodle_site)
    ada, grace = zoho_id(), zoho_id()
    ada_enrolment, grace_enrolment = zoho_id(), zoho_id()

    # A new student becomes one Moodle user with the mapped fields
    send(stack, college.student(ada, "ada", "insert", T1))
    wait_for(lambda: user_by_idnumber(moodle_site, f"BTEC-ada-{college.unique}") is not None, MOODLE_WAIT, "Ada")
    created = user_by_idnumber(moodle_site, f"BTEC-ada-{college.unique}")
    assert created is not None
    assert (created["username"], created["email"]) == (
        f"ada.{college.unique}@students.example.ac.uk",
        f"ada.{college.unique}@Students.Example.ac.uk",
    )
    assert (created["firstname"], created["lastname"]) == ("Ada", "Example")

    # An update changes the same user
    send(stack, college.student(ada, "ada", "update", T2, Last_Name="Lovelace"))
    wait_for(
        lambda: (user_by_idnumber(moodle_site, f"BTEC-ada-{college.unique}") or {}).get("lastname") == "Lovelace",
        MOODLE_WAIT,
        "Ada's new name",
    )
    updated = user_by_idnumber(moodle_site, f"BTEC-ada-{college.unique}")
    assert updated is not None
    assert updated["id"] == created["id"]

    # An enrolment enrols the student in the course with that idnumber
    send(stack, college.enrolment(ada_enrolment, ada, "Active", T1, operation="insert"))
    wait_for(lambda: moodle_site.enrolment(created["id"], course) == "active", MOODLE_WAIT, "Ada enrolled")

    # An enrolment that arrives before its student: both end right
    send(stack, college.enrolment(grace_enrolment, grace, "Enrolled", T1, operation="insert"))
    wait_for(
        lambda: ("enrolment", grace_enrolment, "waiting") in deliveries(db), MOODLE_WAIT, "Grace's enrolment to wait"
    )
    send(stack, college.student(grace, "grace", "insert", T1))
    wait_for(lambda: user_by_idnumber(moodle_site, f"BTEC-grace-{college.unique}") is not None, MOODLE_WAIT, "Grace")
    grace_user = user_by_idnumber(moodle_site, f"BTEC-grace-{college.unique}")
    assert grace_user is not None
    wait_for(lambda: moodle_site.enrolment(grace_user["id"], course) == "active", MOODLE_WAIT, "Grace enrolled")

    # Withdrawn: no longer among the course's active users
    send(stack, college.enrolment(ada_enrolment, ada, "Withdrawn", T2))
    wait_for(lambda: moodle_site.enrolment(created["id"], course) == "suspended", MOODLE_WAIT, "Ada suspended")

    # The same events again, and every delivery replayed: still one user and one enrolment each
    send(
        stack,
        college.student(ada, "ada", "update", T2, Last_Name="Lovelace"),
        college.enrolment(ada_enrolment, ada, "Withdrawn", T2),
        college.student(grace, "grace", "insert", T1),
    )
    replayed = stack.replay({"mode": "deliveries", "destination": "moodle", "delivery_statuses": ["delivered"]})
    assert replayed["replayed"] == len(deliveries(db))
    wait_for(lambda: settled(db), MOODLE_WAIT, "the replayed deliveries")
    assert {status for _, _, status in deliveries(db)} <= {"delivered", "superseded"}
    for who, user in (("ada", created), ("grace", grace_user)):
        again = user_by_idnumber(moodle_site, f"BTEC-{who}-{college.unique}")  # at most one, or it raises
        assert again is not None
        assert again["id"] == user["id"]
    assert (moodle_site.enrolment(created["id"], course), moodle_site.enrolment(grace_user["id"], course)) == (
        "suspended",
        "active",
    )


def test_a_wrong_token_pauses_deliveries_without_dead_lettering_and_they_resume_when_it_is_right(
    moodle_site: MoodleSite, college: College, stack_for: Any, e2e_database: tuple[str, Engine]
) -> None:
    db = e2e_database[1]
    # The health check runs every 2 s instead of every minute, and a new token is read within a second.
    stack = stack_for(moodle_site, token="0" * 32, LOCAL_SCHEDULE_SECONDS="2", SECRETS_MAX_AGE="1")
    ada = zoho_id()

    send(stack, college.student(ada, "ada", "insert", T1))
    wait_for(lambda: deliveries(db) == [("user", ada, "paused")], MOODLE_WAIT, "the delivery to pause")
    wait_for(lambda: stack.stats()["deliveries"]["destinations"].get("moodle", {}).get("paused") is True, 30, "stats")
    assert stack.stats()["deliveries"]["destinations"]["moodle"]["reason"] == "invalidtoken"
    assert stack.replay({"mode": "dlq", "dry_run": True})["examined"] == 0  # nothing dead-lettered

    state = stack.state()
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=state["aws_endpoint"],
        region_name="eu-west-2",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    secrets.put_secret_value(
        SecretId="event-router-MoodleTokenSecret", SecretString=json.dumps({"token": moodle_site.token})
    )

    wait_for(lambda: deliveries(db) == [("user", ada, "delivered")], MOODLE_WAIT, "the delivery to resume")
    assert user_by_idnumber(moodle_site, f"BTEC-ada-{college.unique}") is not None
    assert stack.stats()["deliveries"]["destinations"]["moodle"]["paused"] is False
    assert stack.replay({"mode": "dlq", "dry_run": True})["examined"] == 0
