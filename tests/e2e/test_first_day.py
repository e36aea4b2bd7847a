"""Day one in a college through the running local stack (docs/first-day.md), on the Moodle stand-in and on the
real Moodle: 500 students and their enrolments already in Zoho, 50 of them already with learner
accounts in Moodle, a teacher and the administrator sharing e-mails with two of them, and a student
whose Moodle_User_ID names the teacher's account. A dry run changes nothing anywhere; the import gives
every student an account (adopting the 50, leaving the teacher's and the administrator's alone) and
an enrolment; the next night repairs what drifted: an enrolment removed and an account suspended by
hand, a Zoho change whose webhook was lost, a grade given while the plugin was off.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import enrolled_in_zoho
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.moodle.client import MoodleRestClient
from tests.e2e.conftest import FAST_RETRIES, wait_for
from tests.moodle_sites import MoodleSite

STUDENTS = 500
EXISTING = 50
WAIT = 900  # 500 students into a real Moodle: a few thousand web-service calls


@pytest.fixture
def zoho() -> Iterator[ZohoStandIn]:
    server = ZohoStandIn().start()
    server.org.credits = 100_000
    yield server
    server.stop()


def rows(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def reconcile(stack: RunningStack, **request: Any) -> dict[str, Any]:
    """``make reconcile ARGS='...'`` against the running stack."""
    output = stack.command("reconcile", json.dumps(request))
    answer: dict[str, Any] = json.loads(output[output.index("{\n") :])
    return answer


def settled(db: Engine) -> bool:
    """Every event processed, every delivery done, but those that wait for a student in conflict (they
    wait until a person resolves it)."""
    [counts] = rows(
        db,
        """SELECT
            (SELECT count(*) FROM integration_events_log
             WHERE status IN ('received', 'queued', 'processing')) AS events,
            (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'paused', 'dead_lettered')) AS open,
            (SELECT count(*) FROM deliveries AS d WHERE d.status = 'waiting' AND NOT EXISTS (
                SELECT 1 FROM deliveries AS c WHERE c.status = 'conflict' AND d.waiting_on = 'student:' || c.target_key
            )) AS waiting""",
    )
    return counts == {"events": 0, "open": 0, "waiting": 0}


def accounts(db: Engine) -> dict[str, dict[str, Any]]:
    return {r["student_zoho_id"]: r for r in rows(db, "SELECT * FROM moodle_accounts")}


def test_day_one_imports_everyone_safely_and_night_two_repairs_what_drifted(
    tmp_path: Path, e2e_database: tuple[str, Engine], moodle_site: MoodleSite, zoho: ZohoStandIn
) -> None:
    url, db = e2e_database
    unique = uuid.uuid4().hex[:8]
    moodle = MoodleRestClient(moodle_site.url, moodle_site.token, timeout=120)

    def email(n: int) -> str:
        return f"s{n}.{unique}@students.example.ac.uk"

    # The college before the router
    course_idnumber = f"DAY1-{unique}"
    course = moodle_site.create_course(course_idnumber)
    learners = moodle_site.add_users([(f"learner{n}.{unique}", email(n)) for n in range(EXISTING)])
    teacher = moodle_site.add_user(f"teacher.{unique}", email(STUDENTS - 2))
    moodle_site.make_teacher(teacher, course)
    admin = moodle_site.admin()
    students: dict[int, str] = {}
    for n in range(STUDENTS):
        fields = {
            "Name": f"Student {n} {unique}",
            "Student_ID_Number": f"D1-{unique}-{n:04}",
            "Academic_Email": admin["email"] if n == STUDENTS - 1 else email(n),
        }
        if n == EXISTING:
            fields["Moodle_User_ID"] = str(teacher)  # a teacher's id typed into Zoho
        students[n] = zoho.org.create("BTEC_Students", fields)
        enrolled_in_zoho(zoho.org, students[n], course_idnumber, f"Student {n} - Day one")
    [teacher_before] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [teacher]})
    [admin_before] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [admin["id"]]})
    zoho_before = json.dumps(zoho.org.records, sort_keys=True)

    stack = RunningStack(
        tmp_path / "local",
        url,
        FAST_RETRIES,
        moodle=(moodle_site.url, moodle_site.token),
        zoho=(zoho.url, zoho.credentials),
    )
    stack.start()
    try:
        # 1. The dry run: the figures, and nothing changed anywhere
        dry = reconcile(stack, dry_run=True)
        assert (dry["status"], dry["counts"]["events"]["would_create"]) == ("completed", 2 * STUDENTS)
        assert rows(db, "SELECT count(*) AS n FROM integration_events_log") == [{"n": 0}]
        assert json.dumps(zoho.org.records, sort_keys=True) == zoho_before
        assert {u["id"] for u in moodle.call("core_enrol_get_enrolled_users", {"courseid": course})} == {teacher}
        assert accounts(db) == {}

        # 2. The import
        imported = reconcile(stack)
        assert imported["status"] == "completed"
        assert imported["counts"]["events"]["created"] == 2 * STUDENTS
        wait_for(lambda: settled(db), WAIT, "every delivery of the import")

        linked = accounts(db)
        assert set(linked) == {students[n] for n in range(STUDENTS - 2)}
        for n, learner in enumerate(learners):  # adopted: no second account
            assert (linked[students[n]]["moodle_user_id"], linked[students[n]]["origin"]) == (learner, "adopted")
        same_email = moodle.call(
            "core_user_get_users_by_field", {"field": "email", "values": [email(n) for n in range(EXISTING)]}
        )
        assert sorted(u["id"] for u in same_email) == sorted(learners)
        assert linked[students[EXISTING]]["moodle_user_id"] != teacher  # the teacher's id in Zoho: nobody's target
        enrolled = {
            u["id"]
            for u in moodle.call(
                "core_enrol_get_enrolled_users", {"courseid": course, "options": [{"name": "onlyactive", "value": 1}]}
            )
        }
        assert {a["moodle_user_id"] for a in linked.values()} <= enrolled
        [teacher_after] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [teacher]})
        [admin_after] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [admin["id"]]})
        assert (teacher_after, admin_after) == (teacher_before, admin_before)
        conflicts = {
            r["target_key"]: r["last_error"]
            for r in rows(db, "SELECT target_key, last_error FROM deliveries WHERE status = 'conflict'")
        }
        assert conflicts[students[STUDENTS - 2]].endswith("holds the role editingteacher")
        assert conflicts[students[STUDENTS - 1]].endswith("is a site administrator")
        assert len(conflicts) == 2

        # 3. The night: drift in both systems
        removed, suspended, graded = (linked[students[n]]["moodle_user_id"] for n in (60, 61, 62))
        moodle_site.unenrol_by_hand(removed, course)
        moodle_site.suspend_by_hand(suspended)
        zoho.org.change_silently("BTEC_Students", students[63], {"Name": f"Renamed {unique}"})
        item = moodle_site.grade(graded, course, 64.0)

        night = reconcile(stack)
        assert night["status"] == "completed"
        wait_for(lambda: settled(db), WAIT, "the repairs")

        drift = night["counts"]["drift"]
        assert drift["enrolment_missing"] == 1
        assert drift["user_suspended_by_hand"] == 1
        # the grade, and on a real Moodle the course total it changed: Zoho lacks both
        assert drift["grade_missing_in_zoho"] == (1 if moodle_site.name == "stand-in" else 2)
        assert night["counts"]["zoho"]["webhook_failures"] == 1
        assert moodle_site.enrolment(removed, course) == "active"
        [back] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [suspended]})
        assert back["suspended"] is False
        [renamed] = moodle.call(
            "core_user_get_users_by_field", {"field": "id", "values": [linked[students[63]]["moodle_user_id"]]}
        )
        assert renamed["lastname"] == unique
        wait_for(
            lambda: zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", f"{graded}-{item}") != [], 60, "the grade in Zoho"
        )

        # 4. Nothing changed since: no Moodle writes, a few Zoho reads
        quiet = reconcile(stack)
        assert quiet["status"] == "completed"
        assert quiet["counts"].get("drift", {}) == {}
        assert quiet["counts"].get("events", {}).get("created", 0) <= 1  # the router's own write-back, an echo
        assert quiet["counts"]["zoho"]["calls"] <= 4 + 3 + 1
    finally:
        stack.stop()
