"""What every delivery function shares, whatever its destination: an SQS batch in and the partial
batch response out (or, from the schedule, a health check); a delivery that is to be retried comes
back after the back-off, and on its last receive is ``dead_lettered``; a destination that refuses
the router's credentials is paused, and resumed by the first health check it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from event_router.errors import DeliveryError
from event_router.observability import Metric, count, logger
from event_router.process.backoff import Backoff, NoBackoff, receive_count, retry_delay
from event_router.store.deliveries import Delivery, DeliveryStore, Outcome

OPEN = ("pending", "waiting", "paused", "dead_lettered")  # a delivery in one of these is still to do
METRICS = {
    "delivered": Metric.DELIVERED,
    "waiting": Metric.DELIVERY_WAITING,
    "failed": Metric.DELIVERY_FAILED,
    "paused": Metric.DELIVERY_PAUSED,
    "pending": Metric.DELIVERY_RETRIED,
    "dead_lettered": Metric.DELIVERY_DEAD_LETTERED,
}


@dataclass
class Work:
    """What happened to one batch: the ids to send again, the records to retry, the counts."""

    to_send: list[tuple[int, str]] = field(default_factory=list)
    retry: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[tuple[Metric, str], int] = field(default_factory=dict)  # (metric, action) → deliveries

    def count(self, metric: Metric, action: str) -> None:
        self.counts[metric, action] = self.counts.get((metric, action), 0) + 1


class DeliveryFunction:
    """The skeleton of one destination's delivery function."""

    destination: str

    def __init__(
        self,
        store: DeliveryStore,
        send: Callable[[list[tuple[int, str]]], None],
        *,
        max_receive_count: int = 5,
        retry_base_seconds: int = 120,
        backoff: Backoff | None = None,
    ) -> None:
        self._store = store
        self._send = send
        self._max_receive_count = max_receive_count
        self._retry_base_seconds = retry_base_seconds
        self._backoff = backoff or NoBackoff()

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """An SQS batch in, the partial batch response out; or, from the schedule, a health check."""
        if "Records" not in event:
            return self.check()
        retry = self.deliver_batch(event["Records"])
        self._backoff.postpone(retry)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in retry]}

    def deliver_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def check(self) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, work: Work) -> list[dict[str, Any]]:
        """Send what the batch woke or created, count what it did; the records to retry."""
        self._send(work.to_send)
        for (metric, action), value in work.counts.items():
            count(metric, value=value, destination=self.destination, action=action)
        return work.retry

    def settle(self, record: dict[str, Any], delivery: Delivery, outcome: Outcome, work: Work) -> None:
        """Record how a delivery ended; one to retry stays ``pending`` for the back-off, or on its
        last receive is ``dead_lettered``."""
        if outcome.status == "pending":
            last = receive_count(record) >= self._max_receive_count
            outcome = Outcome(
                "dead_lettered" if last else "pending",
                error=outcome.error,
                retry_in=retry_delay(receive_count(record), self._retry_base_seconds, 43_200),
            )
            work.retry.append(record)
        self._store.settle(delivery, outcome)
        work.count(METRICS[outcome.status], delivery.action)

    def paused_outcome(self) -> Outcome | None:
        """While the destination is paused, how a delivery ends without being tried."""
        reason = self._store.paused(self.destination)
        if reason is None:
            return None
        return Outcome("paused", error=f"{self.destination.capitalize()} is paused ({reason})", attempted=False)

    def outcome_of(self, error: DeliveryError, kind: str, code: str) -> Outcome:
        """A destination's refusal as an outcome: its set-up pauses it, a passing trouble is retried,
        anything else fails the delivery with the destination's message."""
        if kind == "configuration":
            self.pause(code)
            return Outcome("paused", error=f"{self.destination.capitalize()} is paused ({code})", attempted=False)
        if kind == "transient":
            return Outcome("pending", error=str(error))
        return Outcome("failed", error=str(error))

    def pause(self, code: str) -> None:
        self._store.pause(self.destination, code)
        count(Metric.DESTINATION_PAUSED, value=1, destination=self.destination)
        logger.error(
            "the destination refused the router's credentials or permissions; deliveries paused",
            destination=self.destination,
            code=code,
        )

    def unhealthy(self, kind: str, code: str) -> dict[str, Any]:
        """The health check's answer when the destination refused it."""
        if kind == "configuration":
            self._store.pause(self.destination, code)
        paused = self._store.paused(self.destination) is not None
        count(Metric.DESTINATION_PAUSED, value=1 if paused else 0, destination=self.destination)
        return {"destination": self.destination, "healthy": False, "paused": paused, "error": code}

    def healthy(self, identity: dict[str, Any]) -> dict[str, Any]:
        """The health check passed: remember who the router is there, and resume a pause."""
        resumed = self._store.healthy(self.destination, identity)
        requeued: list[tuple[int, str]] = []
        if resumed:
            requeued = self._store.requeue(["paused"], destination=self.destination)
            self._send(requeued)
            logger.info("the destination answers again; deliveries resumed", destination=self.destination)
        count(Metric.DESTINATION_PAUSED, value=0, destination=self.destination)
        return {
            "destination": self.destination,
            "healthy": True,
            "paused": False,
            "resumed": resumed,
            "requeued": len(requeued),
        }
