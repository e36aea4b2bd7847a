"""The processors' statements as SQLAlchemy Core, compiled at development time into ``processor_sql.json``.

The processors run on every batch, so they do not import SQLAlchemy (a third of
a second of cold start): they execute the compiled text as prepared statements
(``mirror.py``). ``python -m event_router.statements`` (``make generate``)
writes the file again after a change here or in ``schema.py``; a test fails
when it is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Integer,
    Text,
    all_,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from event_router.pg import compiled
from event_router.schema import integration_events_log as log
from event_router.schema import metadata

DONE = ("completed", "skipped", "failed")
CLAIMED_COLUMNS = ("event_id", "source", "module", "event_type", "record_id", "occurred_at", "payload")
ZOHO_MIRRORS = ("students", "enrollments", "grades")
MOODLE_MIRRORS = ("moodle_enrolments", "moodle_grades")
STATEMENTS_FILE = Path(__file__).parent / "processor_sql.json"


def _elapsed_ms() -> ColumnElement[int]:
    # The claim stamped updated_at; in an UPDATE's SET list the column still holds that value.
    return cast(func.extract("epoch", func.clock_timestamp() - log.c.updated_at) * 1000, Integer)


def _not_done() -> ColumnElement[bool]:
    return log.c.status != all_(cast(bindparam("done", value=list(DONE)), ARRAY(Text)))


def _claim_statement() -> Any:
    # The batch travels as one JSON array (json.dumps is fast; pg8000's array escaping is not).
    incoming = (
        func.jsonb_to_recordset(cast(bindparam("batch"), JSONB))
        .table_valued(*(column(name, log.c[name].type) for name in CLAIMED_COLUMNS))
        .render_derived(name="incoming", with_types=True)
    )
    source = select(*(incoming.c[n] for n in CLAIMED_COLUMNS), literal("processing"), literal(1), func.now())
    statement = (
        pg_insert(log)
        .from_select([*CLAIMED_COLUMNS, "status", "attempts", "queued_at"], source)
        .on_conflict_do_update(
            index_elements=[log.c.source, log.c.event_id],
            set_={"status": "processing", "attempts": log.c.attempts + 1, "updated_at": func.clock_timestamp()},
            where=_not_done(),
        )
        .returning(log.c.id, log.c.source, log.c.event_id, log.c.received_at)
    )
    return statement


def _stale_guard(table: Any, excluded: Any, tombstone: bool) -> ColumnElement[bool]:
    """SQL true when the incoming event is not older than the stored row (SPEC §8).

    Between two events with the same source timestamp the later arrival (higher event-log id) wins,
    so the outcome does not depend on the order they are processed in."""
    stored, incoming = table.c.source_modified_at, excluded.source_modified_at
    later_arrival = func.coalesce(table.c.last_log_id, 0) <= excluded.last_log_id
    if tombstone:  # a delete wins a tie with an update
        return or_(stored.is_(None), stored <= incoming)
    if "deleted_at" not in table.c:
        return or_(stored.is_(None), stored < incoming, and_(stored == incoming, later_arrival))
    # An update never undoes a delete of the same instant or later; a newer one restores the record.
    return or_(
        stored.is_(None),
        stored < incoming,
        and_(stored == incoming, table.c.deleted_at.is_(None), later_arrival),
    )


def _apply_many_statement(table_name: str, tombstone: bool) -> tuple[Any, list[str]]:
    """Lock the claimed log rows, upsert their mirror rows under the stale-write guard, complete
    the events: one statement for a batch, whose rows travel as one JSON array (keys unique)."""
    table = metadata.tables[table_name]
    keys = [c.name for c in table.primary_key.columns]
    bookkeeping = [
        "source_modified_at",
        "last_event_id",
        "last_log_id",
        *(["deleted_at"] if "deleted_at" in table.c else []),
    ]
    written = [c.name for c in table.columns if c.name != "updated_at"]
    columns = [*keys, *bookkeeping] if tombstone else written
    recordset = (
        func.jsonb_to_recordset(cast(bindparam("rows"), JSONB))
        .table_valued(
            column("log_id", BigInteger), column("result", JSONB), *(column(c, table.c[c].type) for c in columns)
        )
        .render_derived(name="recordset", with_types=True)
    )
    incoming = select(*recordset.c).cte("incoming")
    claimed = (
        select(log.c.id)
        .where(log.c.id.in_(select(incoming.c.log_id)), log.c.status == "processing")
        .order_by(log.c.id)  # lock in a fixed order, so concurrent batches cannot deadlock
        .with_for_update()
        .cte("claimed")
    )
    rows = select(*(incoming.c[c] for c in columns)).join(claimed, claimed.c.id == incoming.c.log_id)
    insert = pg_insert(table).from_select(columns, rows)
    applied = (
        insert.on_conflict_do_update(
            index_elements=keys,
            set_={**{c: insert.excluded[c] for c in columns if c not in keys}, "updated_at": func.now()},
            where=_stale_guard(table, insert.excluded, tombstone),
        )
        .returning(*(table.c[k] for k in keys))
        .cte("applied")
    )
    outcome = (
        select(
            incoming.c.log_id,
            incoming.c.result,
            (applied.c[keys[0]].is_not(None)).label("wrote"),
        )
        .select_from(incoming.join(claimed, claimed.c.id == incoming.c.log_id))
        .outerjoin(applied, and_(*(applied.c[k] == incoming.c[k] for k in keys)))
        .cte("outcome")
    )
    statement = (
        update(log)
        .where(log.c.id == outcome.c.log_id)
        .values(
            status=case((outcome.c.wrote, "completed"), else_="skipped"),
            result=case((outcome.c.wrote, outcome.c.result), else_=cast(bindparam("stale"), JSONB)),
            error_message=None,
            processed_at=func.clock_timestamp(),
            processing_ms=_elapsed_ms(),
            updated_at=func.clock_timestamp(),
        )
        .returning(log.c.id, log.c.status)
    )
    return statement, columns


def _settle_many_statement() -> Any:
    """End many claimed events without a mirror change; the outcomes travel as one JSON array."""
    incoming = (
        func.jsonb_to_recordset(cast(bindparam("rows"), JSONB))
        .table_valued(
            column("log_id", BigInteger), column("status", Text), column("result", JSONB), column("error", Text)
        )
        .render_derived(name="incoming", with_types=True)
    )
    statement = (
        update(log)
        .where(log.c.id == incoming.c.log_id, log.c.status == "processing")
        .values(
            status=incoming.c.status,
            result=incoming.c.result,
            error_message=incoming.c.error,
            processed_at=func.clock_timestamp(),
            processing_ms=_elapsed_ms(),
            updated_at=func.clock_timestamp(),
        )
        .returning(log.c.id, log.c.status)
    )
    return statement


def _release_statement() -> Any:
    statement = (
        update(log)
        .where(log.c.id == bindparam("log_id"), log.c.status == "processing")
        .values(status=bindparam("status"), error_message=bindparam("error"), updated_at=func.clock_timestamp())
    )
    return statement


def _entry(statement: Any, **extra: Any) -> dict[str, Any]:
    result = compiled(statement)
    return {"sql": result.sql, "constants": result.constants, **extra}


def render() -> str:
    """The contents of ``processor_sql.json``."""
    entries: dict[str, Any] = {
        "claim": _entry(_claim_statement()),
        "release": _entry(_release_statement()),
        "settle_many": _entry(_settle_many_statement()),
    }
    for table in (*ZOHO_MIRRORS, *MOODLE_MIRRORS):
        for tombstone in (False, True) if table in ZOHO_MIRRORS else (False,):
            kind = "tombstone" if tombstone else "upsert"
            statement, columns = _apply_many_statement(table, tombstone)
            entries[f"apply_many:{table}:{kind}"] = _entry(statement, columns=columns)
    return json.dumps(entries, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    STATEMENTS_FILE.write_text(render())
    print(f"wrote {STATEMENTS_FILE}", file=sys.stderr)
