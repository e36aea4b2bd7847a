"""Replay (docs/operate.md): bring failed events back to their module queue.

``dlq`` mode moves messages from the dead-letter queue back to their module queue (receive, send,
delete; an at-least-once move, so a crash in between leaves a duplicate that the processor
ignores), and only those the event log vouches for. ``log`` mode re-queues event-log rows
(``requeue.py``): by default ``failed`` and ``dead_lettered`` ones and rows stuck in ``received``.
``deliveries`` mode sends deliveries again. ``sweep`` is what the schedule runs (``sweep.py``).
``dry_run`` reports and changes nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from event_router.core.aws import sqs_client
from event_router.core.problems import problems
from event_router.deliver.outbox import DeliveryMessage, DeliveryPublisher
from event_router.errors import QueueUnavailable, StorageUnavailable
from event_router.messages import EventMessage
from event_router.observability import Metric, count, logger
from event_router.operate.requeue import DEFAULT_STATUSES, ReplayRequest, ReplayResult, requeue_rows
from event_router.operate.retention import Retention
from event_router.operate.sweep import Sweep
from event_router.process.batch import read_event
from event_router.queues import DeadLetterQueue, SqsPublisher
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore
from event_router.store.operations import EventLogOperations
from event_router.store.privacy import PrivacyStore


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
        self._deliveries = deliveries
        self._delivery_publisher = delivery_publisher
        retention = Retention(log, privacy, rejection_retention_days, payload_retention_days)
        self._sweep = Sweep(log, publisher, retention, deliveries, delivery_publisher)

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The function's entry point: validate the input, replay, report."""
        try:
            request = ReplayRequest.model_validate(payload)
        except ValidationError as invalid:
            return {"success": False, "error": "invalid_request", "details": problems(invalid, "input")}
        if request.mode == "dlq":
            result = self.from_dlq(request)
        elif request.mode == "log":
            result = requeue_rows(self._log, self._publisher, request, tuple(request.statuses or DEFAULT_STATUSES))
        elif request.mode == "deliveries":
            result = self.deliveries(request)
        else:
            result = self._sweep.run(request)
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
                event = read_event(message.body)
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
