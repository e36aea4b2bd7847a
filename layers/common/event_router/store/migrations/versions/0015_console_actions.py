"""What operators did through the console: ``console_actions``.

One row per action (docs/operate.md, "The console"): who (the console's signed-in user, or
``local-operator`` on ``make dev``), when, which action (replay an event, resend a delivery, resume a
destination, start a reconciliation dry run), on what (an event-log id, a delivery id, a
destination), and what came of it. The console adds to it and reads it, never changes it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ACTIONS = ("replay", "resend", "resume", "reconcile")


def upgrade() -> None:
    op.create_table(
        "console_actions",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.CheckConstraint(
            "action IN (" + ", ".join(f"'{a}'" for a in ACTIONS) + ")", name="ck_console_actions_action"
        ),
    )
    op.create_index("ix_console_actions_at", "console_actions", ["at"])
    # Append-only for the functions, as the privacy record is.
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON console_actions FROM event_router_app")


def downgrade() -> None:
    op.drop_table("console_actions")
