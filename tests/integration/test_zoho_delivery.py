"""The Zoho half of the delivery stage (docs/connect-moodle.md) against the Zoho stand-in: Moodle grades become
``BTEC_Grades`` records, Moodle ids go back to the students, ids-only notifications are fetched and
mirrored, and Zoho's limits and errors are respected — with every function loaded as Lambda loads
it, behind its queue.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from devstack.poller import QueuePoller
from devstack.samples import DEV_SECRETS, Sample, http_api_event, user_graded
from devstack.zoho_limits import API_USER
from event_router.contract import ZOHO_NOTIFY_ROUTE
from event_router.derived import channel_token
from tests.conftest import Queues
from tests.integration.conftest import Invoke
from tests.integration.flow import T1, T2, rows, zoho
from tests.integration.pipelines import ZohoPipeline

COURSE = "L3-IT-2026"


def student_in_both(pipeline: ZohoPipeline, moodle_user: int, number: str = "BTEC-1") -> str:
    """A student Zoho holds, mirrored, whose Moodle account the router manages (as after its provisioning)."""
    fields = {"Name": "Ada Example", "Student_ID_Number": number, "Moodle_User_ID": str(moodle_user)}
    zoho_id = pipeline.zoho.org.create("BTEC_Students", fields)
    pipeline.send(zoho("student", zoho_id, "insert", T1, **fields))
    pipeline.run()
    manage(pipeline, zoho_id, moodle_user)
    return zoho_id


def manage(pipeline: ZohoPipeline, zoho_id: str, moodle_user: int) -> None:
    """The router's record that it made the student's Moodle account."""
    with pipeline.db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin) VALUES (:s, :u, 'created') "
                "ON CONFLICT (student_zoho_id) DO UPDATE SET moodle_user_id = EXCLUDED.moodle_user_id"
            ),
            {"s": zoho_id, "u": moodle_user},
        )


# ------------------------------------------------------------------ grades to Zoho


def test_a_moodle_grade_becomes_one_btec_grades_record_and_a_later_grade_updates_it(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    ada = student_in_both(pipeline, 348)

    pipeline.send(user_graded(348, 431, 55.0, 1_764_000_000))
    pipeline.run()
    first = pipeline.zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", "348-431")
    pipeline.send(user_graded(348, 431, 72.5, 1_764_000_100))
    pipeline.run()
    [record] = pipeline.zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", "348-431")

    assert [r["id"] for r in first] == [record["id"]]
    assert record["Student"] == {"id": ada}
    assert (record["Final_Grade"], record["Moodle_Course_ID"]) == (72.5, "12")
    assert record["Name"] == "Ada Example - grade item 431"
    assert pipeline.zoho.org.workflow_runs == 0  # trigger: [] on every write
    assert [d["status"] for d in rows(db, "SELECT status FROM deliveries WHERE destination = 'zoho'")] == [
        "delivered",
        "delivered",
    ]


def test_a_grade_on_a_scale_is_written_as_its_scale_item(
    pipeline: ZohoPipeline, load: Callable[..., Invoke], db: Engine
) -> None:
    student_in_both(pipeline, 348)
    mapping = json.dumps({"grade_scale": ["Refer", "Pass", "Merit", "Distinction"]})
    pipeline.restart_zoho_delivery(FIELD_MAPPING=mapping)

    pipeline.send(
        user_graded(348, 431, 3, 1_764_000_000, scaleid=7), user_graded(348, 432, 2, 1_764_000_000, grade_letter="P")
    )
    pipeline.run()

    letters = {r["Moodle_Grade_Key"]: r["Grade"] for r in pipeline.zoho.org.records["BTEC_Grades"].values()}
    assert letters == {"348-431": "Merit", "348-432": "P"}


def test_250_grades_arrive_in_at_most_3_upsert_calls_and_25_credits(pipeline: ZohoPipeline) -> None:
    student_in_both(pipeline, 348)
    credits_before = pipeline.zoho.org.credits_used

    pipeline.send(*(user_graded(348, item, 60.0, 1_764_000_000) for item in range(1, 251)))
    for processor in pipeline.processors:
        processor.drain()
    pipeline.zoho_delivery.drain()

    assert len(pipeline.zoho.org.records["BTEC_Grades"]) == 250
    assert pipeline.upserts() <= 3
    assert pipeline.zoho.org.credits_used - credits_before <= 25  # Zoho charges a write per ten records


def test_a_grade_waits_for_its_students_moodle_user_and_goes_once_there_is_one(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    fields = {"Name": "Grace Hopper", "Student_ID_Number": "BTEC-2", "Academic_Email": "grace@students.example.ac.uk"}
    grace = pipeline.zoho.org.create("BTEC_Students", fields)
    moodle_user = 1 + max(pipeline.moodle.site.users)  # the id the stand-in gives the next user

    pipeline.send(user_graded(moodle_user, 431, 80.0, 1_764_000_000))
    pipeline.run()
    waiting = rows(db, "SELECT status, last_error FROM deliveries")
    pipeline.send(zoho("student", grace, "insert", T1, **fields))  # provisioned into Moodle: the grade goes
    pipeline.run()

    assert waiting == [{"status": "waiting", "last_error": f"no Zoho student has Moodle user {moodle_user} yet"}]
    [record] = pipeline.zoho.org.records["BTEC_Grades"].values()
    assert record["Student"] == {"id": grace}
    # and the student's new Moodle id was written back to Zoho
    assert pipeline.zoho.org.records["BTEC_Students"][grace]["Moodle_User_ID"] == str(moodle_user)


def test_one_record_zoho_refuses_fails_alone(pipeline: ZohoPipeline, db: Engine) -> None:
    student_in_both(pipeline, 348)
    ghost = "5725767999999999999"  # in the mirror, but not in Zoho: the lookup is invalid
    pipeline.send(zoho("student", ghost, "insert", T1, Name="Ghost", Moodle_User_ID="349"))
    pipeline.run()
    manage(pipeline, ghost, 349)

    pipeline.send(user_graded(348, 1, 50.0, 1_764_000_000), user_graded(349, 1, 50.0, 1_764_000_000))
    pipeline.run()

    found = {d["target_key"]: d for d in rows(db, "SELECT * FROM deliveries WHERE destination = 'zoho'")}
    assert found["348-1"]["status"] == "delivered"
    assert (found["349-1"]["status"], found["349-1"]["last_error"]) == (
        "failed",
        "INVALID_DATA: invalid data (Student)",
    )
    assert pipeline.queues.depth(pipeline.queues.dlq_url) == 0


# ------------------------------------------------------------------ limits and failures


def test_over_zohos_credits_deliveries_back_off_and_all_arrive_without_a_dead_letter(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    student_in_both(pipeline, 348)
    pipeline.check()  # the token, and the router's user
    pipeline.zoho.org.credits = pipeline.zoho.org.credits_used + 1  # one call left today

    pipeline.send(*(user_graded(348, item, 60.0, 1_764_000_000) for item in range(1, 151)))
    for processor in pipeline.processors:
        processor.drain()
    pipeline.zoho_delivery.poll_once()  # 100 go
    pipeline.zoho_delivery.poll_once()  # 50 get 429: retried
    refused = pipeline.zoho.org.refused["TOO_MANY_REQUESTS"]
    pending = rows(db, "SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")[0]["n"]
    pipeline.zoho.org.credits += 10  # the rolling day moves on
    pipeline.zoho_delivery.drain()

    assert (refused, pending) == (1, 50)
    assert len(pipeline.zoho.org.records["BTEC_Grades"]) == 150
    assert pipeline.queues.depth(pipeline.queues.dlq_url) == 0


def test_calls_never_exceed_the_concurrency_limit_across_containers(
    pipeline: ZohoPipeline, load: Callable[..., Invoke]
) -> None:
    """Eight containers fetch records at once; the org allows 2 calls at a time, and so do the
    router's shared slots."""
    pipeline.zoho.org.max_concurrent = 2
    ids = [pipeline.zoho.org.create("BTEC_Students", {"Name": f"S{n}"}) for n in range(8)]
    pipeline.check()
    containers = [load("StudentsProcessor", **pipeline.wiring, ZOHO_MAX_CONCURRENT_CALLS="2") for _ in range(8)]
    for record_id in ids:
        pipeline.send(notification("BTEC_Students", [record_id], "update"))
    messages = pipeline.queues.receive_all(pipeline.queues.urls["students"])
    threads = [threading.Thread(target=containers[n], args=(sqs_event([messages[n]]),)) for n in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert pipeline.zoho.org.calls["GET /crm/v8/BTEC_Students"] == 8
    assert pipeline.zoho.org.peak_concurrent <= 2
    assert pipeline.zoho.org.refused["TOO_MANY_REQUESTS"] == 0


def test_a_revoked_refresh_token_pauses_zoho_without_dead_letters_and_it_resumes_once_fixed(
    pipeline: ZohoPipeline, db: Engine, captured_logs: Callable[[], list[str]]
) -> None:
    student_in_both(pipeline, 348)
    pipeline.zoho.org.revoke()

    pipeline.send(user_graded(348, 1, 50.0, 1_764_000_000))
    pipeline.run()
    paused = rows(db, "SELECT status FROM deliveries WHERE destination = 'zoho'")
    still = pipeline.check()
    pipeline.zoho.org.restore()  # a new refresh token, in effect
    resumed = pipeline.check()
    pipeline.run()

    assert paused == [{"status": "paused"}]
    assert (still["paused"], still["error"]) == (True, "invalid_code")
    alarm_metric = [
        json.loads(line)
        for line in captured_logs()
        if '"DestinationPaused"' in line and '"destination":"zoho"' in line.replace(" ", "")
    ]
    assert [m["DestinationPaused"] for m in alarm_metric][:2] == [[1.0], [1.0]]  # the alarm's metric: paused
    assert alarm_metric[-1]["DestinationPaused"] == [0.0]  # and cleared once Zoho answered
    assert (resumed["resumed"], resumed["requeued"]) == (True, 1)
    assert pipeline.zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", "348-1") != []
    assert pipeline.queues.depth(pipeline.queues.dlq_url) == 0


# ------------------------------------------------------------------ ids-only notifications


def notification(module: str, ids: list[str], operation: str, token: str | None = None) -> Sample:
    document = {
        "server_time": 1_764_000_000_000 + len(ids),
        "query_params": {},
        "module": module,
        "resource_uri": "https://www.zohoapis.com/crm/v8/" + module,
        "ids": ids,
        "affected_fields": [],
        "operation": operation,
        "channel_id": "1000000068001",
        "token": token if token is not None else channel_token(DEV_SECRETS["zoho"].encode()),
    }
    return NotificationSample(f"notify-{ids[0]}", ZOHO_NOTIFY_ROUTE, json.dumps(document).encode(), 202)


class NotificationSample(Sample):
    @property
    def source(self) -> str:
        return "zoho"

    def event(self, secrets: dict[str, str] = DEV_SECRETS) -> dict[str, Any]:
        method, path = self.route.split(" ", 1)
        return http_api_event(method, path, self.body, {"content-type": "application/json"}, route_key=self.route)


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    from devstack.poller import lambda_sqs_event

    return lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:students")


def test_a_notification_becomes_one_event_per_id_and_the_records_are_fetched_and_mirrored(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    ids = [
        pipeline.zoho.org.create("BTEC_Students", {"Name": f"Student {n}", "Student_ID_Number": f"N{n}"})
        for n in range(3)
    ]

    [answer] = pipeline.send(notification("BTEC_Students", ids, "insert"))
    pipeline.processors[0].drain()

    assert len(answer["event_ids"]) == 3
    mirrored = {r["zoho_record_id"]: r["student_id_number"] for r in rows(db, "SELECT * FROM students")}
    assert mirrored == {record_id: f"N{n}" for n, record_id in enumerate(ids)}
    assert pipeline.zoho.org.calls["GET /crm/v8/BTEC_Students"] == 1  # the three in one call
    [logged] = rows(db, "SELECT payload FROM integration_events_log LIMIT 1")
    assert "token" not in logged["payload"]
    assert {r["auth_method"] for r in rows(db, "SELECT auth_method FROM integration_events_log")} == {"channel_token"}


def test_a_notification_with_the_wrong_token_is_refused(pipeline: ZohoPipeline, db: Engine) -> None:
    response = pipeline.verifiers["zoho"](notification("BTEC_Students", ["1"], "update", token="guess").event())

    assert response["statusCode"] == 401
    assert rows(db, "SELECT * FROM integration_events_log") == []


def test_a_change_the_router_made_in_zoho_comes_back_as_an_echo_and_goes_nowhere(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    pipeline.moodle.site.create_course(COURSE)
    pipeline.check()  # learns the router's Zoho user
    record = pipeline.zoho.org.create("BTEC_Students", {"Name": "Ada Example"}, by=API_USER)

    pipeline.send(notification("BTEC_Students", [record], "insert"))
    pipeline.run()

    [logged] = rows(db, "SELECT result FROM integration_events_log")
    assert logged["result"]["echo"] is True
    assert rows(db, "SELECT * FROM deliveries") == []


def test_an_enrolment_without_a_course_takes_its_classs_which_is_fetched_once(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    course = pipeline.moodle.site.create_course(COURSE)
    klass = pipeline.zoho.org.create("BTEC_Classes", {"Name": "Level 3 IT", "Moodle_Course_ID": COURSE})
    fields = {"Name": "Ada Example", "Student_ID_Number": "BTEC-1", "Academic_Email": "ada@students.example.ac.uk"}
    ada = pipeline.zoho.org.create("BTEC_Students", fields)
    pipeline.send(zoho("student", ada, "insert", T1, **fields))
    pipeline.run()
    enrolment = {
        "Name": "Ada - L3 IT",
        "Enrolled_Students": {"id": ada},
        "Classes": {"id": klass, "name": "Level 3 IT"},
        "Enrollment_Status": "Active",
    }

    pipeline.send(zoho("enrollment", "E1", "insert", T1, **enrolment))
    pipeline.run()
    pipeline.send(zoho("enrollment", "E1", "update", T2, **{**enrolment, "Enrollment_Status": "Withdrawn"}))
    pipeline.run()

    [user] = [u for u in pipeline.moodle.site.users.values() if u.get("idnumber") == "BTEC-1"]
    assert pipeline.moodle.site.enrolment(user["id"], course) == "suspended"
    assert pipeline.zoho.org.calls["GET /crm/v8/BTEC_Classes"] == 1  # the second enrolment used what was kept


# ------------------------------------------------------------------ the health check and the channel


def test_the_check_registers_a_channel_zoho_accepts_and_keeps_the_expiry_zoho_gave(pipeline: ZohoPipeline) -> None:
    answer = pipeline.check()

    [(channel_id, channel)] = pipeline.zoho.org.channels.items()
    assert answer["checks"]["channel"]["ok"] is True
    assert len(channel["token"]) <= 50  # Zoho's limit: a longer token is INVALID_DATA
    assert channel["token"] == channel_token(DEV_SECRETS["zoho"].encode())
    assert channel["notify_on_related_action"] is False
    assert channel_id != "1000000068001"  # random, not a number every router would share
    kept = identity(pipeline)["channel"]
    assert kept["id"] == int(channel_id)
    assert datetime.fromisoformat(kept["expires_at"]) == channel["expiry"]  # what Zoho answered


def test_a_channel_zoho_cut_to_an_hour_is_renewed_within_the_hour_not_after_days(pipeline: ZohoPipeline) -> None:
    pipeline.check()
    [(channel_id, _)] = pipeline.zoho.org.channels.items()
    with pipeline.zoho.org.lock:  # Zoho gave an hour (an expiry beyond a week is silently cut)
        pipeline.zoho.org.channels[channel_id]["expiry"] = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    stored = identity(pipeline)
    stored["channel"]["expires_at"] = pipeline.zoho.org.channels[channel_id]["expiry"].isoformat()
    stored["channel"]["registered_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    set_identity(pipeline, stored)
    calls = sum(n for call, n in pipeline.zoho.org.calls.items() if "actions/watch" in call)

    pipeline.check()

    assert sum(n for call, n in pipeline.zoho.org.calls.items() if "actions/watch" in call) == calls + 1
    assert pipeline.zoho.org.channels[channel_id]["expiry"] > datetime.now(UTC) + timedelta(days=6)


def test_a_lapsed_channel_that_zoho_will_not_update_is_enabled_again(pipeline: ZohoPipeline) -> None:
    pipeline.check()
    stored = identity(pipeline)
    pipeline.zoho.org.channels.clear()  # lapsed: Zoho no longer knows it, and refuses to update it
    stored["channel"]["registered_at"] = (datetime.now(UTC) - timedelta(days=6)).isoformat()
    stored["channel"]["expires_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # due for renewal
    set_identity(pipeline, stored)

    answer = pipeline.check()

    assert answer["checks"]["channel"]["ok"] is True
    assert pipeline.zoho.org.calls["PATCH /crm/v8/actions/watch"] == 1
    assert pipeline.zoho.org.calls["POST /crm/v8/actions/watch"] == 2
    assert list(pipeline.zoho.org.channels) == [str(stored["channel"]["id"])]


def test_a_refused_channel_neither_keeps_zoho_paused_nor_leaves_the_router_unknown(
    pipeline: ZohoPipeline, db: Engine, load: Callable[..., Invoke]
) -> None:
    student_in_both(pipeline, 348)
    pipeline.zoho.org.revoke()
    pipeline.send(user_graded(348, 1, 50.0, 1_764_000_000))
    pipeline.run()  # paused: the refresh token was revoked
    pipeline.zoho.org.restore()
    # The client was granted everything but the notifications: the channel step fails, alone.
    pipeline.zoho.org.scopes = pipeline.zoho.org.scopes - {"ZohoCRM.notifications.ALL"}

    answer = pipeline.check()
    pipeline.run()
    stats = json.loads(load("MonitorFunction")(http_api_event("GET", "/api/v1/events/stats", b"", {}))["body"])

    assert (answer["paused"], answer["resumed"]) == (False, True)
    assert answer["checks"]["channel"] == {"ok": False, "reason": "OAUTH_SCOPE_MISMATCH"}
    assert identity(pipeline)["userid"] == API_USER
    assert pipeline.zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", "348-1") != []
    checks = stats["deliveries"]["destinations"]["zoho"]["checks"]
    assert checks["channel"] == {"ok": False, "reason": "OAUTH_SCOPE_MISMATCH"}
    assert [checks[step]["ok"] for step in ("token", "identity", "resume")] == [True, True, True]


def test_a_locked_zoho_record_is_retried_and_a_denied_permission_pauses_zoho(
    pipeline: ZohoPipeline, db: Engine
) -> None:
    fields = {"Name": "Ada Example", "Student_ID_Number": "BTEC-8", "Academic_Email": "ada8@students.example.ac.uk"}
    ada = pipeline.zoho.org.create("BTEC_Students", fields)
    pipeline.zoho.org.locked.add(ada)  # in a blueprint transition: Moodle_User_ID cannot be written yet

    pipeline.send(zoho("student", ada, "insert", T1, **fields))  # provisioned: its Moodle id goes back
    pipeline.run()
    [locked] = rows(db, "SELECT status, last_error FROM deliveries WHERE action = 'moodle_user_id'")
    pipeline.zoho.org.locked.clear()
    pipeline.zoho.org.denied.add("BTEC_Grades")
    moodle_user = next(u["id"] for u in pipeline.moodle.site.users.values() if u.get("idnumber") == "BTEC-8")
    pipeline.send(user_graded(moodle_user, 1, 50.0, 1_764_000_000))
    pipeline.run()

    assert locked["status"] in ("pending", "dead_lettered")  # retried, never failed for good
    assert locked["last_error"].startswith("RECORD_LOCKED: ")
    [grade] = rows(db, "SELECT status, last_error FROM deliveries WHERE action = 'grade'")
    assert grade == {"status": "paused", "last_error": "Zoho is paused (NO_PERMISSION)"}


def test_deleting_a_zoho_student_writes_nothing_back_to_the_deleted_record(pipeline: ZohoPipeline, db: Engine) -> None:
    pipeline.moodle.site.create_course(COURSE)
    fields = {"Name": "Ada Example", "Student_ID_Number": "BTEC-7", "Academic_Email": "ada7@students.example.ac.uk"}
    ada = pipeline.zoho.org.create("BTEC_Students", fields)
    pipeline.send(zoho("student", ada, "insert", T1, **fields))
    pipeline.run()
    with pipeline.zoho.org.lock:
        del pipeline.zoho.org.records["BTEC_Students"][ada]  # deleted in Zoho
    writes_before = pipeline.zoho.org.calls["PUT /crm/v8/BTEC_Students"]

    pipeline.send(zoho("student", ada, "delete", T2))
    pipeline.run()

    assert pipeline.zoho.org.calls["PUT /crm/v8/BTEC_Students"] == writes_before
    assert [
        r["status"]
        for r in rows(db, "SELECT status FROM deliveries WHERE action = 'moodle_user_id' ORDER BY id")
        if r["status"] not in ("delivered",)
    ] == []


def identity(pipeline: ZohoPipeline) -> dict[str, Any]:
    with pipeline.db.connect() as connection:
        found = connection.execute(text("SELECT identity FROM destinations WHERE name = 'zoho'")).scalar_one()
    return dict(found)


def set_identity(pipeline: ZohoPipeline, value: dict[str, Any]) -> None:
    with pipeline.db.begin() as connection:
        connection.execute(
            text("UPDATE destinations SET identity = CAST(:v AS jsonb) WHERE name = 'zoho'"), {"v": json.dumps(value)}
        )


def test_a_processor_holds_no_zoho_secret_and_reads_with_the_token_the_zoho_delivery_keeps_fresh(
    pipeline: ZohoPipeline, load: Callable[..., Invoke], queues: Queues, db: Engine
) -> None:
    # Given a students processor configured as deployed: Zoho's API on, no client credentials
    reader = load("StudentsProcessor", **pipeline.wiring)
    processor = QueuePoller(
        queues.sqs, queues.urls["students"], lambda event, _: reader(event), "reader", retry_immediately=True
    )
    record = pipeline.zoho.org.create("BTEC_Students", {"Name": "Student R", "Student_ID_Number": "R1"})
    pipeline.send(notification("BTEC_Students", [record], "insert"))
    with db.begin() as connection:  # no token yet (a new deployment, before the first check)
        connection.execute(text("DELETE FROM zoho_tokens"))
    issued = pipeline.zoho.org.tokens_issued

    # When the processor meets the notification, the event waits: it asks Zoho for no token itself
    processor.poll_once()
    assert pipeline.zoho.org.tokens_issued == issued
    assert rows(db, "SELECT * FROM students") == []
    [waiting] = rows(db, "SELECT status FROM integration_events_log")
    assert waiting["status"] not in ("processed", "skipped", "failed")

    # Then once the Zoho delivery function's check has made the shared token, the record is read with it
    pipeline.check()
    processor.drain()
    assert [r["student_id_number"] for r in rows(db, "SELECT * FROM students")] == ["R1"]
    assert pipeline.zoho.org.tokens_issued == issued + 1  # the delivery function's, and no other
