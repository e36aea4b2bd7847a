"""Processors (SPEC §8): consume a module queue, mirror each event exactly once, report failures.

One invocation handles one SQS batch with Powertools' batch processing:

1. the batch is claimed in the event log in one statement (``mirror.claim``);
2. each event's sync rule plans its change, and one statement applies it and completes the event;
3. an event that can never apply (``CannotApply``) ends ``failed`` and is not retried; any other
   failure is reported as a batch item failure, so SQS redelivers it, and after the last receive
   the queue's redrive policy moves it to the dead-letter queue (its row: ``dead_lettered``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from event_router import mirror
from event_router.database import describe_error
from event_router.engine import STORE_ERRORS, settings_engine
from event_router.errors import Problem
from event_router.observability import Metric, count, emit, logger
from event_router.payloads import WebhookEvent, event_from_message, problems
from event_router.routes import Module
from event_router.settings import Settings, load_settings
from event_router.sync import CannotApply, Change, LogOnly, MirrorWrite, enrollments, grades, payments, students

RULES = {
    "students": students.plan,
    "enrollments": enrollments.plan,
    "grades": grades.plan,
    "payments": payments.plan,
}


_OUTCOMES = {
    "completed": Metric.PROCESSED,
    "skipped": Metric.SKIPPED,
    "failed": Metric.FAILED,
    "settled": Metric.REDELIVERED,
}


class EventNotProcessed(Exception):
    """This event failed for a reason that may pass; SQS will deliver it again."""


def _describe(error: BaseException) -> str:
    return describe_error(error.orig if isinstance(error, DBAPIError) and error.orig else error)


class ModuleProcessor:
    """The processor of one module's queue."""

    def __init__(self, module: Module, engine: Engine, max_receive_count: int) -> None:
        self.module = module
        self._engine = engine
        self._plan = RULES[module]
        self._max_receive_count = max_receive_count
        self._batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event in, the partial batch response out."""
        batch = _Batch(self, event.get("Records", []))
        try:
            response = process_partial_response(
                event=event, record_handler=batch.process, processor=self._batch_processor, context=context
            )
            return dict(response)
        finally:
            batch.close()


class _Batch:
    """The state of one invocation: parsed events, the batch's claims, one connection, counters."""

    def __init__(self, processor: ModuleProcessor, records: list[dict[str, Any]]) -> None:
        self._processor = processor
        self._events = {r["messageId"]: event_from_message(r["body"]) for r in records}
        self._claims: dict[tuple[str, str], mirror.Claim] | None = None
        self._claim_error: str | None = None
        self._connection: Connection | None = None
        self.outcomes: Counter[tuple[Metric, str]] = Counter()  # (metric, source) → events
        self.timings: defaultdict[tuple[Metric, str], list[float]] = defaultdict(list)  # (metric, source) → ms

    def process(self, record: SQSRecord) -> str:
        """Powertools' record handler: returns the event's status, raises to have SQS retry it."""
        event = self._events[record.message_id]
        if event is None:
            self.outcomes[Metric.RETRIED, "unknown"] += 1
            raise EventNotProcessed("message body is not an event")
        logger.set_correlation_id(event.event_id)
        claimed = self._claimed().get((event.source, event.event_id))
        if claimed is None:
            logger.info("event already settled; redelivery ignored", event_module=event.module)
            self.outcomes[Metric.REDELIVERED, event.source] += 1
            return "settled"
        last_attempt = int(record.attributes.approximate_receive_count) >= self._processor._max_receive_count
        started = time.monotonic()
        try:
            status = self._settle(event, claimed)
        except STORE_ERRORS as error:
            self._release(claimed, _describe(error), last_attempt)
            self.outcomes[Metric.DEAD_LETTERED if last_attempt else Metric.RETRIED, event.source] += 1
            logger.error("event not processed; SQS will retry it", error=_describe(error), last_attempt=last_attempt)
            raise EventNotProcessed(_describe(error)) from None
        self.outcomes[_OUTCOMES[status], event.source] += 1
        if status == "completed":
            self.timings[Metric.PROCESSING_TIME, event.source].append((time.monotonic() - started) * 1000)
            latency = datetime.now(UTC) - claimed.received_at
            self.timings[Metric.END_TO_END_LATENCY, event.source].append(latency.total_seconds() * 1000)
        logger.info("event processed", status=status, event_module=event.module)
        return status

    def _settle(self, event: WebhookEvent, claimed: mirror.Claim) -> str:
        connection = self._connect()
        try:
            change: Change = self._processor._plan(event)
        except CannotApply as cannot:
            return self._fail(connection, claimed, cannot.problems)
        except ValidationError as invalid:
            return self._fail(connection, claimed, problems(invalid))
        if isinstance(change, MirrorWrite):
            return mirror.apply(connection, claimed, event, change) or "settled"
        if isinstance(change, LogOnly):
            mirror.settle(connection, claimed, "completed", {"action": "logged", **change.summary})
            return "completed"
        mirror.settle(connection, claimed, "skipped", {"reason": change.reason})
        return "skipped"

    @staticmethod
    def _fail(connection: Connection, claimed: mirror.Claim, details: list[Problem]) -> str:
        """An event that can never apply: parked as ``failed``, reachable by replay, not retried."""
        error = "; ".join(f"{p['field']} {p['problem']}" for p in details)
        mirror.settle(connection, claimed, "failed", {"reason": "invalid", "problems": details}, error)
        return "failed"

    def _claimed(self) -> dict[tuple[str, str], mirror.Claim]:
        if self._claims is None and self._claim_error is None:
            events = {(e.source, e.event_id): e for e in self._events.values() if e is not None}
            try:
                self._claims = mirror.claim(self._connect(), events.values())
            except STORE_ERRORS as error:
                self._claim_error = _describe(error)
                logger.error("could not claim the batch; SQS will retry it", error=self._claim_error)
        if self._claims is None:
            raise EventNotProcessed(f"could not claim the batch: {self._claim_error}")
        return self._claims

    def _release(self, claimed: mirror.Claim, error: str, last_attempt: bool) -> None:
        try:
            mirror.release(self._connect(), claimed, error, last_attempt=last_attempt)
        except STORE_ERRORS as unrecorded:
            logger.warning("could not record the failed attempt", error=_describe(unrecorded))

    def _connect(self) -> Connection:
        if self._connection is not None and self._connection.invalidated:
            self._connection.close()
            self._connection = None
        if self._connection is None:
            self._connection = self._processor._engine.connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        module = self._processor.module
        for (metric, source), value in self.outcomes.items():
            count(metric, value=value, source=source, module=module)
        for (metric, source), values in self.timings.items():
            emit(metric, values, MetricUnit.Milliseconds, source=source, module=module)


def build_processor(settings: Settings | None = None) -> ModuleProcessor:
    """Wire the processor of ``MODULE`` from the container's settings."""
    settings = settings or load_settings()
    if settings.module is None:
        raise ValueError("MODULE is not set")
    engine = settings_engine(settings, f"{settings.module}-processor")
    return ModuleProcessor(settings.module, engine, settings.max_receive_count)
