"""The Postgres tables of docs/decisions.md, as SQLAlchemy Core metadata: what the migrations must build.

Migrations under ``migrations/versions`` create the tables; a test checks that the migrated
database and this metadata agree. The functions never import this module (or SQLAlchemy): their
SQL is written against ``tables.py``, which this module reads too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB

from event_router.contract import MODULES, OPERATIONS, SOURCES
from event_router.store import tables
from event_router.store.tables import EVENT_STATUSES

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
    Column("auth_method", Text),
    UniqueConstraint("source", "event_id"),
    CheckConstraint(_one_of("source", SOURCES), name="source"),
    CheckConstraint(_one_of("module", MODULES), name="module"),
    CheckConstraint(_one_of("event_type", OPERATIONS), name="event_type"),
    CheckConstraint(_one_of("status", EVENT_STATUSES), name="status"),
    CheckConstraint(_one_of("auth_method", tables.AUTH_METHODS), name="auth_method"),
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


# ---------------------------------------------------------------- mirror tables (docs/decisions.md)

_TYPES: dict[str, Any] = {
    "text": Text,
    "bigint": BigInteger,
    "jsonb": JSONB,
    "numeric": Numeric,
    "timestamptz": DateTime(timezone=True),
}


def _column(column: tables.Column, *, primary_key: bool = False) -> Column[Any]:
    default = text(column.default) if column.default else None
    return Column(
        column.name,
        _TYPES[column.sql_type],
        primary_key=primary_key,
        nullable=column.nullable and not primary_key,
        index=column.indexed or None,
        server_default=default,
    )


def _mirror(table: tables.MirrorTable) -> Table:
    checks = [CheckConstraint(c.check, name=c.name) for c in table.columns if c.check]
    return Table(
        table.name,
        metadata,
        *(_column(c, primary_key=True) for c in table.key),
        *(_column(c) for c in (*table.columns, *table.bookkeeping)),
        _timestamp("updated_at", nullable=False, default=True),
        *checks,
    )


mirrors = {name: _mirror(table) for name, table in tables.MIRRORS.items()}


# ---------------------------------------------------------------- the delivery stage (docs/connect-moodle.md)

deliveries = Table(
    tables.DELIVERIES,
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("destination", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target_key", Text, nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _timestamp("next_attempt_at"),
    Column("last_error", Text),
    Column("result", JSONB),
    Column("waiting_on", Text, index=True),
    Column("event_log_id", BigInteger),
    _timestamp("created_at", nullable=False, default=True),
    _timestamp("updated_at", nullable=False, default=True),
    _timestamp("delivered_at"),
    CheckConstraint(_one_of("destination", tables.DESTINATIONS), name="destination"),
    CheckConstraint(_one_of("status", tables.DELIVERY_STATUSES), name="status"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "destination", "action", "target_key"),
)

destinations = Table(
    "destinations",
    metadata,
    Column("name", Text, primary_key=True),
    _timestamp("paused_at"),
    Column("pause_reason", Text),
    _timestamp("checked_at"),
    Column("identity", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("checks", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # the last health check's steps
)

moodle_courses = Table(
    "moodle_courses",
    metadata,
    Column("idnumber", Text, primary_key=True),
    Column("course_id", BigInteger, nullable=False),
    _timestamp("checked_at", nullable=False, default=True),
)

zoho_tokens = Table(
    "zoho_tokens",
    metadata,
    Column("name", Text, primary_key=True),
    Column("access_token", Text, nullable=False),
    Column("api_domain", Text, nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("refreshed_at", nullable=False, default=True),
    Column("accounts_url", Text),  # the accounts server that issued it
)

zoho_classes = Table(
    "zoho_classes",
    metadata,
    Column("class_zoho_id", Text, primary_key=True),
    Column("moodle_course_idnumber", Text),
    _timestamp("fetched_at", nullable=False, default=True),
)

moodle_accounts = Table(
    "moodle_accounts",
    metadata,
    Column("student_zoho_id", Text, primary_key=True),
    Column("moodle_user_id", BigInteger, nullable=False),
    Column("origin", Text, nullable=False),  # created | adopted
    Column("matched_by", Text),  # idnumber | username | email, for an adopted account
    _timestamp("linked_at", nullable=False, default=True),
    UniqueConstraint("moodle_user_id"),
    CheckConstraint("origin IN ('created', 'adopted')", name="origin"),
)

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _timestamp("started_at", nullable=False, default=True),
    _timestamp("finished_at"),
    _timestamp("heartbeat_at", nullable=False, default=True),
    Column("status", Text, nullable=False, index=True),
    Column("dry_run", Boolean, nullable=False),
    Column("requested_by", Text, nullable=False),
    _timestamp("since"),
    Column("phase", Text, nullable=False),
    Column("checkpoint", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("counts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    CheckConstraint("status IN ('running', 'paused', 'completed', 'failed')", name="status"),
)

zoho_webhook_failures = Table(
    "zoho_webhook_failures",
    metadata,
    Column("failure_key", Text, primary_key=True),
    Column("module", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("webhook", Text),
    Column("reason", Text),
    _timestamp("failed_at"),
    _timestamp("seen_at", nullable=False, default=True),
    Column("run_id", BigInteger),
    Index(None, "seen_at"),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _timestamp("requested_at", nullable=False, default=True),
    Column("requested_by", Text, nullable=False),
    Column("identifiers", JSONB, nullable=False),
    Column("counts", JSONB, nullable=False),
    Column("dry_run", Boolean, nullable=False),
)

# The erasure register (event_router/erasure.py): each erased identifier as a keyed hash, and when.
erased_identities = Table(
    "erased_identities",
    metadata,
    Column("digest", Text, primary_key=True),
    _timestamp("erased_at", nullable=False, default=True),
    Column("erasure_id", BigInteger, nullable=True),
)

# Every export and erasure, with the caller API Gateway verified (docs/operate.md).
privacy_requests = Table(
    "privacy_requests",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _timestamp("requested_at", nullable=False, default=True),
    Column("caller", Text, nullable=False),
    Column("request_id", Text),
    Column("action", Text, nullable=False),
    Column("dry_run", Boolean, nullable=False, server_default=text("false")),
    Column("reference", Text),
    Column("identifiers", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("erasure_id", BigInteger),
    CheckConstraint("action IN ('export', 'erase', 'history')", name="ck_privacy_requests_action"),
    Index("ix_privacy_requests_requested_at", "requested_at"),
)


# What operators did through the console, and who (migration 0015, docs/operate.md).
console_actions = Table(
    "console_actions",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _timestamp("at", nullable=False, default=True),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    CheckConstraint("action IN ('replay', 'resend', 'resume', 'reconcile')", name="ck_console_actions_action"),
    Index("ix_console_actions_at", "at"),
)


def _counter(name: str, *keys: str) -> Table:
    """Totals by status, kept by triggers (migration 0008), in shards summed when read."""
    return Table(
        name,
        metadata,
        *(Column(k, Text, primary_key=True) for k in keys),
        Column("shard", SmallInteger, primary_key=True),
        Column("n", BigInteger, nullable=False),
    )


event_counts = _counter("event_counts", "source", "module", "status")


def _rollup(name: str, period: str, keys: list[Column[Any]], *sums: str) -> Table:
    """The day's figures by ``period`` and ``keys``, kept by triggers (migrations 0014, 0016), in shards."""
    return Table(
        name,
        metadata,
        Column(period, DateTime(timezone=True), primary_key=True),
        *keys,
        Column("shard", SmallInteger, primary_key=True),
        *(Column(total, BigInteger, nullable=False) for total in ("n", *sums)),
    )


event_minutes = _rollup(
    "event_minutes",
    "minute",
    [Column("module", Text, primary_key=True), Column("status", Text, primary_key=True)],
    "ms_n",
    "ms_sum",
)
event_ms_hours = _rollup("event_ms_hours", "hour", [Column("bucket", SmallInteger, primary_key=True)])
delivery_counts = _counter("delivery_counts", "destination", "status")
Index(
    "ix_integration_events_log_failed_updated_at",
    integration_events_log.c.updated_at,
    postgresql_where=text("status IN ('failed', 'dead_lettered')"),
)
Index("ix_deliveries_status_updated_at", deliveries.c.status, deliveries.c.updated_at)
