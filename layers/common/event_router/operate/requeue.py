"""Re-queueing events: what replay and the sweep share — the replay function's request and result, and
putting event-log rows back on their module queues (docs/operate.md, "Replaying events").

Rows are marked ``replayed`` (``replay_count + 1``) before the message is sent, so the processor can
claim them; a row whose message cannot be sent gets its status back. ``dry_run`` reports and
changes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from event_router.contract import Module
from event_router.errors import QueueUnavailable
from event_router.messages import EventMessage
from event_router.observability import logger
from event_router.queues import SqsPublisher
from event_router.store.operations import EventLogOperations
from event_router.verify.payloads import facts_of

ReplayableStatus = Literal["received", "queued", "processing", "failed", "dead_lettered", "replayed"]
DEFAULT_STATUSES: tuple[ReplayableStatus, ...] = ("failed", "dead_lettered", "received")
SWEPT_STATUSES: tuple[ReplayableStatus, ...] = ("received", "replayed")
# "delivered" too: sending a delivered one again makes the destination match the mirror once more
# (after someone changed the Moodle user by hand, say); the rules converge, so nothing doubles.
ReplayableDelivery = Literal[
    "failed", "dead_lettered", "paused", "waiting", "pending", "delivered", "superseded", "conflict"
]


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

    def filters(self) -> dict[str, Any]:
        """Which event-log rows the request is about (``EventLogOperations.replayable``'s filters)."""
        return self.model_dump(
            include={
                "module",
                "event_ids",
                "received_after",
                "received_before",
                "received_grace_seconds",
                "replayed_grace_seconds",
            }
        )

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


def requeue_rows(
    log: EventLogOperations, publisher: SqsPublisher, request: ReplayRequest, statuses: tuple[ReplayableStatus, ...]
) -> ReplayResult:
    """Re-queue matching rows. A row that cannot be queued at all (its event no longer reads or
    serialises) becomes ``failed`` with the reason, and the others go on."""
    result = ReplayResult(mode=request.mode, dry_run=request.dry_run)
    rows = log.replayable(statuses=list(statuses), max_rows=request.max_messages, **request.filters())
    for row in rows:
        result.examined += 1
        try:
            event = message_from_log(row)
            event.model_dump_json()  # what publishing needs; fails here rather than after the mark
        except Exception as error:  # noqa: BLE001 - an unreadable row must not stop the others
            reason = f"cannot be queued: {type(error).__name__}"
            logger.error("event-log row cannot be queued; marking it failed", event_id=row["event_id"])
            if not request.dry_run:
                log.park(row["id"], row["status"], reason)
            result.failed += 1
            continue
        if request.dry_run:
            result.add(event)
            continue
        if not log.mark_replayed(event.source, event.event_id, from_status=row["status"]):
            result.skipped += 1  # it moved on since it was read
            continue
        try:
            publisher.publish(event)
        except QueueUnavailable:
            log.restore(event.source, event.event_id, row["status"])
            result.skipped += 1
            logger.error("could not re-queue the event; its status is restored", event_id=event.event_id)
            continue
        result.add(event)
    if result.failed or result.skipped:
        logger.warning("replay left rows behind", failed=result.failed, skipped=result.skipped)
    return result
