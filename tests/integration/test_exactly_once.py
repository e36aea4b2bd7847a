"""Every accepted event changes its mirror row once, in the order its source changed it (docs/operate.md):
redeliveries, crashes mid-batch, events out of order, deletes, equal timestamps.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine

from devstack.poller import QueuePoller, lambda_sqs_event
from devstack.samples import Sample, zoho_webhook
from event_router.messages import EventMessage
from event_router.process.batch import Batch
from event_router.store.connection import PreparedConnection, connect_params
from event_router.store.mirror import CLAIM_SQL, MirrorStore
from event_router.verify.bodies import decode_body
from event_router.verify.payloads import parse_event
from tests.conftest import Queues
from tests.integration.conftest import Invoke, down_database_url, load_event
from tests.integration.flow import (
    FORM,
    STUDENT,
    T1,
    T2,
    T3,
    insert_log_row,
    log_status,
    moodle,
    rows,
    zoho,
)


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


@pytest.mark.parametrize("path", ["one-statement", "transaction"])
def test_batch_redelivered_after_a_crash_mid_batch_changes_each_row_once(
    path: str,
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

    # When the processor dies after writing the batch's mirror rows, before they commit: inside its
    # one statement (held open here, as a statement is until it ends), or inside the batch's transaction
    real_apply_batch, real_apply_many = MirrorStore.apply_batch, MirrorStore.apply_many
    died: list[str] = []

    def statement_dies(store: MirrorStore, rows: Any) -> Any:
        died.append("one-statement")
        store.connection.run("BEGIN")
        real_apply_batch(store, rows)
        assert mirror_writes() == {}  # written, but not visible outside the statement's transaction
        store.connection.close()  # the container's socket dies with it: Postgres rolls back
        raise SystemExit("container killed")

    def transaction_dies(store: MirrorStore, writes: Any) -> Any:
        died.append("transaction")
        real_apply_many(store, writes)
        assert mirror_writes() == {}  # written, but not visible outside the batch's transaction
        raise SystemExit("container killed")

    usual = mock.patch.object(Batch, "_in_one_statement", return_value=False)
    with (
        mock.patch.object(MirrorStore, "apply_batch", statement_dies),
        mock.patch.object(MirrorStore, "apply_many", transaction_dies),
        usual if path == "transaction" else contextlib.nullcontext(),
        pytest.raises(SystemExit),
    ):
        processor(event)
    assert died == [path]
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
    load_verifier("zoho", DATABASE_URL=down_database_url())(load_event("zoho-student-full"))
    assert rows(db, "SELECT * FROM integration_events_log") == []

    pollers("students").drain()

    [row] = rows(db, "SELECT * FROM integration_events_log")
    assert (row["event_id"], row["status"], row["attempts"]) == ("zoho-notif-student-0001", "completed", 1)
    assert row["payload"]["data"]["Name"] == "Ada Example"
    assert len(rows(db, "SELECT * FROM students")) == 1


def student_event(n: int) -> EventMessage:
    sample = zoho_webhook("students", f"5725767{n:012d}", notification_id=f"claim-{n:03d}", Name=f"Student {n}")
    return parse_event("zoho", "students", decode_body(sample.body))


@pytest.fixture
def store(database_url: str) -> Any:
    connection = PreparedConnection(
        lambda: connect_params(database_url, timeout=10, statement_timeout_ms=10_000, application_name="claim-test")
    )
    yield MirrorStore(connection)
    connection.close()


def test_claim_takes_open_events_skips_settled_ones_and_logs_unlogged_ones_in_arrival_order(
    store: MirrorStore, db: Engine
) -> None:
    # Given an open event, a completed one, and two events with no row, whose ids sort against arrival
    logged, settled, late, early = student_event(5), student_event(6), student_event(9), student_event(1)
    insert_log_row(db, logged.event_id, "queued", "{}")
    insert_log_row(db, settled.event_id, "completed", "{}")

    with store.connection.transaction():
        claims = store.claim([late, logged, settled, early])

    # Then the open and the unlogged are claimed, the settled one is not, and the rows the claim
    # wrote are numbered in the order their events arrived (the later arrival wins a tie)
    assert set(claims) == {("zoho", e.event_id) for e in (late, logged, early)}
    ids = {r["event_id"]: r["id"] for r in rows(db, "SELECT id, event_id FROM integration_events_log")}
    assert {claims["zoho", e.event_id].log_id for e in (late, logged, early)} == {
        ids[e.event_id] for e in (late, logged, early)
    }
    assert ids[late.event_id] < ids[early.event_id]
    assert log_status(db)[late.event_id] == "processing"


def test_claim_looks_each_event_up_through_the_unique_index_however_small_the_log(
    store: MirrorStore, db: Engine
) -> None:
    # A join would let the planner scan a small log in full for every batch; a log of a few rows is
    # where it is most tempted to.
    events = [student_event(n) for n in range(100)]
    with store.connection.transaction():
        store.claim(events)
    identities = json.dumps([{"source": e.source, "event_id": e.event_id} for e in events])

    plan = "\n".join(r[0] for r in store.connection.run(f"EXPLAIN {CLAIM_SQL}", batch=identities))

    assert "Index Scan using uq_integration_events_log_source_event_id" in plan
    assert "Seq Scan on integration_events_log" not in plan


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
