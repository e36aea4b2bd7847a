"""Replay (SPEC §8): bring failed events back to their module queue.

``dlq`` mode moves messages from the dead-letter queue back to their module
queue (receive, send, delete; an at-least-once move, so a crash in between
leaves a duplicate that the processor ignores). ``log`` mode re-queues
event-log rows: by default ``failed`` and ``dead_lettered`` ones and rows stuck
in ``received`` (the SQS-down path), which is what the scheduled sweep runs.
Both mark the row ``replayed`` and bump ``replay_count`` before the message is
sent, so the processor can claim it. ``dry_run`` reports and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine, delete, func, select, update

from event_router.engine import STORE_ERRORS, settings_engine
from event_router.errors import QueueUnavailable
from event_router.observability import Metric, count, logger
from event_router.payloads import WebhookEvent, event_from_message, problems
from event_router.queues import SqsPublisher, sqs_client
from event_router.routes import Module
from event_router.schema import integration_events_log as log
from event_router.schema import rejected_requests as rejected
from event_router.settings import Settings, load_settings

ReplayableStatus = Literal["received", "queued", "processing", "failed", "dead_lettered", "replayed"]
DEFAULT_STATUSES: tuple[ReplayableStatus, ...] = ("failed", "dead_lettered", "received")


class ReplayRequest(BaseModel):
    """The replay function's input. ``sweep`` is what the schedule runs: ``log`` mode over rows stuck
    in ``received`` or ``replayed``, then the retention of ``rejected_requests``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dlq", "log", "sweep"]
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

    @model_validator(mode="after")
    def _filters_fit_the_mode(self) -> ReplayRequest:
        if self.mode != "log" and (self.statuses or self.received_after or self.received_before):
            raise ValueError("statuses, received_after and received_before apply to log mode only")
        return self

    def matches(self, event: WebhookEvent) -> bool:
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
    event_ids: list[str] = Field(default_factory=list)
    rejections_deleted: int | None = None  # sweep only
    counts: Counter[tuple[str, str]] = Field(default_factory=Counter)  # (source, module) → replayed

    def add(self, event: WebhookEvent) -> None:
        """One more event replayed (or, in a dry run, that would be)."""
        self.replayed += 1
        self.event_ids.append(event.event_id)
        self.counts[event.source, event.module] += 1
        if not self.dry_run:
            logger.set_correlation_id(event.event_id)
            logger.info("event replayed", mode=self.mode, event_module=event.module)
            logger.set_correlation_id(None)


class Replayer:
    """Runs replay requests against the event log, the module queues and the dead-letter queue."""

    def __init__(
        self,
        engine: Engine,
        sqs: Any,
        queue_urls: dict[Module, str],
        dead_letter_queue_url: str,
        rejection_retention: timedelta = timedelta(days=30),
    ) -> None:
        self._engine = engine
        self._sqs = sqs
        self._publisher = SqsPublisher(sqs, queue_urls)
        self._dlq_url = dead_letter_queue_url
        self._rejection_retention = rejection_retention

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The function's entry point: validate the input, replay, report."""
        try:
            request = ReplayRequest.model_validate(payload)
        except ValidationError as invalid:
            return {"success": False, "error": "invalid_request", "details": problems(invalid, "input")}
        if request.mode == "dlq":
            result = self.from_dlq(request)
        elif request.mode == "log":
            result = self.from_log(request)
        else:
            result = self.sweep(request)
        logger.info("replay finished", **result.model_dump(exclude={"event_ids", "counts"}))
        if not request.dry_run:
            for (source, module), replayed in result.counts.items():
                count(Metric.REPLAYED, value=replayed, source=source, module=module)
        exclude = {"counts"} if result.rejections_deleted is not None else {"counts", "rejections_deleted"}
        return {"success": True, **result.model_dump(exclude=exclude)}

    # ------------------------------------------------------------ dead-letter queue

    def from_dlq(self, request: ReplayRequest) -> ReplayResult:
        result = ReplayResult(mode="dlq", dry_run=request.dry_run)
        left: list[str] = []  # receipt handles to make visible again
        while result.examined < request.max_messages:
            messages = self._sqs.receive_message(
                QueueUrl=self._dlq_url,
                MaxNumberOfMessages=min(10, request.max_messages - result.examined),
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                result.examined += 1
                event = event_from_message(message["Body"])
                if event is None or not request.matches(event) or request.dry_run:
                    left.append(message["ReceiptHandle"])
                    if event is not None and request.matches(event):
                        result.add(event)
                    else:
                        result.skipped += 1
                    continue
                try:
                    self._mark_replayed(event, statuses=None)
                except STORE_ERRORS as error:  # the message matters more than its row's status
                    logger.warning("could not mark the event replayed", error=type(error).__name__)
                try:
                    self._publisher.publish(event)
                except QueueUnavailable:
                    left.append(message["ReceiptHandle"])  # stays in the dead-letter queue
                    result.skipped += 1
                    continue
                self._sqs.delete_message(QueueUrl=self._dlq_url, ReceiptHandle=message["ReceiptHandle"])
                result.add(event)
        for handle in left:
            self._sqs.change_message_visibility(QueueUrl=self._dlq_url, ReceiptHandle=handle, VisibilityTimeout=0)
        return result

    # ------------------------------------------------------------ event log

    def from_log(self, request: ReplayRequest, statuses: tuple[ReplayableStatus, ...] | None = None) -> ReplayResult:
        """Re-queue matching rows. A row that cannot be queued at all (its event no longer reads or
        serialises) becomes ``failed`` with the reason, and the others go on."""
        result = ReplayResult(mode=request.mode, dry_run=request.dry_run)
        with self._engine.connect() as connection:
            rows = connection.execute(self._log_query(request, statuses)).mappings().all()
        for row in rows:
            result.examined += 1
            try:
                event = WebhookEvent.model_validate({k: row[k] for k in WebhookEvent.model_fields})
                event.model_dump_json()  # what publishing needs; fails here rather than after the mark
            except Exception as error:  # noqa: BLE001 - an unreadable row must not stop the others
                self._park(row, f"cannot be queued: {type(error).__name__}", request.dry_run)
                result.failed += 1
                continue
            if request.dry_run:
                result.add(event)
                continue
            if not self._mark_replayed(event, statuses=[row["status"]]):
                result.skipped += 1  # it moved on since it was read
                continue
            try:
                self._publisher.publish(event)
            except QueueUnavailable:
                self._restore(event, row["status"])
                result.skipped += 1
                logger.error("could not re-queue the event; its status is restored", event_id=event.event_id)
                continue
            result.add(event)
        if result.failed or result.skipped:
            logger.warning("replay left rows behind", failed=result.failed, skipped=result.skipped)
        return result

    def sweep(self, request: ReplayRequest) -> ReplayResult:
        """The schedule's run: rows stuck in ``received`` or ``replayed``, then old rejections."""
        result = self.from_log(request, statuses=("received", "replayed"))
        cutoff = func.now() - self._rejection_retention
        if request.dry_run:
            query = select(func.count()).select_from(rejected).where(rejected.c.received_at < cutoff)
            with self._engine.connect() as connection:
                result.rejections_deleted = connection.execute(query).scalar_one()
        else:
            with self._engine.connect() as connection:
                deleted = connection.execute(delete(rejected).where(rejected.c.received_at < cutoff))
                result.rejections_deleted = deleted.rowcount
        return result

    def _park(self, row: Any, reason: str, dry_run: bool) -> None:
        logger.error("event-log row cannot be queued; marking it failed", event_id=row["event_id"], error=reason)
        if dry_run:
            return
        statement = (
            update(log)
            .where(log.c.id == row["id"], log.c.status == row["status"])
            .values(status="failed", error_message=reason, result={"reason": "unqueueable"}, updated_at=func.now())
        )
        with self._engine.connect() as connection:
            connection.execute(statement)

    @staticmethod
    def _log_query(request: ReplayRequest, only: tuple[ReplayableStatus, ...] | None = None) -> Any:
        statuses = list(only or request.statuses or DEFAULT_STATUSES)
        query = select(
            log.c.id,
            log.c.source,
            log.c.module,
            log.c.event_id,
            log.c.event_type,
            log.c.record_id,
            log.c.occurred_at,
            log.c.payload,
            log.c.status,
        ).where(log.c.status.in_(statuses))
        if "received" in statuses:
            grace = timedelta(seconds=request.received_grace_seconds)
            query = query.where((log.c.status != "received") | (log.c.received_at < func.now() - grace))
        if "replayed" in statuses:
            grace = timedelta(seconds=request.replayed_grace_seconds)
            query = query.where((log.c.status != "replayed") | (log.c.updated_at < func.now() - grace))
        if request.module:
            query = query.where(log.c.module == request.module)
        if request.event_ids is not None:
            query = query.where(log.c.event_id.in_(request.event_ids))
        if request.received_after:
            query = query.where(log.c.received_at >= request.received_after)
        if request.received_before:
            query = query.where(log.c.received_at < request.received_before)
        return query.order_by(log.c.received_at, log.c.id).limit(request.max_messages)

    def _mark_replayed(self, event: WebhookEvent, statuses: list[str] | None) -> bool:
        """``replayed``, ``replay_count + 1``; a completed event is left alone."""
        condition = log.c.status.in_(statuses) if statuses else log.c.status.not_in(("completed", "skipped"))
        statement = (
            update(log)
            .where(log.c.source == event.source, log.c.event_id == event.event_id, condition)
            .values(
                status="replayed",
                replay_count=log.c.replay_count + 1,
                queued_at=func.now(),
                updated_at=func.now(),
            )
            .returning(log.c.id)
        )
        with self._engine.connect() as connection:
            return connection.execute(statement).first() is not None

    def _restore(self, event: WebhookEvent, status: str) -> None:
        statement = (
            update(log)
            .where(log.c.source == event.source, log.c.event_id == event.event_id, log.c.status == "replayed")
            .values(status=status, replay_count=log.c.replay_count - 1, updated_at=func.now())
        )
        with self._engine.connect() as connection:
            connection.execute(statement)


def build_replayer(settings: Settings | None = None) -> Replayer:
    """Wire the replay function from the container's settings."""
    settings = settings or load_settings()
    if not settings.dead_letter_queue_url:
        raise ValueError("DEAD_LETTER_QUEUE_URL is not set")
    engine = settings_engine(settings, "replay")
    return Replayer(
        engine,
        sqs_client(settings),
        settings.queue_urls(),
        settings.dead_letter_queue_url,
        rejection_retention=timedelta(days=settings.rejection_retention_days),
    )
