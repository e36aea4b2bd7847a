"""Day one in a real college: the Moodle accounts the router manages, the conflicts it will not
resolve by itself, and the reconciliation's runs.

- ``moodle_accounts``: the router's own record that a Moodle account is a Zoho student's, because
  the router created it or adopted it under the safe rules (docs/first-day.md). ``Moodle_User_ID``
  from Zoho is no longer a target: ``students.moodle_user_id`` mirrors it as Zoho holds it. The
  accounts the router is known to have created (a delivered ``created``) are carried over; every
  other link is decided again under the adoption rules at the student's next delivery.
- ``deliveries.status`` gains ``conflict``: Moodle was left as it is, for a person to decide.
- ``integration_events_log.auth_method`` gains ``reconciliation``: a record the router read itself.
- ``reconcile_runs``: every import and reconciliation, its checkpoint and its figures.
- ``zoho_webhook_failures``: the workflow webhooks Zoho says it failed to deliver.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD_STATUSES = ("pending", "waiting", "paused", "delivered", "failed", "superseded", "dead_lettered", "cancelled")
NEW_STATUSES = (*OLD_STATUSES, "conflict")
OLD_AUTH = ("signature", "token", "channel_token")
NEW_AUTH = (*OLD_AUTH, "reconciliation")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, column: str, values: tuple[str, ...]) -> None:
    # The constraints of migrations 0004 and 0006 carry the naming convention's prefix twice.
    name = f"ck_{table}_ck_{table}_{column}"
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({_one_of(column, values)})")


def upgrade() -> None:
    op.create_table(
        "moodle_accounts",
        sa.Column("student_zoho_id", sa.Text, nullable=False),
        sa.Column("moodle_user_id", sa.BigInteger, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("matched_by", sa.Text),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("student_zoho_id", name="pk_moodle_accounts"),
        sa.UniqueConstraint("moodle_user_id", name="uq_moodle_accounts_moodle_user_id"),
        sa.CheckConstraint("origin IN ('created', 'adopted')", name="ck_moodle_accounts_origin"),
    )
    # The accounts the router made: the newest delivered user delivery of each student, where one of
    # its deliveries created that very account.
    op.execute("""
        INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin)
        SELECT DISTINCT ON (latest.target_key) latest.target_key, latest.moodle_user_id, 'created'
        FROM (
            SELECT target_key, CAST(result->>'moodle_user_id' AS bigint) AS moodle_user_id, id
            FROM deliveries
            WHERE destination = 'moodle' AND action = 'user' AND status = 'delivered'
              AND result->>'moodle_user_id' IS NOT NULL
        ) AS latest
        WHERE EXISTS (
            SELECT 1 FROM deliveries AS made
            WHERE made.destination = 'moodle' AND made.action = 'user' AND made.target_key = latest.target_key
              AND made.result->>'action' = 'created'
              AND CAST(made.result->>'moodle_user_id' AS bigint) = latest.moodle_user_id
        )
        ORDER BY latest.target_key, latest.id DESC
        ON CONFLICT DO NOTHING""")
    _replace_check("deliveries", "status", NEW_STATUSES)
    _replace_check("integration_events_log", "auth_method", NEW_AUTH)
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("checkpoint", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("counts", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_reconcile_runs"),
        sa.CheckConstraint("status IN ('running', 'paused', 'completed', 'failed')", name="ck_reconcile_runs_status"),
    )
    op.create_index("ix_reconcile_runs_status", "reconcile_runs", ["status"])
    op.create_table(
        "zoho_webhook_failures",
        sa.Column("failure_key", sa.Text, nullable=False),
        sa.Column("module", sa.Text, nullable=False),
        sa.Column("record_id", sa.Text, nullable=False),
        sa.Column("webhook", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("failed_at", sa.DateTime(timezone=True)),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("run_id", sa.BigInteger),
        sa.PrimaryKeyConstraint("failure_key", name="pk_zoho_webhook_failures"),
    )
    op.create_index("ix_zoho_webhook_failures_seen_at", "zoho_webhook_failures", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_zoho_webhook_failures_seen_at", "zoho_webhook_failures")
    op.drop_table("zoho_webhook_failures")
    op.drop_index("ix_reconcile_runs_status", "reconcile_runs")
    op.drop_table("reconcile_runs")
    op.execute("UPDATE integration_events_log SET auth_method = NULL WHERE auth_method = 'reconciliation'")
    _replace_check("integration_events_log", "auth_method", OLD_AUTH)
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'conflict'")
    _replace_check("deliveries", "status", OLD_STATUSES)
    op.drop_table("moodle_accounts")
