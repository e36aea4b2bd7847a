"""The processor's common batch in one statement (``MirrorStore.apply_batch``): claimed, checked
against the erasure register, applied and settled in one round trip, with what it leaves open (an
event about an erased student, a redelivery, an event not logged) settled the usual way, together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.poller import QueuePoller
from devstack.samples import Sample
from event_router.store.connection import PreparedConnection
from event_router.store.mirror import LOG_UNLOGGED_SQL
from tests.conftest import Queues
from tests.integration.conftest import OFFICER, Invoke, down_database_url, privacy_route, refuse_writes
from tests.integration.flow import T1, rows, zoho

STUDENTS = [f"57257670000009{n:05d}" for n in range(10)]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first line of every statement a function runs, in order (but who the router is at
    Moodle and Zoho, which a container reads once)."""
    seen: list[str] = []
    run = PreparedConnection.run

    def counted(self: PreparedConnection, sql: str, **params: Any) -> list[list[Any]]:
        if not sql.startswith("SELECT identity FROM destinations"):
            seen.append(sql.strip().splitlines()[0])
        return run(self, sql, **params)

    monkeypatch.setattr(PreparedConnection, "run", counted)
    return seen


def student(zoho_id: str, name: str, modified: str = T1) -> Sample:
    return zoho("student", zoho_id, "update", modified, Name=name, Academic_Email=f"{zoho_id}@students.example.ac.uk")


def statuses(db: Engine) -> dict[str, tuple[str, str | None]]:
    found = rows(db, "SELECT record_id, status, result->>'reason' AS reason FROM integration_events_log")
    return {r["record_id"]: (r["status"], r["reason"]) for r in found}


def test_a_batch_of_new_students_is_one_statement(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    statements: list[str],
    db: Engine,
) -> None:
    for n, zoho_id in enumerate(STUDENTS):
        send(student(zoho_id, f"Student {n}"))
    students = pollers("students", batch_size=10)
    statements.clear()

    assert students.drain() == 10

    assert statements == ["WITH incoming AS ("]  # claim, erasure check, apply, settle: one round trip
    assert {s: statuses(db)[s] for s in STUDENTS} == dict.fromkeys(STUDENTS, ("completed", None))
    names = rows(db, "SELECT name FROM students WHERE zoho_record_id = ANY(:ids)", ids=STUDENTS)
    assert sorted(r["name"] for r in names) == sorted(f"Student {n}" for n in range(10))


def test_what_the_statement_leaves_open_is_settled_alone(
    load: Callable[..., Invoke],
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    queues: Queues,
    statements: list[str],
    db: Engine,
) -> None:
    # Given a student erased, then an event about her from before the erasure (Zoho sending late),
    # a redelivery of an event already completed, and an event the verifier could not log
    erased, redelivered, unlogged, *others = STUDENTS
    send(student(erased, "Erased Example"))
    send(student(redelivered, "Already Done"))
    first = queues.receive_all(queues.urls["students"])
    for message in first:
        queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody=message["Body"])
    pollers("students", batch_size=10).drain()
    erasure = privacy_route(load("PrivacyFunction"), OFFICER)(
        {"action": "erase", "student": {"zoho_record_id": erased}}
    )
    assert erasure["success"] is True, erasure
    send(student(erased, "Erased Example", modified="2026-11-25T09:30:00+00:00"))
    for zoho_id in (unlogged, *others):
        send(student(zoho_id, "Someone Else"))
    with db.begin() as connection:  # queued while Postgres was down: no row in the log
        connection.execute(text("DELETE FROM integration_events_log WHERE record_id = :r"), {"r": unlogged})
    again = next(m["Body"] for m in first if redelivered in m["Body"])
    queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody=again)
    forgotten_before = len(rows(db, "SELECT id FROM integration_events_log WHERE result->>'reason' = 'erased'"))
    statements.clear()

    # When they come in one batch
    assert pollers("students", batch_size=10).drain() == 10

    # Then the statement settles the others, and the usual way the three it left open
    assert statements[0] == "WITH incoming AS ("
    assert statements.count("BEGIN") == 1  # the three left open, together in one transaction
    final = statuses(db)
    assert [s for s in (unlogged, *others) if final[s] != ("completed", None)] == []
    [once] = rows(db, "SELECT status, attempts FROM integration_events_log WHERE record_id = :r", r=redelivered)
    assert once == {"status": "completed", "attempts": 1}
    assert rows(db, "SELECT * FROM students WHERE zoho_record_id = :z", z=erased) == []
    assert rows(db, "SELECT id FROM integration_events_log WHERE record_id = :z", z=erased) == []
    forgotten = rows(db, "SELECT id FROM integration_events_log WHERE result->>'reason' = 'erased'")
    assert len(forgotten) == forgotten_before + 1


@pytest.mark.parametrize("size", [1, 10])
def test_events_queued_while_postgres_was_down_are_logged_then_go_in_the_one_statement(
    size: int,
    load_verifier: Callable[..., Invoke],
    pollers: Callable[..., QueuePoller],
    queues: Queues,
    statements: list[str],
    db: Engine,
) -> None:
    # Given events a verifier queued with Postgres down: no log rows, and messages that say so
    down = load_verifier("zoho", DATABASE_URL=down_database_url())
    for n, zoho_id in enumerate(STUDENTS[:size]):
        assert down(student(zoho_id, f"Student {n}").event())["statusCode"] == 202
    assert rows(db, "SELECT id FROM integration_events_log") == []
    statements.clear()

    # When their processor takes them
    assert pollers("students", batch_size=10).drain() == size

    # Then it logs them in one statement and settles them in one more, as if the verifier had
    assert statements == [LOG_UNLOGGED_SQL.strip().splitlines()[0], "WITH incoming AS ("]
    assert statuses(db) == {s: ("completed", None) for s in STUDENTS[:size]}
    logged = rows(db, "SELECT status, attempts, queued_at, auth_method FROM integration_events_log")
    assert all(r["attempts"] == 1 and r["queued_at"] is not None and r["auth_method"] == "signature" for r in logged)
    names = rows(db, "SELECT name FROM students WHERE zoho_record_id = ANY(:ids)", ids=STUDENTS[:size])
    assert sorted(r["name"] for r in names) == sorted(f"Student {n}" for n in range(size))


def test_a_message_that_says_unlogged_of_an_event_logged_meanwhile_changes_nothing_twice(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    queues: Queues,
    db: Engine,
) -> None:
    # Given an event the sweep logged and processed after a verifier queued it unlogged
    send(student(STUDENTS[0], "Student 0"))
    [message] = queues.receive_all(queues.urls["students"])
    pollers("students", batch_size=10).drain()
    unlogged = {"unlogged": {"DataType": "String", "StringValue": "true"}}

    # When the unlogged message comes too
    queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody=message["Body"], MessageAttributes=unlogged)
    assert pollers("students", batch_size=10).drain() == 1

    # Then the row is left as it was: one row, completed once
    [row] = rows(db, "SELECT status, attempts FROM integration_events_log")
    assert row == {"status": "completed", "attempts": 1}


def test_an_unlogged_event_whose_row_the_log_refuses_fails_alone(
    load_verifier: Callable[..., Invoke],
    pollers: Callable[..., QueuePoller],
    queues: Queues,
    db: Engine,
) -> None:
    # Given three events queued with Postgres down, one of which the log will refuse (a data error)
    down = load_verifier("zoho", DATABASE_URL=down_database_url())
    first, refused, third = STUDENTS[:3]
    for n, zoho_id in enumerate((first, refused, third)):
        assert down(student(zoho_id, f"Student {n}").event())["statusCode"] == 202
    lift = refuse_writes(db, refused, "numeric_value_out_of_range", table="integration_events_log", column="record_id")

    # When their processor takes the batch
    try:
        result = pollers("students", batch_size=10).poll_once()
    finally:
        lift()

    # Then the refused one alone is handed back to SQS; the others are logged and completed
    assert (result.received, result.failed) == (3, 1)
    assert statuses(db) == {first: ("completed", None), third: ("completed", None)}
