"""The processors' statements: claim a batch in the event log, apply one change, settle an event.

Every statement runs on its own in autocommit mode and is atomic by itself:

- ``claim`` writes missing log rows and moves the rest to ``processing`` (attempts + 1), for the
  whole batch at once. Events already ``completed``, ``skipped`` or ``failed`` are not claimed,
  so a redelivered message changes nothing.
- ``apply`` locks the claimed log row, upserts the mirror row under the stale-write guard and
  marks the event ``completed`` (or ``skipped``, reason ``stale``) in one statement: the mirror
  change and the completion commit together or not at all. A concurrent duplicate delivery waits
  on the lock, then finds the event no longer ``processing`` and does nothing.
- ``settle`` ends an event that needs no mirror change (log only, skipped, failed).
- ``release`` records a failed attempt that SQS will retry (or that goes to the dead-letter queue).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from event_router.payloads import WebhookEvent
from event_router.schema import integration_events_log as log
from event_router.sync import MirrorWrite

DONE = ("completed", "skipped", "failed")
STALE = {"reason": "stale"}


@dataclass(frozen=True)
class Claim:
    """An event this invocation may process: its log row id and when it was received."""

    log_id: int
    received_at: datetime


def _elapsed_ms() -> ColumnElement[int]:
    # The claim stamped updated_at; in an UPDATE's SET list the column still holds that value.
    return cast(func.extract("epoch", func.clock_timestamp() - log.c.updated_at) * 1000, Integer)


def claim(connection: Connection, events: Iterable[WebhookEvent]) -> dict[tuple[str, str], Claim]:
    """Claim the events in one statement; (source, event_id) → claim for those this call may process."""
    rows = [
        {
            "event_id": e.event_id,
            "source": e.source,
            "module": e.module,
            "event_type": e.event_type,
            "record_id": e.record_id,
            "occurred_at": e.occurred_at,
            "payload": e.payload,
            "status": "processing",
            "attempts": 1,
            "queued_at": func.now(),
        }
        for e in events
    ]
    if not rows:
        return {}
    statement = (
        pg_insert(log)
        .values(rows)
        .on_conflict_do_update(
            index_elements=[log.c.source, log.c.event_id],
            set_={"status": "processing", "attempts": log.c.attempts + 1, "updated_at": func.clock_timestamp()},
            where=log.c.status.not_in(DONE),
        )
        .returning(log.c.id, log.c.source, log.c.event_id, log.c.received_at)
    )
    return {(r.source, r.event_id): Claim(r.id, r.received_at) for r in connection.execute(statement)}


def _stale_guard(change: MirrorWrite, excluded: Any) -> ColumnElement[bool]:
    """SQL true when the incoming event is not older than the stored row (SPEC §8)."""
    stored = change.table.c.source_modified_at
    incoming = excluded.source_modified_at
    if change.tombstone or "deleted_at" not in change.table.c:
        return or_(stored.is_(None), stored <= incoming)
    # An update never undoes a delete of the same instant or later; a newer one restores the record.
    return or_(stored.is_(None), stored < incoming, and_(stored == incoming, change.table.c.deleted_at.is_(None)))


def apply(connection: Connection, claimed: Claim, event: WebhookEvent, change: MirrorWrite) -> str | None:
    """Write the mirror row and complete the event atomically; the event's final status, or None
    when another delivery completed it first."""
    table = change.table
    when = event.occurred_at or claimed.received_at
    row: dict[str, Any] = {**change.key, **change.values, "source_modified_at": when, "last_event_id": event.event_id}
    if "deleted_at" in table.c:
        row["deleted_at"] = when if change.tombstone else None
    locked = select(log.c.id).where(log.c.id == claimed.log_id, log.c.status == "processing").with_for_update()
    locked_cte = locked.cte("claimed")
    # INSERT ... SELECT gives its parameters no column types, so each one is cast explicitly.
    source = select(*(cast(literal(value, table.c[n].type), table.c[n].type).label(n) for n, value in row.items()))
    insert = pg_insert(table).from_select(list(row), source.where(select(locked_cte.c.id).exists()))
    written = {name: insert.excluded[name] for name in row if name not in change.key}
    applied = (
        insert.on_conflict_do_update(
            index_elements=list(change.key),
            set_={**written, "updated_at": func.now()},
            where=_stale_guard(change, insert.excluded),
        )
        .returning(literal(1).label("wrote"))
        .cte("applied")
    )
    wrote = select(applied.c.wrote).exists()
    result = {"table": table.name, "action": change.action}
    statement = (
        update(log)
        .where(log.c.id == locked_cte.c.id)
        .values(
            status=case((wrote, "completed"), else_="skipped"),
            result=case((wrote, cast(literal(result, JSONB), JSONB)), else_=cast(literal(STALE, JSONB), JSONB)),
            error_message=None,
            processed_at=func.clock_timestamp(),
            processing_ms=_elapsed_ms(),
            updated_at=func.clock_timestamp(),
        )
        .returning(log.c.status)
    )
    status: str | None = connection.execute(statement).scalar_one_or_none()
    return status


def settle(
    connection: Connection, claimed: Claim, status: str, result: dict[str, Any], error: str | None = None
) -> bool:
    """End a claimed event without a mirror change; False when it was no longer ``processing``."""
    statement = (
        update(log)
        .where(log.c.id == claimed.log_id, log.c.status == "processing")
        .values(
            status=status,
            result=result,
            error_message=error,
            processed_at=func.clock_timestamp(),
            processing_ms=_elapsed_ms(),
            updated_at=func.clock_timestamp(),
        )
        .returning(log.c.id)
    )
    return connection.execute(statement).first() is not None


def release(connection: Connection, claimed: Claim, error: str, *, last_attempt: bool) -> None:
    """A failed attempt: back to ``queued`` for SQS to retry, or ``dead_lettered`` after the last one."""
    connection.execute(
        update(log)
        .where(log.c.id == claimed.log_id, log.c.status == "processing")
        .values(
            status="dead_lettered" if last_attempt else "queued",
            error_message=error,
            updated_at=func.clock_timestamp(),
        )
    )
