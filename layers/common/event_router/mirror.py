"""The processors' statements: claim a batch in the event log, apply one change, settle an event.

Every statement is atomic by itself; the processor runs a batch's ``apply_many`` and
``settle_many`` statements in one ``transaction`` to pay for one commit per batch:

- ``claim`` writes missing log rows and moves the rest to ``processing`` (attempts + 1), for the
  whole batch at once. Events already ``completed``, ``skipped`` or ``failed`` are not claimed,
  so a redelivered message changes nothing.
- ``apply_many`` locks the claimed log rows, upserts the mirror rows under the stale-write guard
  and marks the events ``completed`` (or ``skipped``, reason ``stale``), one statement for every
  change of one kind: a mirror change and its event's completion commit together or not at all.
  A concurrent duplicate delivery waits on the lock, then finds the event no longer
  ``processing`` and does nothing.
- ``settle_many`` ends events that need no mirror change (log only, skipped, failed).
- ``release`` records a failed attempt that SQS will retry (or that goes to the dead-letter queue).

The statements are written with SQLAlchemy Core in ``statements.py`` and shipped compiled
(``processor_sql.json``); here they run as prepared statements: one round trip each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from event_router.errors import StorageUnavailable
from event_router.payloads import WebhookEvent
from event_router.pg import Compiled, PreparedConnection
from event_router.sync import MirrorWrite

STALE = {"reason": "stale"}
_CLAIMED_COLUMNS = {"event_id", "source", "module", "event_type", "record_id", "occurred_at", "payload"}
_ZOHO_MIRRORS = {"students", "enrollments", "grades"}  # tables with tombstones (deleted_at)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _load() -> dict[str, tuple[Compiled, list[str]]]:
    entries = json.loads((Path(__file__).parent / "processor_sql.json").read_text())
    return {name: (Compiled(e["sql"], e["constants"]), e.get("columns", [])) for name, e in entries.items()}


_STATEMENTS = _load()


@dataclass(frozen=True)
class Claim:
    """An event this invocation may process: its log row id and when it was received."""

    log_id: int
    received_at: datetime


class MirrorStore:
    """The processors' view of Postgres: the event log and the mirror tables."""

    def __init__(self, connection: PreparedConnection) -> None:
        self._connection = connection

    @contextmanager
    def transaction(self, needed: bool = True) -> Iterator[None]:
        """Statements inside share one transaction: committed together, or rolled back on error.
        (One statement is a transaction by itself: ``needed=False`` spares the BEGIN and COMMIT.)"""
        if not needed:
            yield
            return
        self._connection.run("BEGIN")
        try:
            yield
        except BaseException:
            with suppress(StorageUnavailable):
                self._connection.run("ROLLBACK")
            raise
        self._connection.run("COMMIT")

    def claim(self, events: Iterable[WebhookEvent]) -> dict[tuple[str, str], Claim]:
        """Claim the events in one statement; (source, event_id) → claim for those this call may process."""
        batch = list(events)
        if not batch:
            return {}
        document = json.dumps(
            [event.model_dump(mode="json", include=_CLAIMED_COLUMNS) for event in batch], ensure_ascii=False
        )
        rows = _STATEMENTS["claim"][0].run(self._connection, batch=document)
        return {(source, event_id): Claim(log_id, received) for log_id, source, event_id, received in rows}

    def apply_many(self, writes: list[tuple[Claim, WebhookEvent, MirrorWrite]]) -> dict[int, str]:
        """``apply`` for a batch, one statement per kind of change: log id → final status (an event
        another delivery completed first is missing). Two changes of one record in a batch go in
        separate statements, in arrival order (the stale-write guard keeps the newest)."""
        rounds: dict[str, list[dict[tuple[Any, ...], dict[str, Any]]]] = {}
        for claimed, event, change in writes:
            kind = f"apply_many:{change.table}:{'tombstone' if change.tombstone else 'upsert'}"
            row = self._row(claimed, event, change, kind)
            row |= {"log_id": claimed.log_id, "result": {"table": change.table, "action": change.action}}
            key = tuple(change.key.values())
            queue = rounds.setdefault(kind, [])
            free = next((r for r in queue if key not in r), None)
            if free is None:
                free = {}
                queue.append(free)
            free[key] = row
        statuses: dict[int, str] = {}
        for kind, batches in rounds.items():
            for batch in batches:
                rows = json.dumps(list(batch.values()), default=_json_value, ensure_ascii=False)
                for log_id, status in _STATEMENTS[kind][0].run(self._connection, rows=rows, stale=STALE):
                    statuses[log_id] = status
        return statuses

    def settle_many(self, outcomes: list[tuple[Claim, str, dict[str, Any], str | None]]) -> dict[int, str]:
        """``settle`` for a batch in one statement: log id → status."""
        if not outcomes:
            return {}
        rows = json.dumps(
            [{"log_id": c.log_id, "status": s, "result": r, "error": e} for c, s, r, e in outcomes], ensure_ascii=False
        )
        return dict(_STATEMENTS["settle_many"][0].run(self._connection, rows=rows))

    @staticmethod
    def _row(claimed: Claim, event: WebhookEvent, change: MirrorWrite, kind: str) -> dict[str, Any]:
        """The mirror row a change writes, with the bookkeeping of the stale-write guard."""
        when = event.occurred_at or claimed.received_at
        row: dict[str, Any] = {
            **change.key,
            **change.values,
            "source_modified_at": when,
            "last_event_id": event.event_id,
            "last_log_id": claimed.log_id,
        }
        if change.table in _ZOHO_MIRRORS:
            row["deleted_at"] = when if change.tombstone else None
        columns = _STATEMENTS[kind][1]
        if set(row) != set(columns):
            raise ValueError(f"{change.table} change writes {sorted(row)}, the statement takes {sorted(columns)}")
        return row

    def release(self, claimed: Claim, error: str, *, last_attempt: bool) -> None:
        """A failed attempt: back to ``queued`` for SQS to retry, or ``dead_lettered`` after the last one."""
        status = "dead_lettered" if last_attempt else "queued"
        _STATEMENTS["release"][0].run(self._connection, log_id=claimed.log_id, status=status, error=error)
