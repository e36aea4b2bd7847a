"""The event log records how each event was authenticated: ``signature``, ``token`` (a per-route
shared token, for senders that cannot sign, such as Zoho's workflow webhooks) or ``channel_token``
(Zoho's Notification API). Rows logged before this migration have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("integration_events_log", sa.Column("auth_method", sa.Text))
    op.create_check_constraint(
        "ck_integration_events_log_auth_method",
        "integration_events_log",
        "auth_method IN ('signature', 'token', 'channel_token')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_integration_events_log_auth_method", "integration_events_log")
    op.drop_column("integration_events_log", "auth_method")
