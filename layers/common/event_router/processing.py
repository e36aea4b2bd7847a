"""Processors (SPEC §8): consume a module queue, mirror each event exactly once, report failures.

One invocation handles one SQS batch:

1. the batch is claimed in the event log in one statement (``MirrorStore.claim``);
2. each event's sync rule plans its change, and one statement applies it and completes the
   event. All of a batch's statements share one transaction, so the batch costs one commit;
   if any of them fails, the transaction is rolled back and the batch is done again event by
   event, each in its own transaction, so that one poison event cannot hold back the others;
3. Powertools' batch processing turns the outcomes into the partial batch response: an event
   that can never apply (``CannotApply``) ends ``failed`` and is not retried; any other failure
   is a batch item failure, so SQS delivers it again, and after the last receive the queue's
   redrive policy moves it to the dead-letter queue (its row: ``dead_lettered``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from event_router.backoff import VisibilityBackoff, receive_count
from event_router.database import connection_params
from event_router.errors import DataRejected, Problem, StorageUnavailable
from event_router.mirror import Claim, MirrorStore
from event_router.observability import Metric, count, emit, logger
from event_router.payloads import WebhookEvent, event_from_message, problems
from event_router.pg import PreparedConnection
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


class Backoff(Protocol):
    def postpone(self, records: list[dict[str, Any]]) -> None: ...


class NoBackoff:
    """Retries come back after the queue's visibility timeout (tests that drive SQS by hand)."""

    def postpone(self, records: list[dict[str, Any]]) -> None:
        return None


class ModuleProcessor:
    """The processor of one module's queue."""

    def __init__(
        self, module: Module, store: MirrorStore, max_receive_count: int, backoff: Backoff | None = None
    ) -> None:
        self.module = module
        self.store = store
        self.plan = RULES[module]
        self.max_receive_count = max_receive_count
        self.backoff = backoff or NoBackoff()
        self._batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event in, the partial batch response out."""
        batch = _Batch(self, event.get("Records", []))
        batch.run()
        self.backoff.postpone(batch.retried())
        try:
            response = process_partial_response(
                event=event, record_handler=batch.outcome, processor=self._batch_processor, context=context
            )
        finally:
            batch.emit_metrics()
        return dict(response)


class _Batch:
    """One invocation's events, their claims and outcomes (a status, or the error to retry on)."""

    def __init__(self, processor: ModuleProcessor, records: list[dict[str, Any]]) -> None:
        self._processor = processor
        self._store = processor.store
        self._records = records
        self._events = {r["messageId"]: event_from_message(r["body"]) for r in records}
        self._claims: dict[tuple[str, str], Claim] = {}
        self._outcomes: dict[str, str | EventNotProcessed] = {}
        self._counts: Counter[tuple[Metric, str]] = Counter()  # (metric, source) → events
        self._timings: defaultdict[tuple[Metric, str], list[float]] = defaultdict(list)  # (metric, source) → ms

    def run(self) -> None:
        """Settle every event: the whole batch in one transaction, or event by event if that fails."""
        events = {(e.source, e.event_id): e for e in self._events.values() if e is not None}
        try:
            self._claims = claims = self._store.claim(events.values())
        except StorageUnavailable as error:
            logger.error("could not claim the batch; SQS will retry it", error=str(error))
            self._outcomes = {m: EventNotProcessed(f"could not claim the batch: {error}") for m in self._events}
            return
        try:
            with self._store.transaction(needed=len(claims) > 1):
                outcomes = self._settle_together(claims)
        except Exception as error:  # noqa: BLE001 - one event's failure must not fail the others
            reason = str(error) if isinstance(error, StorageUnavailable) else f"unexpected {type(error).__name__}"
            logger.warning("batch transaction failed; settling its events one by one", error=reason)
            outcomes = {r["messageId"]: self._settle(r, claims) for r in self._records}
        self._outcomes = outcomes
        for record in self._records:
            self._account(record)

    def retried(self) -> list[dict[str, Any]]:
        """The records of events SQS will deliver again (not unreadable messages: time cannot mend them)."""
        return [
            record
            for record in self._records
            if isinstance(self._outcomes.get(record["messageId"]), EventNotProcessed)
            and self._events[record["messageId"]] is not None
        ]

    def outcome(self, record: SQSRecord) -> str:
        """Powertools' record handler: the event's status, or raise to have SQS deliver it again."""
        result = self._outcomes[record.message_id]
        if isinstance(result, EventNotProcessed):
            raise result
        return result

    def _settle_together(self, claims: dict[tuple[str, str], Claim]) -> dict[str, Any]:
        """The fast path: every change of one kind in one statement, every other ending in one more."""
        started = time.monotonic()
        outcomes: dict[str, Any] = {}
        expected: dict[str, tuple[WebhookEvent, Claim]] = {}
        writes: list[tuple[Claim, WebhookEvent, MirrorWrite]] = []
        settles: list[tuple[Claim, str, dict[str, Any], str | None]] = []
        for record in self._records:
            found = self._claimed(record, claims)
            if not isinstance(found, tuple):
                outcomes[record["messageId"]] = found
                continue
            event, claimed = expected[record["messageId"]] = found
            decision = self._decide(event, claimed)
            if isinstance(decision, MirrorWrite):
                writes.append((claimed, event, decision))
            else:
                settles.append(decision)
        statuses = self._store.apply_many(writes) | self._store.settle_many(settles)
        for message_id, (_, claimed) in expected.items():
            outcomes[message_id] = statuses.get(claimed.log_id, "settled")
        if expected:  # one figure for the batch: its events shared the statements
            per_event = (time.monotonic() - started) * 1000 / len(expected)
            for source in {event.source for event, _ in expected.values()}:
                self._timings[Metric.PROCESSING_TIME, source].append(per_event)
        return outcomes

    def _settle(self, record: dict[str, Any], claims: dict[tuple[str, str], Claim]) -> Any:
        """The slow path: one event in its own transaction; a failure is this event's alone."""
        found = self._claimed(record, claims)
        if not isinstance(found, tuple):
            return found
        event, claimed = found
        started = time.monotonic()
        decision = self._decide(event, claimed)
        try:
            try:
                if isinstance(decision, MirrorWrite):
                    statuses = self._store.apply_many([(claimed, event, decision)])
                else:
                    statuses = self._store.settle_many([decision])
            except DataRejected as refused:
                # The database will refuse these values every time: park the event, do not retry it.
                error = f"the database refused a value of this event ({refused})"
                statuses = self._store.settle_many([(claimed, "failed", {"reason": "refused_by_database"}, error)])
            status = statuses.get(claimed.log_id, "settled")
        except Exception as error:  # noqa: BLE001 - whatever it is, it is this event's failure alone
            reason = str(error) if isinstance(error, StorageUnavailable) else f"unexpected {type(error).__name__}"
            last = receive_count(record) >= self._processor.max_receive_count
            self._release(claimed, reason, last)
            return EventNotProcessed(reason)
        self._timings[Metric.PROCESSING_TIME, event.source].append((time.monotonic() - started) * 1000)
        return status

    def _claimed(
        self, record: dict[str, Any], claims: dict[tuple[str, str], Claim]
    ) -> tuple[WebhookEvent, Claim] | str | EventNotProcessed:
        """The record's event and claim, or the outcome it has already (unreadable, or settled)."""
        event = self._events[record["messageId"]]
        if event is None:
            return EventNotProcessed("message body is not an event")
        claimed = claims.get((event.source, event.event_id))
        if claimed is None:
            return "settled"  # already completed, skipped or failed: a redelivery changes nothing
        return event, claimed

    def _decide(
        self, event: WebhookEvent, claimed: Claim
    ) -> MirrorWrite | tuple[Claim, str, dict[str, Any], str | None]:
        """The sync rule's verdict: a mirror change to apply, or how the event ends without one."""
        if event.module != self._processor.module:
            error = f"a {event.module} event on the {self._processor.module} queue"
            return claimed, "failed", {"reason": "wrong_queue"}, error
        try:
            change: Change = self._processor.plan(event)
        except (CannotApply, ValidationError) as invalid:
            # An event that can never apply: parked as ``failed``, reachable by replay, not retried.
            details: list[Problem] = invalid.problems if isinstance(invalid, CannotApply) else problems(invalid)
            error = "; ".join(f"{p['field']} {p['problem']}" for p in details)
            return claimed, "failed", {"reason": "invalid", "problems": details}, error
        except Exception as bug:  # noqa: BLE001 - the rules are pure: the same event would fail the same way
            logger.exception("sync rule failed unexpectedly")
            error = f"unexpected {type(bug).__name__} in the {self._processor.module} sync rule"
            return claimed, "failed", {"reason": "unexpected_error", "error": type(bug).__name__}, error
        if isinstance(change, MirrorWrite):
            return change
        if isinstance(change, LogOnly):
            return claimed, "completed", {"action": "logged", **change.summary}, None
        return claimed, "skipped", {"reason": change.reason}, None

    def _release(self, claimed: Claim, error: str, last_attempt: bool) -> None:
        try:
            self._store.release(claimed, error, last_attempt=last_attempt)
        except StorageUnavailable as unrecorded:
            logger.warning("could not record the failed attempt", error=str(unrecorded))

    def _account(self, record: dict[str, Any]) -> None:
        """Log and count one event's outcome, under its event id."""
        event, outcome = self._events[record["messageId"]], self._outcomes[record["messageId"]]
        source = event.source if event is not None else "unknown"
        if event is not None:
            logger.set_correlation_id(event.event_id)
        if isinstance(outcome, EventNotProcessed):
            last = receive_count(record) >= self._processor.max_receive_count
            self._counts[Metric.DEAD_LETTERED if last else Metric.RETRIED, source] += 1
            logger.error("event not processed; SQS will retry it", error=str(outcome), last_attempt=last)
            return
        self._counts[_OUTCOMES[outcome], source] += 1
        claimed = self._claims.get((event.source, event.event_id)) if event is not None else None
        if outcome == "completed" and claimed is not None:
            latency = datetime.now(UTC) - claimed.received_at  # the verifier logged it at received_at
            self._timings[Metric.END_TO_END_LATENCY, source].append(latency.total_seconds() * 1000)
        logger.info("event processed", status=outcome, event_module=self._processor.module)

    def emit_metrics(self) -> None:
        """The batch's metrics, one EMF line per metric and source."""
        logger.set_correlation_id(None)
        module = self._processor.module
        for (metric, source), value in self._counts.items():
            count(metric, value=value, source=source, module=module)
        for (metric, source), values in self._timings.items():
            emit(metric, values, MetricUnit.Milliseconds, source=source, module=module)


def build_processor(settings: Settings | None = None) -> ModuleProcessor:
    """Wire the processor of ``MODULE`` from the container's settings."""
    settings = settings or load_settings()
    if settings.module is None:
        raise ValueError("MODULE is not set")
    connection = PreparedConnection(
        connection_params(settings, f"{settings.module}-processor"), settings.db_idle_ping_seconds
    )
    queue_url = settings.queue_urls().get(settings.module)
    backoff = (
        VisibilityBackoff(
            queue_url, settings.retry_base_seconds, settings.retry_max_seconds, settings.max_receive_count, settings
        )
        if queue_url and settings.retry_base_seconds
        else None
    )
    return ModuleProcessor(settings.module, MirrorStore(connection), settings.max_receive_count, backoff)
