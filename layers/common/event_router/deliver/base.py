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
    "cancelled": Metric.DELIVERY_CANCELLED,
    "conflict": Metric.DELIVERY_CONFLICT,
}


@dataclass
class Work:
    """What happened to one batch: the ids to send again, the records to retry, the counts."""

    to_send: list[tuple[int, str]] = field(default_factory=list)
    retry: list[dict[str, Any]] = field(default_factory=list)
    handed_back: list[dict[str, Any]] = field(default_factory=list)  # not tried: the invocation ran out of time
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
        retry_max_seconds: int = 43_200,
        backoff: Backoff | None = None,
        reserve_seconds: float = 20.0,
    ) -> None:
        self._store = store
        # Time kept in hand: no delivery starts with less than this left before the function's
        # deadline (twice the destination's call timeout, at most half the invocation), so a slow
        # destination never times out a whole batch; what is left is handed back untried.
        self._reserve_ms = reserve_seconds * 1000
        self._remaining_ms: Callable[[], int] | None = None
        self._handed_back: list[dict[str, Any]] = []
        self._reserve_now = 0.0
        self._send = send
        self._max_receive_count = max_receive_count
        self._retry_base_seconds = retry_base_seconds
        self._retry_max_seconds = retry_max_seconds
        self._backoff = backoff or NoBackoff()

    def handle(self, event: dict[str, Any], remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """An SQS batch in, the partial batch response out; or, from the schedule, a health check.
        ``remaining_ms``: the invocation's time left (Lambda's context)."""
        if "Records" not in event:
            return self.check()
        self._remaining_ms, self._handed_back = remaining_ms, []
        # At most half the invocation's time is kept in hand: the first delivery always starts.
        self._reserve_now = min(self._reserve_ms, remaining_ms() / 2) if remaining_ms is not None else 0.0
        retry = self.deliver_batch(event["Records"])
        untried = {r["messageId"] for r in self._handed_back}
        self._backoff.postpone([r for r in retry if r["messageId"] not in untried])
        self._backoff.release(self._handed_back)
        if self._handed_back:
            logger.warning("out of time: deliveries handed back untried", count=len(self._handed_back))
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in retry]}

    def out_of_time(self, work: Work, records: list[dict[str, Any]]) -> bool:
        """True (and ``records`` handed back) when too little time is left to start more deliveries."""
        if self._remaining_ms is None or self._remaining_ms() >= self._reserve_now:
            return False
        work.handed_back += records
        work.retry += records
        return True

    def deliver_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def check(self) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, work: Work) -> list[dict[str, Any]]:
        """Send what the batch woke or created, count what it did; the records to retry."""
        self._send(work.to_send)
        self._handed_back = work.handed_back
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
                retry_in=retry_delay(receive_count(record), self._retry_base_seconds, self._retry_max_seconds),
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

    def finish_check(self, steps: dict[str, Step], identity: dict[str, Any], *, can_resume: bool) -> dict[str, Any]:
        """Close a health check whose ``steps`` each passed or failed on their own: keep what it learned
        and how each step went (``/stats`` shows them), resume a pause when the steps that prove the
        destination answers (``can_resume``) passed, and set the paused metric."""
        resumed = can_resume and self._store.resume(self.destination)
        requeued: list[tuple[int, str]] = []
        if resumed:
            requeued = self._store.requeue(["paused"], destination=self.destination)
            self._send(requeued)
            logger.info("the destination answers again; deliveries resumed", destination=self.destination)
        if can_resume:
            steps["resume"] = Step(True, "resumed" if resumed else "not paused")
        self._store.record_check(self.destination, identity, {name: step.stored() for name, step in steps.items()})
        reason = self._store.paused(self.destination)
        count(Metric.DESTINATION_PAUSED, value=1 if reason is not None else 0, destination=self.destination)
        failed = {name: step.reason for name, step in steps.items() if not step.ok}
        for name, why in failed.items():
            logger.warning("a health check step failed", destination=self.destination, step=name, reason=why)
        return {
            "destination": self.destination,
            "healthy": not failed,
            "paused": reason is not None,
            "resumed": resumed,
            "requeued": len(requeued),
            "checks": {name: step.stored() for name, step in steps.items()},
            **({"error": next(iter(failed.values()))} if failed else {}),
        }


@dataclass(frozen=True)
class Step:
    """One step of a health check: whether it passed, and why not (or what it did)."""

    ok: bool
    reason: str | None = None

    @classmethod
    def failed(cls, error: DeliveryError) -> Step:
        return cls(False, getattr(error, "code", None) or type(error).__name__)

    def stored(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason}
