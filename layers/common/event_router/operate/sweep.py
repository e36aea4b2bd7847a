"""The sweep (docs/operate.md, "Replaying events"): what the schedule runs every few minutes — rows stuck in
``received`` (the SQS-down path) or ``replayed``, deliveries whose message was lost or whose wait is
over, then retention.
"""

from __future__ import annotations

from dataclasses import dataclass

from event_router.deliver.outbox import DeliveryPublisher
from event_router.operate.requeue import SWEPT_STATUSES, ReplayRequest, ReplayResult, requeue_rows
from event_router.operate.retention import Retention
from event_router.queues import SqsPublisher
from event_router.store.deliveries import DeliveryStore
from event_router.store.operations import EventLogOperations

OVERDUE_DELIVERY_SECONDS = 900  # a pending delivery not taken for this long has lost its message


@dataclass
class Sweep:
    """The scheduled clean-up of what a crash or an outage left behind."""

    log: EventLogOperations
    publisher: SqsPublisher
    retention: Retention
    deliveries: DeliveryStore | None = None
    delivery_publisher: DeliveryPublisher | None = None

    def run(self, request: ReplayRequest) -> ReplayResult:
        result = requeue_rows(self.log, self.publisher, request, SWEPT_STATUSES)
        if self.deliveries is not None and not request.dry_run:
            overdue = self.deliveries.overdue(OVERDUE_DELIVERY_SECONDS, request.max_messages)
            ready = self.deliveries.ready()
            if self.delivery_publisher is not None:
                self.delivery_publisher.send(overdue + ready)
            result.sent(overdue + ready)
        result.rejections_deleted = self.retention.delete_old_rejections(request.dry_run)
        if not request.dry_run:
            result.payloads_redacted = self.retention.redact_old_payloads()
            self.retention.delete_old_rollups()
        return result
