"""What every delivery function shares, whatever its destination (docs/decisions.md, "One destination
skeleton"): an SQS batch in and the partial batch response out, or from the schedule a health check.
A batch is parsed, its open deliveries parked while the destination is paused, their targets locked,
those a newer delivery replaces superseded, the rest attempted by the destination and settled, every
step counted under the same metrics; near the invocation's deadline the rest is handed back untried.
A delivery to retry comes back after the back-off, and on its last receive is ``dead_lettered``; a
destination that refuses the router's credentials is paused, and resumed by the first health check it
passes. The stores and clients are reached through ports (``ports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from event_router.contract import OPEN_DELIVERIES, DeliveryStatus
from event_router.core.backoff import (
    MAX_VISIBILITY_TIMEOUT,
    Backoff,
    NoBackoff,
    queue_backoff,
    receive_count,
    retry_delay,
)
from event_router.deliver.outbox import DeliveryMessage
from event_router.deliver.ports import Ledger
from event_router.errors import DeliveryError, Refusal, StorageUnavailable
from event_router.mapping import FieldMapping
from event_router.observability import Metric, count, logger
from event_router.settings import Settings
from event_router.store.deliveries import Delivery, Outcome

Item = tuple[dict[str, Any], Delivery]  # an SQS record and the delivery it carries
METRICS = {
    DeliveryStatus.DELIVERED: Metric.DELIVERED,
    DeliveryStatus.WAITING: Metric.DELIVERY_WAITING,
    DeliveryStatus.FAILED: Metric.DELIVERY_FAILED,
    DeliveryStatus.PAUSED: Metric.DELIVERY_PAUSED,
    DeliveryStatus.PENDING: Metric.DELIVERY_RETRIED,
    DeliveryStatus.DEAD_LETTERED: Metric.DELIVERY_DEAD_LETTERED,
    DeliveryStatus.CANCELLED: Metric.DELIVERY_CANCELLED,
    DeliveryStatus.CONFLICT: Metric.DELIVERY_CONFLICT,
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


@dataclass(frozen=True)
class Retries:
    """How a destination's deliveries are retried, and the time a batch keeps in hand."""

    max_receive_count: int = 5  # the queue's: on its last receive a delivery is dead-lettered
    retry_base_seconds: int = 120
    retry_max_seconds: int = MAX_VISIBILITY_TIMEOUT
    backoff: Backoff | None = None
    # No delivery starts with less than this left before the function's deadline (twice the
    # destination's call timeout, at most half the invocation), so a slow destination never times
    # out a whole batch; what is left is handed back untried.
    reserve_seconds: float = 20.0

    @classmethod
    def of(cls, settings: Settings, queue_url: str | None, call_timeout_seconds: float) -> Retries:
        """The retries of the function fed by ``queue_url``, from the container's settings."""
        return cls(
            settings.max_receive_count,
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            queue_backoff(queue_url, settings),
            2 * call_timeout_seconds,  # a slow call twice over
        )


DEFAULT_RETRIES = Retries()


@dataclass(frozen=True)
class Wiring[L: Ledger]:
    """What every deliverer is given: its ledger, how it sends the deliveries it wakes or creates, the
    college's Zoho field names, and how its failures are retried."""

    store: L
    send: Callable[[list[tuple[int, str]]], None]
    mapping: FieldMapping
    retries: Retries = DEFAULT_RETRIES


class DeliveryFunction[L: Ledger]:
    """The skeleton of one destination's delivery function."""

    destination: str

    def __init__(self, wiring: Wiring[L]) -> None:
        self._store = wiring.store
        self._send = wiring.send
        self._mapping = wiring.mapping
        self._retries = wiring.retries
        self._backoff = wiring.retries.backoff or NoBackoff()
        self._remaining_ms: Callable[[], int] | None = None
        self._handed_back: list[dict[str, Any]] = []
        self._reserve_now = 0.0

    def handle(self, event: dict[str, Any], remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """An SQS batch in, the partial batch response out; or, from the schedule, a health check.
        ``remaining_ms``: the invocation's time left (Lambda's context)."""
        if "Records" not in event:
            return self.check()
        self._remaining_ms, self._handed_back = remaining_ms, []
        # At most half the invocation's time is kept in hand: the first delivery always starts.
        reserve_ms = self._retries.reserve_seconds * 1000
        self._reserve_now = min(reserve_ms, remaining_ms() / 2) if remaining_ms is not None else 0.0
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

    # ------------------------------------------------------------ the skeleton of a batch

    def deliver_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Deliver every record of an SQS batch; the records SQS should deliver again.

        Each step is the same for every destination: parse the messages, keep the deliveries still
        open, then unit by unit (``units``): park them while the destination is paused, lock their
        targets, supersede those a newer delivery replaces, ``attempt`` the rest and settle each
        with its outcome, counting every step under the same metrics."""
        work = Work()
        units = self.units(self._open(records, work))
        for n, unit in enumerate(units):
            if self.out_of_time(work, [record for later in units[n:] for record, _ in later]):
                break
            try:
                self._deliver(unit, work)
            except StorageUnavailable as error:  # the router's own database: the messages come back
                logger.error("could not settle deliveries; SQS will retry them", error=str(error))
                work.retry += [record for record, _ in unit]
        self.after_batch()
        return self.finish(work)

    def units(self, items: list[Item]) -> list[list[Item]]:
        """How the open deliveries are attempted: one at a time, unless a destination batches."""
        return [[item] for item in items]

    def attempt(self, deliveries: list[Delivery], work: Work) -> list[Outcome]:
        """The destination's part: one outcome per delivery of a unit, in order."""
        raise NotImplementedError

    def after_batch(self) -> None:
        """Anything a destination reports once a batch is done."""

    def _open(self, records: list[dict[str, Any]], work: Work) -> list[Item]:
        """The batch's deliveries still to do; a message that is not a delivery is retried until
        it is dead-lettered, one settled already (or twice in the batch) changes nothing."""
        items: list[Item] = []
        seen: set[int] = set()
        for record in records:
            message = DeliveryMessage.from_json(record.get("body", ""))
            if message is None:
                logger.error("delivery message is not a delivery; SQS will retry it until it is dead-lettered")
                work.retry.append(record)
                continue
            try:
                delivery = self._store.load(message.delivery_id)
            except StorageUnavailable as error:
                logger.error("could not read a delivery; SQS will retry it", error=str(error))
                work.retry.append(record)
                continue
            if delivery is not None and delivery.status in OPEN_DELIVERIES and delivery.id not in seen:
                seen.add(delivery.id)
                items.append((record, delivery))
        return items

    def _deliver(self, unit: list[Item], work: Work) -> None:
        paused = self.paused_outcome()
        if paused is not None:
            for _, delivery in unit:
                self._store.settle(delivery, paused)
                work.count(Metric.DELIVERY_PAUSED, delivery.action)
            return
        with self._store.target_lock(*(delivery for _, delivery in unit)):
            todo: list[Item] = []
            for record, delivery in unit:
                if self._store.supersede(delivery):
                    work.count(Metric.DELIVERY_SUPERSEDED, delivery.action)
                else:
                    todo.append((record, delivery))
            if not todo:
                return
            outcomes = self.attempt([delivery for _, delivery in todo], work)
            for (record, delivery), outcome in zip(todo, outcomes, strict=True):
                self.settle(record, delivery, outcome, work)

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
        if outcome.status == DeliveryStatus.PENDING:
            received, retries = receive_count(record), self._retries
            outcome = Outcome(
                DeliveryStatus.DEAD_LETTERED if received >= retries.max_receive_count else DeliveryStatus.PENDING,
                error=outcome.error,
                retry_in=retry_delay(received, retries.retry_base_seconds, retries.retry_max_seconds),
            )
            work.retry.append(record)
        self._store.settle(delivery, outcome)
        work.count(METRICS[outcome.status], delivery.action)
        logger.info("delivery settled", delivery_id=delivery.id, action=delivery.action, status=outcome.status)

    def paused_outcome(self) -> Outcome | None:
        """While the destination is paused, how a delivery ends without being tried."""
        reason = self._store.paused(self.destination)
        return self._parked(reason) if reason is not None else None

    def _parked(self, reason: str) -> Outcome:
        return Outcome(
            DeliveryStatus.PAUSED, error=f"{self.destination.capitalize()} is paused ({reason})", attempted=False
        )

    def outcome_of(self, error: DeliveryError, kind: Refusal, code: str) -> Outcome:
        """A destination's refusal as an outcome: its set-up pauses it, a passing trouble is retried,
        anything else fails the delivery with the destination's message."""
        if kind == "configuration":
            self.pause(code)
            return self._parked(code)
        if kind == "transient":
            return Outcome(DeliveryStatus.PENDING, error=str(error))
        return Outcome(DeliveryStatus.FAILED, error=str(error))

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
            requeued = self._store.requeue([DeliveryStatus.PAUSED], destination=self.destination)
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
