"""The delivery stage (docs/connect-moodle.md): deliveries to Moodle and Zoho CRM, the destinations' state, and
the Moodle courses the router has looked up.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUSES = ("pending", "waiting", "paused", "delivered", "failed", "superseded", "dead_lettered", "cancelled")


def _timestamp(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if default else None
    )


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target_key", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _timestamp("next_attempt_at"),
        sa.Column("last_error", sa.Text),
        sa.Column("result", postgresql.JSONB),
        sa.Column("waiting_on", sa.Text),
        sa.Column("event_log_id", sa.BigInteger),  # the event whose mirror change called for it
        _timestamp("created_at", nullable=False, default=True),
        _timestamp("updated_at", nullable=False, default=True),
        _timestamp("delivered_at"),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.CheckConstraint("destination IN ('moodle', 'zoho')", name="ck_deliveries_destination"),
        sa.CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_deliveries_status"),
    )
    op.create_index("ix_deliveries_status_next_attempt_at", "deliveries", ["status", "next_attempt_at"])
    op.create_index(
        "ix_deliveries_destination_action_target_key", "deliveries", ["destination", "action", "target_key"]
    )
    op.create_index("ix_deliveries_waiting_on", "deliveries", ["waiting_on"])

    op.create_table(
        "destinations",
        sa.Column("name", sa.Text, nullable=False),
        _timestamp("paused_at"),
        sa.Column("pause_reason", sa.Text),
        _timestamp("checked_at"),
        sa.Column("identity", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.PrimaryKeyConstraint("name", name="pk_destinations"),
    )
    op.create_table(
        "moodle_courses",
        sa.Column("idnumber", sa.Text, nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        _timestamp("checked_at", nullable=False, default=True),
        sa.PrimaryKeyConstraint("idnumber", name="pk_moodle_courses"),
    )


def downgrade() -> None:
    op.drop_table("moodle_courses")
    op.drop_table("destinations")
    op.drop_table("deliveries")
