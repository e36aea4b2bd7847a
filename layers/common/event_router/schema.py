"""The Postgres tables of SPEC §7, as SQLAlchemy Core metadata.

Migrations under ``migrations/versions`` create them; a test checks that the
migrated database and this metadata agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import INET, JSONB

from event_router.routes import MODULES, SOURCES

EVENT_STATUSES = (
    "received",
    "queued",
    "processing",
    "completed",
    "skipped",
    "failed",
    "dead_lettered",
    "replayed",
)
OPERATIONS = ("create", "update", "delete")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamp(name: str, *, nullable: bool = True, default: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable, server_default=func.now() if default else None)


integration_events_log = Table(
    "integration_events_log",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("module", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default="received"),
    Column("result", JSONB),
    Column("error_message", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("replay_count", Integer, nullable=False, server_default="0"),
    _timestamp("occurred_at"),
    _timestamp("received_at", nullable=False, default=True),
    _timestamp("queued_at"),
    _timestamp("processed_at"),
    Column("processing_ms", Integer),
    _timestamp("updated_at", nullable=False, default=True),
    UniqueConstraint("source", "event_id"),
    CheckConstraint(_one_of("source", SOURCES), name="source"),
    CheckConstraint(_one_of("module", MODULES), name="module"),
    CheckConstraint(_one_of("event_type", OPERATIONS), name="event_type"),
    CheckConstraint(_one_of("status", EVENT_STATUSES), name="status"),
    Index(None, "status", "received_at"),
    Index(None, "received_at"),
)

# One row per (minute, source, route, cause): how many requests were refused, and the last one's facts.
rejected_requests = Table(
    "rejected_requests",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _timestamp("received_at", nullable=False, default=True),
    Column("source", Text, nullable=False),
    Column("route", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("source_ip", INET),
    Column("body_size", Integer, nullable=False),
    Column("body_sha256", Text, nullable=False),
    _timestamp("minute", nullable=False),
    Column("count", Integer, nullable=False, server_default="1"),
    UniqueConstraint("minute", "source", "route", "cause"),
    Index(None, "received_at"),
)


# ---------------------------------------------------------------- mirror tables (SPEC §7)


def _mirror_bookkeeping(*, tombstones: bool) -> list[Column[object]]:
    """Columns every mirror table has: when the source changed it, by which event."""
    columns: list[Column[object]] = [
        _timestamp("source_modified_at"),
        Column("last_event_id", Text),
        _timestamp("updated_at", nullable=False, default=True),
        # The event-log row of the last applied event: the later arrival wins a tie of timestamps.
        Column("last_log_id", BigInteger),
    ]
    if tombstones:
        columns.insert(1, _timestamp("deleted_at"))
    return columns


def _zoho_mirror(name: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column("zoho_record_id", Text, primary_key=True),
        *columns,
        Column("data", JSONB, nullable=False, server_default="{}"),
        *_mirror_bookkeeping(tombstones=True),
    )


students = _zoho_mirror(
    "students",
    Column("student_id_number", Text, index=True),
    Column("academic_email", Text),
    Column("name", Text),
    Column("moodle_user_id", BigInteger, index=True),
)

enrollments = _zoho_mirror(
    "enrollments",
    Column("student_zoho_id", Text, index=True),
    Column("class_zoho_id", Text, index=True),
    Column("status", Text),
)

grades = _zoho_mirror(
    "grades",
    Column("student_zoho_id", Text, index=True),
    Column("grade", Text),
)

moodle_enrolments = Table(
    "moodle_enrolments",
    metadata,
    Column("moodle_user_id", BigInteger, primary_key=True),
    Column("moodle_course_id", BigInteger, primary_key=True),
    Column("status", Text, nullable=False),
    *_mirror_bookkeeping(tombstones=False),
    CheckConstraint("status IN ('enrolled', 'unenrolled')", name="status"),
)

moodle_grades = Table(
    "moodle_grades",
    metadata,
    Column("moodle_user_id", BigInteger, primary_key=True),
    Column("grade_item_id", BigInteger, primary_key=True),
    Column("moodle_course_id", BigInteger),
    Column("final_grade", Numeric),
    *_mirror_bookkeeping(tombstones=False),
)
