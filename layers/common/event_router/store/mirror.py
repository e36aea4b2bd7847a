"""The processors' statements: claim a batch in the event log, apply changes, settle events.

Each statement covers a whole batch; its rows travel as one JSON array (encoding JSON is fast,
pg8000's array escaping is not) that ``jsonb_to_recordset`` turns back into rows. The claim sends
only the events' identities: their payloads travel only for rows it has to write.

- ``log_unlogged`` writes the rows of events whose messages say they were queued while Postgres
  was down, before anything else, so they are claimed like any other.
- ``claim`` locks the batch's log rows that are not settled yet, and writes the rows of events
  queued while Postgres was down that no message said were (an older message, a replay). Events
  already ``completed``, ``skipped`` or ``failed`` are not claimed, so a redelivered message changes
  nothing. A concurrent delivery of the same event waits on the lock, then finds it settled.
- ``apply_many`` locks the claimed log rows, upserts the mirror rows under the stale-write guard
  and marks the events ``completed`` (or ``skipped``, reason ``stale``): one statement for every
  change of one kind, so a mirror change and its event's completion commit together or not at all.
- ``settle_many`` ends events that need no mirror change (log only, skipped, failed).
- ``release`` records a failed attempt that SQS will retry (or that goes to the dead-letter queue).

Each of the last three writes the event's row once, counting the attempt (``attempts + 1``) and its
processing time (since ``started_ms``, when the processor began the batch).

A processor runs a batch's statements in one transaction (``PreparedConnection.transaction``), or,
for the common batch (every event one change of the same kind to a different row), all of it in one
statement: ``apply_batch`` claims, checks the erasure register, applies and settles at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic_core import to_json

from event_router.messages import EventMessage
from event_router.store.connection import PreparedConnection
from event_router.store.deliveries import Intent
from event_router.store.privacy import TOMBSTONE
from event_router.store.tables import DELIVERIES, DONE, EVENT_LOG, LOGGED_FIELDS, MIRRORS, Column, MirrorTable

STALE = {"reason": "stale"}
_DONE = ", ".join(f"'{status}'" for status in DONE)


def _recordset(parameter: str, columns: Iterable[Column]) -> str:
    definition = ", ".join(f"{c.name} {c.sql_type}" for c in columns)
    return f"jsonb_to_recordset(CAST(:{parameter} AS jsonb)) AS incoming ({definition})"


_FIELDS = ", ".join(c.name for c in LOGGED_FIELDS)
_DELIVERY_COLUMNS = (
    Column("delivery_destination", "text"),
    Column("delivery_action", "text"),
    Column("delivery_target", "text"),
)
_IDENTITY = (Column("source", "text"), Column("event_id", "text"))


def _epoch_ms(column: str) -> str:
    return f"CAST(extract(epoch FROM {column}) * 1000 AS bigint)"


# Locks the batch's log rows, one lookup per event through the unique index however small the log
# is, in (source, event_id) order so that concurrent batches cannot deadlock, and says of each
# whether it is settled; an event without a row (queued while Postgres was down) comes back without
# one. Only the events' identities travel.
CLAIM_SQL = f"""
SELECT logged.id, incoming.source, incoming.event_id, logged.received_ms, logged.status NOT IN ({_DONE})
FROM (SELECT * FROM {_recordset("batch", _IDENTITY)} ORDER BY source, event_id) AS incoming
LEFT JOIN LATERAL (
    SELECT id, {_epoch_ms("received_at")} AS received_ms, status
    FROM {EVENT_LOG} AS log WHERE log.source = incoming.source AND log.event_id = incoming.event_id
    FOR UPDATE
) AS logged ON true"""
# Writes the rows of events queued while Postgres was down (docs/api.md), and locks those a concurrent
# delivery wrote first.
CLAIM_UNLOGGED_SQL = f"""
WITH incoming AS (
    SELECT * FROM {_recordset("batch", LOGGED_FIELDS)}
), inserted AS (
    INSERT INTO {EVENT_LOG} ({_FIELDS}, status, attempts, queued_at)
    SELECT {_FIELDS}, 'processing', 0, now() FROM incoming
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING id, source, event_id, received_at
), locked AS (
    SELECT log.id, log.source, log.event_id, log.received_at
    FROM {EVENT_LOG} AS log JOIN incoming ON log.source = incoming.source AND log.event_id = incoming.event_id
    WHERE log.status NOT IN ({_DONE})
    ORDER BY log.source, log.event_id FOR UPDATE OF log
)
SELECT id, source, event_id, {_epoch_ms("received_at")} FROM inserted
UNION ALL
SELECT id, source, event_id, {_epoch_ms("received_at")} FROM locked"""
# The rows of events whose message says the verifier could not log them, written as the verifier
# would have left them (``queued``) and committed by themselves, so that the batch's statement then
# finds them like any other; a row written meanwhile (by the sweep, a redelivery) is left as it is.
LOG_UNLOGGED_SQL = f"""
INSERT INTO {EVENT_LOG} ({_FIELDS}, status, queued_at)
SELECT {_FIELDS}, 'queued', now() FROM {_recordset("batch", LOGGED_FIELDS)}
ON CONFLICT (source, event_id) DO NOTHING"""

_SETTLED = """attempts = log.attempts + 1, processed_at = clock_timestamp(), updated_at = clock_timestamp(),
    processing_ms = CAST(extract(epoch FROM clock_timestamp()) * 1000 - :started_ms AS integer)"""

SETTLE_MANY_SQL = f"""
UPDATE {EVENT_LOG} AS log SET
    status = incoming.status, result = incoming.result, error_message = incoming.error, {_SETTLED}
FROM {
    _recordset(
        "rows",
        (Column("log_id", "bigint"), Column("status", "text"), Column("result", "jsonb"), Column("error", "text")),
    )
}
WHERE log.id = incoming.log_id AND log.status NOT IN ({_DONE})
RETURNING log.id, log.status"""

RELEASE_SQL = f"""
UPDATE {EVENT_LOG} AS log SET
    status = :status, error_message = :error, attempts = log.attempts + 1, updated_at = clock_timestamp()
WHERE id = :log_id AND status NOT IN ({_DONE})"""


def _stale_guard(table: MirrorTable, tombstone: bool) -> str:
    """True when the incoming event is not older than the stored row (docs/operate.md). Between two events
    with the same source timestamp the later arrival (higher event-log id) wins, so the outcome does
    not depend on the order they are processed in; a delete wins a tie with an update."""
    stored, incoming = f"{table.name}.source_modified_at", "EXCLUDED.source_modified_at"
    if tombstone:
        return f"{stored} IS NULL OR {stored} <= {incoming}"
    later_arrival = f"coalesce({table.name}.last_log_id, 0) <= EXCLUDED.last_log_id"
    not_deleted = f" AND {table.name}.deleted_at IS NULL" if table.tombstones else ""
    # An update never undoes a delete of the same instant or later; a newer one restores the record.
    return f"{stored} IS NULL OR {stored} < {incoming} OR ({stored} = {incoming}{not_deleted} AND {later_arrival})"


def _updates(table: MirrorTable, tombstone: bool) -> str:
    """What an upsert sets on a row that exists (a column kept when the change leaves it empty)."""
    keys = [c.name for c in table.key]
    return ", ".join(
        f"{c.name} = coalesce(EXCLUDED.{c.name}, {table.name}.{c.name})"
        if c.kept_when_null
        else f"{c.name} = EXCLUDED.{c.name}"
        for c in table.written(tombstone)
        if c.name not in keys
    )


def _applied(table: MirrorTable, tombstone: bool, changes: str, values: str) -> str:
    """What both statements below share: upsert the mirror rows of ``changes`` (a relation with
    each claimed event's ``log_id``, ``result``, the columns written and its delivery; ``values``
    selects the columns from it) under the stale-write guard, note which wrote, write the
    deliveries those call for: CTEs ``applied``, ``outcome`` and ``made``, then ``settle``, the
    start of the UPDATE that completes the events (or skips them as stale)."""
    keys = [c.name for c in table.key]
    return f"""applied AS (
    INSERT INTO {table.name} ({", ".join(c.name for c in table.written(tombstone))})
    SELECT {values} FROM {changes}
    ON CONFLICT ({", ".join(keys)}) DO UPDATE SET {_updates(table, tombstone)}, updated_at = now()
    WHERE {_stale_guard(table, tombstone)}
    RETURNING {", ".join(keys)}
), outcome AS (
    SELECT changed.log_id, changed.result, applied.{keys[0]} IS NOT NULL AS wrote
    FROM {changes} LEFT JOIN applied ON {" AND ".join(f"applied.{k} = changed.{k}" for k in keys)}
), made AS (
    INSERT INTO {DELIVERIES} (destination, action, target_key, event_log_id)
    SELECT changed.delivery_destination, changed.delivery_action, changed.delivery_target, changed.log_id
    FROM {changes} JOIN outcome ON outcome.log_id = changed.log_id
    WHERE outcome.wrote AND changed.delivery_destination IS NOT NULL
    RETURNING id, destination, event_log_id
)"""


# Completes the events of ``outcome`` (or skips them as stale), with the deliveries ``made`` for each.
_SETTLE = f"""UPDATE {EVENT_LOG} AS log SET
    status = CASE WHEN outcome.wrote THEN 'completed' ELSE 'skipped' END,
    result = CASE WHEN outcome.wrote THEN outcome.result ELSE CAST(:stale AS jsonb) END,
    error_message = NULL, {_SETTLED}
FROM outcome WHERE log.id = outcome.log_id"""
_MADE = "(SELECT jsonb_agg(jsonb_build_array(made.id, made.destination)) FROM made WHERE made.event_log_id = log.id)"


def _apply_sql(table: MirrorTable, tombstone: bool) -> str:
    """Lock the claimed log rows, upsert their mirror rows under the stale-write guard, write the
    deliveries the changes call for, complete the events: one statement for a batch of changes of
    one kind (keys unique within the batch), so a mirror change, its deliveries and its event's
    completion commit together or not at all."""
    written = table.written(tombstone)
    incoming_columns = (Column("log_id", "bigint"), Column("result", "jsonb"), *written, *_DELIVERY_COLUMNS)
    changes = "(SELECT incoming.* FROM incoming JOIN claimed ON claimed.id = incoming.log_id) AS changed"
    return f"""
WITH incoming AS (
    SELECT * FROM {_recordset("rows", incoming_columns)}
), claimed AS (
    SELECT id FROM {EVENT_LOG} WHERE id IN (SELECT log_id FROM incoming) AND status NOT IN ({_DONE})
    ORDER BY id FOR UPDATE  -- a fixed order, so concurrent batches cannot deadlock
), {_applied(table, tombstone, changes, ", ".join(f"changed.{c.name}" for c in written))}
{_SETTLE}
RETURNING log.id, log.status, {_MADE}"""


def _batch_sql(table: MirrorTable, tombstone: bool) -> str:
    """A whole batch of changes of one kind in one statement, and so in one transaction without a
    BEGIN or COMMIT: claim the events' log rows (as ``CLAIM_SQL``, in the same order), leave aside
    those about an identity erased since (the erasure register read in this very statement, so an
    erasure waits for it as for any batch), and apply and settle the rest (as ``APPLY_SQL``).
    Rows arrive by (source, event id), without the claim's log id and arrival time, which the
    statement reads itself. Answers each claimed event: its log id, arrival, status (or
    ``erased``) and the deliveries written; an event it does not answer was not claimed (settled
    already, or not logged)."""
    written = table.written(tombstone)
    received = f"to_timestamp({_epoch_ms('changed.received_at')} / 1000.0)"  # as the claim's epoch ms

    def value(column: Column) -> str:
        if column.name == "last_log_id":
            return "changed.log_id"
        if column.name == "source_modified_at" or (column.name == "deleted_at" and tombstone):
            return f"coalesce(changed.{column.name}, {received})"
        return f"changed.{column.name}"

    incoming_columns = (
        *_IDENTITY,
        Column("at_ms", "double precision"),
        Column("digests", "jsonb"),
        Column("result", "jsonb"),
        *(c for c in written if c.name != "last_log_id"),
        *_DELIVERY_COLUMNS,
    )
    return f"""
WITH incoming AS (
    SELECT * FROM {_recordset("rows", incoming_columns)}
), claimed AS (
    SELECT logged.id, logged.received_at, wanted.source, wanted.event_id
    FROM (SELECT source, event_id FROM incoming ORDER BY source, event_id) AS wanted
    JOIN LATERAL (
        SELECT id, received_at FROM {EVENT_LOG} AS log
        WHERE log.source = wanted.source AND log.event_id = wanted.event_id AND log.status NOT IN ({_DONE})
        FOR UPDATE
    ) AS logged ON true
), erased AS (
    SELECT claimed.id FROM claimed JOIN incoming USING (source, event_id)
    WHERE EXISTS (
        SELECT 1 FROM erased_identities AS register
        WHERE register.digest IN (SELECT jsonb_array_elements_text(incoming.digests))
          AND {_epoch_ms("register.erased_at")} >= coalesce(incoming.at_ms, {_epoch_ms("claimed.received_at")})
    )
), writable AS (
    SELECT claimed.id AS log_id, claimed.received_at, incoming.*
    FROM claimed JOIN incoming USING (source, event_id)
    WHERE claimed.id NOT IN (SELECT id FROM erased)
), {_applied(table, tombstone, "writable AS changed", ", ".join(value(c) for c in written))}, settled AS (
    {_SETTLE}
    RETURNING log.id, log.source, log.event_id, {_epoch_ms("log.received_at")} AS received_ms, log.status,
        {_MADE} AS made
)
SELECT id, source, event_id, received_ms, status, made FROM settled
UNION ALL
SELECT id, source, event_id, {_epoch_ms("received_at")}, 'erased', NULL FROM claimed
WHERE id IN (SELECT id FROM erased)"""


# The erasure register's entries among a batch's identities. Reading holds the table's ACCESS SHARE
# lock until the batch commits, so an erasure (which locks the register ACCESS EXCLUSIVE first)
# waits for the batches in flight and every later batch sees it: none slips between. (A plain read:
# the processors' login may only read the register, and FOR SHARE would need a right to change it.)
ERASED_SQL = f"""
SELECT digest, {_epoch_ms("erased_at")} FROM erased_identities
WHERE digest = ANY(CAST(:digests AS text[]))"""

# An event about an erased identity, received before the erasure: it ends ``skipped`` (reason
# ``erased``) with nothing left that says whom it was about, as the erasure leaves its own events.
# A copy of an event the erasure already renamed (its row was written again by the claim, because
# its event id no longer matched) is dropped: the log keeps the erased original.
FORGET_SQL = f"""
WITH forgotten AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS forgotten (log_id bigint, event_id text)
), dropped AS (
    DELETE FROM {EVENT_LOG} AS log USING forgotten
    WHERE log.id = forgotten.log_id AND EXISTS (
        SELECT 1 FROM {EVENT_LOG} AS kept WHERE kept.source = log.source AND kept.event_id = forgotten.event_id)
    RETURNING log.id
), ended AS (
    UPDATE {EVENT_LOG} AS log SET
        status = 'skipped', result = jsonb_build_object('reason', 'erased'), error_message = NULL,
        payload = {TOMBSTONE}, record_id = 'erased', event_id = coalesce(forgotten.event_id, log.event_id),
        {_SETTLED}
    FROM forgotten
    WHERE log.id = forgotten.log_id AND log.status NOT IN ({_DONE}) AND log.id NOT IN (SELECT id FROM dropped)
    RETURNING log.id, log.status
)
SELECT id, status FROM ended UNION ALL SELECT id, 'skipped' FROM dropped"""

_KINDS = [
    (name, tombstone)
    for name, table in MIRRORS.items()
    for tombstone in ((False, True) if table.tombstones else (False,))
]
APPLY_SQL = {(name, tombstone): _apply_sql(MIRRORS[name], tombstone) for name, tombstone in _KINDS}
BATCH_SQL = {(name, tombstone): _batch_sql(MIRRORS[name], tombstone) for name, tombstone in _KINDS}
_WRITTEN = {(name, tombstone): {c.name for c in MIRRORS[name].written(tombstone)} for name, tombstone in _KINDS}


@dataclass(frozen=True)
class Claim:
    """An event this invocation may process: its log row id and when it was received (epoch ms)."""

    log_id: int
    received_ms: int


class MirrorChange(Protocol):
    """One mirror row to upsert (or with ``tombstone``, to mark deleted): what a sync rule plans."""

    @property
    def table(self) -> str: ...
    @property
    def key(self) -> dict[str, Any]: ...
    @property
    def values(self) -> dict[str, Any]: ...
    @property
    def tombstone(self) -> bool: ...
    @property
    def action(self) -> str: ...


Settlement = tuple[Claim, str, dict[str, Any], str | None]  # claim, status, result, error message


@dataclass(frozen=True)
class Write:
    """A mirror change to apply for a claimed event, the delivery it calls for, and notes for the
    event's result (``{"echo": true}``)."""

    claim: Claim | None  # None: the one-statement batch (``apply_batch``) claims the event itself
    event: EventMessage
    change: MirrorChange
    delivery: Intent | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchRow:
    """A change for the one-statement batch: its write (without a claim), when its source says it
    happened (epoch ms; None: when it arrived), and the erasure register's digests of whom it names."""

    write: Write
    at_ms: float | None
    digests: list[str]


@dataclass(frozen=True)
class Applied:
    """What the one-statement batch did with an event: its claim, its status (``erased``: nothing,
    the event is still open), the deliveries it wrote as (id, destination)."""

    claim: Claim
    status: str
    deliveries: list[tuple[int, str]]


class MirrorStore:
    """The processors' view of Postgres: the event log and the mirror tables."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection
        self.started_ms = 0.0  # when the current batch began (epoch ms): its events' processing time

    def begin_batch(self) -> None:
        self.started_ms = time.time() * 1000

    def claim(self, events: Iterable[EventMessage]) -> dict[tuple[str, str], Claim]:
        """The events this call may process: (source, event_id) → claim, for those not settled yet.
        One statement when every event is logged; a second writes the rows of those that are not."""
        by_identity = {(event.source, event.event_id): event for event in events}
        if not by_identity:
            return {}
        identities = [{"source": source, "event_id": event_id} for source, event_id in by_identity]
        rows = self.connection.run(CLAIM_SQL, batch=json.dumps(identities, ensure_ascii=False))
        claims = {(source, event_id): Claim(log_id, ms) for log_id, source, event_id, ms, open_ in rows if open_}
        missing = {(source, event_id) for log_id, source, event_id, *_ in rows if log_id is None}
        unlogged = [event for identity, event in by_identity.items() if identity in missing]  # in arrival order
        if unlogged:
            fields = {c.name for c in LOGGED_FIELDS}
            batch = [event.model_dump(mode="json", include=fields) for event in unlogged]
            rows = self.connection.run(CLAIM_UNLOGGED_SQL, batch=json.dumps(batch, ensure_ascii=False))
            claims |= {(source, event_id): Claim(log_id, ms) for log_id, source, event_id, ms in rows}
        return claims

    def log_unlogged(self, events: Sequence[EventMessage]) -> None:
        """Write the log rows of events queued while Postgres was down (their messages say so), in one
        statement, before the batch is claimed: the rows its statement would otherwise find missing."""
        if events:
            fields = {c.name for c in LOGGED_FIELDS}
            batch = [event.model_dump(mode="json", include=fields) for event in events]
            self.connection.run(LOG_UNLOGGED_SQL, batch=json.dumps(batch, ensure_ascii=False))

    def erased(self, digests: Sequence[str]) -> dict[str, int]:
        """Which of these identity digests the erasure register holds: digest → erased at (epoch ms).
        Run inside the batch's transaction (it holds off erasures until the batch commits)."""
        rows = self.connection.run(ERASED_SQL, digests=list(digests))
        return {str(digest): int(erased_ms) for digest, erased_ms in rows}

    def forget(self, events: Sequence[tuple[Claim, str | None]]) -> dict[int, str]:
        """Settle events about erased identities (claim, and a new event id when theirs named the
        student): log id → status."""
        if not events:
            return {}
        rows = json.dumps([{"log_id": claim.log_id, "event_id": renamed} for claim, renamed in events])
        return {
            int(i): str(status) for i, status in self.connection.run(FORGET_SQL, rows=rows, started_ms=self.started_ms)
        }

    def apply_many(self, writes: Sequence[Write]) -> tuple[dict[int, str], list[tuple[int, str]]]:
        """Apply a batch's mirror changes, one statement per kind of change: (log id → final status,
        the deliveries written as (id, destination)). An event another delivery completed first is
        missing. Two changes of one record in a batch go in separate statements, in arrival order
        (the stale-write guard keeps the newest)."""
        rounds: dict[tuple[str, bool], list[dict[tuple[Any, ...], dict[str, Any]]]] = {}
        for write in writes:
            row = self._row(write)
            key = tuple(write.change.key.values())
            queue = rounds.setdefault((write.change.table, write.change.tombstone), [])
            free = next((r for r in queue if key not in r), None)
            if free is None:
                free = {}
                queue.append(free)
            free[key] = row
        statuses: dict[int, str] = {}
        deliveries: list[tuple[int, str]] = []
        for kind, batches in rounds.items():
            for batch in batches:
                rows = to_json(list(batch.values())).decode()  # datetimes included, 3x json.dumps' speed
                answer = self.connection.run(
                    APPLY_SQL[kind], rows=rows, stale=json.dumps(STALE), started_ms=self.started_ms
                )
                for log_id, status, made in answer:
                    statuses[log_id] = status
                    deliveries += [(int(i), str(d)) for i, d in made or []]
        return statuses, deliveries

    def settle_many(self, outcomes: list[Settlement]) -> dict[int, str]:
        """End claimed events without a mirror change, in one statement: log id → status."""
        if not outcomes:
            return {}
        rows = [{"log_id": c.log_id, "status": s, "result": r, "error": e} for c, s, r, e in outcomes]
        answer = self.connection.run(
            SETTLE_MANY_SQL, rows=json.dumps(rows, ensure_ascii=False), started_ms=self.started_ms
        )
        return dict(answer)

    def release(self, claimed: Claim, error: str, *, last_attempt: bool) -> None:
        """A failed attempt: back to ``queued`` for SQS to retry, or ``dead_lettered`` after the last one."""
        status = "dead_lettered" if last_attempt else "queued"
        self.connection.run(RELEASE_SQL, log_id=claimed.log_id, status=status, error=error)

    def apply_batch(self, rows: Sequence[BatchRow]) -> dict[tuple[str, str], Applied]:
        """A batch of changes of one kind, keys unique, in one statement (``BATCH_SQL``): (source,
        event id) → what became of each event it claimed (its status, or ``erased``: left open, for
        the slow path to forget). An event missing from the answer was not claimed."""
        if not rows:
            return {}
        change = rows[0].write.change
        encoded = to_json([self._row(row.write) | {"at_ms": row.at_ms, "digests": row.digests} for row in rows])
        answer = self.connection.run(
            BATCH_SQL[change.table, change.tombstone],
            rows=encoded.decode(),
            stale=json.dumps(STALE),
            started_ms=self.started_ms,
        )
        return {
            (str(source), str(event_id)): Applied(
                Claim(int(log_id), int(received_ms)), str(status), [(int(i), str(d)) for i, d in made or []]
            )
            for log_id, source, event_id, received_ms, status, made in answer
        }

    @staticmethod
    def _row(write: Write) -> dict[str, Any]:
        """The mirror row a change writes, with the bookkeeping of the stale-write guard, and the
        delivery it calls for. Without a claim (the one-statement batch) the row names its event by
        (source, event id), and the statement fills in what the claim would have said."""
        claimed, event, change = write.claim, write.event, write.change
        table = MIRRORS[change.table]
        when: datetime | None = event.occurred_at  # None, without a claim: the statement uses the arrival
        if when is None and claimed is not None:
            when = datetime.fromtimestamp(claimed.received_ms / 1000).astimezone()
        row: dict[str, Any] = {
            **change.key,
            **change.values,
            "source_modified_at": when,
            "last_event_id": event.event_id,
        }
        if claimed is not None:
            row["last_log_id"] = claimed.log_id
        if table.tombstones:
            row["deleted_at"] = when if change.tombstone else None
        expected = _WRITTEN[change.table, change.tombstone] - ({"last_log_id"} if claimed is None else set())
        if set(row) != expected:
            raise ValueError(f"{change.table} change writes {sorted(row)}, the table takes {sorted(expected)}")
        delivery = write.delivery
        identity = {"log_id": claimed.log_id} if claimed else {"source": event.source, "event_id": event.event_id}
        return (
            row
            | identity
            | {
                "result": {"table": change.table, "action": change.action, **write.notes},
                "delivery_destination": delivery.destination if delivery else None,
                "delivery_action": delivery.action if delivery else None,
                "delivery_target": delivery.target_key if delivery else None,
            }
        )
