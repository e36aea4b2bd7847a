"""The shape of the router's tables (docs/decisions.md), as plain data: defined once, read by the SQL of the
stores (``eventlog.py``, ``mirror.py``) and by the SQLAlchemy schema the migrations are checked
against (``schema.py``). Nothing here imports SQLAlchemy, so the functions do not either.
"""

from __future__ import annotations

from dataclasses import dataclass

from event_router.contract import (
    DONE_DELIVERIES,
    FAILED_EVENTS,
    SETTLED_EVENTS,
    UNPROCESSED_EVENTS,
    DeliveryStatus,
    EventStatus,
)

EVENT_LOG = "integration_events_log"
EVENT_STATUSES = tuple(EventStatus)
DONE = SETTLED_EVENTS  # a delivery of an event in one of these changes nothing
UNPROCESSED = UNPROCESSED_EVENTS
FAILURES = FAILED_EVENTS

DELIVERIES = "deliveries"
DELIVERY_STATUSES = tuple(DeliveryStatus)
DELIVERY_DONE = DONE_DELIVERIES
DESTINATIONS = ("moodle", "zoho")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # as Postgres spells it in jsonb_to_recordset's column list
    indexed: bool = False
    nullable: bool = True
    default: str | None = None  # server default, SQL text
    check: str | None = None  # a check constraint on the column, SQL text
    kept_when_null: bool = False  # an upsert without a value keeps the stored one (a fact learned elsewhere)


# What a queue message carries into the event log when the processor writes the row itself
# (the Postgres-down path of docs/api.md): the message's fields of the same names.
LOGGED_FIELDS = (
    Column("event_id", "text", nullable=False),
    Column("source", "text", nullable=False),
    Column("module", "text", nullable=False),
    Column("event_type", "text", nullable=False),
    Column("record_id", "text", nullable=False),
    Column("occurred_at", "timestamptz"),
    Column("payload", "jsonb", nullable=False),
    Column("auth_method", "text"),  # signature | token | channel_token (none before migration 0006)
)
AUTH_METHODS = ("signature", "token", "channel_token", "reconciliation")


@dataclass(frozen=True)
class MirrorTable:
    """One mirror table: its key, the columns a sync rule writes, and whether deletes are tombstones."""

    name: str
    key: tuple[Column, ...]
    columns: tuple[Column, ...]
    tombstones: bool

    @property
    def bookkeeping(self) -> tuple[Column, ...]:
        """Columns every mirror row keeps: when the source changed it, by which event (docs/operate.md)."""
        deleted = (Column("deleted_at", "timestamptz"),) if self.tombstones else ()
        return (
            Column("source_modified_at", "timestamptz"),
            *deleted,
            Column("last_event_id", "text"),
            # The event-log row of the last applied event: the later arrival wins a tie of timestamps.
            Column("last_log_id", "bigint"),
        )

    def written(self, tombstone: bool) -> tuple[Column, ...]:
        """What an upsert writes (everything), or a tombstone (the key and the bookkeeping only)."""
        return (*self.key, *self.bookkeeping) if tombstone else (*self.key, *self.columns, *self.bookkeeping)


def _zoho(name: str, *columns: Column) -> MirrorTable:
    data = Column("data", "jsonb", nullable=False, default="'{}'::jsonb")  # the last applied record's fields
    return MirrorTable(name, (Column("zoho_record_id", "text"),), (*columns, data), tombstones=True)


MIRRORS: dict[str, MirrorTable] = {
    table.name: table
    for table in (
        _zoho(
            "students",
            Column("student_id_number", "text", indexed=True),
            Column("academic_email", "text"),
            Column("name", "text"),
            # Zoho's Moodle_User_ID as Zoho holds it: a hint, never a target (the router's own record
            # of a student's Moodle account is ``moodle_accounts``).
            Column("moodle_user_id", "bigint", indexed=True),
        ),
        _zoho(
            "enrollments",
            Column("student_zoho_id", "text", indexed=True),
            Column("class_zoho_id", "text", indexed=True),
            Column("status", "text"),
        ),
        _zoho("grades", Column("student_zoho_id", "text", indexed=True), Column("grade", "text")),
        MirrorTable(
            "moodle_enrolments",
            (Column("moodle_user_id", "bigint"), Column("moodle_course_id", "bigint")),
            (Column("status", "text", nullable=False, check="status IN ('enrolled', 'unenrolled')"),),
            tombstones=False,
        ),
        MirrorTable(
            "moodle_grades",
            (Column("moodle_user_id", "bigint"), Column("grade_item_id", "bigint")),
            (
                Column("moodle_course_id", "bigint"),
                Column("final_grade", "numeric"),
                Column("grade_letter", "text"),  # as the gradebook shows it, when the sender says
                Column("scale_id", "bigint"),  # the grade item's scale, when it uses one
            ),
            tombstones=False,
        ),
    )
}
