"""The events the benchmarks send: students' webhooks, their messages and SQS batches, and logging them as
a verifier would (so a processor benchmark starts where the pipeline does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pg8000.core
import pg8000.native

from devstack.poller import lambda_sqs_event
from devstack.samples import Sample, zoho_webhook
from event_router.messages import EventMessage
from event_router.queues import message_attributes
from event_router.store.connection import connect_params
from event_router.store.eventlog import PgEventLog
from event_router.verify.bodies import decode_body
from event_router.verify.payloads import parse_event

STUDENT_ROUTE = "POST /api/v1/events/zoho/student"


def student_webhook(n: int, tag: str) -> Sample:
    stamp = datetime.now(UTC).isoformat()
    return zoho_webhook(
        "students",
        f"57257670{n:011d}",
        modified=stamp,
        notification_id=f"bench-{tag}-{n}",
        Name=f"Student {n}",
        Student_ID_Number=f"BTEC-{n:06d}",
        Academic_Email=f"student{n}@students.example.ac.uk",
    )


def event_of(sample: Sample) -> EventMessage:
    return parse_event("zoho", "students", decode_body(sample.body))


def sqs_batch(events: list[EventMessage], *, logged: bool = True) -> dict[str, Any]:
    """The SQS event a processor receives for ``events``, first delivery, with the attributes the
    verifier gives them (``logged=False``: as it queues them while Postgres is down)."""
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": "r",
            "Body": e.model_dump_json(),
            "MD5OfBody": "",
            "Attributes": {"ApproximateReceiveCount": "1"},
            "MessageAttributes": message_attributes(e, logged=logged),
        }
        for e in events
    ]
    return lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:bench-students")


def pg(url: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        **connect_params(url, timeout=10, statement_timeout_ms=10_000, application_name="bench-floor")
    )


def verifier_log(url: str) -> PgEventLog:
    """The verifier's event log, to leave events as a verifier does: logged and queued."""
    return PgEventLog(
        lambda: connect_params(url, timeout=10, statement_timeout_ms=10_000, application_name="bench-setup")
    )


def log_as_verified(log: PgEventLog, events: list[EventMessage]) -> None:
    for event in events:
        log.record(event)
        log.mark_queued(event)


# ------------------------------------------------------------------ 1. verifier, warm
