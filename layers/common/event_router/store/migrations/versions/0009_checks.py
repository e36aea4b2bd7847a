"""Zoho as it is: the health check's steps, and the accounts server each access token came from.

- ``destinations.checks``: each step of the destination's last health check (token, identity,
  resume, channel), whether it passed and why not, so ``/stats`` shows a failed step without it
  stopping the others.
- ``zoho_tokens.accounts_url``: the accounts server that issued the access token. A token from
  another server (a moved data centre, a restarted local stand-in) is refreshed, never used.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "destinations",
        sa.Column("checks", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.add_column("zoho_tokens", sa.Column("accounts_url", sa.Text))


def downgrade() -> None:
    op.drop_column("zoho_tokens", "accounts_url")
    op.drop_column("destinations", "checks")
