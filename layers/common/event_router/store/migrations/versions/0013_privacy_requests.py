"""Every export and erasure, recorded with who asked: ``privacy_requests``.

One row per request the privacy function served (docs/operate.md, "Who may export or erase"):
the caller's IAM identity as API Gateway verified it, the API's request id, the action, whether it
was a dry run, the reference the caller gave (a subject-access ticket), the student's identifiers
as keyed hashes (the erasure register's key: a reader of the table cannot recover them, the
privacy function can match a student against them), and the erasure it made, if any. The
functions may add to it and read it, never change it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reference", sa.Text),
        sa.Column("identifiers", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("erasure_id", sa.BigInteger),
        sa.CheckConstraint("action IN ('export', 'erase', 'history')", name="ck_privacy_requests_action"),
    )
    op.create_index("ix_privacy_requests_requested_at", "privacy_requests", ["requested_at"])
    # The record is append-only for the functions: the privacy function adds to it and reads it.
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON privacy_requests FROM event_router_app")


def downgrade() -> None:
    op.drop_table("privacy_requests")
