"""Replay (docs/operate.md): bring failed events back to their module queue.

``dlq`` mode moves messages from the dead-letter queue back to their module queue (receive, send,
delete; an at-least-once move, so a crash in between leaves a duplicate that the processor
ignores). ``log`` mode re-queues event-log rows: by default ``failed`` and ``dead_lettered`` ones
and rows stuck in ``received`` (the SQS-down path). ``sweep`` is what the schedule runs: rows stuck
in ``received`` or ``replayed``, deliveries whose message was lost, then retention: settled payloads older than
``PAYLOAD_RETENTION_DAYS`` become tombstones, old ``rejected_requests`` rows are deleted. Rows are marked
``replayed`` (``replay_count + 1``) before the message is sent, so the processor can claim them.
``dry_run`` reports and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from event_router.contract import Module
from event_router.deliver.outbox import DeliveryMessage, DeliveryPublisher
from event_router.errors import QueueUnavailable, StorageUnavailable
from event_router.messages import EventMessage
from event_router.observability import Metric, count, logger
from event_router.queues import DeadLetterQueue, SqsPublisher, sqs_client
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore
from event_router.store.operations import EventLogOperations
from event_router.store.privacy import PrivacyStore
from event_router.verify.payloads import facts_of, problems

ReplayableStatus = Literal["received", "queued", "processing", "failed", "dead_lettered", "replayed"]
DEFAULT_STATUSES: tuple[ReplayableStatus, ...] = ("failed", "dead_lettered", "received")
SWEPT_STATUSES: tuple[ReplayableStatus, ...] = ("received", "replayed")
# "delivered" too: sending a delivered one again makes the destination match the mirror once more
# (after someone changed the Moodle user by hand, say); the rules converge, so nothing doubles.
ReplayableDelivery = Literal[
    "failed", "dead_lettered", "paused", "waiting", "pending", "delivered", "superseded", "conflict"
]
RETENTION_BATCH, RETENTION_BATCHES = 500, 20  # payloads redacted per statement, statements per sweep
OVERDUE_DELIVERY_SECONDS = 900  # a pending delivery not taken for this long has lost its message


class ReplayRequest(BaseModel):
    """The replay function's input."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dlq", "log", "sweep", "deliveries"]
    max_messages: int = Field(100, ge=1, le=10_000)
    module: Module | None = None
    event_ids: list[str] | None = None
    statuses: list[ReplayableStatus] | None = None
    received_after: datetime | None = None
    received_before: datetime | None = None
    # A row is only "stuck" in received once its verifier has had time to mark it queued, and in
    # replayed once its message has had time to reach a processor (behind a backlog, if need be).
    received_grace_seconds: int = Field(60, ge=0)
    replayed_grace_seconds: int = Field(900, ge=0)
    dry_run: bool = False
    # dlq mode: a dead letter whose event has no row in the log (Postgres was down through every
    # attempt) is kept unless the operator says to forward it; one that differs from its row is kept.
    unlogged: Literal["keep", "forward"] = "keep"
    # deliveries mode: which deliveries to send again (default: failed and dead-lettered ones)
    destination: Literal["moodle", "zoho"] | None = None
    delivery_ids: list[int] | None = None
    delivery_statuses: list[ReplayableDelivery] | None = None

    @model_validator(mode="after")
    def _filters_fit_the_mode(self) -> ReplayRequest:
        if self.mode != "log" and (self.statuses or self.received_after or self.received_before):
            raise ValueError("statuses, received_after and received_before apply to log mode only")
        if self.mode != "deliveries" and (self.destination or self.delivery_ids or self.delivery_statuses):
            raise ValueError("destination, delivery_ids and delivery_statuses apply to deliveries mode only")
        return self

    def matches(self, event: EventMessage) -> bool:
        return (self.module is None or event.module == self.module) and (
            self.event_ids is None or event.event_id in self.event_ids
        )


class ReplayResult(BaseModel):
    mode: str
    dry_run: bool
    examined: int = 0
    replayed: int = 0
    skipped: int = 0
    failed: int = 0  # rows that could not be queued at all, now ``failed`` with the reason
    unverified: int | None = None  # dlq mode: dead letters kept because the log does not vouch for them
    event_ids: list[str] = Field(default_factory=list)
    delivery_ids: list[int] | None = None  # deliveries mode and sweep, and dlq mode when it moved any
    rejections_deleted: int | None = None  # sweep only
    payloads_redacted: int | None = None  # sweep only: settled payloads past PAYLOAD_RETENTION_DAYS
    counts: Counter[tuple[str, str]] = Field(default_factory=Counter)  # (source, module) → replayed

    def add(self, event: EventMessage) -> None:
        """One more event replayed (or, in a dry run, that would be)."""
        self.replayed += 1
        self.event_ids.append(event.event_id)
        self.counts[event.source, event.module] += 1
        if not self.dry_run:
            logger.set_correlation_id(event.event_id)
            logger.info("event replayed", mode=self.mode, event_module=event.module)
            logger.set_correlation_id(None)

    def sent(self, deliveries: list[tuple[int, str]]) -> None:
        """Deliveries sent again (or, in a dry run, that would be)."""
        self.delivery_ids = [*(self.delivery_ids or []), *(i for i, _ in deliveries)]
        self.replayed += len(deliveries)

    def answer(self) -> dict[str, Any]:
        optional = ("rejections_deleted", "delivery_ids", "payloads_redacted", "unverified")
        exclude = {"counts", *(k for k in optional if getattr(self, k) is None)}
        return {"success": True, **self.model_dump(exclude=exclude)}


def message_from_log(row: dict[str, Any]) -> EventMessage:
    """The queue message of an event-log row (its facts drawn from the stored payload)."""
    return EventMessage(
        source=row["source"],
        module=row["module"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        record_id=row["record_id"],
        occurred_at=row["occurred_at"],
        payload=row["payload"],
        facts=facts_of(row["source"], row["module"], row["payload"]),
    )


class Replayer:
    """Runs replay requests against the event log, the module queues and the dead-letter queue."""

    def __init__(
        self,
        log: EventLogOperations,
        publisher: SqsPublisher,
        dead_letters: DeadLetterQueue,
        rejection_retention_days: int = 30,
        deliveries: DeliveryStore | None = None,
        delivery_publisher: DeliveryPublisher | None = None,
        privacy: PrivacyStore | None = None,
        payload_retention_days: int = 30,
    ) -> None:
        self._log = log
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._rejection_retention_days = rejection_retention_days
        self._deliveries = deliveries
        self._delivery_publisher = delivery_publisher
        self._privacy = privacy
        self._payload_retention_days = payload_retention_days

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The function's entry point: validate the input, replay, report."""
        try:
            request = ReplayRequest.model_validate(payload)
        except ValidationError as invalid:
            return {"success": False, "error": "invalid_request", "details": problems(invalid, "input")}
        if request.mode == "dlq":
            result = self.from_dlq(request)
        elif request.mode == "log":
            result = self.from_log(request, tuple(request.statuses or DEFAULT_STATUSES))
        elif request.mode == "deliveries":
            result = self.deliveries(request)
        else:
            result = self.sweep(request)
        logger.info("replay finished", **result.model_dump(exclude={"event_ids", "counts"}))
        if not request.dry_run:
            for (source, module), replayed in result.counts.items():
                count(Metric.REPLAYED, value=replayed, source=source, module=module)
        return result.answer()

    # ------------------------------------------------------------ dead-letter queue

    def from_dlq(self, request: ReplayRequest) -> ReplayResult:
        result = ReplayResult(mode="dlq", dry_run=request.dry_run, unverified=0)
        left: list[str] = []  # receipt handles to make visible again
        while result.examined < request.max_messages:
            messages = self._dead_letters.receive(request.max_messages - result.examined)
            if not messages:
                break
            for message in messages:
                result.examined += 1
                delivery = DeliveryMessage.from_json(message.body)
                if delivery is not None and self._redeliver(delivery, request, result):
                    self._dead_letters.delete(message.receipt)
                    continue
                event = EventMessage.from_json(message.body)
                if event is not None and request.matches(event) and not self._vouched_for(event, request):
                    left.append(message.receipt)
                    result.unverified = (result.unverified or 0) + 1
                    continue
                if event is None or not request.matches(event) or request.dry_run:
                    left.append(message.receipt)
                    if event is not None and request.matches(event):
                        result.add(event)
                    else:
                        result.skipped += 1
                    continue
                try:
                    self._log.mark_replayed(event.source, event.event_id, from_status=None)
                except StorageUnavailable as error:  # the message matters more than its row's status
                    logger.warning("could not mark the event replayed", error=str(error))
                try:
                    self._publisher.publish(event)
                except QueueUnavailable:
                    left.append(message.receipt)  # stays in the dead-letter queue
                    result.skipped += 1
                    continue
                self._dead_letters.delete(message.receipt)
                result.add(event)
        self._dead_letters.release(left)
        return result

    def _vouched_for(self, event: EventMessage, request: ReplayRequest) -> bool:
        """Whether the event log says the router queued this very event: only then is a dead letter
        forwarded (the dead-letter queue is no side door into the module queues)."""
        try:
            logged = self._log.logged_as(event.source, event.event_id, event.payload)
        except StorageUnavailable as error:
            logger.warning("could not check the dead letter against the log; kept", error=str(error))
            return False
        if logged is None and request.unlogged == "forward":
            return True
        if not logged:
            logger.set_correlation_id(event.event_id)
            logger.warning(
                "dead letter kept: the event log does not vouch for it",
                reason="no row" if logged is None else "differs from its row",
            )
            logger.set_correlation_id(None)
        return bool(logged)

    # ------------------------------------------------------------ event log

    def from_log(self, request: ReplayRequest, statuses: tuple[ReplayableStatus, ...]) -> ReplayResult:
        """Re-queue matching rows. A row that cannot be queued at all (its event no longer reads or
        serialises) becomes ``failed`` with the reason, and the others go on."""
        result = ReplayResult(mode=request.mode, dry_run=request.dry_run)
        rows = self._log.replayable(
            statuses=list(statuses),
            module=request.module,
            event_ids=request.event_ids,
            received_after=request.received_after,
            received_before=request.received_before,
            received_grace_seconds=request.received_grace_seconds,
            replayed_grace_seconds=request.replayed_grace_seconds,
            max_rows=request.max_messages,
        )
        for row in rows:
            result.examined += 1
            try:
                event = message_from_log(row)
                event.model_dump_json()  # what publishing needs; fails here rather than after the mark
            except Exception as error:  # noqa: BLE001 - an unreadable row must not stop the others
                reason = f"cannot be queued: {type(error).__name__}"
                logger.error("event-log row cannot be queued; marking it failed", event_id=row["event_id"])
                if not request.dry_run:
                    self._log.park(row["id"], row["status"], reason)
                result.failed += 1
                continue
            if request.dry_run:
                result.add(event)
                continue
            if not self._log.mark_replayed(event.source, event.event_id, from_status=row["status"]):
                result.skipped += 1  # it moved on since it was read
                continue
            try:
                self._publisher.publish(event)
            except QueueUnavailable:
                self._log.restore(event.source, event.event_id, row["status"])
                result.skipped += 1
                logger.error("could not re-queue the event; its status is restored", event_id=event.event_id)
                continue
            result.add(event)
        if result.failed or result.skipped:
            logger.warning("replay left rows behind", failed=result.failed, skipped=result.skipped)
        return result

    def sweep(self, request: ReplayRequest) -> ReplayResult:
        """The schedule's run: rows stuck in ``received`` or ``replayed``, deliveries whose message was
        lost or whose wait is over, then old rejection counts."""
        result = self.from_log(request, SWEPT_STATUSES)
        if self._deliveries is not None and not request.dry_run:
            overdue = self._deliveries.overdue(OVERDUE_DELIVERY_SECONDS, request.max_messages)
            ready = self._deliveries.ready()
            self._send(overdue + ready)
            result.sent(overdue + ready)
        result.rejections_deleted = self._log.delete_rejections_older_than(
            self._rejection_retention_days, dry_run=request.dry_run
        )
        if self._privacy is not None and not request.dry_run:
            # Bounded batches, each its own short transaction: one run never holds long locks.
            redacted = 0
            for _ in range(RETENTION_BATCHES):
                done = self._privacy.redact_old_payloads(self._payload_retention_days, RETENTION_BATCH)
                redacted += done
                if done < RETENTION_BATCH:
                    break
            result.payloads_redacted = redacted
        return result

    # ------------------------------------------------------------ deliveries

    def deliveries(self, request: ReplayRequest) -> ReplayResult:
        """Send deliveries again: by default the failed and dead-lettered ones."""
        result = ReplayResult(mode="deliveries", dry_run=request.dry_run)
        if self._deliveries is None:
            return result
        statuses: list[str] = list(request.delivery_statuses or ("failed", "dead_lettered"))
        if request.dry_run:
            found = self._deliveries.matching(statuses, request.destination, request.delivery_ids, request.max_messages)
        else:
            found = self._deliveries.requeue(statuses, request.destination, request.delivery_ids, request.max_messages)
            self._send(found)
        result.examined = len(found)
        result.sent(found)
        return result

    def _redeliver(self, message: DeliveryMessage, request: ReplayRequest, result: ReplayResult) -> bool:
        """A dead-lettered delivery's message: back on its destination's queue (True when moved)."""
        if request.dry_run or self._deliveries is None:
            return False
        found = self._deliveries.requeue(["dead_lettered", "pending"], ids=[message.delivery_id])
        self._send(found or [(message.delivery_id, message.destination)])
        result.sent([(message.delivery_id, message.destination)])
        return True

    def _send(self, deliveries: list[tuple[int, str]]) -> None:
        if self._delivery_publisher is not None:
            self._delivery_publisher.send(deliveries)


def build_replayer(settings: Settings | None = None) -> Replayer:
    """Wire the replay function from the container's settings."""
    settings = settings or load_settings()
    if not settings.dead_letter_queue_url:
        raise ValueError("DEAD_LETTER_QUEUE_URL is not set")
    connection = PreparedConnection(connection_params(settings, "replay"), settings.db_idle_ping_seconds)
    sqs = sqs_client(settings)
    return Replayer(
        EventLogOperations(connection),
        SqsPublisher(sqs, settings.queue_urls()),
        DeadLetterQueue(sqs, settings.dead_letter_queue_url),
        rejection_retention_days=settings.rejection_retention_days,
        deliveries=DeliveryStore(connection),
        delivery_publisher=DeliveryPublisher(settings, sqs),
        privacy=PrivacyStore(connection),
        payload_retention_days=settings.payload_retention_days,
    )
