"""Day one in a college (docs/first-day.md): the import of what Zoho and Moodle already hold, the accounts the
router may and may not take, and the nightly repair of what drifted — against the Zoho and Moodle
stand-ins, every function behind its queue. (``tests/e2e/test_first_day.py`` runs the same on the
real Moodle at the size of a college.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from devstack.samples import enrolled_in_zoho, http_api_event
from event_router.operate.reconcile import build_reconciler
from event_router.settings import Settings
from tests.integration.conftest import Invoke
from tests.integration.flow import rows
from tests.integration.pipelines import ZohoPipeline

COURSE = "L3-IT-2026"
WRITES = {"core_user_create_users", "core_user_update_users", "enrol_manual_enrol_users", "enrol_manual_unenrol_users"}


def email(n: int) -> str:
    return f"student{n}@students.example.ac.uk"


def college(pipeline: ZohoPipeline, students: int = 12) -> dict[str, Any]:
    """A college before the router: students and their enrolments in Zoho; in Moodle, the course,
    three of the students' accounts already made by hand, a teacher and the administrator whose
    e-mails two students share, and a student whose Moodle_User_ID names the teacher's account."""
    site, org = pipeline.moodle.site, pipeline.zoho.org
    course = site.create_course(COURSE)
    learners = {n: site.add_user(f"learner{n}", email(n)) for n in range(3)}
    teacher = site.add_user("teacher", email(students - 2))
    site.assign_role(teacher, "editingteacher", course)
    with site.lock:
        site.users[site.admin]["email"] = email(students - 1)
    ids = {}
    for n in range(students):
        fields = {"Name": f"Student {n}", "Student_ID_Number": f"BTEC-{n:04}", "Academic_Email": email(n)}
        if n == 3:
            fields["Moodle_User_ID"] = str(teacher)  # a teacher's id, typed into Zoho
        ids[n] = org.create("BTEC_Students", fields)
        enrolled_in_zoho(org, ids[n], COURSE, f"Student {n} - L3 IT")
    return {"course": course, "learners": learners, "teacher": teacher, "students": ids, "count": students}


def account(db: Engine, student: str) -> dict[str, Any] | None:
    found = rows(
        db, "SELECT moodle_user_id, origin, matched_by FROM moodle_accounts WHERE student_zoho_id = :s", s=student
    )
    return found[0] if found else None


def moodle_writes(pipeline: ZohoPipeline) -> int:
    return sum(call in WRITES for call in pipeline.moodle.site.calls)


def test_the_first_run_imports_everyone_adopts_learners_and_leaves_staff_accounts_alone(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    setup = college(pipeline)
    site = pipeline.moodle.site
    teacher_before = dict(site.users[setup["teacher"]])
    admin_before = dict(site.users[site.admin])

    result = pipeline.reconcile()
    pipeline.run()

    students = setup["students"]
    assert result["status"] == "completed"
    assert result["counts"]["events"]["created"] == 2 * setup["count"]  # every student and enrolment, once
    for n in range(setup["count"] - 2):
        linked = account(db, students[n])
        assert linked is not None, n
        assert site.enrolment(linked["moodle_user_id"], setup["course"]) == "active", n
    for n, learner in setup["learners"].items():  # adopted, not duplicated
        assert account(db, students[n]) == {"moodle_user_id": learner, "origin": "adopted", "matched_by": "email"}
    assert len(site.users) == 2 + 3 + 1 + (setup["count"] - 2 - 3)  # admin, router, learners, teacher, the new
    # the teacher's id in Moodle_User_ID is nobody's target: student 3 has an account of their own
    assert account(db, students[3])["moodle_user_id"] not in (setup["teacher"], None)  # type: ignore[index]
    # the teacher and the administrator: untouched, and each a conflict saying why
    assert site.users[setup["teacher"]] == teacher_before
    assert site.users[site.admin] == admin_before
    conflicts = {
        r["target_key"]: r["last_error"]
        for r in rows(db, "SELECT target_key, last_error FROM deliveries WHERE status = 'conflict'")
    }
    assert set(conflicts) == {students[setup["count"] - 2], students[setup["count"] - 1]}
    assert conflicts[students[setup["count"] - 2]].endswith("holds the role editingteacher")
    assert conflicts[students[setup["count"] - 1]].endswith("is a site administrator")
    assert account(db, students[setup["count"] - 1]) is None
    stats = rows(db, "SELECT counts FROM reconcile_runs")[0]["counts"]
    assert stats["conflicts"] == 0  # counted as the run ended, before the deliveries ran


def test_a_conflict_resolved_in_moodle_is_delivered_by_a_replay(pipeline: ZohoPipeline, db: Engine) -> None:
    setup = college(pipeline)
    pipeline.reconcile()
    pipeline.run()
    site = pipeline.moodle.site
    with site.lock:  # the teacher is given an address of their own
        site.users[setup["teacher"]]["email"] = "teacher@staff.example.ac.uk"

    answer = pipeline.replay({"mode": "deliveries", "delivery_statuses": ["conflict"]})
    pipeline.run()

    student = setup["students"][setup["count"] - 2]
    assert answer["replayed"] == 2  # the teacher's and the administrator's look-alikes
    linked = account(db, student)
    assert linked is not None
    assert linked["origin"] == "created"
    assert site.users[setup["teacher"]]["email"] == "teacher@staff.example.ac.uk"
    assert account(db, setup["students"][setup["count"] - 1]) is None  # the administrator's: still a conflict


def test_the_nightly_run_repairs_what_drifted_and_reports_each_kind(pipeline: ZohoPipeline, db: Engine) -> None:
    setup = college(pipeline)
    pipeline.reconcile()
    pipeline.run()
    site, org, students = pipeline.moodle.site, pipeline.zoho.org, setup["students"]
    enrolled_by_hand, suspended_by_hand, graded = (account(db, students[n])["moodle_user_id"] for n in (4, 5, 6))  # type: ignore[index]
    with site.lock:
        del site.enrolments[(enrolled_by_hand, setup["course"])]  # an enrolment removed by hand
        site.users[suspended_by_hand]["suspended"] = True  # an account suspended by hand
    org.change_silently("BTEC_Students", students[7], {"Name": "Renamed Student"})  # Zoho's webhook failed
    site.set_grade(graded, setup["course"], 9001, 64.0)  # a grade given while the plugin was off

    result = pipeline.reconcile()
    pipeline.run()

    drift = result["counts"]["drift"]
    assert drift == {
        "enrolment_missing": 1,
        "user_suspended_by_hand": 1,
        "grade_missing_in_zoho": 1,
    }
    assert result["counts"]["zoho"]["webhook_failures"] == 1
    assert site.enrolment(enrolled_by_hand, setup["course"]) == "active"
    assert site.users[suspended_by_hand]["suspended"] is False
    renamed = account(db, students[7])["moodle_user_id"]  # type: ignore[index]
    assert (site.users[renamed]["firstname"], site.users[renamed]["lastname"]) == ("Renamed", "Student")
    [grade] = org.find("BTEC_Grades", "Moodle_Grade_Key", f"{graded}-9001")
    assert (grade["Final_Grade"], grade["Student"]) == (64.0, {"id": students[6]})
    [failure] = rows(db, "SELECT module, record_id FROM zoho_webhook_failures")
    assert failure == {"module": "students", "record_id": students[7]}


def test_stats_show_the_runs_zohos_failed_webhooks_next_to_the_routers_refusals_and_the_conflicts(
    pipeline: ZohoPipeline, load: Callable[..., Invoke], db: Engine
) -> None:
    setup = college(pipeline)
    pipeline.zoho.org.change_silently("BTEC_Students", setup["students"][0], {"Name": "Renamed Student"})
    forged = pipeline.verifiers["zoho"](http_api_event("POST", "/api/v1/events/zoho/student", b"{}", {}))
    assert forged["statusCode"] == 401

    pipeline.reconcile()
    pipeline.run()
    stats = json.loads(load("MonitorFunction")(http_api_event("GET", "/api/v1/events/stats", b"", {}))["body"])

    reconciliation = stats["reconciliation"]
    [run] = reconciliation["runs"]
    assert (run["status"], run["counts"]["zoho"]["webhook_failures"]) == ("completed", 1)
    assert reconciliation["zoho_webhook_failures"]["last_30_days"] == 1
    assert reconciliation["zoho_webhook_failures"]["recent"][0]["record_id"] == setup["students"][0]
    assert reconciliation["router_rejections_24h"] == {"zoho": {"missing_signature": 1}}
    assert {c["target_key"] for c in stats["deliveries"]["conflicts"]} == {
        setup["students"][setup["count"] - 2],
        setup["students"][setup["count"] - 1],
    }
    assert stats["deliveries"]["by_status"]["conflict"] == 2


def test_a_rerun_with_nothing_changed_writes_nothing_and_reads_zoho_in_a_few_calls(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    college(pipeline)
    pipeline.check()  # the router knows its Zoho user: its own writes come back as echoes
    pipeline.reconcile()
    pipeline.run()
    # The next run reads back the Moodle ids the router wrote to Zoho: echoes, delivered nowhere.
    echoes = pipeline.reconcile()
    pipeline.run()
    writes, zoho_calls = moodle_writes(pipeline), sum(pipeline.zoho.org.calls.values())

    again = pipeline.reconcile()
    pipeline.run()

    assert echoes["counts"]["events"]["created"] == 10  # the students given an account
    echoed = rows(db, "SELECT count(*) AS n FROM integration_events_log WHERE (result->>'echo')::boolean")
    assert echoed == [{"n": 10}]
    assert again["status"] == "completed"
    assert moodle_writes(pipeline) == writes
    assert again["counts"].get("events", {}).get("created", 0) == 0
    assert again["counts"].get("drift", {}) == {}
    # the failures report (one call a module) and three COQL reads of what changed; a course's grades in
    # Zoho are read only when Moodle has grades in it
    assert sum(pipeline.zoho.org.calls.values()) - zoho_calls == again["counts"]["zoho"]["calls"] == 4 + 3


def test_a_dry_run_reports_the_same_figures_and_changes_nothing_anywhere(pipeline: ZohoPipeline, db: Engine) -> None:
    setup = college(pipeline)
    users_before = {i: dict(u) for i, u in pipeline.moodle.site.users.items()}
    zoho_before = {m: {i: dict(r) for i, r in records.items()} for m, records in pipeline.zoho.org.records.items()}

    result = pipeline.reconcile(dry_run=True)
    pipeline.run()

    assert (result["status"], result["dry_run"]) == ("completed", True)
    assert result["counts"]["events"]["would_create"] == 2 * setup["count"]
    assert moodle_writes(pipeline) == 0
    assert pipeline.moodle.site.users == users_before
    assert pipeline.zoho.org.records == zoho_before
    for table in ("integration_events_log", "students", "enrollments", "deliveries", "moodle_accounts"):
        assert rows(db, f"SELECT * FROM {table}") == [], table


def test_a_run_stopped_by_its_budget_resumes_where_it_stopped_and_finishes(pipeline: ZohoPipeline, db: Engine) -> None:
    setup = college(pipeline)
    pipeline.wiring["RECONCILE_ZOHO_CREDITS"] = "6"  # the failures report (4), then one COQL call (3) is too much

    first = pipeline.reconcile()
    pipeline.wiring["RECONCILE_ZOHO_CREDITS"] = "5000"
    second = pipeline.reconcile()
    pipeline.run()

    assert (first["status"], first["error"], first["phase"]) == ("paused", "zoho credit budget", "zoho_students")
    assert second["run_id"] == first["run_id"]  # the same run, carried on
    assert second["status"] == "completed"
    assert second["counts"]["events"]["created"] == 2 * setup["count"]
    assert len(rows(db, "SELECT id FROM reconcile_runs")) == 1


def test_a_run_out_of_time_sends_itself_a_follow_up_that_carries_it_on(
    pipeline: ZohoPipeline, function_environment: dict[str, str], db: Engine
) -> None:
    setup = college(pipeline)
    follow_ups = pipeline.queues.sqs.create_queue(QueueName=f"follow-ups-{setup['course']}")["QueueUrl"]
    settings = Settings.model_validate(
        {
            **function_environment,
            **pipeline.wiring,
            "MOODLE_URL": pipeline.moodle.url,
            "MOODLE_TOKEN": pipeline.moodle.site.token,
            "RECONCILE_QUEUE_URL": follow_ups,
        }
    )
    reconciler = build_reconciler(settings)
    asked = iter([900_000] * 5)  # five steps' worth of time, then less than Lambda's last minute

    first = reconciler.invoke({}, lambda: next(asked, 30_000))
    [message] = pipeline.queues.receive_all(follow_ups)
    second = reconciler.invoke({"Records": [{"body": message["Body"]}]}, lambda: 900_000)

    assert (first["status"], first["error"], first["phase"]) == ("paused", "time", "zoho_enrollments")
    assert json.loads(message["Body"]) == {"run_id": first["run_id"], "dry_run": False}
    [carried] = second["runs"]
    assert (carried["run_id"], carried["status"]) == (first["run_id"], "completed")
    assert carried["counts"]["events"]["created"] == 2 * setup["count"]


def test_a_change_made_in_the_same_second_as_the_last_import_is_read_as_new(pipeline: ZohoPipeline, db: Engine) -> None:
    setup = college(pipeline)
    org, student = pipeline.zoho.org, setup["students"][7]
    read_at = org.records["BTEC_Students"][student]["Modified_Time"]  # what the import reads
    pipeline.reconcile()
    pipeline.run()
    # A person renames the student within that same second (Zoho's times are to the second: on a
    # quick day, setting up, importing and the edit fit in one), and Zoho's webhook for it fails
    org.change_silently("BTEC_Students", student, {"Name": "Renamed Student"})
    with org.lock:
        org.records["BTEC_Students"][student]["Modified_Time"] = read_at

    result = pipeline.reconcile()
    pipeline.run()

    assert result["counts"]["events"]["created"] >= 1
    [mirrored] = rows(db, "SELECT name FROM students WHERE zoho_record_id = :id", id=student)
    assert mirrored["name"] == "Renamed Student"
