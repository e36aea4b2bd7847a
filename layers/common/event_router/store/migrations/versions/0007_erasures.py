"""Erasures (UK GDPR article 17): one row per erasure of a student — who asked, when, the student's
identifiers hashed (never in clear), and what was removed, table by table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("identifiers", postgresql.JSONB, nullable=False),
        sa.Column("counts", postgresql.JSONB, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasures"),
    )


def downgrade() -> None:
    op.drop_table("erasures")
