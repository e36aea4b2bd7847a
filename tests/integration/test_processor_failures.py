"""What happens to events that fail (docs/operate.md): retried and dead-lettered when the cause may pass,
`failed` at once when it cannot, one event's failure never the others'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

from sqlalchemy import Engine

from devstack.poller import QueuePoller, lambda_sqs_event
from devstack.samples import Sample
from event_router.process.rules import students as students_rule
from tests.conftest import Queues
from tests.integration.conftest import Invoke, load_event
from tests.integration.flow import (
    CLASS,
    STUDENT,
    T1,
    log_status,
    rows,
    zoho,
)


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
        "unverified": 0,  # its row in the log vouches for it
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

    def plan(event: Any, mapping: Any = None) -> Any:
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


def test_committed_poison_batch_reports_only_the_unreadable_message_for_retry(
    load: Callable[..., Invoke], db: Engine
) -> None:
    event = load_event("sqs-grades-batch-with-poison")

    response = load("GradesProcessor", MODULE="grades")(event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][-1]["messageId"]}]}
    assert log_status(db)["moodle-evt-grade-poison"] == "failed"
