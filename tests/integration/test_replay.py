"""Replay and the sweep (docs/operate.md): what they pick, what they change, and that nothing is left stranded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from devstack.poller import QueuePoller
from devstack.samples import Sample
from tests.conftest import Queues
from tests.integration.conftest import Invoke, load_event
from tests.integration.flow import (
    CLASS,
    STUDENT,
    T1,
    insert_log_row,
    log_status,
    rows,
    zoho,
)


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


def test_replay_forwards_only_dead_letters_the_event_log_vouches_for(
    send: Callable[[Sample], Any],
    pollers: Callable[..., QueuePoller],
    load: Callable[..., Invoke],
    queues: Queues,
    poison: Callable[[], None],
) -> None:
    """Anyone who could put a message in the dead-letter queue would have replay forward it under its
    own role: a forged event (a new id) and a genuine one with its payload changed stay where they are."""
    send(zoho("grade", "POISON", "insert", T1, Student=STUDENT, Grade="P"))
    pollers("grades").drain()
    [genuine] = [json.loads(m["Body"]) for m in queues.receive_all(queues.dlq_url)]
    queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=json.dumps(genuine))
    altered = {**genuine, "payload": {**genuine["payload"], "forged": True}}
    forged = {**genuine, "event_id": "forged-0001"}
    for body in (altered, forged):
        queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=json.dumps(body))
    replay = load("ReplayFunction")

    first = replay({"mode": "dlq"})
    forwarded = [json.loads(m["Body"])["event_id"] for m in queues.receive_all(queues.urls["grades"])]
    by_operator = replay({"mode": "dlq", "unlogged": "forward"})  # Postgres was down through every attempt

    assert (first["replayed"], first["unverified"]) == (1, 2)
    assert forwarded == [genuine["event_id"]]
    assert (by_operator["replayed"], by_operator["unverified"]) == (1, 1)
    assert by_operator["event_ids"] == ["forged-0001"]
    assert queues.depth(queues.dlq_url) == 1  # the altered copy, for someone to look at
