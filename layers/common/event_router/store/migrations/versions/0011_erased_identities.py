"""The erasure register: what an erasure removed can no longer come back.

- ``erased_identities``: each identifier of an erased student as a keyed hash (HMAC-SHA256, the
  key in Secrets Manager) with the time of the erasure. A processor looks up the identifiers of
  every row it is about to write, so an event received before the erasure (waiting in a module
  queue, in flight, replayed from the dead-letter queue) is skipped instead of applied.
- ``erasures.identifiers`` are keyed hashes from now on; the rows of earlier erasures keep the plain
  SHA-256 they were written with (the identifiers themselves are gone, so they cannot be rehashed).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_identities",
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("erasure_id", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_erased_identities"),
    )


def downgrade() -> None:
    op.drop_table("erased_identities")
