"""Processors against real Postgres and moto's SQS (SPEC §7, §8).

Webhooks go in through the verifiers, so every test exercises the real path:
verifier → event log → module queue → Lambda-style poller → processor → mirror.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, text

from devstack.poller import QueuePoller, lambda_sqs_event
from devstack.samples import Sample, zoho_webhook
from event_router.contract import WEBHOOK_ROUTES
from event_router.process.rules import students as students_rule
from event_router.store.mirror import MirrorStore
from tests.conftest import Queues
from tests.integration.conftest import PROCESSORS, Invoke, load_event

Event = dict[str, Any]
T1, T2, T3 = "2026-11-25T09:00:00+00:00", "2026-11-25T10:00:00+00:00", "2026-11-25T11:00:00+00:00"
STUDENT = "5725767000000412001"
FORM = "application/x-www-form-urlencoded"
CLASS = "5725767000000520011"


def zoho(segment: str, record_id: str, operation: str, modified: str, notification: str = "", **fields: Any) -> Sample:
    """A signed Zoho full-record webhook for one record."""
    module = WEBHOOK_ROUTES[f"POST /api/v1/events/zoho/{segment}"].module
    return zoho_webhook(
        module, record_id, operation=operation, modified=modified, notification_id=notification or None, **fields
    )


def moodle(segment: str, name: str, timecreated: int, **fields: Any) -> Sample:
    document = {
        "eventname": f"\\core\\event\\{name}",
        "userid": 2,
        "relateduserid": 348,
        "courseid": 12,
        "timecreated": timecreated,
        **fields,
    }
    return Sample(f"{name}-{timecreated}", f"POST /api/v1/events/moodle/{segment}", json.dumps(document).encode(), 202)


def rows(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def log_status(db: Engine) -> dict[str, str]:
    return {r["event_id"]: r["status"] for r in rows(db, "SELECT event_id, status FROM integration_events_log")}


@pytest.fixture
def send(load_verifier: Callable[..., Invoke]) -> Callable[[Sample], dict[str, Any]]:
    verifiers = {"zoho": load_verifier("zoho"), "moodle": load_verifier("moodle")}

    def deliver(sample: Sample) -> dict[str, Any]:
        response = verifiers[sample.source](sample.event())
        assert response["statusCode"] in (200, 202), response
        return json.loads(response["body"])  # type: ignore[no-any-return]

    return deliver


@pytest.fixture
def mirror_writes(db: Engine) -> Iterator[Callable[[], dict[str, int]]]:
    """Counts every INSERT or UPDATE of a mirror row, keyed by table and row key."""
    tables = ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades")
    with db.begin() as connection:
        connection.execute(text("CREATE TABLE mirror_writes (table_name text, row_key text)"))
        connection.execute(
            text("""
            CREATE FUNCTION count_mirror_write() RETURNS trigger AS $$
            BEGIN
              INSERT INTO mirror_writes VALUES (TG_TABLE_NAME, coalesce(
                to_jsonb(NEW)->>'zoho_record_id',
                concat_ws(':', to_jsonb(NEW)->>'moodle_user_id', to_jsonb(NEW)->>'moodle_course_id',
                          to_jsonb(NEW)->>'grade_item_id')));
              RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        )
        for table in tables:
            connection.execute(
                text(
                    f"CREATE TRIGGER count_writes AFTER INSERT OR UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION count_mirror_write()"
                )
            )

    def counts() -> dict[str, int]:
        found = rows(db, "SELECT table_name || '/' || row_key AS k, count(*) AS n FROM mirror_writes GROUP BY 1")
        return {r["k"]: r["n"] for r in found}

    yield counts
    with db.begin() as connection:
        for table in tables:
            connection.execute(text(f"DROP TRIGGER count_writes ON {table}"))
        connection.execute(text("DROP FUNCTION count_mirror_write() CASCADE"))
        connection.execute(text("DROP TABLE mirror_writes"))


@pytest.fixture
def poison(db: Engine) -> Iterator[Callable[[], None]]:
    """Makes every write of grade record POISON fail in the database, until the returned cure is called."""
    with db.begin() as connection:
        connection.execute(
            text("""
            CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'poisoned record'; END $$ LANGUAGE plpgsql""")
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON grades FOR EACH ROW "
                "WHEN (NEW.zoho_record_id = 'POISON') EXECUTE FUNCTION refuse_poison()"
            )
        )

    def cure() -> None:
        with db.begin() as connection:
            connection.execute(text("DROP FUNCTION IF EXISTS refuse_poison() CASCADE"))

    yield cure
    cure()


# ------------------------------------------------------------------ each module lands in its mirror


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


# ------------------------------------------------------------------ exactly once


@pytest.mark.parametrize("batch_size", [1, 10], ids=["separate-batches", "same-batch"])
def test_same_event_delivered_twice_changes_its_row_once(
    batch_size: int,
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    queues: Queues,
    db: Engine,
    mirror_writes: Callable[[], dict[str, int]],
) -> None:
    students = pollers("students", batch_size=batch_size)
    send(zoho("student", STUDENT, "insert", T1, Name="Ada"))
    [message] = queues.sqs.receive_message(QueueUrl=queues.urls["students"], MessageAttributeNames=["All"])["Messages"]
    queues.sqs.change_message_visibility(
        QueueUrl=queues.urls["students"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    # SQS standard queues may deliver a message twice: put a second copy on the queue
    queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody=message["Body"])

    assert students.drain() == 2

    assert mirror_writes() == {f"students/{STUDENT}": 1}
    [row] = rows(db, "SELECT status, attempts FROM integration_events_log")
    assert (row["status"], row["attempts"]) == ("completed", 1)


def test_batch_redelivered_after_a_crash_mid_batch_changes_each_row_once(
    send: Callable[[Sample], Any],
    load: Callable[..., Invoke],
    queues: Queues,
    db: Engine,
    mirror_writes: Callable[[], dict[str, int]],
) -> None:
    # Given a batch of ten grade events
    for n in range(10):
        send(zoho("grade", f"G{n}", "insert", T1, Student=STUDENT, Grade="P"))
    messages = queues.receive_all(queues.urls["grades"])
    event = lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:grades")
    processor = load("GradesProcessor", MODULE="grades")

    # When the processor dies after writing the batch's mirror rows, before it commits
    real_apply_many = MirrorStore.apply_many

    def dies_after_writing(store: MirrorStore, writes: Any) -> Any:
        real_apply_many(store, writes)
        assert mirror_writes() == {}  # written, but not visible outside the batch's transaction
        raise SystemExit("container killed")

    with mock.patch.object(MirrorStore, "apply_many", dies_after_writing), pytest.raises(SystemExit):
        processor(event)
    # nothing of the batch is half-applied: its transaction died with it, the claim included
    assert sorted(log_status(db).values()) == ["queued"] * 10
    assert mirror_writes() == {}

    # and SQS delivers the whole batch again
    response = processor(event)

    # Then every event is completed and every mirror row was written exactly once
    assert response == {"batchItemFailures": []}
    assert set(log_status(db).values()) == {"completed"}
    assert mirror_writes() == {f"grades/G{n}": 1 for n in range(10)}


def test_event_queued_while_postgres_was_down_gets_its_log_row_from_the_processor(
    load_verifier: Callable[..., Invoke], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    from tests.integration.test_verifier import down_database_url

    load_verifier("zoho", DATABASE_URL=down_database_url())(load_event("zoho-student-full"))
    assert rows(db, "SELECT * FROM integration_events_log") == []

    pollers("students").drain()

    [row] = rows(db, "SELECT * FROM integration_events_log")
    assert (row["event_id"], row["status"], row["attempts"]) == ("zoho-notif-student-0001", "completed", 1)
    assert row["payload"]["data"]["Name"] == "Ada Example"
    assert len(rows(db, "SELECT * FROM students")) == 1


# ------------------------------------------------------------------ out of order


def test_older_update_after_a_newer_one_is_skipped_as_stale(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    students = pollers("students")
    newer = send(zoho("student", STUDENT, "update", T2, Name="Newer"))
    students.drain()

    older = send(zoho("student", STUDENT, "update", T1, Name="Older"))
    students.drain()

    [row] = rows(db, "SELECT name, source_modified_at, last_event_id FROM students")
    assert (row["name"], row["source_modified_at"].isoformat(), row["last_event_id"]) == (
        "Newer",
        T2,
        newer["event_id"],
    )
    [stale] = rows(db, "SELECT status, result FROM integration_events_log WHERE event_id = :e", e=older["event_id"])
    assert (stale["status"], stale["result"]) == ("skipped", {"reason": "stale"})


def test_delete_is_a_tombstone_an_older_update_cannot_undo(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    grades = pollers("grades")
    send(zoho("grade", "G1", "delete", T2))
    grades.drain()

    late = send(zoho("grade", "G1", "update", T1, Student=STUDENT, Grade="D"))
    grades.drain()

    [row] = rows(db, "SELECT deleted_at, grade FROM grades")
    assert (row["deleted_at"].isoformat(), row["grade"]) == (T2, None)
    assert log_status(db)[late["event_id"]] == "skipped"


def test_update_newer_than_the_delete_restores_the_record(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    grades = pollers("grades")
    send(zoho("grade", "G1", "delete", T2))
    grades.drain()

    send(zoho("grade", "G1", "update", T3, Student=STUDENT, Grade="D"))
    grades.drain()

    [row] = rows(db, "SELECT deleted_at, grade FROM grades")
    assert (row["deleted_at"], row["grade"]) == (None, "D")


def test_moodle_grades_out_of_order_keep_the_newest(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    send(moodle("grade", "user_graded", 1795598500, crud="u", other={"itemid": 431, "finalgrade": 90}))
    send(moodle("grade", "user_graded", 1795598400, crud="u", other={"itemid": 431, "finalgrade": 40}))

    pollers("grades").drain()

    [row] = rows(db, "SELECT final_grade FROM moodle_grades")
    assert float(row["final_grade"]) == 90


# ------------------------------------------------------------------ failures, dead letters, replay


def test_poison_record_reaches_the_dead_letter_queue_and_replay_completes_it_once_fixed(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    queues: Queues,
    db: Engine,
    poison: Callable[[], None],
) -> None:
    # Given a batch of ten grades, one of which the database refuses
    for record_id in [f"G{n}" for n in range(9)] + ["POISON"]:
        send(zoho("grade", record_id, "insert", T1, Student=STUDENT, Grade="P"))
    grades = pollers("grades")

    # When the processor runs: nine complete, the poison one is reported as a batch item failure
    first = grades.poll_once()
    assert (first.received, first.failed) == (10, 1)
    statuses = {r["record_id"]: r["status"] for r in rows(db, "SELECT record_id, status FROM integration_events_log")}
    assert statuses == {**{f"G{n}": "completed" for n in range(9)}, "POISON": "queued"}

    # and SQS keeps redelivering it until maxReceiveCount (5) moves it to the dead-letter queue
    grades.drain()
    assert queues.depth(queues.urls["grades"]) == 0
    assert queues.depth(queues.dlq_url) == 1
    [dead] = rows(db, "SELECT * FROM integration_events_log WHERE record_id = 'POISON'")
    assert (dead["status"], dead["attempts"]) == ("dead_lettered", 5)
    assert dead["error_message"] == "DatabaseError (SQLSTATE P0001)"

    # Then, once the cause is fixed, replaying the dead-letter queue brings it to completed
    poison()
    replayed = load("ReplayFunction")({"mode": "dlq"})
    assert replayed == {
        "success": True,
        "mode": "dlq",
        "dry_run": False,
        "examined": 1,
        "replayed": 1,
        "skipped": 0,
        "failed": 0,
        "event_ids": [dead["event_id"]],
    }
    grades.drain()
    [fixed] = rows(db, "SELECT * FROM integration_events_log WHERE record_id = 'POISON'")
    assert (fixed["status"], fixed["replay_count"]) == ("completed", 1)
    assert queues.depth(queues.dlq_url) == 0

    # and replaying again finds nothing more to do
    assert load("ReplayFunction")({"mode": "dlq"})["examined"] == 0


def test_permanent_failure_is_not_retried_and_is_replayable_from_the_log(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    queues: Queues,
    db: Engine,
) -> None:
    # Given an enrolment without its student: it can never apply
    broken = send(zoho("enrollment", "E9", "insert", T1, Classes=CLASS))
    enrollments = pollers("enrollments")

    result = enrollments.poll_once()

    assert result.failed == 0  # not reported for retry
    assert queues.depth(queues.urls["enrollments"]) == 0
    assert queues.depth(queues.dlq_url) == 0
    [row] = rows(db, "SELECT * FROM integration_events_log")
    assert (row["status"], row["error_message"]) == ("failed", "Enrolled_Students is required")
    assert row["result"] == {
        "reason": "invalid",
        "problems": [{"field": "Enrolled_Students", "problem": "is required"}],
    }

    # When an operator replays failed events from the log
    replayed = load("ReplayFunction")({"mode": "log", "statuses": ["failed"]})

    # Then it is queued and processed again
    assert (replayed["replayed"], replayed["event_ids"]) == (1, [broken["event_id"]])
    enrollments.drain()
    [again] = rows(db, "SELECT status, attempts, replay_count FROM integration_events_log")
    assert (again["status"], again["attempts"], again["replay_count"]) == ("failed", 2, 1)


def test_moodle_grade_message_without_item_id_fails_permanently(load: Callable[..., Invoke], db: Engine) -> None:
    # The verifier refuses such a webhook (400); a message that carries one anyway can never apply.
    poison = load_event("sqs-grades-batch-with-poison")
    [record] = [r for r in poison["Records"] if "moodle-evt-grade-poison" in r["body"]]

    response = load("GradesProcessor", MODULE="grades")({"Records": [record]})

    assert response == {"batchItemFailures": []}
    [row] = rows(db, "SELECT status, error_message FROM integration_events_log")
    assert (row["status"], row["error_message"]) == ("failed", "other.itemid is required")


def test_unreadable_message_is_retried_until_the_dead_letter_queue(
    pollers: Callable[..., QueuePoller], queues: Queues
) -> None:
    queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody="not an event")

    pollers("students").drain()

    assert queues.depth(queues.dlq_url) == 1


def test_dry_run_reports_and_changes_nothing(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    queues: Queues,
    db: Engine,
    poison: Callable[[], None],
) -> None:
    send(zoho("grade", "POISON", "insert", T1, Student=STUDENT, Grade="P"))
    send(zoho("enrollment", "E9", "insert", T1, Classes=CLASS))
    pollers("grades").drain()
    pollers("enrollments").drain()
    before = rows(db, "SELECT * FROM integration_events_log ORDER BY id")
    replay = load("ReplayFunction")

    from_dlq = replay({"mode": "dlq", "dry_run": True})
    from_log = replay({"mode": "log", "dry_run": True})

    assert (from_dlq["examined"], from_dlq["replayed"], from_dlq["dry_run"]) == (1, 1, True)
    assert (from_log["examined"], from_log["replayed"]) == (2, 2)
    assert rows(db, "SELECT * FROM integration_events_log ORDER BY id") == before
    assert queues.depth(queues.dlq_url) == 1
    assert all(queues.depth(url) == 0 for url in queues.urls.values())
    # and the dead-lettered message is immediately available to a real replay
    assert replay({"mode": "dlq"})["replayed"] == 1


def test_replay_filters_by_module_and_event_ids(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], load: Callable[..., Invoke], db: Engine
) -> None:
    first = send(zoho("enrollment", "E1", "insert", T1, Classes=CLASS))
    send(zoho("enrollment", "E2", "insert", T1, Classes=CLASS))
    pollers("enrollments").drain()
    replay = load("ReplayFunction")

    assert replay({"mode": "log", "module": "grades"})["examined"] == 0
    only = replay({"mode": "log", "module": "enrollments", "event_ids": [first["event_id"]]})

    assert only["event_ids"] == [first["event_id"]]
    assert log_status(db)[first["event_id"]] == "replayed"


def test_replay_rejects_an_invalid_request_with_the_fields_named(load: Callable[..., Invoke]) -> None:
    replay = load("ReplayFunction")

    out_of_range = replay({"mode": "log", "max_messages": 0, "dry_run": "perhaps"})
    wrong_mode = replay({"mode": "dlq", "statuses": ["failed"]})

    assert out_of_range["success"] is False
    assert {d["field"] for d in out_of_range["details"]} == {"max_messages", "dry_run"}
    assert [d["field"] for d in wrong_mode["details"]] == ["input"]


def test_sweep_queues_rows_stuck_in_received(
    load_verifier: Callable[..., Invoke],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    db: Engine,
) -> None:
    from tests.integration.test_verifier import down_sqs_endpoint

    # Given an event accepted while SQS was down, and one that just arrived
    load_verifier("moodle", AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())(load_event("moodle-enrollment-raw"))
    with db.begin() as connection:
        connection.execute(text("UPDATE integration_events_log SET received_at = now() - interval '5 minutes'"))
    load_verifier("moodle", AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())(load_event("moodle-enrollment-plugin"))

    # When the scheduled sweep runs (the template's schedule input)
    swept = load("ReplayFunction")({"mode": "log", "statuses": ["received"]})
    pollers("enrollments").drain()

    # Then the stuck one is queued and processed; the fresh one is left to its verifier
    assert (swept["examined"], swept["replayed"]) == (1, 1)
    assert sorted(log_status(db).values()) == ["completed", "received"]


# ------------------------------------------------------------------ committed SQS events


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


def test_committed_poison_batch_reports_only_the_unreadable_message_for_retry(
    load: Callable[..., Invoke], db: Engine
) -> None:
    event = load_event("sqs-grades-batch-with-poison")

    response = load("GradesProcessor", MODULE="grades")(event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][-1]["messageId"]}]}
    assert log_status(db)["moodle-evt-grade-poison"] == "failed"


# ------------------------------------------------------------------ hostile and odd input (issue 9)


@pytest.fixture
def refuse_values(db: Engine) -> Iterator[Callable[[], None]]:
    """Makes the database refuse grade record BADVALUE with a data error (SQLSTATE 22003), as it
    refuses a value out of range, until the returned fix is called."""
    with db.begin() as connection:
        connection.execute(
            text("""
            CREATE FUNCTION refuse_value() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'value out of range' USING ERRCODE = 'numeric_value_out_of_range'; END
            $$ LANGUAGE plpgsql""")
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_value BEFORE INSERT OR UPDATE ON grades FOR EACH ROW "
                "WHEN (NEW.zoho_record_id = 'BADVALUE') EXECUTE FUNCTION refuse_value()"
            )
        )

    def fix() -> None:
        with db.begin() as connection:
            connection.execute(text("DROP FUNCTION IF EXISTS refuse_value() CASCADE"))

    yield fix
    fix()


def test_a_value_the_database_refuses_fails_on_the_first_attempt_and_is_replayable_after_a_fix(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    queues: Queues,
    db: Engine,
    refuse_values: Callable[[], None],
) -> None:
    # Before: a data error was retried as if Postgres were down, and dead-lettered five receives later.
    for record_id in ("G1", "BADVALUE", "G2"):
        send(zoho("grade", record_id, "insert", T1, Student=STUDENT, Grade="P"))
    grades = pollers("grades")

    first = grades.poll_once()

    assert (first.received, first.failed) == (3, 0)  # nothing left for SQS to retry
    assert queues.depth(queues.urls["grades"]) == 0
    assert queues.depth(queues.dlq_url) == 0
    [bad] = rows(db, "SELECT * FROM integration_events_log WHERE record_id = 'BADVALUE'")
    assert (bad["status"], bad["attempts"]) == ("failed", 1)
    assert bad["error_message"] == "the database refused a value of this event (DatabaseError (SQLSTATE 22003))"
    assert bad["result"] == {"reason": "refused_by_database"}
    assert {r["record_id"]: r["status"] for r in rows(db, "SELECT * FROM integration_events_log")} == {
        "G1": "completed",
        "BADVALUE": "failed",
        "G2": "completed",
    }
    stats = json.loads(load("MonitorFunction")(load_event("monitor-stats"))["body"])
    assert stats["failures"]["failed"] == 1
    assert stats["failures"]["recent"][0]["event_id"] == bad["event_id"]

    # and once the cause is fixed, replaying the failed event completes it
    refuse_values()
    assert load("ReplayFunction")({"mode": "log", "statuses": ["failed"]})["replayed"] == 1
    grades.drain()
    assert rows(db, "SELECT status FROM integration_events_log WHERE record_id = 'BADVALUE'") == [
        {"status": "completed"}
    ]


def test_an_unexpected_error_in_one_event_fails_that_event_only(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    for record_id in ("S1", "BOOM", "S2"):
        send(zoho("student", record_id, "insert", T1, Name=f"Student {record_id}"))
    real_plan = students_rule.plan

    def plan(event: Any) -> Any:
        if event.record_id == "BOOM":
            raise KeyError("a bug in a sync rule")
        return real_plan(event)

    with mock.patch.dict("event_router.process.processor.RULES", {"students": plan}):
        result = pollers("students").poll_once()

    assert result.failed == 0
    statuses = {
        r["record_id"]: (r["status"], r["error_message"]) for r in rows(db, "SELECT * FROM integration_events_log")
    }
    assert statuses == {
        "S1": ("completed", None),
        "BOOM": ("failed", "unexpected KeyError in the students sync rule"),
        "S2": ("completed", None),
    }
    assert {r["zoho_record_id"] for r in rows(db, "SELECT zoho_record_id FROM students")} == {"S1", "S2"}


def test_an_event_on_another_modules_queue_is_failed(
    send: Callable[[Sample], Any], load: Callable[..., Invoke], queues: Queues, db: Engine
) -> None:
    send(zoho("grade", "G1", "insert", T1, Student=STUDENT, Grade="P"))
    [message] = queues.receive_all(queues.urls["grades"])
    misrouted = lambda_sqs_event([{**message, "Attributes": {"ApproximateReceiveCount": "1"}}], "arn:students")

    response = load("StudentsProcessor", MODULE="students")(misrouted)

    assert response == {"batchItemFailures": []}
    [row] = rows(db, "SELECT status, error_message, result FROM integration_events_log")
    assert (row["status"], row["error_message"], row["result"]) == (
        "failed",
        "a grades event on the students queue",
        {"reason": "wrong_queue"},
    )
    assert rows(db, "SELECT * FROM grades") == []


def test_a_record_edited_and_edited_back_ends_as_the_last_edit(
    send: Callable[[Sample], Any], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    # Before: form webhooks without a time got content-derived ids, so A -> B -> A left the mirror at B.
    def form(name: str, modified: str) -> Sample:
        body = urlencode({"id": "F1", "Name": name, "Modified_Time": modified}).encode()
        return Sample(f"form-{name}", "POST /api/v1/events/zoho/student", body, 202, content_type=FORM)

    answers = [send(form("Ada", T1)), send(form("Ada Lovelace", T2)), send(form("Ada", T3))]
    pollers("students").drain()

    assert [a["status"] for a in answers] == ["queued", "queued", "queued"]
    [row] = rows(db, "SELECT name FROM students")
    assert row["name"] == "Ada"


def test_a_form_webhook_without_modified_time_is_a_400_saying_how_to_add_it(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    body = urlencode({"id": "F1", "Name": "Ada"}).encode()

    response = load_verifier("zoho")(
        Sample("no-time", "POST /api/v1/events/zoho/student", body, 400, content_type=FORM).event()
    )

    assert response["statusCode"] == 400
    [detail] = json.loads(response["body"])["details"]
    assert detail["field"] == "Modified_Time"
    assert "Modified Time" in detail["problem"]


@pytest.mark.parametrize("order", ["arrival", "reversed"])
def test_changes_with_equal_timestamps_end_as_the_later_arrival_in_any_processing_order(
    order: str, send: Callable[[Sample], Any], load: Callable[..., Invoke], queues: Queues, db: Engine
) -> None:
    # Given two different changes of one record stamped with the same second, A arriving before B
    send(zoho("student", STUDENT, "update", T1, "n-A", Name="A"))
    send(zoho("student", STUDENT, "update", T1, "n-B", Name="B"))
    messages = queues.receive_all(queues.urls["students"])
    assert [json.loads(m["Body"])["payload"]["data"]["Name"] for m in messages] == ["A", "B"]
    if order == "reversed":
        messages.reverse()
    processor = load("StudentsProcessor", MODULE="students")

    # When the processor takes them one at a time, in either order
    for message in messages:
        processor(lambda_sqs_event([{**message, "Attributes": {"ApproximateReceiveCount": "1"}}], "arn:students"))

    # Then the record holds B, the later arrival
    [row] = rows(db, "SELECT name FROM students")
    assert row["name"] == "B"


def insert_log_row(db: Engine, event_id: str, status: str, payload: str, age: str = "10 minutes") -> None:
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload, "
                "status, received_at, updated_at) VALUES (:e, 'zoho', 'students', 'update', :e, CAST(:p AS jsonb), "
                ":s, now() - CAST(:age AS interval), now() - CAST(:age AS interval))"
            ),
            {"e": event_id, "p": payload, "s": status, "age": age},
        )


def test_the_sweep_parks_a_row_it_cannot_queue_and_queues_the_others(
    load: Callable[..., Invoke], pollers: Callable[..., QueuePoller], db: Engine, captured_logs: Any
) -> None:
    # Before: a row whose event could not be serialised crashed the sweep, after marking it replayed,
    # and every later sweep stopped at that row.
    deep = '{"a": ' * 300 + "1" + "}" * 300
    insert_log_row(db, "stuck-1", "received", json.dumps({"id": "stuck-1", "Name": "x", "Modified_Time": T1}))
    insert_log_row(db, "unqueueable", "received", deep)
    insert_log_row(db, "stuck-2", "received", json.dumps({"id": "stuck-2", "Name": "y", "Modified_Time": T1}))

    swept = load("ReplayFunction")({"mode": "sweep"})
    pollers("students").drain()

    assert (swept["examined"], swept["replayed"], swept["failed"]) == (3, 2, 1)
    found = {r["event_id"]: r for r in rows(db, "SELECT * FROM integration_events_log")}
    assert (found["stuck-1"]["status"], found["stuck-2"]["status"]) == ("completed", "completed")
    assert found["unqueueable"]["status"] == "failed"
    assert found["unqueueable"]["error_message"].startswith("cannot be queued: ")
    assert any('"failed": 1' in line or '"failed":1' in line for line in captured_logs() if "left rows behind" in line)
    # and the next sweep goes on: nothing is stuck any more
    assert load("ReplayFunction")({"mode": "sweep"})["examined"] == 0


def test_the_sweep_sends_again_a_replayed_row_whose_message_never_arrived(
    load: Callable[..., Invoke], pollers: Callable[..., QueuePoller], db: Engine
) -> None:
    payload = json.dumps({"id": "lost", "Name": "x", "Modified_Time": T1})
    insert_log_row(db, "lost", "replayed", payload, age="20 minutes")  # marked, then the replay died
    insert_log_row(db, "in-flight", "replayed", payload, age="1 minute")  # its message is still on the way

    swept = load("ReplayFunction")({"mode": "sweep"})

    assert swept["event_ids"] == ["lost"]
    pollers("students").drain()
    assert log_status(db) == {"lost": "completed", "in-flight": "replayed"}


def test_the_sweep_deletes_rejection_counts_older_than_the_retention(load: Callable[..., Invoke], db: Engine) -> None:
    with db.begin() as connection:
        for days in (1, 29, 31, 90):
            connection.execute(
                text(
                    "INSERT INTO rejected_requests (minute, received_at, source, route, cause, body_size, body_sha256) "
                    "VALUES (now() - make_interval(days => :d), now() - make_interval(days => :d), 'zoho', 'r', "
                    "'signature_mismatch', 1, 'x')"
                ),
                {"d": days},
            )

    swept = load("ReplayFunction", REJECTION_RETENTION_DAYS="30")({"mode": "sweep"})

    assert swept["rejections_deleted"] == 2
    ages = rows(db, "SELECT extract(day FROM now() - received_at)::int AS d FROM rejected_requests ORDER BY 1")
    assert [r["d"] for r in ages] == [1, 29]
