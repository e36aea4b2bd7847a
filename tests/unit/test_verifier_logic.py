"""The verifier's logic (docs/api.md) against in-memory fakes of its ports: what it answers, what it
writes where, and what it does when a store is down. The same rules run against real Postgres and
moto in ``tests/integration/test_verifier.py``."""

from __future__ import annotations

import pytest

from devstack.samples import SAMPLES, Sample, zoho_webhook
from event_router.errors import InvalidPayload, ServiceUnavailable, SignatureRejected, UnknownRoute
from event_router.verify.apigateway import webhook_request
from event_router.verify.verifier import Verifier, WebhookRequest
from tests.fakes import FakeClock, FixedCredentials, InMemoryEventLog, InMemoryPublisher


def request(sample: Sample) -> WebhookRequest:
    return webhook_request(sample.event())


def verifier(
    log: InMemoryEventLog, queue: InMemoryPublisher, source: str = "zoho", clock: FakeClock | None = None
) -> Verifier:
    return Verifier(source, FixedCredentials(source), log, queue, clock=clock or FakeClock())  # type: ignore[arg-type]


STUDENT = SAMPLES["zoho-student-full"]


def test_a_new_event_is_logged_queued_and_marked_queued() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher()

    receipt = verifier(log, queue).accept(request(STUDENT))

    assert (receipt.event_id, receipt.duplicate) == ("zoho-notif-student-0001", False)
    assert log.status("zoho", receipt.event_id) == "queued"
    assert [e.event_id for e in queue.published] == [receipt.event_id]
    assert queue.published[0].facts.kind == "zoho"
    assert queue.unlogged == []


def test_a_duplicate_is_neither_queued_nor_logged_again() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher()
    accept = verifier(log, queue).accept

    first, again = accept(request(STUDENT)), accept(request(STUDENT))

    assert (first.duplicate, again.duplicate) == (False, True)
    assert len(queue.published) == 1
    assert len(log.rows) == 1


def test_with_the_event_log_down_the_event_is_still_queued() -> None:
    log, queue = InMemoryEventLog(down=True), InMemoryPublisher()

    receipt = verifier(log, queue).accept(request(STUDENT))

    assert not receipt.duplicate
    assert [e.event_id for e in queue.published] == [receipt.event_id]
    # and the message says it has no log row, so the processor writes it before the batch's statement
    assert queue.unlogged == [receipt.event_id]


def test_with_the_queue_down_the_row_stays_received_for_the_sweep() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher(down=True)

    receipt = verifier(log, queue).accept(request(STUDENT))

    assert log.status("zoho", receipt.event_id) == "received"


def test_with_both_down_the_sender_is_asked_to_retry() -> None:
    with pytest.raises(ServiceUnavailable):
        verifier(InMemoryEventLog(down=True), InMemoryPublisher(down=True)).accept(request(STUDENT))


def test_any_failure_to_queue_after_the_row_is_written_still_accepts_the_event() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher(raises=TypeError("a bug"))

    receipt = verifier(log, queue).accept(request(STUDENT))

    assert log.status("zoho", receipt.event_id) == "received"


def test_values_the_event_log_refuses_are_a_400_and_nothing_is_queued() -> None:
    log, queue = InMemoryEventLog(refuses_values=True), InMemoryPublisher()

    with pytest.raises(InvalidPayload):
        verifier(log, queue).accept(request(STUDENT))

    assert queue.published == []


@pytest.mark.parametrize("name", ["zoho-student-unsigned", "zoho-student-bad-signature"])
def test_an_unauthenticated_request_is_refused_and_counted_never_stored(name: str) -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher()

    with pytest.raises(SignatureRejected):
        verifier(log, queue).accept(request(SAMPLES[name]))

    assert (log.rows, queue.published) == ({}, [])
    [counted] = log.rejections
    assert (counted["count"], counted["route"]) == (1, "POST /api/v1/events/zoho/student")
    assert "body" not in counted


def test_a_route_of_the_other_source_is_unknown() -> None:
    with pytest.raises(UnknownRoute):
        verifier(InMemoryEventLog(), InMemoryPublisher(), source="moodle").accept(request(STUDENT))


def test_rejections_are_written_at_most_once_per_flush_interval_with_their_counts() -> None:
    log, clock = InMemoryEventLog(), FakeClock()
    accept = verifier(log, InMemoryPublisher(), clock=clock).accept
    forged = request(SAMPLES["zoho-student-bad-signature"])

    for _ in range(500):
        with pytest.raises(SignatureRejected):
            accept(forged)
    clock.advance(10)
    with pytest.raises(SignatureRejected):
        accept(forged)

    assert log.writes == 2  # the first rejection, then one write for the 500 that followed
    assert sum(row["count"] for row in log.rejections) == 501


def test_a_shared_token_in_the_body_is_never_stored_or_queued() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher()

    verifier(log, queue, source="moodle").accept(request(SAMPLES["moodle-enrollment-token"]))

    [event] = queue.published
    assert "token" not in event.payload


def test_a_zoho_workflow_webhook_carries_the_records_fields_as_its_facts() -> None:
    log, queue = InMemoryEventLog(), InMemoryPublisher()
    form = zoho_webhook("students", "S1", shape="form", Name="Ada")

    verifier(log, queue).accept(request(form))

    [event] = queue.published
    assert event.facts.kind == "zoho"
    assert event.facts.fields is not None
    assert event.facts.fields["Name"] == "Ada"


def test_a_flood_of_health_checks_costs_one_query_and_one_round_of_queue_checks_per_interval() -> None:
    """``/health`` is unauthenticated: 1,000 calls within the cache interval reach Postgres and SQS
    once; after the interval, once more."""
    from event_router.operate.monitor import Monitor
    from event_router.queues import DeadLetterQueue

    class Log:
        pings = 0

        def ping(self) -> None:
            Log.pings += 1

    class Sqs:
        calls = 0

        def get_queue_attributes(self, **_: object) -> dict[str, object]:
            Sqs.calls += 1
            return {"Attributes": {}}

    now = [0.0]
    sqs = Sqs()
    monitor = Monitor(
        Log(),  # type: ignore[arg-type]
        sqs,
        {"students": "q1", "grades": "q2"},
        DeadLetterQueue(sqs, "dlq"),
        health_cache_seconds=5,
        clock=lambda: now[0],
    )

    answers = [monitor.health() for _ in range(1000)]
    first = (Log.pings, Sqs.calls)
    now[0] = 5.1
    monitor.health()

    assert {status for status, _ in answers} == {200}
    assert first == (1, 3)  # one ping; the two module queues and the dead-letter queue, once
    assert (Log.pings, Sqs.calls) == (2, 6)
