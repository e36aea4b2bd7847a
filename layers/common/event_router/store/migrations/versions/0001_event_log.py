"""Event log and rejected requests (docs/api.md, docs/decisions.md).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if default else None
    )


def upgrade() -> None:
    op.create_table(
        "integration_events_log",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("module", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("record_id", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="received"),
        sa.Column("result", postgresql.JSONB),
        sa.Column("error_message", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),
        _timestamp("occurred_at"),
        _timestamp("received_at", nullable=False, default=True),
        _timestamp("queued_at"),
        _timestamp("processed_at"),
        sa.Column("processing_ms", sa.Integer),
        _timestamp("updated_at", nullable=False, default=True),
        sa.PrimaryKeyConstraint("id", name="pk_integration_events_log"),
        sa.UniqueConstraint("source", "event_id", name="uq_integration_events_log_source_event_id"),
        sa.CheckConstraint("source IN ('zoho', 'moodle')", name="ck_integration_events_log_source"),
        sa.CheckConstraint(
            "module IN ('students', 'enrollments', 'grades', 'payments')", name="ck_integration_events_log_module"
        ),
        sa.CheckConstraint("event_type IN ('create', 'update', 'delete')", name="ck_integration_events_log_event_type"),
        sa.CheckConstraint(
            "status IN ('received', 'queued', 'processing', 'completed', 'skipped', 'failed', "
            "'dead_lettered', 'replayed')",
            name="ck_integration_events_log_status",
        ),
    )
    op.create_index("ix_integration_events_log_status_received_at", "integration_events_log", ["status", "received_at"])
    op.create_index("ix_integration_events_log_received_at", "integration_events_log", ["received_at"])

    op.create_table(
        "rejected_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        _timestamp("received_at", nullable=False, default=True),
        sa.Column("source", sa.Text),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("source_ip", postgresql.INET),
        sa.Column("body_size", sa.Integer, nullable=False),
        sa.Column("body_sha256", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_requests"),
    )
    op.create_index("ix_rejected_requests_received_at", "rejected_requests", ["received_at"])


def downgrade() -> None:
    op.drop_table("rejected_requests")
    op.drop_table("integration_events_log")
